package store

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hookbus/hookbus/core/subscription"
)

// Ed25519 signing keys are kept beside the secrets: sealed under the
// encryption key, read back apart from the secrets, moved by Reencrypt
// with their kind, and replaced with the subscription.
func TestSigningKeysAtRest(t *testing.T) {
	ctx := context.Background()
	const key1 = "whsk_VEVTVFNJR05JTkdLRVlET05PVFVTRVRISVNGT1JBTlk="
	const key2 = "whsk_V0VCSE9PS0FTWU1NRVRSSUNURVNUUFJJVkFURUtFWTE="
	now := time.Now().UTC().Truncate(time.Millisecond)
	idA, idB := mustKeyID(t, keyA), mustKeyID(t, keyB)
	for _, db := range freshDBs(t) {
		t.Run(db.name, func(t *testing.T) {
			s := db.openWith(t, EncryptionKeys(keyA))
			mustApp(t, s, "shop")
			in := fullSubscription("shop")
			in.SigningKeys = []subscription.Secret{{Value: key1, Created: now}, {Value: key2, Created: now.Add(-time.Hour), Expires: now.Add(time.Hour)}}
			sub := mustSub(t, s, in)
			raw := rawSecrets(t, db, sub.ID)
			for _, k := range []string{key1, key2} {
				if strings.Contains(raw, strings.TrimPrefix(k, "whsk_")) {
					t.Fatalf("the stored secrets hold a clear signing key: %s", raw)
				}
			}
			if strings.Count(raw, encPrefix+idA+":") != 4 || strings.Count(raw, `"kind":"ed25519"`) != 2 {
				t.Fatalf("stored %s, want two secrets and two ed25519 keys under key %s", raw, idA)
			}
			got, err := s.GetSubscription(ctx, "shop", sub.ID)
			if err != nil || !reflect.DeepEqual(got.Secrets, sub.Secrets) || !reflect.DeepEqual(got.SigningKeys, sub.SigningKeys) ||
				len(got.SigningKeys) != 2 || got.SigningKeys[0].Value != key1 || !got.SigningKeys[1].Expires.Equal(now.Add(time.Hour)) {
				t.Fatalf("read back: secrets %+v keys %+v, %v (want keys %+v)", got.Secrets, got.SigningKeys, err, sub.SigningKeys)
			}
			snap, _, err := s.Snapshot(ctx)
			if err != nil || len(snap) != 1 || len(snap[0].SigningKeys) != 2 {
				t.Fatalf("snapshot: %+v, %v", snap, err)
			}
			s.Close()

			// Reencrypt under B keeps the kinds.
			s = db.openWith(t, EncryptionKeys(keyB, keyA))
			if n, err := s.Reencrypt(ctx); err != nil || n != 1 {
				t.Fatalf("reencrypt moved %d, want 1: %v", n, err)
			}
			raw = rawSecrets(t, db, sub.ID)
			if strings.Contains(raw, idA) || strings.Count(raw, encPrefix+idB+":") != 4 || strings.Count(raw, `"kind":"ed25519"`) != 2 {
				t.Fatalf("after reencrypt: %s", raw)
			}
			got, err = s.GetSubscription(ctx, "shop", sub.ID)
			if err != nil || len(got.SigningKeys) != 2 || got.SigningKeys[1].Value != key2 || len(got.Secrets) != len(in.Secrets) {
				t.Fatalf("after reencrypt: %+v, %v", got, err)
			}
			// An update without keys drops them.
			got.SigningKeys = nil
			upd, err := s.UpdateSubscription(ctx, got)
			if err != nil || len(upd.SigningKeys) != 0 {
				t.Fatalf("update without keys: %+v, %v", upd.SigningKeys, err)
			}
			if raw := rawSecrets(t, db, sub.ID); strings.Contains(raw, "ed25519") {
				t.Fatalf("keys left after the update: %s", raw)
			}
		})
	}
}
