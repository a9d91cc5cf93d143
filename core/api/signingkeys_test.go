package api

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hookbus/hookbus/core/signing"
	"github.com/hookbus/hookbus/core/store"
)

// TestSubscriptionEd25519Signing: signing "ed25519" on create makes a key
// (its private half never answered), the public key is listed, PATCH
// turns it off and on, bad values name the field.
func TestSubscriptionEd25519Signing(t *testing.T) {
	eachStore(t, func(t *testing.T, st *store.Store) {
		p := newPlatform(t, st, nil)
		p.createApp("acme")
		plain := p.createSub("acme", map[string]any{})
		if plain.Signing != SigningHMAC || plain.PublicKey != "" {
			t.Fatalf("default subscription: signing %q, public_key %q; want hmac and none", plain.Signing, plain.PublicKey)
		}
		s := p.createSub("acme", map[string]any{"signing": "ed25519"})
		if s.Signing != SigningEd25519 || !strings.HasPrefix(s.PublicKey, signing.PublicKeyPrefix) || !strings.HasPrefix(s.Secret, signing.Prefix) {
			t.Fatalf("created: signing %q, public_key %q, secret %q", s.Signing, s.PublicKey, s.Secret)
		}
		path := "/v1/applications/acme/subscriptions/" + s.ID
		for _, read := range []string{path, path + "/secret", path + "/public-keys", "/v1/applications/acme/subscriptions"} {
			if a := p.must(http.StatusOK, "GET", read, adminKey, nil); strings.Contains(string(a.body), signing.KeyPrefix) {
				t.Fatalf("GET %s answers a private key: %s", read, a.body)
			}
		}
		var keys publicKeysJSON
		p.must(http.StatusOK, "GET", path+"/public-keys", adminKey, nil).json(t, &keys)
		if len(keys.Keys) != 1 || keys.Keys[0].PublicKey != s.PublicKey || keys.Keys[0].Created == "" || keys.Keys[0].Expires != "" ||
			!strings.HasPrefix(keys.Keys[0].ID, "key_") {
			t.Fatalf("public keys = %+v, want the one of %s", keys, s.PublicKey)
		}
		stored, err := st.GetSubscription(t.Context(), "acme", s.ID)
		if err != nil {
			t.Fatal(err)
		}
		k, err := signing.ParseSigningKey(stored.SigningKeys[0].Value)
		if err != nil || k.PublicKey().String() != s.PublicKey {
			t.Fatalf("stored key %v does not match the public key answered", err)
		}
		// PATCH with "ed25519" again keeps the key; "hmac" drops it.
		var got SubscriptionJSON
		p.must(http.StatusOK, "PATCH", path, adminKey, map[string]any{"signing": "ed25519"}).json(t, &got)
		if got.PublicKey != s.PublicKey {
			t.Fatalf("PATCH signing ed25519 changed the key: %q, was %q", got.PublicKey, s.PublicKey)
		}
		got = SubscriptionJSON{}
		p.must(http.StatusOK, "PATCH", path, adminKey, map[string]any{"signing": "hmac"}).json(t, &got)
		p.must(http.StatusOK, "GET", path+"/public-keys", adminKey, nil).json(t, &keys)
		if got.Signing != SigningHMAC || got.PublicKey != "" || len(keys.Keys) != 0 {
			t.Fatalf("after signing hmac: %q %q, keys %+v", got.Signing, got.PublicKey, keys)
		}
		got = SubscriptionJSON{}
		p.must(http.StatusOK, "PATCH", path, adminKey, map[string]any{"signing": "ed25519"}).json(t, &got)
		if got.Signing != SigningEd25519 || got.PublicKey == "" || got.PublicKey == s.PublicKey {
			t.Fatalf("after signing ed25519 again: %q %q, want a new key", got.Signing, got.PublicKey)
		}
		got = SubscriptionJSON{}
		p.must(http.StatusOK, "PATCH", path, adminKey, `{"signing": null}`).json(t, &got)
		if got.Signing != SigningHMAC || got.PublicKey != "" {
			t.Fatalf("after signing null: %q %q, want hmac", got.Signing, got.PublicKey)
		}
		p.must(http.StatusOK, "PATCH", path, adminKey, map[string]any{"signing": "ed25519"})
		for _, body := range []map[string]any{{"signing": "rsa"}, {"signing": 1}, {"public_key": s.PublicKey}} {
			pr := p.must(http.StatusUnprocessableEntity, "PATCH", path, adminKey, body).problem(t)
			field := "signing"
			if _, ok := body["public_key"]; ok {
				field = "public_key"
			}
			if msg := fieldError(t, pr, field); msg == "" {
				t.Errorf("PATCH %v: empty message", body)
			}
		}
	})
}

// TestRotateSigningKey: the new key signs first, the old one beside it
// until now+overlap, both listed with the old one's expiry; overlap 0
// drops it; a subscription without a key gets its first one.
func TestRotateSigningKey(t *testing.T) {
	eachStore(t, func(t *testing.T, st *store.Store) {
		p := newPlatform(t, st, nil)
		p.createApp("acme")
		s := p.createSub("acme", map[string]any{"signing": "ed25519"})
		path := "/v1/applications/acme/subscriptions/" + s.ID
		before := time.Now()
		var rot publicKeysJSON
		p.must(http.StatusOK, "POST", path+"/rotate-signing-key", adminKey, map[string]any{"overlap": "1h"}).json(t, &rot)
		if len(rot.Keys) != 2 || rot.Keys[0].PublicKey == s.PublicKey || rot.Keys[1].PublicKey != s.PublicKey ||
			rot.Keys[0].Expires != "" || rot.Keys[1].Expires == "" {
			t.Fatalf("after rotation: %+v (old %s)", rot, s.PublicKey)
		}
		exp, err := time.Parse(time.RFC3339, rot.Keys[1].Expires)
		if err != nil || exp.Before(before.Add(time.Hour-2*time.Second)) || exp.After(time.Now().Add(time.Hour+time.Second)) {
			t.Fatalf("old key expires %q, want about an hour from %v", rot.Keys[1].Expires, before)
		}
		stored, _ := st.GetSubscription(t.Context(), "acme", s.ID)
		if got := stored.SigningKeysAt(time.Now()); len(got) != 2 {
			t.Fatalf("%d keys sign during the overlap, want 2", len(got))
		}
		if got := stored.SigningKeysAt(exp.Add(time.Second)); len(got) != 1 {
			t.Fatalf("%d keys sign after the overlap, want 1", len(got))
		}
		var cur SubscriptionJSON
		p.must(http.StatusOK, "GET", path, adminKey, nil).json(t, &cur)
		if cur.PublicKey != rot.Keys[0].PublicKey {
			t.Fatalf("public_key %q, want the new %q", cur.PublicKey, rot.Keys[0].PublicKey)
		}
		p.must(http.StatusOK, "POST", path+"/rotate-signing-key", adminKey, map[string]any{"overlap": "0s"}).json(t, &rot)
		if len(rot.Keys) != 1 {
			t.Fatalf("after a rotation without overlap: %+v", rot)
		}
		for _, body := range []map[string]any{{"overlap": "soon"}, {"overlap": "-1h"}, {"secret": testWhsec}} {
			pr := p.must(http.StatusUnprocessableEntity, "POST", path+"/rotate-signing-key", adminKey, body).problem(t)
			if len(pr.Errors) != 1 {
				t.Errorf("rotate %v: %+v", body, pr.Errors)
			}
		}
		plain := p.createSub("acme", map[string]any{})
		p.must(http.StatusOK, "POST", "/v1/applications/acme/subscriptions/"+plain.ID+"/rotate-signing-key", adminKey, nil).json(t, &rot)
		if len(rot.Keys) != 1 {
			t.Fatalf("first key by rotation: %+v", rot)
		}
	})
}

// TestSigningKeyTenancy: another application's token cannot read or rotate
// a subscription's keys (the 404 of an absent application).
func TestSigningKeyTenancy(t *testing.T) {
	st, err := store.Open(t.Context(), "sqlite", "", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	p := newPlatform(t, st, nil)
	p.createApp("acme")
	p.createApp("globex")
	other := p.createSub("globex", map[string]any{"signing": "ed25519"})
	tok := p.createToken("acme")
	for _, rq := range []struct{ method, path string }{
		{"GET", "/v1/applications/globex/subscriptions/" + other.ID + "/public-keys"},
		{"POST", "/v1/applications/globex/subscriptions/" + other.ID + "/rotate-signing-key"},
		{"GET", "/v1/applications/acme/subscriptions/" + other.ID + "/public-keys"},
		{"POST", "/v1/applications/acme/subscriptions/" + other.ID + "/rotate-signing-key"},
	} {
		a := p.do(rq.method, rq.path, tok.Token, nil)
		if a.status != http.StatusNotFound || strings.Contains(string(a.body), "whpk_") {
			t.Errorf("token of acme on %s %s: %d %s", rq.method, rq.path, a.status, a.body)
		}
	}
	p.must(http.StatusUnauthorized, "GET", "/v1/applications/globex/subscriptions/"+other.ID+"/public-keys", "", nil)
	stored, _ := st.GetSubscription(t.Context(), "globex", other.ID)
	if len(stored.SigningKeys) != 1 {
		t.Fatalf("globex keys changed: %+v", stored.SigningKeys)
	}
}

// TestSinkPublicKeys: the public route answers a sink's keys without
// credentials, and 404 for what has none.
func TestSinkPublicKeys(t *testing.T) {
	st, err := store.Open(t.Context(), "sqlite", "", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	k1, _ := signing.GenerateSigningKey()
	key, _ := signing.ParseSigningKey(k1)
	p := newPlatform(t, st, &Options{APIKeys: []string{adminKey}, SinkPublicKeys: func(name string) ([]signing.PublicKey, bool) {
		switch name {
		case "partner":
			return []signing.PublicKey{key.PublicKey()}, true
		case "hmac-only":
			return nil, true
		}
		return nil, false
	}})
	var keys publicKeysJSON
	a := p.must(http.StatusOK, "GET", "/v1/sinks/partner/public-keys", "", nil)
	a.json(t, &keys)
	if len(keys.Keys) != 1 || keys.Keys[0].PublicKey != key.PublicKey().String() || keys.Keys[0].ID != key.PublicKey().ID() {
		t.Fatalf("keys = %+v", keys)
	}
	if a.header.Get("Cache-Control") == "" {
		t.Error("no Cache-Control on the public keys")
	}
	for _, name := range []string{"hmac-only", "nosuch"} {
		p.must(http.StatusNotFound, "GET", "/v1/sinks/"+name+"/public-keys", "", nil).problem(t)
	}
}
