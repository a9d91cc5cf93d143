package api

import (
	"net/http"
	"testing"
	"time"

	"github.com/hookbus/hookbus/core/store"
)

// TestWhoami: GET /v1/whoami tells an admin key, an ordinary token and a
// portal link's token apart; no or an expired credential is 401.
func TestWhoami(t *testing.T) {
	eachStore(t, func(t *testing.T, st *store.Store) {
		clock := &testClock{t: time.Now().UTC()}
		p := newPlatform(t, st, &Options{APIKeys: []string{adminKey}, Now: clock.now})
		p.createApp("acme")

		var admin map[string]any
		p.must(http.StatusOK, "GET", "/v1/whoami", adminKey, nil).json(t, &admin)
		if len(admin) != 1 || admin["admin"] != true {
			t.Errorf("admin whoami = %v", admin)
		}

		apiTok := p.createToken("acme")
		var who WhoamiJSON
		p.must(http.StatusOK, "GET", "/v1/whoami", apiTok.Token, nil).json(t, &who)
		if who != (WhoamiJSON{Application: "acme", TokenID: apiTok.ID, TokenKind: "api"}) {
			t.Errorf("api token whoami = %+v", who)
		}

		link, tok := p.portalLink("acme", map[string]any{"ttl": "10m"})
		who = WhoamiJSON{}
		p.must(http.StatusOK, "GET", "/v1/whoami", tok, nil).json(t, &who)
		if who.Admin || who.Application != "acme" || who.TokenID != link.TokenID || who.TokenKind != "portal" ||
			who.ExpiresAt == nil || *who.ExpiresAt != link.ExpiresAt {
			t.Errorf("portal token whoami = %+v, link %+v", who, link)
		}

		p.must(http.StatusUnauthorized, "GET", "/v1/whoami", "", nil).problem(t)
		p.must(http.StatusUnauthorized, "GET", "/v1/whoami", "hbat_nope", nil).problem(t)
		clock.advance(10 * time.Minute)
		p.must(http.StatusUnauthorized, "GET", "/v1/whoami", tok, nil).problem(t)
		p.must(http.StatusOK, "GET", "/v1/whoami", apiTok.Token, nil)
	})
}
