package webhook

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/hookbus/hookbus/core/signing"
	"github.com/hookbus/hookbus/sdk"
)

// testSigningKey is an Ed25519 seed in Standard Webhooks form, for tests only.
const testSigningKey = "whsk_VEVTVFNJR05JTkdLRVlET05PVFVTRVRISVNGT1JBTlk="

// v1aEntries returns the signatures of the "v1a," entries of a
// webhook-signature header, decoded.
func v1aEntries(t *testing.T, header string) [][]byte {
	t.Helper()
	var out [][]byte
	for _, e := range strings.Fields(header) {
		if b64, ok := strings.CutPrefix(e, "v1a,"); ok {
			sig, err := base64.StdEncoding.DecodeString(b64)
			if err != nil {
				t.Fatalf("v1a entry %q: %v", e, err)
			}
			out = append(out, sig)
		}
	}
	return out
}

// rawPublicKey decodes a published "whpk_" key with the standard library
// alone.
func rawPublicKey(t *testing.T, whpk string) ed25519.PublicKey {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(whpk, "whpk_"))
	if err != nil || len(raw) != ed25519.PublicKeySize {
		t.Fatalf("public key %q: %v", whpk, err)
	}
	return raw
}

// A sink with a secret and a signing key sends both signatures: the
// receiver checks v1 with the secret and v1a with crypto/ed25519 and the
// public key the sink's config publishes.
func TestDeliverV1aBesideV1(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t, nil).start(t)
	w := localSink(t, rc.srv.URL, map[string]any{"signing_key": testSigningKey})
	if res := w.DeliverOne(context.Background(), event("evt_v1a")); res.Outcome != sdk.OK {
		t.Fatalf("result = %+v", res)
	}
	reqs := rc.requests()
	if len(reqs) != 1 {
		t.Fatalf("receiver got %d requests", len(reqs))
	}
	r := reqs[0]
	if r.sigErr != nil {
		t.Fatalf("v1 signature does not verify beside v1a: %v", r.sigErr)
	}
	header := r.header.Get("Webhook-Signature")
	if f := strings.Fields(header); len(f) != 2 || !strings.HasPrefix(f[0], "v1,") || !strings.HasPrefix(f[1], "v1a,") {
		t.Fatalf("webhook-signature = %q, want one v1 then one v1a entry", header)
	}
	pubs, err := w.Config().PublicKeys()
	if err != nil || len(pubs) != 1 {
		t.Fatalf("PublicKeys = %v, %v", pubs, err)
	}
	content := r.header.Get("Webhook-Id") + "." + r.header.Get("Webhook-Timestamp") + "." + string(r.body)
	sigs := v1aEntries(t, header)
	if !ed25519.Verify(rawPublicKey(t, pubs[0].String()), []byte(content), sigs[0]) {
		t.Fatal("crypto/ed25519 rejects the delivered v1a signature")
	}
	if err := signing.VerifyV1a(pubs[0], r.header.Get("Webhook-Id"), r.header.Get("Webhook-Timestamp"), header, r.body, time.Minute, time.Now()); err != nil {
		t.Fatalf("VerifyV1a: %v", err)
	}
}

// A sink may sign with Ed25519 alone: no secret, only v1a entries, one per
// key of a rotation.
func TestDeliverV1aAloneRotation(t *testing.T) {
	t.Parallel()
	second, err := signing.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	rc := newReceiver(t, nil).start(t)
	raw, _ := json.Marshal(map[string]any{"url": rc.srv.URL, "allow_private_networks": true, "signing_keys": []string{second, testSigningKey}})
	w := &Webhook{}
	if _, err := w.Init(context.Background(), raw); err != nil {
		t.Fatalf("Init(%s): %v", raw, err)
	}
	t.Cleanup(func() { w.Close(context.Background()) })
	if res := w.DeliverOne(context.Background(), event("evt_alone")); res.Outcome != sdk.OK {
		t.Fatalf("result = %+v", res)
	}
	r := rc.requests()[0]
	header := r.header.Get("Webhook-Signature")
	if strings.Contains(header, "v1,") {
		t.Fatalf("webhook-signature = %q: a v1 entry without any secret", header)
	}
	sigs := v1aEntries(t, header)
	pubs, _ := w.Config().PublicKeys()
	if len(sigs) != 2 || len(pubs) != 2 {
		t.Fatalf("%d v1a entries and %d public keys, want 2 and 2 (header %q)", len(sigs), len(pubs), header)
	}
	content := []byte(r.header.Get("Webhook-Id") + "." + r.header.Get("Webhook-Timestamp") + "." + string(r.body))
	// A receiver holding either key (old or new) accepts the delivery.
	for i, pub := range pubs {
		if !ed25519.Verify(rawPublicKey(t, pub.String()), content, sigs[i]) {
			t.Errorf("key %d (%s): crypto/ed25519 rejects its signature", i, pub.ID())
		}
	}
	if pubs[0].ID() == pubs[1].ID() {
		t.Errorf("two keys share the id %s", pubs[0].ID())
	}
}
