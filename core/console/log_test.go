package console_test

import (
	"html"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hookbus/hookbus/internal/testenv"
)

// callAs makes one API request with key and decodes the answer into out
// (when not nil; then the answer must be a 2xx); it returns the status.
func (e *env) callAs(t *testing.T, method, path, key string, body, out any) int {
	t.Helper()
	code := e.apiCall(t, method, path, key, body, out)
	if code >= 300 && out != nil {
		t.Fatalf("%s %s: %d", method, path, code)
	}
	return code
}

// send posts one event to source and returns its id.
func (e *env) sendEv(t *testing.T, source string, ev map[string]any) string {
	t.Helper()
	var res struct {
		IDs []string `json:"ids"`
	}
	e.callAs(t, http.MethodPost, "/v1/sources/"+source+"/events", adminKey, ev, &res)
	if len(res.IDs) != 1 {
		t.Fatalf("ingest: ids %v", res.IDs)
	}
	return res.IDs[0]
}

var nextPage = regexp.MustCompile(`<a href="([^"]+)" data-testid="next-page"`)

var attemptRow = regexp.MustCompile(`data-testid="attempt-row" data-attempt="([^"]+)" data-outcome="([^"]+)"`)

// rows are the attempts (id → outcome) of a log page, in order.
type row struct{ id, outcome string }

func rows(body string) []row {
	var out []row
	for _, m := range attemptRow.FindAllStringSubmatch(body, -1) {
		out = append(out, row{m[1], m[2]})
	}
	return out
}

// waitRows reads path until it lists at least one attempt and returns
// the page.
func (v *visitor) waitRows(path string) page {
	v.t.Helper()
	var p page
	testenv.Eventually(v.t, testenv.Timeout(20*time.Second), "attempts on "+path, func() bool {
		p = v.get(path)
		if p.status != http.StatusOK {
			v.t.Fatalf("GET %s: %d %s", path, p.status, p.body)
		}
		return len(rows(p.body)) > 0
	})
	return p
}

func TestDeliveryLogConsole(t *testing.T) {
	e := newEnv(t, "")
	v := e.visitor(t)
	v.mustLogin()

	p := v.get("/console/attempts")
	if p.status != http.StatusOK || !strings.Contains(p.body, `data-testid="log-empty">No attempts yet`) {
		t.Fatalf("empty log: %d %s", p.status, p.body)
	}

	ok := e.sendEv(t, "shop", map[string]any{"type": "order.paid", "data": map[string]any{"id": "1001"}})
	p = v.waitRows("/console/attempts")
	if r := rows(p.body); r[0].outcome != "delivered" || !strings.Contains(p.body, "/console/events/"+ok) {
		t.Fatalf("first delivery: %+v", r)
	}
	if p := v.get("/console/attempts?outcome=failed"); len(rows(p.body)) != 0 ||
		!strings.Contains(p.body, "No attempts match these filters") || !strings.Contains(p.body, `<option value="failed" selected>`) {
		t.Fatalf("failed filter before any failure: %s", p.body)
	}

	// The partner refuses: after the retry the delivery has failed.
	e.rcv.answer(http.StatusInternalServerError, "partner says no")
	bad := e.sendEv(t, "shop", map[string]any{"type": "order.paid", "data": map[string]any{"id": "1002"}})
	p = v.waitRows("/console/attempts?outcome=failed&event_id=" + bad)
	failed := rows(p.body)[0].id
	if !strings.Contains(p.body, `data-testid="attempt-status">500<`) {
		t.Fatalf("failed attempt row: %s", p.body)
	}
	for _, r := range rows(v.get("/console/attempts?outcome=failed").body) {
		if r.outcome != "failed" {
			t.Fatalf("outcome filter shows %+v", r)
		}
	}

	p = v.get("/console/attempts/" + failed)
	for _, want := range []string{`data-testid="response-status">500<`, `data-testid="response-body">partner says no<`,
		`href="/console/events/` + bad + `"`, `data-testid="request-headers"`, "Webhook-Signature"} {
		if !strings.Contains(p.body, want) {
			t.Fatalf("attempt page lacks %q: %s", want, p.body)
		}
	}
	if strings.Contains(p.body, testSecret) {
		t.Fatal("the attempt page shows the signing secret")
	}

	// Fixed: resend from the attempt page.
	e.rcv.answer(http.StatusOK, "")
	r := v.post("/console/resend", url.Values{"event_id": {bad}, "sink": {"partner"}, "back": {"/console/attempts/" + failed}})
	if r.status != http.StatusSeeOther || r.location != "/console/attempts/"+failed {
		t.Fatalf("resend: %d to %q: %s", r.status, r.location, r.body)
	}
	if p := v.get(r.location); !strings.Contains(p.body, "Queued for delivery: 1") {
		t.Fatalf("no flash after resend: %s", p.body)
	}
	v.waitRows("/console/attempts?outcome=delivered&event_id=" + bad)

	// The event page: the payload as recorded and a resend per sink.
	p = v.get("/console/events/" + bad)
	if p.status != http.StatusOK || !strings.Contains(p.body, `data-testid="event-payload"`) ||
		!strings.Contains(p.body, "1002") || !strings.Contains(p.body, `name="sink" value="partner"`) {
		t.Fatalf("event page: %d %s", p.status, p.body)
	}
	if p := v.get("/console/events/nosuch"); p.status != http.StatusNotFound {
		t.Fatalf("unknown event: %d", p.status)
	}
	// A back path that leaves the console is not followed.
	if r := v.post("/console/resend", url.Values{"event_id": {"nosuch"}, "sink": {"partner"}, "back": {"//evil.example/x"}}); r.location != "/console/attempts" {
		t.Fatalf("open redirect: %q", r.location)
	}
	if r := v.post("/console/resend", url.Values{"event_id": {"nosuch"}, "sink": {"partner"}}); r.status != http.StatusSeeOther {
		t.Fatalf("resend of an unknown event: %d", r.status)
	} else if p := v.get(r.location); !strings.Contains(p.body, "Not resent:") {
		t.Fatalf("no flash for a refused resend: %s", p.body)
	}

	// Bad filters: ours and the API's, next to their fields, values kept.
	p = v.get("/console/attempts?since=yesterday&event_type=order.paid")
	if !strings.Contains(p.body, `data-testid="error-since">must be a date and time in UTC`) || !strings.Contains(p.body, `value="order.paid"`) {
		t.Fatalf("bad since: %s", p.body)
	}
	if p := v.get("/console/attempts?status=42"); !strings.Contains(p.body, "must be an HTTP status code") {
		t.Fatalf("bad status: %s", p.body)
	}
	// A datetime-local time is UTC; an RFC 3339 one works too.
	future := time.Now().UTC().Add(time.Hour)
	if p := v.get("/console/attempts?since=" + future.Format("2006-01-02T15:04")); len(rows(p.body)) != 0 {
		t.Fatalf("since in the future lists attempts")
	}
	if p := v.get("/console/attempts?since=" + url.QueryEscape(future.Add(-3*time.Hour).Format(time.RFC3339))); len(rows(p.body)) == 0 {
		t.Fatalf("since two hours ago lists nothing")
	}

	// The sink filter: every attempt of partner fits on one page.
	p = v.get("/console/attempts?sink=partner")
	all := rows(p.body)
	if len(all) < 3 || strings.Contains(p.body, `data-testid="next-page"`) {
		t.Fatalf("sink filter: %d rows", len(all))
	}
	// Page by page (?limit= sets the page size): the same attempts, in
	// the same order, and the filter kept.
	var paged []row
	next := "/console/attempts?sink=partner&limit=1"
	for next != "" {
		p := v.get(next)
		if p.status != http.StatusOK {
			t.Fatalf("%s: %d", next, p.status)
		}
		r := rows(p.body)
		if len(r) != 1 {
			t.Fatalf("%s: %d rows", next, len(r))
		}
		paged = append(paged, r[0])
		next = ""
		if m := nextPage.FindStringSubmatch(p.body); m != nil {
			next = html.UnescapeString(m[1])
			if !strings.Contains(next, "sink=partner") || !strings.Contains(next, "limit=1") {
				t.Fatalf("next page link drops the filter: %s", next)
			}
		}
		if len(paged) > len(all) {
			t.Fatal("more pages than attempts")
		}
	}
	if !slices.Equal(paged, all) {
		t.Fatalf("pages %v, one page %v", paged, all)
	}
	if p := v.get("/console/attempts?limit=0"); !strings.Contains(p.body, "limit: must be an integer") {
		t.Fatalf("bad limit: %s", p.body)
	}

	// Recover: since is required; then every delivery of the sink again.
	r = v.post("/console/recover", url.Values{"sink": {"partner"}, "outcome": {"all"}})
	if r.status != http.StatusUnprocessableEntity || !strings.Contains(r.body, `data-testid="error-recover-since">is required`) {
		t.Fatalf("recover without since: %d %s", r.status, r.body)
	}
	before := e.rcv.count()
	r = v.post("/console/recover", url.Values{"sink": {"partner"}, "outcome": {"all"},
		"since": {time.Now().UTC().Add(-time.Hour).Format("2006-01-02T15:04:05")}})
	if r.status != http.StatusSeeOther {
		t.Fatalf("recover: %d %s", r.status, r.body)
	}
	if p := v.get(r.location); !strings.Contains(p.body, "Recover done: queued for delivery: 2") {
		t.Fatalf("recover flash: %s", p.body)
	}
	testenv.Eventually(t, testenv.Timeout(20*time.Second), "recovered deliveries", func() bool { return e.rcv.count() >= before+2 })
}

func TestDeliveryLogPortal(t *testing.T) {
	e := newEnv(t, "")
	subs := map[string]string{}
	for _, app := range []string{"acme", "globex"} {
		e.callAs(t, http.MethodPost, "/v1/applications", adminKey, map[string]any{"id": app, "name": app}, &struct{}{})
		var sub struct {
			ID string `json:"id"`
		}
		e.callAs(t, http.MethodPost, "/v1/applications/"+app+"/subscriptions", adminKey,
			map[string]any{"url": e.rcv.srv.URL + "/" + app, "event_types": []string{"order.*"}}, &sub)
		subs[app] = sub.ID
	}
	link := e.portalLink(t, "acme", "")

	mine := e.sendEv(t, "apps", map[string]any{"type": "order.paid", "application": "acme", "data": map[string]any{"n": 1}})
	theirs := e.sendEv(t, "apps", map[string]any{"type": "order.paid", "application": "globex", "data": map[string]any{"secret_of_globex": 2}})

	var theirAttempts struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	testenv.Eventually(t, testenv.Timeout(20*time.Second), "globex's attempt", func() bool {
		e.callAs(t, http.MethodGet, "/v1/attempts?application=globex", adminKey, nil, &theirAttempts)
		return len(theirAttempts.Data) > 0
	})

	v := e.visitor(t)
	v.openPortal(link)
	p := v.waitRows("/portal/attempts")
	if !strings.Contains(p.body, "/portal/events/"+mine) || strings.Contains(p.body, theirs) || strings.Contains(p.body, "globex") {
		t.Fatalf("portal log: %s", p.body)
	}
	if strings.Contains(p.body, `name="sink"`) || strings.Contains(p.body, `name="application"`) {
		t.Fatal("the portal's filters name sinks or applications")
	}
	if !strings.Contains(p.body, `<option value="`+subs["acme"]+`"`) || strings.Contains(p.body, subs["globex"]) {
		t.Fatalf("portal recover choices: %s", p.body)
	}
	// Another application's subscription as a filter lists nothing.
	if p := v.get("/portal/attempts?subscription=" + subs["globex"]); len(rows(p.body)) != 0 {
		t.Fatal("the portal lists another application's subscription")
	}

	own := rows(p.body)[0].id
	if p := v.get("/portal/attempts/" + own); p.status != http.StatusOK || !strings.Contains(p.body, subs["acme"]) {
		t.Fatalf("own attempt: %d %s", p.status, p.body)
	}
	if p := v.get("/portal/events/" + mine); p.status != http.StatusOK || !strings.Contains(p.body, `name="subscription" value="`+subs["acme"]+`"`) {
		t.Fatalf("own event: %d %s", p.status, p.body)
	}
	for _, path := range []string{"/portal/attempts/" + theirAttempts.Data[0].ID, "/portal/events/" + theirs} {
		p := v.get(path)
		if p.status != http.StatusNotFound || strings.Contains(p.body, "secret_of_globex") || strings.Contains(p.body, subs["globex"]) {
			t.Fatalf("%s: %d %s", path, p.status, p.body)
		}
	}

	// Resend to its own subscription; another's is refused.
	r := v.post("/portal/resend", url.Values{"event_id": {mine}, "subscription": {subs["acme"]}, "back": {"/portal/events/" + mine}})
	if r.status != http.StatusSeeOther || r.location != "/portal/events/"+mine {
		t.Fatalf("portal resend: %d %q", r.status, r.location)
	}
	if p := v.get(r.location); !strings.Contains(p.body, "Queued for delivery: 1") {
		t.Fatalf("portal resend flash: %s", p.body)
	}
	r = v.post("/portal/resend", url.Values{"event_id": {theirs}, "subscription": {subs["globex"]}})
	if p := v.get(r.location); !strings.Contains(p.body, "Not resent:") || strings.Contains(p.body, "secret_of_globex") {
		t.Fatalf("resend of another's event: %s", p.body)
	}
	// Recover by its subscription (once the resend was attempted: a
	// delivery queued again and not attempted since is not recovered).
	testenv.Eventually(t, testenv.Timeout(20*time.Second), "the resent attempt", func() bool {
		return len(rows(v.get("/portal/attempts?event_id="+mine).body)) == 2
	})
	r = v.post("/portal/recover", url.Values{"subscription": {subs["acme"]}, "outcome": {"all"},
		"since": {time.Now().UTC().Add(-time.Hour).Format(time.RFC3339)}})
	if r.status != http.StatusSeeOther {
		t.Fatalf("portal recover: %d %s", r.status, r.body)
	}
	if p := v.get(r.location); !strings.Contains(p.body, "Recover done: queued for delivery: 1") {
		t.Fatalf("portal recover flash: %s", p.body)
	}
	// The console's pages are not the portal's.
	if p := v.get("/console/attempts"); p.status != http.StatusSeeOther {
		t.Fatalf("portal session on the console: %d", p.status)
	}
}
