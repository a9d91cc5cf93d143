package store

import (
	"context"
	"encoding/hex"
	"testing"
	"time"

	"github.com/hookbus/hookbus/core/subscription"
)

// TestTokenKindAndExpiry: a token's kind and expiry are stored and read
// back (by hash and in the list); no expiry reads back as the zero time.
func TestTokenKindAndExpiry(t *testing.T) {
	ctx := context.Background()
	eachStore(t, func(t *testing.T, db testDB, s *Store) {
		mustApp(t, s, "shop")
		exp := time.Date(2030, 1, 2, 3, 4, 5, 123456789, time.FixedZone("CET", 3600))
		portal, err := s.CreateToken(ctx, subscription.Token{App: "shop", Hash: tokenHash("hbat_portal"),
			Name: "portal link", Kind: subscription.TokenKindPortal, ExpiresAt: exp})
		if err != nil {
			t.Fatal(err)
		}
		if !portal.ExpiresAt.Equal(exp) || !isUTC(portal.ExpiresAt) {
			t.Fatalf("created expiry %v, want %v in UTC", portal.ExpiresAt, exp)
		}
		plain, err := s.CreateToken(ctx, subscription.Token{App: "shop", Hash: tokenHash("hbat_plain"), Kind: subscription.TokenKindAPI})
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.TokenByHash(ctx, tokenHash("hbat_portal"))
		if err != nil || got.Kind != subscription.TokenKindPortal || !got.ExpiresAt.Equal(exp) || !isUTC(got.ExpiresAt) {
			t.Fatalf("by hash = %+v, %v", got, err)
		}
		if !got.Expired(exp) || got.Expired(exp.Add(-time.Nanosecond)) {
			t.Errorf("Expired around %v is wrong", exp)
		}
		got, err = s.TokenByHash(ctx, tokenHash("hbat_plain"))
		if err != nil || got.Kind != subscription.TokenKindAPI || !got.ExpiresAt.IsZero() || got.Expired(time.Now().Add(1000*time.Hour)) {
			t.Fatalf("token without expiry = %+v, %v", got, err)
		}
		var stored any
		if err := db.raw.QueryRow(`SELECT expires_at FROM hookbus_app_tokens WHERE id = '` + plain.ID + `'`).Scan(&stored); err != nil || stored != nil {
			t.Fatalf("stored expiry of a token that never expires = %v, %v; want NULL", stored, err)
		}
		list, err := s.ListTokens(ctx, "shop")
		if err != nil || len(list) != 2 {
			t.Fatalf("list = %+v, %v", list, err)
		}
		for _, tok := range list {
			if tok.ID == portal.ID && (tok.Kind != subscription.TokenKindPortal || !tok.ExpiresAt.Equal(exp)) {
				t.Errorf("listed portal token = %+v", tok)
			}
		}
	})
}

// TestMigrateTokensKindAndExpiry: a token made before migration 6 keeps
// working after it: no kind, no expiry.
func TestMigrateTokensKindAndExpiry(t *testing.T) {
	saved := migrations
	t.Cleanup(func() { migrations = saved })
	for _, db := range freshDBs(t) {
		t.Run(db.name, func(t *testing.T) {
			migrations = saved[:5]
			old, err := Open(context.Background(), db.driver, db.dsn, db.dir)
			if err != nil {
				t.Fatal(err)
			}
			old.Close()
			hash := hex.EncodeToString(tokenHash("hbat_old"))
			for _, q := range []string{
				`INSERT INTO hookbus_applications (id, name, metadata, created_at, updated_at) VALUES ('shop', 'Shop', '{}', 1, 1)`,
				`INSERT INTO hookbus_app_tokens (id, app, hash, name, created_at, last_used) VALUES ('tok_old', 'shop', '` + hash + `', 'ci', 1, 0)`,
			} {
				if _, err := db.raw.Exec(q); err != nil {
					t.Fatal(err)
				}
			}
			migrations = saved
			s := db.open(t)
			wantAllVersions(t, db.raw)
			tok, err := s.TokenByHash(context.Background(), tokenHash("hbat_old"))
			if err != nil || tok.ID != "tok_old" || tok.Kind != "" || !tok.ExpiresAt.IsZero() || tok.Expired(time.Now()) {
				t.Fatalf("old token after the migration = %+v, %v", tok, err)
			}
		})
	}
}
