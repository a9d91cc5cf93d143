package signing

import (
	"bytes"
	"encoding/base64"
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzParseSigningKey: any text is refused or gives a key whose text form
// parses back to the same key, with a public key that parses too.
func FuzzParseSigningKey(f *testing.F) {
	for _, s := range []string{"whsk_VEVTVFNJR05JTkdLRVlET05PVFVTRVRISVNGT1JBTlk=", "whsk_", "whsk_AA==", "whsec_AA==", "whpk_AA==", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseSigningKey(s)
		if err != nil {
			if !k.IsZero() {
				t.Fatalf("ParseSigningKey(%q) returned a key and an error", s)
			}
			return
		}
		again, err := ParseSigningKey(k.String())
		if err != nil || again.String() != k.String() {
			t.Fatalf("ParseSigningKey(%q).String() = %q does not parse back: %v", s, k, err)
		}
		if p, err := ParsePublicKey(k.PublicKey().String()); err != nil || p.ID() != k.PublicKey().ID() {
			t.Fatalf("public key of %q does not parse back: %v", s, err)
		}
	})
}

// FuzzVerifyV1a: no header makes VerifyV1a panic or accept a message the
// key did not sign (Ed25519 signatures here are deterministic and checked
// strictly, so an accepted entry decodes to SignV1a's); what SignV1a wrote
// always verifies.
func FuzzVerifyV1a(f *testing.F) {
	key, err := ParseSigningKey("whsk_VEVTVFNJR05JTkdLRVlET05PVFVTRVRISVNGT1JBTlk=")
	if err != nil {
		f.Fatal(err)
	}
	now := time.Unix(1614265330, 0)
	f.Add("msg_1", "1614265330", key.SignV1a("msg_1", now, []byte("body")), []byte("body"))
	f.Add("msg_1", "1614265330", "v1a, v1a,, v1,abc v1a,AAAA", []byte(""))
	f.Fuzz(func(t *testing.T, id, ts, header string, body []byte) {
		if VerifyV1a(key.PublicKey(), id, ts, header, body, time.Hour, now) == nil {
			unix, _ := strconv.ParseInt(ts, 10, 64)
			want, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(key.SignV1a(id, time.Unix(unix, 0), body), "v1a,"))
			found := false
			for _, e := range strings.Fields(header) {
				got, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(e, "v1a,"))
				found = found || strings.HasPrefix(e, "v1a,") && err == nil && bytes.Equal(got, want)
			}
			if !found {
				t.Fatalf("VerifyV1a accepted %q for %q.%q", header, id, ts)
			}
		}
		if id != "" && VerifyV1a(key.PublicKey(), id, "1614265330", key.SignV1a(id, now, body), body, time.Hour, now) != nil {
			t.Fatalf("VerifyV1a rejects SignV1a's own entry for id %q", id)
		}
	})
}
