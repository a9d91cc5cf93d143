package subscriptions

import (
	"crypto/ed25519"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/hookbus/hookbus/core/signing"
	"github.com/hookbus/hookbus/core/subscription"
)

// v1aVerifies reports whether one "v1a," entry of the arrival's
// webhook-signature is an Ed25519 signature by whpk, checked with
// crypto/ed25519 alone (not core/signing).
func v1aVerifies(t *testing.T, a arrival, whpk string) bool {
	t.Helper()
	pub, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(whpk, "whpk_"))
	if err != nil || len(pub) != ed25519.PublicKeySize {
		t.Fatalf("public key %q: %v", whpk, err)
	}
	content := []byte(a.header.Get("webhook-id") + "." + a.header.Get("webhook-timestamp") + "." + string(a.body))
	for _, e := range strings.Fields(a.header.Get("webhook-signature")) {
		b64, ok := strings.CutPrefix(e, "v1a,")
		if !ok {
			continue
		}
		sig, err := base64.StdEncoding.DecodeString(b64)
		if err == nil && ed25519.Verify(pub, content, sig) {
			return true
		}
	}
	return false
}

func publicOf(t *testing.T, whsk string) string {
	t.Helper()
	k, err := signing.ParseSigningKey(whsk)
	if err != nil {
		t.Fatal(err)
	}
	return k.PublicKey().String()
}

func mustSigningKey(t *testing.T) string {
	t.Helper()
	k, err := signing.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// A subscription with signing keys gets v1 and v1a signatures on every
// real delivery: the receiver checks v1 with its secret (core/signing and
// the reference library) and v1a with crypto/ed25519. During a key
// rotation's overlap old and new keys both sign; after it only the new.
func TestV1aDeliveryAndRotation(t *testing.T) {
	oldKey, newKey := mustSigningKey(t), mustSigningKey(t)
	h := start(t, setup{})
	h.app("acme")
	r := newReceiver(t)
	sub := h.subscribe("acme", r, []string{"*"}, func(s *subscription.Subscription) {
		s.SigningKeys = []subscription.Secret{{Value: newKey, Created: time.Now()}, {Value: oldKey, Created: time.Now().Add(-time.Hour), Expires: time.Now().Add(time.Hour)}}
	})
	h.publish(event("e1", "order.paid", "acme", `{"n":1}`))
	h.settled("e1 delivered", 1, 0, 0)
	sub = h.change(sub, func(s *subscription.Subscription) { s.SigningKeys[1].Expires = time.Now().Add(-time.Second) })
	h.publish(event("e2", "order.paid", "acme", `{"n":2}`))
	h.settled("e2 delivered", 2, 0, 0)
	got := r.arrivals()
	if len(got) != 2 || got[0].id != "e1" || got[1].id != "e2" {
		t.Fatalf("arrivals %v", r.ids())
	}
	for _, a := range got {
		if !a.verified[0] {
			t.Errorf("%s: the v1 signature does not verify beside v1a", a.id)
		}
	}
	if f := strings.Fields(got[0].header.Get("webhook-signature")); len(f) != 3 || !strings.HasPrefix(f[0], "v1,") {
		t.Errorf("e1 webhook-signature %q, want v1 then two v1a entries", got[0].header.Get("webhook-signature"))
	}
	if !v1aVerifies(t, got[0], publicOf(t, newKey)) || !v1aVerifies(t, got[0], publicOf(t, oldKey)) {
		t.Errorf("during the overlap: want both keys' v1a signatures")
	}
	if !v1aVerifies(t, got[1], publicOf(t, newKey)) || v1aVerifies(t, got[1], publicOf(t, oldKey)) {
		t.Errorf("after the overlap: want only the new key's v1a signature (header %q)", got[1].header.Get("webhook-signature"))
	}
	// Turning the keys off leaves v1 alone.
	h.change(sub, func(s *subscription.Subscription) { s.SigningKeys = nil })
	h.publish(event("e3", "order.paid", "acme", `{"n":3}`))
	h.settled("e3 delivered", 3, 0, 0)
	if a := r.arrivals()[2]; strings.Contains(a.header.Get("webhook-signature"), "v1a,") || !a.verified[0] {
		t.Errorf("without keys: webhook-signature %q", a.header.Get("webhook-signature"))
	}
}
