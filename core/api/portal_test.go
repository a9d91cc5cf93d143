package api

import (
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookbus/hookbus/core/store"
)

// testClock is a clock a test moves by hand.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *testClock) advance(d time.Duration) { c.mu.Lock(); defer c.mu.Unlock(); c.t = c.t.Add(d) }

// portalLink makes a portal link for app with the admin key and returns
// the answer and the token its URL carries.
func (p *platform) portalLink(app string, body any) (PortalLinkJSON, string) {
	p.t.Helper()
	var link PortalLinkJSON
	a := p.must(http.StatusCreated, "POST", "/v1/applications/"+app+"/portal", adminKey, body)
	a.json(p.t, &link)
	if cc := a.header.Get("Cache-Control"); cc != "no-store" {
		p.t.Errorf("portal link answer has Cache-Control %q, want no-store", cc)
	}
	u, err := url.Parse(link.URL)
	if err != nil {
		p.t.Fatalf("portal link URL %q: %v", link.URL, err)
	}
	tok := u.Query().Get("token")
	if !strings.HasSuffix(u.Path, "/portal/login") || u.Query().Get("app") == "" || !strings.HasPrefix(tok, TokenPrefix) || link.TokenID == "" {
		p.t.Fatalf("portal link = %+v", link)
	}
	return link, tok
}

// TestPortalLink: an admin makes a portal link; its token reaches that
// application's subscriptions and attempts and nothing else; it expires
// by the server's clock, cached or not; revoking it ends it at once.
func TestPortalLink(t *testing.T) {
	eachStore(t, func(t *testing.T, st *store.Store) {
		clock := &testClock{t: time.Now().UTC()}
		p := newPlatform(t, st, &Options{APIKeys: []string{adminKey}, Now: clock.now})
		p.createApp("acme")
		p.createApp("globex")
		sub := p.createSub("acme", map[string]any{})
		other := p.createSub("globex", map[string]any{})
		apiTok := p.createToken("acme")

		// Admin only; an application that does not exist is 404.
		p.must(http.StatusForbidden, "POST", "/v1/applications/acme/portal", apiTok.Token, nil).problem(t)
		p.must(http.StatusUnauthorized, "POST", "/v1/applications/acme/portal", "", nil).problem(t)
		p.must(http.StatusNotFound, "POST", "/v1/applications/nope/portal", adminKey, nil).problem(t)

		// Without public_url: the request's scheme and Host; default ttl 1h.
		link, tok := p.portalLink("acme", nil)
		if !strings.HasPrefix(link.URL, p.url+"/portal/login?app=acme&token=hbat_") {
			t.Errorf("url %q does not start with %s/portal/login?app=acme&token=", link.URL, p.url)
		}
		exp, err := time.Parse(time.RFC3339, link.ExpiresAt)
		if err != nil || !strings.HasSuffix(link.ExpiresAt, "Z") {
			t.Fatalf("expires_at %q: %v", link.ExpiresAt, err)
		}
		if d := exp.Sub(clock.now()); d < time.Hour-time.Second || d > time.Hour {
			t.Errorf("default link lives %v, want 1h", d)
		}

		// The token reaches acme's routes.
		for _, path := range []string{
			"/v1/applications/acme",
			"/v1/applications/acme/subscriptions",
			"/v1/applications/acme/subscriptions/" + sub.ID,
			"/v1/applications/acme/attempts",
			"/v1/applications/acme/subscriptions/" + sub.ID + "/stats",
		} {
			p.must(http.StatusOK, "GET", path, tok, nil)
		}
		p.must(http.StatusCreated, "POST", "/v1/applications/acme/subscriptions", tok,
			map[string]any{"url": "https://acme.example/hooks", "event_types": []string{"order.*"}})
		// Another application's paths answer 404, as if absent.
		for _, path := range []string{
			"/v1/applications/globex",
			"/v1/applications/globex/subscriptions",
			"/v1/applications/globex/subscriptions/" + other.ID,
			"/v1/applications/globex/attempts",
			"/v1/applications/acme/subscriptions/" + other.ID,
		} {
			p.must(http.StatusNotFound, "GET", path, tok, nil).problem(t)
		}
		// Admin routes 403: tokens, portal links, applications, the global log.
		for _, rq := range []struct{ method, path string }{
			{"GET", "/v1/applications"},
			{"GET", "/v1/applications/acme/tokens"},
			{"POST", "/v1/applications/acme/tokens"},
			{"DELETE", "/v1/applications/acme/tokens/" + link.TokenID},
			{"POST", "/v1/applications/acme/portal"},
			{"POST", "/v1/applications/globex/portal"},
			{"GET", "/v1/attempts"},
			{"GET", "/v1/dead-letters"},
		} {
			p.must(http.StatusForbidden, rq.method, rq.path, tok, nil).problem(t)
		}

		// The token list shows kinds and expiries.
		var toks struct{ Data []TokenJSON }
		p.must(http.StatusOK, "GET", "/v1/applications/acme/tokens", adminKey, nil).json(t, &toks)
		kinds := map[string]TokenJSON{}
		for _, tj := range toks.Data {
			kinds[tj.ID] = tj
		}
		if tj := kinds[link.TokenID]; tj.Kind != "portal" || tj.ExpiresAt == nil || *tj.ExpiresAt != link.ExpiresAt {
			t.Errorf("listed portal token = %+v, want kind portal expiring %s", tj, link.ExpiresAt)
		}
		if tj := kinds[apiTok.ID]; tj.Kind != "api" || tj.ExpiresAt != nil {
			t.Errorf("listed api token = %+v, want kind api, no expiry", tj)
		}

		// Expiry: the token was just used (so cached); past its expiry it is
		// refused all the same, then deleted.
		p.must(http.StatusOK, "GET", "/v1/applications/acme", tok, nil)
		clock.advance(time.Hour)
		a := p.must(http.StatusUnauthorized, "GET", "/v1/applications/acme", tok, nil)
		if pr := a.problem(t); !strings.Contains(pr.Detail, "token expired") || a.header.Get("WWW-Authenticate") == "" {
			t.Errorf("expired token: %+v", pr)
		}
		p.must(http.StatusUnauthorized, "GET", "/v1/applications/acme/subscriptions", tok, nil)
		if _, err := st.TokenByHash(t.Context(), HashToken(tok)); err == nil {
			t.Errorf("expired token still stored after it was refused")
		}
		p.must(http.StatusOK, "GET", "/v1/applications/acme", apiTok.Token, nil)

		// A link that expires while unused is not listed (and is deleted).
		_, short := p.portalLink("acme", map[string]any{"ttl": "1m"})
		clock.advance(time.Minute)
		p.must(http.StatusOK, "GET", "/v1/applications/acme/tokens", adminKey, nil).json(t, &toks)
		if len(toks.Data) != 1 || toks.Data[0].ID != apiTok.ID {
			t.Errorf("tokens after expiry = %+v, want only the api token", toks.Data)
		}
		if _, err := st.TokenByHash(t.Context(), HashToken(short)); err == nil {
			t.Errorf("expired token still stored after the list")
		}

		// Revoked: refused at once, cached or not.
		link, tok = p.portalLink("acme", map[string]any{"ttl": "24h"})
		if exp, _ := time.Parse(time.RFC3339, link.ExpiresAt); exp.Sub(clock.now().Truncate(time.Millisecond)) != 24*time.Hour {
			t.Errorf("24h link expires at %s (now %s)", link.ExpiresAt, clock.now())
		}
		p.must(http.StatusOK, "GET", "/v1/applications/acme/subscriptions", tok, nil)
		p.must(http.StatusNoContent, "DELETE", "/v1/applications/acme/tokens/"+link.TokenID, adminKey, nil)
		p.must(http.StatusUnauthorized, "GET", "/v1/applications/acme/subscriptions", tok, nil).problem(t)
	})
}

// TestPortalLinkTTL: ttl is a Go duration from 1m to 24h; anything else
// is 422 naming ttl; the configured default applies without one.
func TestPortalLinkTTL(t *testing.T) {
	st, err := store.Open(t.Context(), "sqlite", "", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	clock := &testClock{t: time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)}
	p := newPlatform(t, st, &Options{APIKeys: []string{adminKey}, Now: clock.now, PortalLinkTTL: 10 * time.Minute})
	p.createApp("acme")
	for _, bad := range []any{
		map[string]any{"ttl": "soon"},
		map[string]any{"ttl": "30s"},
		map[string]any{"ttl": "25h"},
		map[string]any{"ttl": "-1h"},
		map[string]any{"ttl": 3600},
	} {
		a := p.must(http.StatusUnprocessableEntity, "POST", "/v1/applications/acme/portal", adminKey, bad)
		if msg := fieldError(t, a.problem(t), "ttl"); msg == "" {
			t.Errorf("%v: empty message", bad)
		}
	}
	a := p.must(http.StatusUnprocessableEntity, "POST", "/v1/applications/acme/portal", adminKey, map[string]any{"tll": "1h"})
	fieldError(t, a.problem(t), "tll")
	p.must(http.StatusBadRequest, "POST", "/v1/applications/acme/portal", adminKey, "[1]").problem(t)

	link, _ := p.portalLink("acme", map[string]any{})
	if link.ExpiresAt != "2026-05-06T07:18:09.000Z" {
		t.Errorf("configured default: expires_at %s, want 10m after 07:08:09", link.ExpiresAt)
	}
	link, _ = p.portalLink("acme", map[string]any{"ttl": "90m"})
	if link.ExpiresAt != "2026-05-06T08:38:09.000Z" {
		t.Errorf("ttl 90m: expires_at %s", link.ExpiresAt)
	}
}

// TestPortalLinkPublicURL: with console.public_url the link starts with
// it (a trailing slash or not), whatever Host the request named.
func TestPortalLinkPublicURL(t *testing.T) {
	for _, base := range []string{"https://hooks.example.com/bus", "https://hooks.example.com/bus/"} {
		st, err := store.Open(t.Context(), "sqlite", "", t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		p := newPlatform(t, st, &Options{APIKeys: []string{adminKey}, PortalBaseURL: base})
		p.createApp("acme")
		link, tok := p.portalLink("acme", nil)
		if want := "https://hooks.example.com/bus/portal/login?app=acme&token=" + tok; link.URL != want {
			t.Errorf("base %s: url %s, want %s", base, link.URL, want)
		}
		p.must(http.StatusOK, "GET", "/v1/applications/acme", tok, nil)
	}
}
