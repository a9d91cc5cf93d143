package signing

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzParseSecret: any text is either refused with an error or gives a
// secret whose text form parses back to the same key.
func FuzzParseSecret(f *testing.F) {
	for _, s := range []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_", "whsec_=", "whsec_AA==", "whsec_AA", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_Mf\nKQ", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sec, err := ParseSecret(s)
		if err != nil {
			if !sec.IsZero() {
				t.Fatalf("ParseSecret(%q) returned a secret and an error", s)
			}
			return
		}
		if sec.IsZero() || len(sec.k.raw) == 0 {
			t.Fatalf("ParseSecret(%q) accepted an empty key", s)
		}
		again, err := ParseSecret(sec.String())
		if err != nil || again.String() != sec.String() {
			t.Fatalf("ParseSecret(%q).String() = %q does not parse back: %v", s, sec.String(), err)
		}
	})
}

// canonicalUnix matches Unix seconds written the one way Sign writes them.
var canonicalUnix = regexp.MustCompile(`^(0|-?[1-9][0-9]*)$`)

// referenceValid is the Standard Webhooks verification written from the
// specification alone: the timestamp is Unix seconds, the HMAC covers the
// webhook-timestamp header text as received, and one space-separated
// "v1,<base64>" entry must match.
func referenceValid(key []byte, id, timestamp, header string, body []byte) bool {
	if !canonicalUnix.MatchString(timestamp) {
		return false
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + timestamp + "."))
	mac.Write(body)
	want := mac.Sum(nil)
	for _, entry := range strings.Fields(header) {
		sig, ok := strings.CutPrefix(entry, "v1,")
		if !ok {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(sig)
		if err == nil && hmac.Equal(got, want) {
			return true
		}
	}
	return false
}

// FuzzVerify checks Verify against arbitrary headers (never a panic, always
// one of the documented errors), against the reference above, and that what
// Sign produces verifies and stops verifying when the body changes.
func FuzzVerify(f *testing.F) {
	key := []byte("MfKQ9r8GKYqrTwjUPD8ILPZI")
	sec := NewSecret(key)
	ts := time.Unix(1_700_000_000, 0)
	good := Sign([]Secret{sec}, "msg_1", ts, []byte(`{"a":1}`))
	f.Add(key, "msg_1", "1700000000", good, []byte(`{"a":1}`), int64(300))
	f.Add(key, "msg_1", "1700000000", "v1,bad v2,x "+good, []byte(`{"a":1}`), int64(300))
	f.Add(key, "msg_1", "01700000000", good, []byte(`{"a":1}`), int64(300))
	f.Add(key, "msg_1", "+1700000000", good, []byte(`{"a":1}`), int64(300))
	f.Add(key, "msg_1", "9223372036854775807", good, []byte{}, int64(0))
	f.Add(key, "", "", "", []byte(nil), int64(-1))
	f.Add([]byte{}, "id", "-9223372036854775808", "v1,", []byte("x"), int64(1<<62))
	f.Fuzz(func(t *testing.T, key []byte, id, timestamp, header string, body []byte, tolSeconds int64) {
		sec := NewSecret(key)
		tol := time.Duration(tolSeconds) * time.Second
		unix, perr := strconv.ParseInt(timestamp, 10, 64)
		now := time.Unix(unix, 0) // within any non-negative tolerance
		if perr != nil {
			now = ts
		}

		err := Verify(sec, id, timestamp, header, body, tol, now)
		if err != nil {
			known := false
			for _, e := range []error{ErrMissingHeader, ErrInvalidTimestamp, ErrTimestampTooOld, ErrTimestampTooNew, ErrNoMatchingSignature} {
				known = known || errors.Is(err, e)
			}
			if !known {
				t.Fatalf("Verify returned an undocumented error: %v", err)
			}
		}
		if id != "" && header != "" && perr == nil && tol >= 0 {
			if want := referenceValid(key, id, timestamp, header, body); (err == nil) != want {
				t.Fatalf("Verify(id=%q, timestamp=%q, header=%q) = %v; the specification says valid=%v", id, timestamp, header, err, want)
			}
		}

		if id == "" || tol < 0 {
			return
		}
		signed := Sign([]Secret{sec}, id, now, body)
		canon := strconv.FormatInt(now.Unix(), 10)
		if err := Verify(sec, id, canon, signed, body, tol, now); err != nil {
			t.Fatalf("Verify of what Sign produced: %v", err)
		}
		tampered := append(append([]byte(nil), body...), 'x')
		if err := Verify(sec, id, canon, signed, tampered, tol, now); !errors.Is(err, ErrNoMatchingSignature) {
			t.Fatalf("Verify of a changed body = %v, want ErrNoMatchingSignature", err)
		}
	})
}
