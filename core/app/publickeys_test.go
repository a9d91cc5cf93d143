package app

import (
	"testing"

	"github.com/hookbus/hookbus/core/config"
	"github.com/hookbus/hookbus/core/signing"
)

// sinkPublicKeys serves webhook sinks' keys only, in their order.
func TestSinkPublicKeys(t *testing.T) {
	k1, _ := signing.GenerateSigningKey()
	k2, _ := signing.GenerateSigningKey()
	p1, _ := signing.ParseSigningKey(k1)
	p2, _ := signing.ParseSigningKey(k2)
	sinks := map[string]config.Component{
		"both":     {Type: "webhook", Config: map[string]any{"url": "https://a.example", "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "signing_keys": []any{k1, k2}}},
		"hmac":     {Type: "webhook", Config: map[string]any{"url": "https://a.example", "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}},
		"everyone": {Type: "subscriptions"},
	}
	keys, ok := sinkPublicKeys(sinks, "both")
	if !ok || len(keys) != 2 || keys[0].String() != p1.PublicKey().String() || keys[1].String() != p2.PublicKey().String() {
		t.Fatalf("both: %v %v", keys, ok)
	}
	if keys, ok := sinkPublicKeys(sinks, "hmac"); !ok || len(keys) != 0 {
		t.Fatalf("hmac: %v %v", keys, ok)
	}
	for _, name := range []string{"everyone", "nosuch"} {
		if _, ok := sinkPublicKeys(sinks, name); ok {
			t.Errorf("%s: ok", name)
		}
	}
}
