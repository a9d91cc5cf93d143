package signing_test

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hookbus/hookbus/core/signing"
)

// TestV1aStandardWebhooksVector signs the asymmetric test vector of the
// Standard Webhooks reference Go library (libraries/go,
// TestAsymmetricWebhookSign): Ed25519 signatures are deterministic, so
// the exact header entry is fixed by the seed, id, timestamp and body.
func TestV1aStandardWebhooksVector(t *testing.T) {
	t.Parallel()
	key, err := signing.ParseSigningKey("whsk_VEVTVFNJR05JTkdLRVlET05PVFVTRVRISVNGT1JBTlk=")
	if err != nil {
		t.Fatal(err)
	}
	const want = "v1a,tQ9V2XOqn7jL/DQenEFpqIugdBVtiMmER5mhSkXBNwM0mkATuDe6KYYUuxqtaiHeYGb7KaaBRdM5WqyeFiL8Ag=="
	ts := time.Unix(1614265330, 0)
	body := []byte(`{"test": 2432232314}`)
	got := key.SignV1a("msg_p5jXN8AQM9LWM0D4loKWxJek", ts, body)
	if got != want {
		t.Fatalf("SignV1a = %s\nwant      %s", got, want)
	}
	if err := signing.VerifyV1a(key.PublicKey(), "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", want, body, time.Minute, ts); err != nil {
		t.Fatalf("VerifyV1a of the vector: %v", err)
	}
}

// TestV1aIndependentEd25519 checks what SignAll writes with crypto/ed25519
// directly, from the published whpk_ text alone.
func TestV1aIndependentEd25519(t *testing.T) {
	t.Parallel()
	text, err := signing.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	key, err := signing.ParseSigningKey(text)
	if err != nil {
		t.Fatal(err)
	}
	if key.String() != text {
		t.Fatalf("String() = %q, want %q", key.String(), text)
	}
	sec, _ := signing.ParseSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	ts := time.Unix(1700000000, 0)
	body := []byte(`{"type":"order.paid"}`)
	header := signing.SignAll([]signing.Secret{sec}, []signing.SigningKey{key}, "evt_1", ts, body)
	entries := strings.Fields(header)
	if len(entries) != 2 || !strings.HasPrefix(entries[0], "v1,") || !strings.HasPrefix(entries[1], "v1a,") {
		t.Fatalf("header = %q, want a v1 then a v1a entry", header)
	}
	pubRaw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(key.PublicKey().String(), "whpk_"))
	if err != nil || len(pubRaw) != ed25519.PublicKeySize {
		t.Fatalf("public key %q: %v", key.PublicKey(), err)
	}
	sig, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(entries[1], "v1a,"))
	if err != nil {
		t.Fatal(err)
	}
	if !ed25519.Verify(pubRaw, []byte(`evt_1.1700000000.{"type":"order.paid"}`), sig) {
		t.Fatal("crypto/ed25519 rejects the v1a signature")
	}
	// The HMAC entry still verifies beside it.
	if err := signing.Verify(sec, "evt_1", "1700000000", header, body, time.Minute, ts); err != nil {
		t.Fatalf("v1 beside v1a: %v", err)
	}
}

func TestVerifyV1a(t *testing.T) {
	t.Parallel()
	k1, k2 := mustKey(t), mustKey(t)
	ts := time.Unix(1700000000, 0)
	body := []byte("hello")
	header := signing.SignAll(nil, []signing.SigningKey{k1, k2}, "msg", ts, body)
	for _, tc := range []struct {
		name      string
		pub       signing.PublicKey
		id, ts    string
		header    string
		body      string
		now       time.Time
		wantError error
	}{
		{"first key", k1.PublicKey(), "msg", "1700000000", header, "hello", ts, nil},
		{"second key (rotation)", k2.PublicKey(), "msg", "1700000000", header, "hello", ts, nil},
		{"other key", mustKey(t).PublicKey(), "msg", "1700000000", header, "hello", ts, signing.ErrNoMatchingSignature},
		{"changed body", k1.PublicKey(), "msg", "1700000000", header, "hellO", ts, signing.ErrNoMatchingSignature},
		{"changed id", k1.PublicKey(), "msh", "1700000000", header, "hello", ts, signing.ErrNoMatchingSignature},
		{"v1 tag on an Ed25519 signature", k1.PublicKey(), "msg", "1700000000", strings.ReplaceAll(header, "v1a,", "v1,"), "hello", ts, signing.ErrNoMatchingSignature},
		{"truncated", k1.PublicKey(), "msg", "1700000000", "v1a,", "hello", ts, signing.ErrNoMatchingSignature},
		{"too old", k1.PublicKey(), "msg", "1700000000", header, "hello", ts.Add(time.Hour), signing.ErrTimestampTooOld},
		{"too new", k1.PublicKey(), "msg", "1700000000", header, "hello", ts.Add(-time.Hour), signing.ErrTimestampTooNew},
		{"not canonical", k1.PublicKey(), "msg", "01700000000", header, "hello", ts, signing.ErrInvalidTimestamp},
		{"missing", k1.PublicKey(), "msg", "1700000000", "", "hello", ts, signing.ErrMissingHeader},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := signing.VerifyV1a(tc.pub, tc.id, tc.ts, tc.header, []byte(tc.body), 5*time.Minute, tc.now)
			if !errors.Is(err, tc.wantError) || (tc.wantError == nil) != (err == nil) {
				t.Fatalf("VerifyV1a = %v, want %v", err, tc.wantError)
			}
		})
	}
}

func TestParseKeys(t *testing.T) {
	t.Parallel()
	seed := make([]byte, 32)
	for i := range seed {
		seed[i] = byte(i)
	}
	priv := ed25519.NewKeyFromSeed(seed)
	long := "whsk_" + base64.StdEncoding.EncodeToString(priv)
	k, err := signing.ParseSigningKey(long)
	if err != nil {
		t.Fatalf("64-byte key: %v", err)
	}
	if want := "whsk_" + base64.StdEncoding.EncodeToString(seed); k.String() != want {
		t.Fatalf("64-byte key reads back as %q, want the seed form %q", k, want)
	}
	wantPub := "whpk_" + base64.StdEncoding.EncodeToString(priv.Public().(ed25519.PublicKey))
	if k.PublicKey().String() != wantPub {
		t.Fatalf("PublicKey = %q, want %q", k.PublicKey(), wantPub)
	}
	if p, err := signing.ParsePublicKey(wantPub); err != nil || p.ID() != k.PublicKey().ID() || !strings.HasPrefix(p.ID(), "key_") {
		t.Fatalf("ParsePublicKey(%q) = %v, %v", wantPub, p, err)
	}
	bad := append([]byte(nil), priv...)
	bad[40] ^= 1
	for _, tc := range []struct{ in, want string }{
		{"", "empty"},
		{"whsec_" + base64.StdEncoding.EncodeToString(seed), `must start with "whsk_"`},
		{"whsk_!!", "not valid base64"},
		{"whsk_" + base64.StdEncoding.EncodeToString(seed[:31]), "got 31 bytes"},
		{"whsk_" + base64.StdEncoding.EncodeToString(bad), "does not match"},
	} {
		if _, err := signing.ParseSigningKey(tc.in); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseSigningKey(%q) = %v, want an error with %q", tc.in, err, tc.want)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{k.String(), `must start with "whpk_"`},
		{"whpk_" + base64.StdEncoding.EncodeToString(seed[:16]), "got 16 bytes"},
	} {
		if _, err := signing.ParsePublicKey(tc.in); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParsePublicKey(%q) = %v, want an error with %q", tc.in, err, tc.want)
		}
	}
}

func mustKey(t *testing.T) signing.SigningKey {
	t.Helper()
	text, err := signing.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	k, err := signing.ParseSigningKey(text)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
