package console_test

import (
	"html"
	"net/http"
	"net/url"
	"regexp"
	"testing"
)

var publicKeyShown = regexp.MustCompile(`data-testid="sub-public-key">([^<]+)<`)

// The endpoint form's Ed25519 box gives the subscription a signing key
// (its public key on the page, never the private one); unticking it on
// edit drops the key.
func TestSubscriptionFormEd25519(t *testing.T) {
	e := newEnv(t, "")
	v := e.visitor(t)
	v.mustLogin()
	v.get("/console/applications")
	mustStatus(t, "create application", v.post("/console/applications", url.Values{"name": {"Acme"}, "id": {"acme"}}), http.StatusSeeOther)
	mustContain(t, "new form", v.get("/console/applications/acme"), `name="ed25519"`)
	hook := e.rcv.srv.URL + "/hook"
	p := v.post("/console/applications/acme/subscriptions", url.Values{"url": {hook}, "event_types": {"order.paid"}, "ed25519": {"true"}})
	mustStatus(t, "create subscription", p, http.StatusOK)
	l := subLink.FindStringSubmatch(p.body)
	if l == nil {
		t.Fatalf("no link on the answer: %s", p.body)
	}
	subPage, subID := l[1], l[2]
	var sub struct {
		Signing   string `json:"signing"`
		PublicKey string `json:"public_key"`
	}
	if code := e.apiCall(t, http.MethodGet, "/v1/applications/acme/subscriptions/"+subID, adminKey, nil, &sub); code != http.StatusOK || sub.Signing != "ed25519" {
		t.Fatalf("API: %d %+v", code, sub)
	}
	p = v.get(subPage)
	m := publicKeyShown.FindStringSubmatch(p.body)
	if m == nil || html.UnescapeString(m[1]) != sub.PublicKey {
		t.Fatalf("the page shows public key %v, the API %q", m, sub.PublicKey)
	}
	if regexp.MustCompile(`whsk_`).MatchString(p.body) {
		t.Fatal("the page shows a private signing key")
	}
	mustContain(t, "edit form", p, `name="ed25519" type="checkbox" value="true" checked`)
	p = v.post(subPage+"/edit", url.Values{"url": {hook}, "event_types": {"order.paid"}})
	mustStatus(t, "edit", p, http.StatusSeeOther)
	sub.PublicKey = ""
	if code := e.apiCall(t, http.MethodGet, "/v1/applications/acme/subscriptions/"+subID, adminKey, nil, &sub); code != http.StatusOK || sub.Signing != "hmac" || sub.PublicKey != "" {
		t.Fatalf("after unticking: %d %+v", code, sub)
	}
}
