package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hookbus/hookbus/core/datadir"
	"github.com/hookbus/hookbus/core/store"
	"github.com/hookbus/hookbus/core/subscription"
)

// `hookbus store reencrypt` moves the secrets of an SQLite store to the
// new key, refusing while the data dir is in use.
func TestStoreReencrypt(t *testing.T) {
	const (
		oldKey = "6g8u8bCqkQ9Xz1mYbN0m1bXJ2p9k3pY4r8QeYb1x2Zs="
		newKey = "qUoX5ZpKx1oVbq9m0HfFq8h8y7bX9rXk4Y1pYh0m3aU="
	)
	ctx := context.Background()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	st, err := store.Open(ctx, "sqlite", "", data, store.EncryptionKeys(oldKey))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateApplication(ctx, subscription.Application{ID: "shop"}); err != nil {
		t.Fatal(err)
	}
	var subs []subscription.Subscription
	for _, secret := range []string{"whsec_b25l", "whsec_dHdv"} {
		sub, err := st.CreateSubscription(ctx, subscription.Subscription{App: "shop", URL: "https://example.com", EventTypes: []string{"*"},
			Secrets: []subscription.Secret{{Value: secret}}})
		if err != nil {
			t.Fatal(err)
		}
		subs = append(subs, sub)
	}
	st.Close()
	cfg := writeConfig(t, dir, "version: 1\ndata_dir: "+data+"\nstore:\n  encryption_key: "+newKey+"\n  old_encryption_keys: ["+oldKey+"]\n")

	lock, err := datadir.Acquire(data, "hookbus run")
	if err != nil {
		t.Fatal(err)
	}
	_, stderr, code := runExit(t, "", "store", "reencrypt", "--config", cfg)
	if code == 0 || !strings.Contains(stderr, "in use") || !strings.Contains(stderr, "stop hookbus") {
		t.Fatalf("with the data dir locked: exit %d, %s", code, stderr)
	}
	lock.Release()

	if out := runCLI(t, "store", "reencrypt", "--config", cfg); !strings.Contains(out, "re-encrypted the secrets of 2 subscriptions") {
		t.Fatalf("output: %s", out)
	}
	if out := runCLI(t, "store", "reencrypt", "--config", cfg); !strings.Contains(out, "of 0 subscriptions") {
		t.Fatalf("a second run: %s", out)
	}
	st, err = store.Open(ctx, "sqlite", "", data, store.EncryptionKeys(newKey))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, sub := range subs {
		got, err := st.GetSubscription(ctx, "shop", sub.ID)
		if err != nil || got.Secrets[0].Value != sub.Secrets[0].Value {
			t.Fatalf("with the new key only: %+v, %v", got.Secrets, err)
		}
	}

	bad := writeFile(t, dir, "bad.yaml", "version: 1\ndata_dir: "+data+"\nstore:\n  encryption_key: c2hvcnQ=\n")
	if _, stderr, code := runExit(t, "", "store", "reencrypt", "--config", bad); code != 2 || !strings.Contains(stderr, "store.encryption_key") || strings.Contains(stderr, "c2hvcnQ") {
		t.Fatalf("a bad key: exit %d, %s", code, stderr)
	}
}
