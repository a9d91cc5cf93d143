package console_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookbus/hookbus/core/api"
	"github.com/hookbus/hookbus/core/console"
	"github.com/hookbus/hookbus/core/store"
)

// setCookie is the cookie name that answer p sets, or nil.
func setCookie(p page, name string) *http.Cookie {
	for _, s := range p.header.Values("Set-Cookie") {
		if c, err := http.ParseSetCookie(s); err == nil && c.Name == name {
			return c
		}
	}
	return nil
}

// refusedWith opens a link and checks it is refused: a redirect to a
// refusal page without the token, which answers code and says msg, and no
// portal session.
func refusedWith(t *testing.T, v *visitor, what, path, token string, code int, msg string) {
	t.Helper()
	p := v.get(path)
	if p.status != http.StatusSeeOther || !strings.HasPrefix(p.location, "/portal/login?refused=") || strings.Contains(p.location, token) {
		t.Fatalf("%s: %d to %q, want a redirect to the refusal without the token", what, p.status, p.location)
	}
	if c := setCookie(p, "hookbus_portal"); c != nil && c.MaxAge >= 0 {
		t.Fatalf("%s: a portal session was opened: %+v", what, c)
	}
	p = v.get(p.location)
	mustStatus(t, what+" (refusal page)", p, code)
	mustContain(t, what+" (refusal page)", p, msg)
	if strings.Contains(p.body, token) {
		t.Fatalf("%s: the refusal page shows the token", what)
	}
}

// TestPortalLoginNeedsItsOwnPortalLink: the portal opens only with a
// portal link's token of the application its address names: not with an
// application's API token, an admin key, another application's portal
// link, or a token the API does not take.
func TestPortalLoginNeedsItsOwnPortalLink(t *testing.T) {
	e := newEnv(t, "")
	for _, app := range []string{"acme", "globex"} {
		e.call(t, http.MethodPost, "/v1/applications", `{"id":"`+app+`","name":"`+app+` Inc"}`, http.StatusCreated, nil)
	}
	var apiTok struct {
		Token string `json:"token"`
	}
	e.call(t, http.MethodPost, "/v1/applications/acme/tokens", `{"name":"ci"}`, http.StatusCreated, &apiTok)
	globex := e.portalLink(t, "globex", "")
	v := e.visitor(t)

	login := func(app, token string) string {
		return "/portal/login?" + url.Values{"app": {app}, "token": {token}}.Encode()
	}
	notPortal := "does not carry a portal link&#39;s token"
	refusedWith(t, v, "an API token", login("acme", apiTok.Token), apiTok.Token, http.StatusForbidden, notPortal)
	refusedWith(t, v, "an admin key", login("acme", adminKey), adminKey, http.StatusForbidden, notPortal)
	refusedWith(t, v, "globex's link for acme", login("acme", globex.token), globex.token, http.StatusForbidden,
		"This portal link is not for the application its address names.")
	refusedWith(t, v, "a mistyped token", login("acme", globex.token[:len(globex.token)-2]), globex.token[:len(globex.token)-2],
		http.StatusUnauthorized, "This portal link is not valid")
	refusedWith(t, v, "a link without its application", login("", globex.token), globex.token, http.StatusUnauthorized, "This portal link is not valid")
	mustStatus(t, "the portal after the refusals", v.get("/portal/"), http.StatusUnauthorized)

	// The API token still works on the API: only the portal refuses it.
	if code := e.apiCall(t, http.MethodGet, "/v1/applications/acme", apiTok.Token, nil, nil); code != http.StatusOK {
		t.Fatalf("the API token on the API: %d", code)
	}
	// globex's own link opens globex's portal.
	v.openPortal(globex)
	mustContain(t, "globex's portal", v.get("/portal/"), "<h1>globex Inc</h1>")
}

// TestPortalRevokedLinkEndsSession: once a link's token is revoked, the
// next request of its session, to any portal page (one that reads the
// API, one that posts a form, one that does not exist), ends the session.
func TestPortalRevokedLinkEndsSession(t *testing.T) {
	e := newEnv(t, "")
	e.call(t, http.MethodPost, "/v1/applications", `{"id":"acme","name":"Acme"}`, http.StatusCreated, nil)
	link := e.portalLink(t, "acme", "")
	v := e.visitor(t)
	v.openPortal(link)
	mustStatus(t, "portal before the revocation", v.get("/portal/"), http.StatusOK)
	csrf := v.csrf
	u, _ := url.Parse(e.base + "/portal/")
	saved := v.c.Jar.Cookies(u)

	e.call(t, http.MethodDelete, "/v1/applications/acme/tokens/"+link.tokenID, "", http.StatusNoContent, nil)
	for _, tc := range []struct{ method, path string }{
		{http.MethodGet, "/portal/"},
		{http.MethodGet, "/portal/attempts"},
		{http.MethodGet, "/portal/no-such-page"},
		{http.MethodPost, "/portal/subscriptions"},
		{http.MethodPost, "/portal/logout"},
	} {
		copied := e.visitor(t)
		copied.c.Jar.SetCookies(u, saved)
		var p page
		if tc.method == http.MethodGet {
			p = copied.get(tc.path)
		} else {
			p = copied.post(tc.path, url.Values{"csrf": {csrf}, "url": {e.rcv.srv.URL + "/x"}, "event_types": {"*"}})
		}
		mustStatus(t, tc.method+" "+tc.path+" after the revocation", p, http.StatusUnauthorized)
		mustContain(t, tc.method+" "+tc.path+" after the revocation", p, "This portal link is not valid")
		if c := setCookie(p, "hookbus_portal"); c == nil || c.MaxAge >= 0 {
			t.Errorf("%s %s after the revocation does not clear the cookie: %+v", tc.method, tc.path, c)
		}
	}
	var subs struct {
		Data []any `json:"data"`
	}
	e.call(t, http.MethodGet, "/v1/applications/acme/subscriptions", "", http.StatusOK, &subs)
	if len(subs.Data) != 0 {
		t.Fatalf("the revoked session created a subscription: %v", subs.Data)
	}
}

// clockEnv is an API and a console on loopback, each with a clock of its
// own that the test moves: the console's to see the session end by its
// own expiry while the API still takes the token, the API's to see the
// token expire.
type clockEnv struct {
	*env
	apiNow, consoleNow atomic.Int64
}

func newClockEnv(t *testing.T, portalTTL time.Duration) *clockEnv {
	t.Helper()
	st, err := store.Open(t.Context(), "sqlite", "", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ce := &clockEnv{}
	now := time.Now().UnixNano()
	ce.apiNow.Store(now)
	ce.consoleNow.Store(now)
	srv := api.New(api.Options{APIKeys: []string{adminKey}, Subscriptions: st, Store: st, Attempts: st,
		Now: func() time.Time { return time.Unix(0, ce.apiNow.Load()) }})
	c, err := console.New(console.Options{API: srv, PortalTTL: portalTTL,
		Now: func() time.Time { return time.Unix(0, ce.consoleNow.Load()) }})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/v1/", srv)
	mux.Handle("/portal/", c)
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)
	ce.env = &env{base: hs.URL}
	return ce
}

// withCookie reads path with cookie alone (no jar: the jar would drop the
// cookie by the real clock).
func (e *env) withCookie(t *testing.T, path string, c *http.Cookie) page {
	t.Helper()
	v := e.visitor(t)
	v.c.Jar = nil
	req, err := http.NewRequest(http.MethodGet, e.base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
	return v.do(req)
}

// TestPortalSessionEndsAtLinkExpiry: a portal session ends at its link's
// expiry when that comes before console.portal.link_ttl's bound, by the
// console's own clock (even while the API would still take the token),
// and an expired link opens nothing.
func TestPortalSessionEndsAtLinkExpiry(t *testing.T) {
	e := newClockEnv(t, time.Hour)
	e.call(t, http.MethodPost, "/v1/applications", `{"id":"acme","name":"Acme"}`, http.StatusCreated, nil)

	// A 2h link: the session ends after the portal's 1h.
	long := e.portalLink(t, "acme", "2h")
	c := setCookie(e.visitor(t).openPortal(long), "hookbus_portal")
	if c == nil || c.MaxAge < 3590 || c.MaxAge > 3600 {
		t.Fatalf("session of a 2h link with a 1h portal session: %+v, want Max-Age 3600", c)
	}

	// A 1m link: the session ends with the link.
	short := e.portalLink(t, "acme", "1m")
	c = setCookie(e.visitor(t).openPortal(short), "hookbus_portal")
	if c == nil || c.MaxAge < 50 || c.MaxAge > 60 || c.Expires.After(short.expires) {
		t.Fatalf("session of a 1m link: %+v, want Max-Age 60 and Expires by %s", c, short.expires)
	}
	mustStatus(t, "portal within the link's minute", e.withCookie(t, "/portal/", c), http.StatusOK)
	start := e.consoleNow.Load()
	e.consoleNow.Store(short.expires.UnixNano())
	p := e.withCookie(t, "/portal/", c)
	mustStatus(t, "portal at the link's expiry (console clock)", p, http.StatusUnauthorized)
	mustContain(t, "portal at the link's expiry", p, "This portal link is not valid")

	// Back on the console's clock, the API's reaching the expiry ends it too.
	e.consoleNow.Store(start)
	mustStatus(t, "portal back before the expiry", e.withCookie(t, "/portal/", c), http.StatusOK)
	e.apiNow.Store(short.expires.Add(time.Second).UnixNano()) // expires_at is rounded
	mustStatus(t, "portal at the link's expiry (API clock)", e.withCookie(t, "/portal/", c), http.StatusUnauthorized)

	// The expired link opens nothing.
	e.consoleNow.Store(short.expires.UnixNano())
	refusedWith(t, e.visitor(t), "an expired link", short.path, short.token, http.StatusUnauthorized, "This portal link is not valid")
}

// TestPortalSwitch: a link of another application, opened in a portal
// session, asks first; cancelling keeps the session, confirming switches
// (and ends the first session); the form needs its CSRF token and a
// same-origin post; the token is in no page and no later address.
func TestPortalSwitch(t *testing.T) {
	e := newEnv(t, "")
	e.call(t, http.MethodPost, "/v1/applications", `{"id":"acme","name":"Acme Inc"}`, http.StatusCreated, nil)
	e.call(t, http.MethodPost, "/v1/applications", `{"id":"globex","name":"Globex Corp"}`, http.StatusCreated, nil)
	acme, globex := e.portalLink(t, "acme", ""), e.portalLink(t, "globex", "")
	v := e.visitor(t)
	v.openPortal(acme)
	u, _ := url.Parse(e.base + "/portal/")
	acmeCookies := v.c.Jar.Cookies(u)

	// open opens globex's link and checks it waits for the answer.
	open := func() page {
		t.Helper()
		p := v.get(globex.path)
		if p.status != http.StatusSeeOther || p.location != "/portal/login/switch" {
			t.Fatalf("globex's link in acme's session: %d to %q", p.status, p.location)
		}
		if c := setCookie(p, "hookbus_portal"); c != nil {
			t.Fatalf("globex's link replaced the session: %+v", c)
		}
		c := setCookie(p, "hookbus_portal_switch")
		if c == nil || !c.HttpOnly || c.Path != "/portal" || c.SameSite != http.SameSiteLaxMode || c.MaxAge <= 0 || c.MaxAge > 300 ||
			strings.Contains(c.Value, globex.token) {
			t.Fatalf("switch cookie: %+v", c)
		}
		// Sealed for its own name: it is no portal session.
		mustStatus(t, "the switch cookie as a session", e.withCookie(t, "/portal/", &http.Cookie{Name: "hookbus_portal", Value: c.Value}),
			http.StatusUnauthorized)
		p = v.get(p.location)
		mustStatus(t, "switch page", p, http.StatusOK)
		mustContain(t, "switch page", p, `You are signed in to the portal of <strong data-testid="switch-from">Acme Inc (acme)</strong>`,
			`Switch to <strong data-testid="switch-to">Globex Corp (globex)</strong>?`, `action="/portal/login/switch"`,
			`name="choice" value="switch"`, `name="choice" value="cancel"`)
		if strings.Contains(p.body, globex.token) || strings.Contains(p.body, acme.token) {
			t.Fatal("the switch page shows a token")
		}
		return p
	}
	stillAcme := func(what string) {
		t.Helper()
		p := v.get("/portal/")
		mustStatus(t, what, p, http.StatusOK)
		mustContain(t, what, p, "<h1>Acme Inc</h1>")
	}

	open()
	csrf := v.csrf
	p := v.post("/portal/login/switch", url.Values{"csrf": {""}, "choice": {"switch"}})
	mustStatus(t, "switch without CSRF token", p, http.StatusForbidden)
	mustContain(t, "switch without CSRF token", p, "CSRF check")
	p = v.post("/portal/login/switch", url.Values{"csrf": {"forged"}, "choice": {"switch"}})
	mustStatus(t, "switch with a wrong CSRF token", p, http.StatusForbidden)
	req, _ := http.NewRequest(http.MethodPost, e.base+"/portal/login/switch", strings.NewReader(url.Values{"csrf": {csrf}, "choice": {"switch"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://evil.example")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	mustStatus(t, "switch posted from another site", v.do(req), http.StatusForbidden)
	stillAcme("portal after the refused switches")

	// Cancel: acme stays, and the waiting link is gone.
	p = v.post("/portal/login/switch", url.Values{"csrf": {csrf}, "choice": {"cancel"}})
	if p.status != http.StatusSeeOther || p.location != "/portal/" {
		t.Fatalf("cancel: %d to %q", p.status, p.location)
	}
	if c := setCookie(p, "hookbus_portal_switch"); c == nil || c.MaxAge >= 0 {
		t.Fatalf("cancel keeps the switch cookie: %+v", c)
	}
	stillAcme("portal after cancelling")
	mustStatus(t, "switch after cancelling", v.post("/portal/login/switch", url.Values{"csrf": {csrf}, "choice": {"switch"}}), http.StatusConflict)
	stillAcme("portal after a switch with nothing waiting")

	// Confirm: globex's portal, and acme's session is over.
	open()
	p = v.post("/portal/login/switch", url.Values{"choice": {"switch"}})
	if p.status != http.StatusSeeOther || p.location != "/portal/" || setCookie(p, "hookbus_portal") == nil {
		t.Fatalf("switch: %d to %q", p.status, p.location)
	}
	p = v.get("/portal/")
	mustStatus(t, "portal after switching", p, http.StatusOK)
	mustContain(t, "portal after switching", p, "<h1>Globex Corp</h1>")
	old := e.visitor(t)
	old.c.Jar.SetCookies(u, acmeCookies)
	mustStatus(t, "acme's session after the switch", old.get("/portal/"), http.StatusUnauthorized)

	// A link of the open session's own application asks nothing.
	v.openPortal(e.portalLink(t, "globex", ""))
	// Nor one opened after the session's own link was revoked.
	w := e.visitor(t)
	g := e.portalLink(t, "globex", "")
	w.openPortal(g)
	e.call(t, http.MethodDelete, "/v1/applications/globex/tokens/"+g.tokenID, "", http.StatusNoContent, nil)
	w.openPortal(acme)
	mustContain(t, "portal after a revoked session", w.get("/portal/"), "<h1>Acme Inc</h1>")
}

// BenchmarkPortalLinkCheck measures what the check of the link's token on
// every portal request costs beside a whole portal page: GET /v1/whoami
// in process (the check) and GET /portal/ (a page, the check included),
// on the same SQLite store.
func BenchmarkPortalLinkCheck(b *testing.B) {
	st, err := store.Open(b.Context(), "sqlite", "", b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	srv := api.New(api.Options{APIKeys: []string{adminKey}, Subscriptions: st, Store: st, Attempts: st})
	c, err := console.New(console.Options{API: srv})
	if err != nil {
		b.Fatal(err)
	}
	call := func(h http.Handler, method, target, bearer, body string, cookies ...*http.Cookie) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, target, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		for _, ck := range cookies {
			req.AddCookie(ck)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	if rec := call(srv, http.MethodPost, "/v1/applications", adminKey, `{"id":"acme","name":"Acme"}`); rec.Code != http.StatusCreated {
		b.Fatalf("application: %d", rec.Code)
	}
	rec := call(srv, http.MethodPost, "/v1/applications/acme/portal", adminKey, "")
	var link api.PortalLinkJSON
	if err := json.Unmarshal(rec.Body.Bytes(), &link); err != nil {
		b.Fatalf("portal link: %d %s", rec.Code, rec.Body)
	}
	u, err := url.Parse(link.URL)
	if err != nil {
		b.Fatal(err)
	}
	token := u.Query().Get("token")
	login := call(c, http.MethodGet, u.RequestURI(), "", "")
	var sess *http.Cookie
	for _, ck := range login.Result().Cookies() {
		if ck.Name == "hookbus_portal" {
			sess = ck
		}
	}
	if sess == nil {
		b.Fatalf("portal login: %d %s", login.Code, login.Header().Get("Location"))
	}
	b.Run("whoami", func(b *testing.B) {
		for b.Loop() {
			if rec := call(srv, http.MethodGet, "/v1/whoami", token, ""); rec.Code != http.StatusOK {
				b.Fatalf("whoami: %d", rec.Code)
			}
		}
	})
	b.Run("page", func(b *testing.B) {
		for b.Loop() {
			if rec := call(c, http.MethodGet, "/portal/", "", "", sess); rec.Code != http.StatusOK {
				b.Fatalf("portal page: %d", rec.Code)
			}
		}
	})
}
