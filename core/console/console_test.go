package console_test

import (
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestSignIn(t *testing.T) {
	e := newEnv(t, "")
	v := e.visitor(t)
	if p := v.get("/console/"); p.status != http.StatusSeeOther || !strings.HasPrefix(p.location, "/console/login") {
		t.Fatalf("without a session: %d to %q", p.status, p.location)
	}
	if p := v.login("not-the-key"); p.status != http.StatusUnauthorized || !strings.Contains(p.body, "not an admin key") {
		t.Fatalf("wrong key: %d %s", p.status, p.body)
	}
	p := v.login(adminKey)
	if p.status != http.StatusSeeOther || p.location != "/console/" {
		t.Fatalf("sign-in: %d to %q", p.status, p.location)
	}
	var sc *http.Cookie
	for _, c := range p.header.Values("Set-Cookie") {
		if strings.HasPrefix(c, "hookbus_console=") {
			sc, _ = http.ParseSetCookie(c)
		}
	}
	if sc == nil || !sc.HttpOnly || sc.SameSite != http.SameSiteStrictMode || sc.Path != "/console" {
		t.Fatalf("session cookie: %+v", sc)
	}
	if strings.Contains(sc.Value, adminKey) {
		t.Error("the session cookie holds the key in clear")
	}
	if p := v.get("/console/status"); p.status != http.StatusOK || !strings.Contains(p.body, `data-testid="config-version">1<`) {
		t.Fatalf("status page: %d %s", p.status, p.body)
	}
	// A changed cookie is no session.
	u, _ := url.Parse(e.base + "/console/")
	cs := v.c.Jar.Cookies(u)
	tampered := e.visitor(t)
	for _, c := range cs {
		// One character in the middle, to another: a different sealed value.
		b := []byte(c.Value)
		if b[len(b)/2] == 'A' {
			b[len(b)/2] = 'B'
		} else {
			b[len(b)/2] = 'A'
		}
		c.Value = string(b)
	}
	tampered.c.Jar.SetCookies(u, cs)
	if p := tampered.get("/console/status"); p.status != http.StatusSeeOther {
		t.Fatalf("tampered cookie: %d", p.status)
	}
	if p := v.post("/console/logout", nil); p.status != http.StatusSeeOther {
		t.Fatalf("sign out: %d", p.status)
	}
	if p := v.get("/console/status"); p.status != http.StatusSeeOther {
		t.Fatalf("after sign-out: %d", p.status)
	}
}

func TestSignInWithoutCSRF(t *testing.T) {
	e := newEnv(t, "")
	v := e.visitor(t)
	// No login page read: no login cookie, no token.
	if p := v.post("/console/login", url.Values{"key": {adminKey}, "csrf": {"guess"}}); p.status != http.StatusForbidden {
		t.Fatalf("sign-in without the form's token: %d", p.status)
	}
}

func TestFormsNeedCSRF(t *testing.T) {
	e := newEnv(t, "")
	v := e.visitor(t)
	v.mustLogin()
	v.get("/console/status")
	if p := v.post("/console/reload", url.Values{"csrf": {"wrong"}}); p.status != http.StatusForbidden {
		t.Fatalf("wrong token: %d", p.status)
	}
	if p := v.post("/console/reload", url.Values{"csrf": {""}}); p.status != http.StatusForbidden {
		t.Fatalf("empty token: %d", p.status)
	}
	// The right token from another site.
	req, _ := http.NewRequest(http.MethodPost, e.base+"/console/reload", strings.NewReader(url.Values{"csrf": {v.csrf}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://evil.example")
	if p := v.do(req); p.status != http.StatusForbidden {
		t.Fatalf("cross-origin: %d", p.status)
	}
	if p := v.post("/console/reload", nil); p.status != http.StatusSeeOther {
		t.Fatalf("reload with the token: %d %s", p.status, p.body)
	}
	if p := v.get("/console/status"); !strings.Contains(p.body, "Reloaded") || !strings.Contains(p.body, `data-testid="reload-result"`) {
		t.Fatalf("status after reload: %s", p.body)
	}
}

func TestSecurityHeaders(t *testing.T) {
	e := newEnv(t, "")
	v := e.visitor(t)
	for _, path := range []string{"/console/login", "/portal/login", "/console/static/console.css"} {
		p := v.get(path)
		csp := p.header.Get("Content-Security-Policy")
		for _, want := range []string{"default-src 'none'", "script-src 'self'", "frame-ancestors 'none'", "form-action 'self'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("%s: CSP %q lacks %q", path, csp, want)
			}
		}
		if p.header.Get("X-Content-Type-Options") != "nosniff" || p.header.Get("Referrer-Policy") != "same-origin" {
			t.Errorf("%s: headers %v", path, p.header)
		}
	}
	if p := v.get("/console/static/console.js"); p.status != http.StatusOK || !strings.Contains(p.header.Get("Content-Type"), "javascript") {
		t.Errorf("script: %d %s", p.status, p.header.Get("Content-Type"))
	}
	// The API is where it was.
	if p := v.get("/healthz"); p.status != http.StatusOK {
		t.Errorf("/healthz: %d", p.status)
	}
}

// TestTemplatesNeedNoInlineCode holds the templates to the CSP: no inline
// script, style or event handler (the browser would refuse them).
func TestTemplatesNeedNoInlineCode(t *testing.T) {
	inline := regexp.MustCompile(`(?i)<script[^>]*>\s*[^<\s]|\sstyle=|\son[a-z]+=|<style|javascript:`)
	scriptTag := regexp.MustCompile(`(?i)<script[^>]*>`)
	err := filepath.WalkDir("templates", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if m := inline.FindString(string(b)); m != "" {
			t.Errorf("%s: inline code %q", path, m)
		}
		for _, tag := range scriptTag.FindAllString(string(b), -1) {
			if !strings.Contains(tag, " src=") {
				t.Errorf("%s: script without src: %q", path, tag)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestPortalFraming: frame_ancestors lets the named origins frame the
// portal (and only the portal), with a cookie a cross-site frame gets;
// a reload changes it.
func TestPortalFraming(t *testing.T) {
	e := newEnv(t, "console:\n  portal:\n    frame_ancestors: [\"https://dev.example.com\"]\n")
	v := e.visitor(t)
	p := v.get("/portal/login")
	if csp := p.header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors https://dev.example.com") {
		t.Errorf("portal CSP: %q", csp)
	}
	if p.header.Get("X-Frame-Options") != "" {
		t.Errorf("the portal says X-Frame-Options %q", p.header.Get("X-Frame-Options"))
	}
	c := v.get("/console/login")
	if csp := c.header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") || c.header.Get("X-Frame-Options") != "DENY" {
		t.Errorf("console framing: %q, %q", csp, c.header.Get("X-Frame-Options"))
	}
	// A portal session opened from a portal link.
	e.call(t, http.MethodPost, "/v1/applications", `{"id":"acme","name":"Acme"}`, http.StatusCreated, nil)
	login := v.openPortal(e.portalLink(t, "acme", ""))
	var pc *http.Cookie
	for _, s := range login.header.Values("Set-Cookie") {
		if strings.HasPrefix(s, "hookbus_portal=") {
			pc, _ = http.ParseSetCookie(s)
		}
	}
	if pc == nil || pc.SameSite != http.SameSiteNoneMode || !pc.Secure || !pc.HttpOnly || pc.Path != "/portal" {
		t.Errorf("framed portal cookie: %+v", pc)
	}
	// Another application's link in that session waits in a cookie a
	// cross-site frame gets too.
	if pc != nil {
		e.call(t, http.MethodPost, "/v1/applications", `{"id":"globex","name":"Globex"}`, http.StatusCreated, nil)
		sw := e.withCookie(t, e.portalLink(t, "globex", "").path, pc)
		sc := setCookie(sw, "hookbus_portal_switch")
		if sw.location != "/portal/login/switch" || sc == nil || sc.SameSite != http.SameSiteNoneMode || !sc.Secure || !sc.Partitioned || sc.Path != "/portal" {
			t.Errorf("framed switch: %d to %q, cookie %+v", sw.status, sw.location, sc)
		}
	}

	// Reloaded without frame_ancestors: nobody may frame it.
	cfg := filepath.Join(e.dir, "config.yaml")
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, []byte(strings.Replace(string(b), `frame_ancestors: ["https://dev.example.com"]`, `frame_ancestors: []`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	e.call(t, http.MethodPost, "/v1/admin/reload", "", http.StatusOK, nil)
	p = v.get("/portal/login")
	if csp := p.header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") || p.header.Get("X-Frame-Options") != "DENY" {
		t.Errorf("after the reload: %q, %q", csp, p.header.Get("X-Frame-Options"))
	}
}
