package console_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/hookbus/hookbus/internal/browsertest"
	"github.com/hookbus/hookbus/internal/testenv"
)

// TestConsoleEndToEnd drives the console and the portal in headless
// Chromium the way their users do: an operator signs in, creates an
// application and its endpoint, watches an event arrive, sees a failure
// with what the partner answered, fixes it and resends, replays a dead
// letter, and hands out a portal link; the developer who opens it sees
// their application only, whatever URLs and API calls they try by hand.
// Forms from another site are refused, no page breaks the
// Content-Security-Policy, and the main pages are photographed (into
// HOOKBUS_SCREENSHOTS; make screenshots puts them in docs/screenshots).
func TestConsoleEndToEnd(t *testing.T) {
	b := browsertest.New(t)
	e := newEnv(t, "")
	acmeEP := newReceiver(t)
	wait := 90 * time.Second
	// untilRows reloads path until selector matches an element.
	untilRows := func(b *browsertest.Browser, path, selector string) {
		t.Helper()
		testenv.Eventually(t, wait, path+" showing "+selector, func() bool {
			b.Navigate(e.base + path)
			var n int
			b.Eval(fmt.Sprintf(`document.querySelectorAll(%q).length`, selector), &n)
			return n > 0
		})
	}

	// Sign in, by keyboard first: the skip link is the first stop.
	b.Navigate(e.base + "/console/")
	b.WaitLocation("/console/login")
	b.WaitReady("#key")
	if el := b.ActiveElement(); el.ID != "key" {
		t.Errorf("the sign-in page starts at %+v, want the key field", el)
	}
	b.Screenshot("console-login")
	b.SetValue("#key", adminKey)
	b.Submit("#key")
	b.WaitLocation("/console/")
	b.WaitReady(`[data-testid="sink-cards"]`)
	if c, ok := b.Cookie("hookbus_console"); !ok || !c.HTTPOnly || c.SameSite != "Strict" {
		t.Errorf("console cookie: %+v (found %v)", c, ok)
	}
	if strings.Contains(b.Location(), adminKey) {
		t.Error("the key is in the address")
	}

	// An application and its endpoint, from the forms. The keyboard's
	// first stop is the skip link, which leads to the page's content.
	b.Navigate(e.base + "/console/applications")
	b.WaitText("main", "No applications yet")
	b.PressKey("Tab")
	if el := b.ActiveElement(); el.Tag != "a" || !strings.Contains(el.Label, "Skip to content") {
		t.Errorf("first Tab stop: %+v, want the skip link", el)
	}
	b.PressKey("Enter")
	testenv.Eventually(t, wait, "focus in the content after the skip link", func() bool { return b.ActiveElement().ID == "main" })
	b.SetValue("#app-name", "Acme Inc")
	b.SetValue("#app-id", "acme")
	b.Submit("#app-name")
	b.WaitLocation("/console/applications/acme")
	b.SetValue("#new-url", acmeEP.srv.URL+"/hooks")
	b.SetValue("#new-event_types", "order.*")
	b.Submit("#new-url")
	secret := b.WaitText(`[data-testid="secret"]`, "whsec_")
	b.Click(`[data-testid="sub-link"]`)
	b.WaitReady(`[data-testid="sub-facts"]`)
	subID := strings.TrimSpace(b.Text(`[data-testid="sub-id"]`))
	if strings.Contains(b.Text("main"), strings.TrimSpace(secret)) {
		t.Error("the endpoint's page shows its secret without being asked")
	}

	// An event for acme arrives and is in the log as delivered.
	e.send(t, "apps", `{"id":"e2e-1","type":"order.paid","application":"acme","data":{"order":1}}`)
	testenv.Eventually(t, wait, "e2e-1 at acme's endpoint", func() bool { return acmeEP.received(`"e2e-1"`) })
	untilRows(b, "/console/attempts?subscription="+url.QueryEscape(subID), `[data-testid="attempt-row"][data-outcome="delivered"]`)
	b.Screenshot("console-delivery-log")
	// Times: the viewer's zone in the page, UTC on hover.
	var timeOK bool
	b.Eval(`(() => { const t = document.querySelector("time[datetime]"); return !!t && t.dataset.local === "1" && / UTC$/.test(t.title) })()`, &timeOK)
	if !timeOK {
		t.Error("the log's times are not shown in the viewer's zone with UTC on hover")
	}

	// The endpoint fails: the attempt shows the partner's answer.
	acmeEP.answer(http.StatusInternalServerError, `{"error":"partner database is down"}`)
	e.send(t, "apps", `{"id":"e2e-2","type":"order.paid","application":"acme","data":{"order":2}}`)
	untilRows(b, "/console/attempts?event_id=e2e-2", `[data-testid="attempt-row"][data-outcome="failed"]`)
	b.Click(`[data-testid="attempt-row"][data-outcome="failed"] [data-testid="attempt-link"]`)
	b.WaitText(`[data-testid="response-body"]`, "partner database is down")
	b.WaitText(`[data-testid="response-status"]`, "500")
	b.Screenshot("console-attempt")

	// Fixed; resent from the attempt's page; delivered.
	acmeEP.answer(http.StatusOK, "")
	b.Eval(`window.confirm = () => true`, nil)
	b.Click(`[data-testid="resend"]`)
	b.WaitText(".flash", "Queued for delivery")
	untilRows(b, "/console/attempts?event_id=e2e-2", `[data-testid="attempt-row"][data-outcome="delivered"]`)

	// A dead letter (the partner sink refuses with 400), replayed once fixed.
	e.rcv.answer(http.StatusBadRequest, `{"error":"unknown order"}`)
	e.send(t, "shop", `{"id":"e2e-3","type":"order.paid","data":{"order":3}}`)
	untilRows(b, "/console/dead-letters", `[data-testid="dl-row"]`)
	b.Screenshot("console-dead-letters")
	e.rcv.answer(http.StatusOK, "")
	b.Click(`[data-testid="dl-open"]`)
	b.WaitReady(`[data-testid="dl-replay"]`)
	b.Eval(`window.confirm = () => true`, nil)
	b.Click(`[data-testid="dl-replay"]`)
	b.WaitText(".flash", "Queued")
	testenv.Eventually(t, wait, "the replayed e2e-3 at the partner", func() bool { return e.rcv.received(`"e2e-3"`) })

	// The overview with traffic, wide and at phone width.
	b.Navigate(e.base + "/console/")
	b.WaitReady(`[data-testid="stats-card"][data-name="partner"] svg.spark`)
	b.Screenshot("console-overview")
	b.Navigate(e.base + "/console/applications/acme")
	b.WaitReady(`[data-testid="portal-create"]`)
	b.Screenshot("console-application")
	b.Navigate(e.base + "/console/applications/acme/subscriptions/" + url.PathEscape(subID))
	b.WaitReady(`[data-testid="sub-stats"]`)
	b.Screenshot("console-subscription")
	b.SetViewport(browsertest.PhoneWidth, browsertest.PhoneHeight)
	b.Navigate(e.base + "/console/")
	b.WaitReady(`[data-testid="sink-cards"]`)
	var overflow bool
	b.Eval(`document.documentElement.scrollWidth > window.innerWidth + 1`, &overflow)
	if overflow {
		t.Error("the overview is wider than a phone")
	}
	b.Screenshot("console-overview-phone")
	b.ResetViewport()

	// A second application, made through the API, with its own endpoint
	// and event: the portal of acme must not reach any of it.
	globexEP := newReceiver(t)
	e.call(t, http.MethodPost, "/v1/applications", `{"id":"globex","name":"Globex"}`, http.StatusCreated, nil)
	var gsub struct {
		ID string `json:"id"`
	}
	e.call(t, http.MethodPost, "/v1/applications/globex/subscriptions",
		`{"url":"`+globexEP.srv.URL+`/globex-secret-path","event_types":["*"]}`, http.StatusCreated, &gsub)
	e.send(t, "apps", `{"id":"globex-evt","type":"order.paid","application":"globex","data":{}}`)
	testenv.Eventually(t, wait, "globex's event delivered", func() bool { return globexEP.received(`"globex-evt"`) })

	// A portal link, opened by someone else (no cookies of the operator).
	b.Navigate(e.base + "/console/applications/acme")
	b.Click(`[data-testid="portal-create"]`)
	link := strings.TrimSpace(b.WaitText(`[data-testid="portal-url"]`, "/portal/login?"))
	lu, err := url.Parse(link)
	if err != nil {
		t.Fatal(err)
	}
	portalToken := lu.Query().Get("token")
	dev := b.NewIncognito()
	dev.Navigate(link)
	dev.WaitLocation("/portal/")
	if strings.Contains(dev.Location(), "token") {
		t.Errorf("the token stayed in the address: %s", dev.Location())
	}
	dev.WaitText("main", acmeEP.srv.URL)
	if body := dev.Text("main"); strings.Contains(body, "globex") {
		t.Errorf("acme's portal shows globex: %s", body)
	}
	dev.Screenshot("portal-endpoints")
	untilRows(dev, "/portal/attempts", `[data-testid="attempt-row"]`)
	if body := dev.Text("main"); strings.Contains(body, "globex-evt") || strings.Contains(body, "e2e-3") {
		t.Errorf("acme's portal log shows another's deliveries: %s", body)
	}
	dev.Screenshot("portal-delivery-log")

	// By hand: other applications' pages, the API with the session's
	// cookie, and the link's token itself.
	for _, path := range []string{
		"/portal/subscriptions/" + url.PathEscape(gsub.ID),
		"/portal/events/globex-evt",
		"/portal/attempts?subscription=" + url.QueryEscape(gsub.ID),
		"/portal/attempts?application=globex",
	} {
		r := dev.Fetch(http.MethodGet, e.base+path, "", nil)
		if strings.Contains(r.Body, "globex-secret-path") {
			t.Errorf("%s: %d shows globex's endpoint", path, r.Status)
		}
		if strings.HasPrefix(path, "/portal/attempts") && strings.Contains(r.Body, "globex-evt") {
			t.Errorf("%s: %d lists globex's deliveries", path, r.Status)
		}
		if !strings.HasPrefix(path, "/portal/attempts") && r.Status != http.StatusNotFound {
			t.Errorf("%s: %d, want 404", path, r.Status)
		}
	}
	if r := dev.Fetch(http.MethodGet, e.base+"/v1/applications/acme/subscriptions", "", nil); r.Status != http.StatusUnauthorized {
		t.Errorf("the portal's cookie reached the API: %d", r.Status)
	}
	bearer := map[string]string{"Authorization": "Bearer " + portalToken}
	for path, want := range map[string]int{
		"/v1/applications/acme/subscriptions":   http.StatusOK,
		"/v1/applications/globex/subscriptions": http.StatusNotFound,
		"/v1/applications/globex/attempts":      http.StatusNotFound,
		"/v1/applications":                      http.StatusForbidden,
		"/v1/attempts":                          http.StatusForbidden,
		"/v1/dead-letters":                      http.StatusForbidden,
	} {
		if r := dev.Fetch(http.MethodGet, e.base+path, "", bearer); r.Status != want {
			t.Errorf("portal token on %s: %d, want %d", path, r.Status, want)
		}
	}
	if r := dev.Fetch(http.MethodPost, e.base+"/v1/applications/acme/portal", "", bearer); r.Status != http.StatusForbidden {
		t.Errorf("a portal token made a portal link: %d", r.Status)
	}
	// A link of another application in the same browser asks first:
	// staying keeps acme, switching opens globex.
	var glink struct {
		URL string `json:"url"`
	}
	e.call(t, http.MethodPost, "/v1/applications/globex/portal", "", http.StatusCreated, &glink)
	for _, choice := range []string{"cancel", "confirm"} {
		dev.Navigate(glink.URL)
		dev.WaitLocation("/portal/login/switch")
		dev.WaitText(`[data-testid="switch-question"]`, "Switch to Globex (globex)?")
		if strings.Contains(dev.Location(), "token") || strings.Contains(dev.Text("main"), "hbat_") {
			t.Errorf("the switch page shows the token: %s", dev.Location())
		}
		dev.Click(`[data-testid="switch-` + choice + `"]`)
		if choice == "cancel" {
			dev.WaitText("main", acmeEP.srv.URL)
		} else {
			dev.WaitText("main", globexEP.srv.URL)
		}
	}
	dev.Navigate(e.base + "/console/")
	dev.WaitLocation("/console/login")
	dev.AssertClean()

	// CSRF: a form posted from another site does nothing, and a
	// same-origin post without the session's token is refused.
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/go.js" {
			w.Header().Set("Content-Type", "text/javascript")
			fmt.Fprint(w, `document.getElementById("f").submit();`)
			return
		}
		fmt.Fprintf(w, `<!doctype html><form id="f" method="post" action="%s/console/reload"><input name="csrf" value="guess"></form><script src="/go.js"></script>`, e.base)
	}))
	t.Cleanup(evil.Close)
	b.Navigate(evil.URL)
	testenv.Eventually(t, wait, "the cross-site form answered", func() bool { return strings.HasPrefix(b.Location(), e.base) })
	var st struct {
		LastReload any `json:"last_reload"`
	}
	e.call(t, http.MethodGet, "/v1/admin/status", "", http.StatusOK, &st)
	if st.LastReload != nil {
		t.Errorf("a cross-site form reloaded the configuration: %v", st.LastReload)
	}
	b.Navigate(e.base + "/console/status")
	b.WaitReady(`[data-testid="config-version"]`)
	r := b.Fetch(http.MethodPost, e.base+"/console/reload", "csrf=wrong", map[string]string{"Content-Type": "application/x-www-form-urlencoded"})
	if r.Status != http.StatusForbidden {
		t.Errorf("a post with a wrong CSRF token: %d", r.Status)
	}

	// What a user types is shown as text, never run; and the browser does
	// enforce the policy (an inline script is refused).
	b.Navigate(e.base + "/console/applications")
	b.WaitReady("#app-name")
	hostile := `<img src=x onerror="document.title='pwned'">`
	b.SetValue("#app-name", hostile)
	b.Submit("#app-name")
	b.WaitText(`[data-testid="app-name"]`, hostile)
	var title string
	b.Eval(`document.title`, &title)
	if title == "pwned" {
		t.Error("a name ran as markup")
	}
	b.AssertClean()
	b.Eval(`(() => { const s = document.createElement("script"); s.textContent = "document.title = 'inline'"; document.body.appendChild(s); return true })()`, nil)
	b.WaitCSPViolation("script-src")
	b.Eval(`document.title`, &title)
	if title == "inline" {
		t.Error("an inline script ran: the Content-Security-Policy is not in force")
	}
}
