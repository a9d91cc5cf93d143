package signing

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// The example from the Standard Webhooks specification and its libraries.
const (
	vecSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vecID     = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vecTS     = 1614265330
	vecBody   = `{"test": 2432232314}`
	vecSig    = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func mustSecret(t testing.TB, s string) Secret {
	t.Helper()
	sec, err := ParseSecret(s)
	if err != nil {
		t.Fatalf("ParseSecret(%q): %v", s, err)
	}
	return sec
}

func TestSignStandardWebhooksVector(t *testing.T) {
	t.Parallel()
	s := mustSecret(t, vecSecret)
	got := Sign([]Secret{s}, vecID, time.Unix(vecTS, 0), []byte(vecBody))
	if got != vecSig {
		t.Fatalf("Sign = %q, want %q", got, vecSig)
	}
	// Reusing pooled state must give the same answer.
	for range 3 {
		if again := Sign([]Secret{s}, vecID, time.Unix(vecTS, 0), []byte(vecBody)); again != vecSig {
			t.Fatalf("second Sign = %q, want %q", again, vecSig)
		}
	}
	if err := Verify(s, vecID, "1614265330", got, []byte(vecBody), 5*time.Minute, time.Unix(vecTS+10, 0)); err != nil {
		t.Fatalf("Verify: %v", err)
	}
}

func TestSignRotation(t *testing.T) {
	t.Parallel()
	oldS := mustSecret(t, vecSecret)
	gen, err := GenerateSecret()
	if err != nil {
		t.Fatal(err)
	}
	newS := mustSecret(t, gen)
	body := []byte(`{"a":1}`)
	now := time.Unix(1700000000, 0)
	h := Sign([]Secret{oldS, newS}, "msg_1", now, body)
	parts := strings.Split(h, " ")
	if len(parts) != 2 {
		t.Fatalf("want two signatures, got %q", h)
	}
	for _, p := range parts {
		if !strings.HasPrefix(p, "v1,") || len(p) != sigLen {
			t.Fatalf("bad entry %q in %q", p, h)
		}
	}
	for name, s := range map[string]Secret{"old": oldS, "new": newS} {
		if err := Verify(s, "msg_1", "1700000000", h, body, time.Minute, now); err != nil {
			t.Errorf("%s secret: Verify: %v", name, err)
		}
	}
	if Sign(nil, "x", now, body) != "" {
		t.Error("Sign with no secrets should be empty")
	}
}

func TestParseSecret(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		wantErr string
	}{
		{vecSecret, ""},
		{"", "empty"},
		{"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", `must start with "whsec_"`},
		{"whsec_", "nothing after"},
		{"whsec_not base64!!", "not valid base64"},
		{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS", "not valid base64"}, // bad padding
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			s, err := ParseSecret(tt.in)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if s.String() != tt.in || s.IsZero() {
					t.Fatalf("String() = %q, want %q", s.String(), tt.in)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestGenerateSecret(t *testing.T) {
	t.Parallel()
	a, err := GenerateSecret()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := GenerateSecret()
	if a == b {
		t.Fatal("two generated secrets are equal")
	}
	s := mustSecret(t, a)
	if n := len(s.k.raw); n < 24 {
		t.Fatalf("generated key has %d bytes, want >= 24", n)
	}
}

func TestVerify(t *testing.T) {
	t.Parallel()
	s := mustSecret(t, vecSecret)
	other := mustSecret(t, "whsec_"+strings.Repeat("QUJD", 8))
	body := []byte(vecBody)
	ts := time.Unix(vecTS, 0)
	tol := 5 * time.Minute
	tests := []struct {
		name    string
		secret  Secret
		id, ts  string
		sig     string
		body    []byte
		now     time.Time
		wantErr error
	}{
		{"ok", s, vecID, "1614265330", vecSig, body, ts, nil},
		{"ok among others", s, vecID, "1614265330", "v2,abc v1,AAAA " + vecSig, body, ts, nil},
		{"ok at tolerance edge", s, vecID, "1614265330", vecSig, body, ts.Add(tol), nil},
		{"wrong secret", other, vecID, "1614265330", vecSig, body, ts, ErrNoMatchingSignature},
		{"tampered body", s, vecID, "1614265330", vecSig, []byte(`{"test": 1}`), ts, ErrNoMatchingSignature},
		{"tampered id", s, "msg_other", "1614265330", vecSig, body, ts, ErrNoMatchingSignature},
		{"wrong version", s, vecID, "1614265330", "v2," + vecSig[3:], body, ts, ErrNoMatchingSignature},
		{"garbage signature", s, vecID, "1614265330", "v1,!!!", body, ts, ErrNoMatchingSignature},
		{"too old", s, vecID, "1614265330", vecSig, body, ts.Add(tol + time.Second), ErrTimestampTooOld},
		{"too new", s, vecID, "1614265330", vecSig, body, ts.Add(-tol - time.Second), ErrTimestampTooNew},
		{"bad timestamp", s, vecID, "yesterday", vecSig, body, ts, ErrInvalidTimestamp},
		{"missing id", s, "", "1614265330", vecSig, body, ts, ErrMissingHeader},
		{"missing signature", s, vecID, "1614265330", "", body, ts, ErrMissingHeader},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Verify(tt.secret, tt.id, tt.ts, tt.sig, tt.body, tol, tt.now)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("Verify = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestSignConcurrent(t *testing.T) {
	t.Parallel()
	s := mustSecret(t, vecSecret)
	done := make(chan string, 8)
	for range 8 {
		go func() {
			var got string
			for range 200 {
				got = Sign([]Secret{s}, vecID, time.Unix(vecTS, 0), []byte(vecBody))
				if got != vecSig {
					break
				}
			}
			done <- got
		}()
	}
	for range 8 {
		if got := <-done; got != vecSig {
			t.Fatalf("concurrent Sign = %q", got)
		}
	}
}

func BenchmarkSign(b *testing.B) {
	s := mustSecret(b, vecSecret)
	body := []byte(strings.Repeat("x", 1024))
	secrets := []Secret{s}
	ts := time.Unix(vecTS, 0)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		Sign(secrets, vecID, ts, body)
	}
}

func BenchmarkSignTwoSecrets(b *testing.B) {
	s := mustSecret(b, vecSecret)
	s2 := mustSecret(b, "whsec_"+strings.Repeat("QUJD", 8))
	body := []byte(strings.Repeat("x", 1024))
	secrets := []Secret{s, s2}
	ts := time.Unix(vecTS, 0)
	b.ReportAllocs()
	for b.Loop() {
		Sign(secrets, vecID, ts, body)
	}
}

// The HMAC covers the timestamp text; "+1700000000" or "01700000000" parse
// to the same number, so a signature over "1700000000" must not vouch for
// them (found by FuzzVerify).
func TestVerifyRejectsNonCanonicalTimestamp(t *testing.T) {
	t.Parallel()
	sec := NewSecret([]byte("MfKQ9r8GKYqrTwjUPD8ILPZI"))
	ts := time.Unix(1_700_000_000, 0)
	sig := Sign([]Secret{sec}, "msg_1", ts, []byte("{}"))
	if err := Verify(sec, "msg_1", "1700000000", sig, []byte("{}"), time.Minute, ts); err != nil {
		t.Fatalf("canonical timestamp: %v", err)
	}
	for _, text := range []string{"+1700000000", "01700000000", "-0", "1700000000 "} {
		if err := Verify(sec, "msg_1", text, sig, []byte("{}"), time.Minute, ts); !errors.Is(err, ErrInvalidTimestamp) {
			t.Errorf("timestamp %q: err = %v, want ErrInvalidTimestamp", text, err)
		}
	}
}

// base64 decoding skips line breaks, so "whsec_" followed by only line
// breaks used to give an empty HMAC key (found by FuzzParseSecret).
func TestParseSecretRejectsEmptyKey(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"whsec_\n", "whsec_\r\n\r\n"} {
		if _, err := ParseSecret(s); err == nil || !strings.Contains(err.Error(), "no key bytes") {
			t.Errorf("ParseSecret(%q) = %v, want a no-key-bytes error", s, err)
		}
	}
}
