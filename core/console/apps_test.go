package console_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hookbus/hookbus/internal/testenv"
)

// apiCall calls the instance's /v1 API with bearer and decodes a 2xx
// answer into out (when non-nil).
func (e *env) apiCall(t *testing.T, method, path, bearer string, body, out any) int {
	t.Helper()
	var rd io.Reader = http.NoBody
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, e.base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+bearer)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 == 2 && out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, data)
		}
	}
	return resp.StatusCode
}

var (
	secretShown = regexp.MustCompile(`data-testid="secret">([^<]+)<`)
	subLink     = regexp.MustCompile(`href="([^"]+/subscriptions/(sub_[0-9A-Z]+))" data-testid="sub-link"`)
)

// mustStatus fails unless p has status code.
func mustStatus(t *testing.T, what string, p page, code int) {
	t.Helper()
	if p.status != code {
		t.Fatalf("%s: status %d, want %d (location %q): %s", what, p.status, code, p.location, p.body)
	}
}

// mustContain fails unless p's body holds every one of parts.
func mustContain(t *testing.T, what string, p page, parts ...string) {
	t.Helper()
	for _, s := range parts {
		if !strings.Contains(p.body, s) {
			t.Fatalf("%s: the page lacks %q: %s", what, s, p.body)
		}
	}
}

func TestApplicationPages(t *testing.T) {
	e := newEnv(t, "")
	v := e.visitor(t)
	v.mustLogin()

	p := v.get("/console/applications")
	mustStatus(t, "empty list", p, http.StatusOK)
	mustContain(t, "empty list", p, "No applications yet. Create one for each platform customer")

	// Bad metadata: the field's error, the input kept, nothing created.
	p = v.post("/console/applications", url.Values{"name": {"Acme"}, "id": {"acme"}, "metadata": {`[1, 2`}})
	mustStatus(t, "bad metadata", p, http.StatusUnprocessableEntity)
	mustContain(t, "bad metadata", p, `data-testid="error-metadata"`, `>[1, 2</textarea>`, `value="Acme"`)
	// The API's own validation: a missing name.
	p = v.post("/console/applications", url.Values{"name": {""}, "metadata": {`{"plan": "pro"}`}})
	mustStatus(t, "no name", p, http.StatusUnprocessableEntity)
	mustContain(t, "no name", p, `data-testid="error-name"`, `plan`)

	p = v.post("/console/applications", url.Values{"name": {"Acme"}, "id": {"acme"}, "metadata": {`{"plan": "pro"}`}})
	mustStatus(t, "create application", p, http.StatusSeeOther)
	if p.location != "/console/applications/acme" {
		t.Fatalf("created: to %q", p.location)
	}
	p = v.get("/console/applications")
	mustContain(t, "list", p, "Application acme created", `data-app="acme"`, `href="/console/applications/acme">Acme</a>`)

	p = v.get("/console/applications/acme")
	mustStatus(t, "application page", p, http.StatusOK)
	mustContain(t, "application page", p, `data-testid="portal-link"`, "No endpoints yet", `name="filter"`, "pro")

	// Rename.
	p = v.post("/console/applications/acme/edit", url.Values{"name": {"Acme Corp"}})
	mustStatus(t, "rename", p, http.StatusSeeOther)
	mustContain(t, "renamed", v.get("/console/applications/acme"), `data-testid="app-name">Acme Corp<`)

	// A URL the API refuses: its error next to the field, the input kept.
	bad := url.Values{"url": {"not a url"}, "event_types": {"order.paid"}, "description": {"keep me"}}
	p = v.post("/console/applications/acme/subscriptions", bad)
	mustStatus(t, "bad URL", p, http.StatusUnprocessableEntity)
	mustContain(t, "bad URL", p, `data-testid="error-url"`, `value="not a url"`, `value="keep me"`)
	p = v.post("/console/applications/acme/subscriptions", url.Values{"url": {e.rcv.srv.URL + "/hook"},
		"event_types": {"order.paid"}, "headers": {"no colon here"}})
	mustStatus(t, "bad headers", p, http.StatusUnprocessableEntity)
	mustContain(t, "bad headers", p, `data-testid="error-headers"`, "no colon here")

	// Create: the secret is shown once, on the answer page.
	hook := e.rcv.srv.URL + "/hook"
	p = v.post("/console/applications/acme/subscriptions", url.Values{"url": {hook}, "event_types": {"order.paid  order.*"},
		"description": {"billing"}, "headers": {"X-Team: billing\n\nX-Env: test"}, "rate_limit": {"5"}, "max_in_flight": {"2"},
		"format": {"cloudevents-structured"}})
	mustStatus(t, "create subscription", p, http.StatusOK)
	m := secretShown.FindStringSubmatch(p.body)
	l := subLink.FindStringSubmatch(p.body)
	if m == nil || l == nil || !strings.HasPrefix(m[1], "whsec_") {
		t.Fatalf("no secret or link on the answer: %s", p.body)
	}
	secret, subPage, subID := m[1], l[1], l[2]
	if subPage != "/console/applications/acme/subscriptions/"+subID {
		t.Fatalf("link %q", subPage)
	}
	var sub struct {
		EventTypes []string          `json:"event_types"`
		Headers    map[string]string `json:"headers"`
		RateLimit  float64           `json:"rate_limit"`
		Format     string            `json:"format"`
		Disabled   bool              `json:"disabled"`
	}
	if code := e.apiCall(t, http.MethodGet, "/v1/applications/acme/subscriptions/"+subID, adminKey, nil, &sub); code != http.StatusOK {
		t.Fatalf("API: %d", code)
	}
	if len(sub.EventTypes) != 2 || sub.Headers["X-Team"] != "billing" || sub.Headers["X-Env"] != "test" || sub.RateLimit != 5 ||
		sub.Format != "cloudevents-structured" {
		t.Fatalf("created as %+v", sub)
	}

	p = v.get(subPage)
	mustStatus(t, "subscription page", p, http.StatusOK)
	mustContain(t, "subscription page", p, `data-testid="stats-1h"`, `data-testid="stats-24h"`, "<code>X-Team: billing</code>",
		`<option value="cloudevents-structured" selected>`,
		`href="/console/attempts?subscription=`+subID+`"`)
	if strings.Contains(p.body, secret) {
		t.Fatal("the subscription page shows the secret without being asked")
	}
	if strings.Contains(v.get("/console/applications/acme").body, secret) {
		t.Fatal("the application page shows the secret")
	}

	p = v.post(subPage+"/reveal", nil)
	mustStatus(t, "reveal", p, http.StatusOK)
	mustContain(t, "reveal", p, `data-testid="secret">`+secret+`<`)

	// Edit: cleared fields clear.
	p = v.post(subPage+"/edit", url.Values{"url": {hook}, "event_types": {"order.paid"}, "description": {"new description"},
		"headers": {"X-Env: prod"}})
	mustStatus(t, "edit", p, http.StatusSeeOther)
	p = v.get(subPage)
	mustContain(t, "edited", p, "new description", "Saved.")
	if strings.Contains(p.body, "<code>X-Team") || !strings.Contains(p.body, "<code>X-Env: prod</code>") {
		t.Fatalf("the headers were not replaced as a whole: %s", p.body)
	}
	if strings.Contains(p.body, "Rate limit</dt><dd>5") {
		t.Fatal("a cleared rate limit is still set")
	}
	p = v.post(subPage+"/edit", url.Values{"url": {"ftp://nowhere"}, "event_types": {"order.paid"}, "description": {"typed"}})
	mustStatus(t, "bad edit", p, http.StatusUnprocessableEntity)
	mustContain(t, "bad edit", p, `data-testid="error-url"`, `value="ftp://nowhere"`, `value="typed"`)

	// Disable, enable.
	mustStatus(t, "disable", v.post(subPage+"/disabled", url.Values{"disabled": {"true"}}), http.StatusSeeOther)
	mustContain(t, "disabled", v.get(subPage), `data-testid="enable"`, "disabled through the API")
	mustStatus(t, "enable", v.post(subPage+"/disabled", url.Values{"disabled": {"false"}}), http.StatusSeeOther)
	mustContain(t, "enabled", v.get(subPage), `data-testid="disable"`)

	// Rotate: a bad overlap is shown by its field; then a new secret, once.
	p = v.post(subPage+"/rotate", url.Values{"overlap": {"soon"}})
	mustStatus(t, "bad overlap", p, http.StatusUnprocessableEntity)
	mustContain(t, "bad overlap", p, `data-testid="error-rotate_overlap"`, `value="soon"`)
	p = v.post(subPage+"/rotate", url.Values{"overlap": {"1h"}})
	mustStatus(t, "rotate", p, http.StatusOK)
	m = secretShown.FindStringSubmatch(p.body)
	if m == nil || m[1] == secret || !strings.HasPrefix(m[1], "whsec_") {
		t.Fatalf("rotation's secret: %v", m)
	}
	if strings.Contains(v.get(subPage).body, m[1]) {
		t.Fatal("the subscription page shows the rotated secret")
	}

	// Test event: bad JSON is shown by its field; then the receiver gets one.
	p = v.post(subPage+"/test", url.Values{"type": {"order.paid"}, "data": {`{"n":`}})
	mustStatus(t, "bad test data", p, http.StatusUnprocessableEntity)
	mustContain(t, "bad test data", p, `data-testid="error-test_data"`, `{&#34;n&#34;:</textarea>`)
	e.rcv.answer(http.StatusAccepted, "thanks")
	before := e.rcv.count()
	p = v.post(subPage+"/test", url.Values{"type": {"order.paid"}, "data": {`{"n": 1}`}})
	mustStatus(t, "test", p, http.StatusOK)
	mustContain(t, "test", p, `data-testid="test-status">202<`, `data-testid="test-outcome">delivered<`, "thanks")
	testenv.Eventually(t, testenv.Timeout(10*time.Second), "the receiver gets the test event", func() bool {
		return e.rcv.count() > before
	})

	// Delete the subscription, then the application.
	p = v.post(subPage+"/delete", nil)
	mustStatus(t, "delete subscription", p, http.StatusSeeOther)
	if p.location != "/console/applications/acme" {
		t.Fatalf("after delete: to %q", p.location)
	}
	mustStatus(t, "deleted subscription", v.get(subPage), http.StatusNotFound)
	p = v.post("/console/applications/acme/delete", nil)
	mustStatus(t, "delete application", p, http.StatusSeeOther)
	mustStatus(t, "deleted application", v.get("/console/applications/acme"), http.StatusNotFound)
}

func TestPortalSeesOnlyItsApplication(t *testing.T) {
	e := newEnv(t, "")
	type created struct {
		ID    string `json:"id"`
		Token string `json:"token"`
	}
	var mine, theirs, mySub, theirSub created
	e.apiCall(t, http.MethodPost, "/v1/applications", adminKey, map[string]any{"name": "Mine Inc"}, &mine)
	e.apiCall(t, http.MethodPost, "/v1/applications", adminKey, map[string]any{"name": "Theirs Ltd"}, &theirs)
	e.apiCall(t, http.MethodPost, "/v1/applications/"+mine.ID+"/subscriptions", adminKey,
		map[string]any{"url": e.rcv.srv.URL + "/mine", "event_types": []string{"*"}}, &mySub)
	e.apiCall(t, http.MethodPost, "/v1/applications/"+theirs.ID+"/subscriptions", adminKey,
		map[string]any{"url": e.rcv.srv.URL + "/theirs-secret-path", "event_types": []string{"*"}, "description": "their endpoint"}, &theirSub)
	if mine.ID == "" || theirSub.ID == "" {
		t.Fatal("setup failed")
	}

	v := e.visitor(t)
	v.openPortal(e.portalLink(t, mine.ID, ""))
	p := v.get("/portal/")
	mustStatus(t, "portal start", p, http.StatusOK)
	mustContain(t, "portal start", p, "<h1>Mine Inc</h1>", `data-sub="`+mySub.ID+`"`, `href="/portal/subscriptions/`+mySub.ID+`"`)
	for _, s := range []string{theirSub.ID, "theirs-secret-path", `data-testid="portal-link"`, `name="filter"`, "delete-app"} {
		if strings.Contains(p.body, s) {
			t.Errorf("the portal's start page shows %q", s)
		}
	}

	// Another application's subscription: 404, none of its data.
	for _, path := range []string{"/portal/subscriptions/" + theirSub.ID} {
		p = v.get(path)
		mustStatus(t, path, p, http.StatusNotFound)
		if strings.Contains(p.body, "theirs-secret-path") || strings.Contains(p.body, "their endpoint") {
			t.Fatalf("%s shows the other application's data: %s", path, p.body)
		}
	}
	for _, action := range []string{"/reveal", "/delete", "/rotate", "/test"} {
		p = v.post("/portal/subscriptions/"+theirSub.ID+action, nil)
		mustStatus(t, "POST "+action, p, http.StatusNotFound)
		if strings.Contains(p.body, "whsec_") {
			t.Fatalf("%s leaks a secret: %s", action, p.body)
		}
	}
	if code := e.apiCall(t, http.MethodGet, "/v1/applications/"+theirs.ID+"/subscriptions/"+theirSub.ID, adminKey, nil, nil); code != http.StatusOK {
		t.Fatalf("their subscription after the portal's tries: %d", code)
	}

	// Its own subscriptions: the page, the actions, a new one with its secret once.
	p = v.get("/portal/subscriptions/" + mySub.ID)
	mustStatus(t, "own subscription", p, http.StatusOK)
	mustContain(t, "own subscription", p, `href="/portal/attempts?subscription=`+mySub.ID+`"`, `action="/portal/subscriptions/`+mySub.ID+`/rotate"`)
	if strings.Contains(p.body, `name="filter"`) {
		t.Error("the portal offers the filter")
	}
	p = v.post("/portal/subscriptions/"+mySub.ID+"/reveal", nil)
	mustStatus(t, "own reveal", p, http.StatusOK)
	mustContain(t, "own reveal", p, `data-testid="secret">whsec_`)
	p = v.post("/portal/subscriptions", url.Values{"url": {e.rcv.srv.URL + "/second"}, "event_types": {"order.*"}})
	mustStatus(t, "portal create", p, http.StatusOK)
	mustContain(t, "portal create", p, `data-testid="secret">whsec_`, `href="/portal/subscriptions/sub_`)
	p = v.post("/portal/subscriptions", url.Values{"url": {"nope"}, "event_types": {"order.*"}})
	mustStatus(t, "portal bad URL", p, http.StatusUnprocessableEntity)
	mustContain(t, "portal bad URL", p, `data-testid="error-url"`, `value="nope"`)
	p = v.post("/portal/subscriptions/"+mySub.ID+"/delete", nil)
	mustStatus(t, "portal delete", p, http.StatusSeeOther)
	if p.location != "/portal/" {
		t.Fatalf("portal delete: to %q", p.location)
	}

	// The console is out of reach with a portal session.
	for _, path := range []string{"/console/applications", "/console/applications/" + mine.ID, "/console/"} {
		p = v.get(path)
		if p.status != http.StatusSeeOther || !strings.HasPrefix(p.location, "/console/login") {
			t.Fatalf("%s with a portal session: %d to %q", path, p.status, p.location)
		}
	}
}
