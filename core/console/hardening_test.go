package console_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestSignOutEndsTheSession: a copy of the cookie taken before signing
// out opens nothing afterwards.
func TestSignOutEndsTheSession(t *testing.T) {
	e := newEnv(t, "")
	v := e.visitor(t)
	v.mustLogin()
	u, _ := url.Parse(e.base + "/console/")
	copied := e.visitor(t)
	copied.c.Jar.SetCookies(u, v.c.Jar.Cookies(u))
	if p := copied.get("/console/status"); p.status != http.StatusOK {
		t.Fatalf("the copy before sign-out: %d", p.status)
	}
	v.get("/console/status")
	if p := v.post("/console/logout", nil); p.status != http.StatusSeeOther {
		t.Fatalf("sign out: %d", p.status)
	}
	if p := copied.get("/console/status"); p.status != http.StatusSeeOther {
		t.Fatalf("the copy after sign-out: %d, want the redirect to sign in", p.status)
	}
}

// TestCredentialHeadersStayHidden: an endpoint's Authorization header is
// not shown on its page or in its edit form, and saving the form as it
// is keeps it.
func TestCredentialHeadersStayHidden(t *testing.T) {
	e := newEnv(t, "")
	e.call(t, http.MethodPost, "/v1/applications", `{"id":"acme","name":"Acme"}`, http.StatusCreated, nil)
	var sub struct {
		ID      string            `json:"id"`
		Headers map[string]string `json:"headers"`
	}
	e.call(t, http.MethodPost, "/v1/applications/acme/subscriptions",
		`{"url":"https://acme.example/hooks","event_types":["*"],"headers":{"Authorization":"Bearer partner-secret-123","X-Team":"billing"}}`,
		http.StatusCreated, &sub)
	v := e.visitor(t)
	v.mustLogin()
	page := "/console/applications/acme/subscriptions/" + sub.ID
	p := v.get(page)
	if p.status != http.StatusOK || strings.Contains(p.body, "partner-secret-123") || !strings.Contains(p.body, "billing") {
		t.Fatalf("endpoint page: %d, shows the credential: %v", p.status, strings.Contains(p.body, "partner-secret-123"))
	}
	if !strings.Contains(p.body, "Authorization: [hidden: unchanged]") {
		t.Fatalf("the edit form does not hold the placeholder")
	}
	form := url.Values{"url": {"https://acme.example/hooks"}, "event_types": {"*"},
		"headers": {"Authorization: [hidden: unchanged]\nX-Team: payments"}}
	if p := v.post(page+"/edit", form); p.status != http.StatusSeeOther {
		t.Fatalf("save: %d %s", p.status, p.body)
	}
	e.call(t, http.MethodGet, "/v1/applications/acme/subscriptions/"+sub.ID, "", http.StatusOK, &sub)
	if sub.Headers["Authorization"] != "Bearer partner-secret-123" || sub.Headers["X-Team"] != "payments" {
		t.Fatalf("headers after saving: %v", sub.Headers)
	}
	// Retyped, it changes.
	v.get(page)
	form.Set("headers", "Authorization: Bearer new-one")
	if p := v.post(page+"/edit", form); p.status != http.StatusSeeOther {
		t.Fatalf("save: %d", p.status)
	}
	e.call(t, http.MethodGet, "/v1/applications/acme/subscriptions/"+sub.ID, "", http.StatusOK, &sub)
	if sub.Headers["Authorization"] != "Bearer new-one" {
		t.Fatalf("headers after retyping: %v", sub.Headers)
	}
}

// TestFormsFromOpaqueOrigins: a post whose Origin is "null" (a sandboxed
// frame, a data: page) is refused even with the token; a "back" with dot
// segments does not leave the pages.
func TestFormsFromOpaqueOrigins(t *testing.T) {
	e := newEnv(t, "")
	v := e.visitor(t)
	v.mustLogin()
	v.get("/console/status")
	req, _ := http.NewRequest(http.MethodPost, e.base+"/console/reload", strings.NewReader(url.Values{"csrf": {v.csrf}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "null")
	if p := v.do(req); p.status != http.StatusForbidden {
		t.Fatalf("Origin: null: %d", p.status)
	}
	v.get("/console/attempts")
	p := v.post("/console/resend", url.Values{"event_id": {"nope"}, "sink": {"partner"}, "back": {"/console/../v1/applications"}})
	if p.status != http.StatusSeeOther || strings.Contains(p.location, "/v1/") {
		t.Fatalf("resend with a dot-segment back: %d to %q", p.status, p.location)
	}
}

// TestSecureCookiesBehindTLSProxy: with an https public_url the cookies
// are Secure although the request came over plain HTTP.
func TestSecureCookiesBehindTLSProxy(t *testing.T) {
	e := newEnv(t, "console: {public_url: \"https://hooks.example.com\"}\n")
	v := e.visitor(t)
	p := v.get("/console/login")
	seen := 0
	for _, s := range p.header.Values("Set-Cookie") {
		c, err := http.ParseSetCookie(s)
		if err != nil {
			t.Fatal(err)
		}
		seen++
		if !c.Secure {
			t.Errorf("cookie %s is not Secure", c.Name)
		}
	}
	if seen == 0 {
		t.Fatal("the sign-in page set no cookie")
	}
}
