package console_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// deliveryMembers are a subscription's delivery options as the API gives them.
type deliveryMembers struct {
	Timeout       *string           `json:"timeout"`
	RetrySchedule []string          `json:"retry_schedule"`
	RetryOn       []json.RawMessage `json:"retry_on"`
	PermanentOn   []json.RawMessage `json:"permanent_on"`
}

// raw joins a list's JSON items ("401,\"5xx\"").
func raw(l []json.RawMessage) string {
	parts := make([]string, len(l))
	for i, r := range l {
		parts[i] = string(r)
	}
	return strings.Join(parts, ",")
}

func (e *env) delivery(t *testing.T, app, sub, bearer string) deliveryMembers {
	t.Helper()
	var d deliveryMembers
	if code := e.apiCall(t, http.MethodGet, "/v1/applications/"+app+"/subscriptions/"+sub, bearer, nil, &d); code != http.StatusOK {
		t.Fatalf("API: %d", code)
	}
	return d
}

func TestEndpointFormDeliveryOptions(t *testing.T) {
	e := newEnv(t, "")
	v := e.visitor(t)
	v.mustLogin()
	mustStatus(t, "applications", v.get("/console/applications"), http.StatusOK)
	mustStatus(t, "create application", v.post("/console/applications", url.Values{"name": {"Acme"}, "id": {"acme"}}), http.StatusSeeOther)
	hook := e.rcv.srv.URL + "/hook"

	p := v.get("/console/applications/acme")
	mustContain(t, "new form", p, `name="timeout"`, `name="retry_schedule"`, `name="no_retry"`, `name="retry_on"`, `name="permanent_on"`)

	// A bad duration and a code in both lists: each error at its field, the input kept, nothing created.
	bad := url.Values{"url": {hook}, "event_types": {"order.paid"}, "timeout": {"3s"}, "retry_schedule": {"10s, soon"},
		"retry_on": {"401 5xx"}, "permanent_on": {"404, 401"}}
	p = v.post("/console/applications/acme/subscriptions", bad)
	mustStatus(t, "bad schedule", p, http.StatusUnprocessableEntity)
	mustContain(t, "bad schedule", p, `data-testid="error-retry_schedule">Retry schedule entry 2: invalid duration &#34;soon&#34;`,
		`value="10s, soon"`, `value="401 5xx"`, `value="404, 401"`, `value="3s"`)
	bad.Set("retry_schedule", "10s 1m")
	p = v.post("/console/applications/acme/subscriptions", bad)
	mustStatus(t, "code in both lists", p, http.StatusUnprocessableEntity)
	mustContain(t, "code in both lists", p, `data-testid="error-permanent_on">Permanent on entry 2: 401 is in retry_on too`,
		`value="10s 1m"`, `value="404, 401"`)
	bad.Set("permanent_on", "404")
	bad.Set("timeout", "fast")
	p = v.post("/console/applications/acme/subscriptions", bad)
	mustStatus(t, "bad timeout", p, http.StatusUnprocessableEntity)
	mustContain(t, "bad timeout", p, `data-testid="error-timeout">Timeout invalid duration`, `value="fast"`)
	var list struct {
		Data []json.RawMessage `json:"data"`
	}
	e.apiCall(t, http.MethodGet, "/v1/applications/acme/subscriptions", adminKey, nil, &list)
	if len(list.Data) != 0 {
		t.Fatalf("refused forms created %d subscriptions", len(list.Data))
	}

	// All four set: on the page's facts, in the edit form and through the API.
	bad.Set("timeout", "3s")
	p = v.post("/console/applications/acme/subscriptions", bad)
	mustStatus(t, "create", p, http.StatusOK)
	l := subLink.FindStringSubmatch(p.body)
	if l == nil {
		t.Fatalf("no link on the answer: %s", p.body)
	}
	subPage, subID := l[1], l[2]
	d := e.delivery(t, "acme", subID, adminKey)
	if d.Timeout == nil || *d.Timeout != "3s" || strings.Join(d.RetrySchedule, ",") != "10s,1m0s" ||
		raw(d.RetryOn) != `401,"5xx"` || raw(d.PermanentOn) != "404" {
		t.Fatalf("created with %+v", d)
	}
	p = v.get(subPage)
	mustContain(t, "page", p, `data-testid="sub-timeout">3s<`, `data-testid="sub-retry_schedule">10s, 1m0s<`,
		`data-testid="sub-retry_on">401, 5xx<`, `data-testid="sub-permanent_on">404<`,
		`name="timeout" type="text" value="3s"`, `name="retry_schedule" type="text" value="10s, 1m0s"`,
		`name="retry_on" type="text" value="401, 5xx"`, `name="permanent_on" type="text" value="404"`)

	// Edit: a single attempt; a bad item is shown by its field with the input kept.
	edit := url.Values{"url": {hook}, "event_types": {"order.paid"}, "timeout": {"3s"}, "no_retry": {"true"},
		"retry_on": {"401 5xx"}, "permanent_on": {"404 200"}}
	p = v.post(subPage+"/edit", edit)
	mustStatus(t, "bad edit", p, http.StatusUnprocessableEntity)
	mustContain(t, "bad edit", p, `data-testid="error-permanent_on">Permanent on entry 2: status 200 cannot be listed`, `value="404 200"`)
	edit.Set("permanent_on", "")
	edit.Set("retry_schedule", "1m")
	p = v.post(subPage+"/edit", edit)
	mustStatus(t, "schedule and single attempt", p, http.StatusUnprocessableEntity)
	mustContain(t, "schedule and single attempt", p, `data-testid="error-retry_schedule"`, `value="1m"`)
	edit.Set("retry_schedule", "")
	mustStatus(t, "single attempt", v.post(subPage+"/edit", edit), http.StatusSeeOther)
	d = e.delivery(t, "acme", subID, adminKey)
	if d.RetrySchedule == nil || len(d.RetrySchedule) != 0 || d.PermanentOn != nil || raw(d.RetryOn) != `401,"5xx"` {
		t.Fatalf("after the single-attempt edit: %+v", d)
	}
	mustContain(t, "single attempt", v.get(subPage), `data-testid="sub-retry_schedule">a single attempt, no retries<`,
		`data-testid="sub-permanent_on">the sink&#39;s<`, `name="no_retry" type="checkbox" value="true" checked`)

	// Emptied fields go back to the sink's: null in the API.
	p = v.post(subPage+"/edit", url.Values{"url": {hook}, "event_types": {"order.paid"}})
	mustStatus(t, "clear", p, http.StatusSeeOther)
	d = e.delivery(t, "acme", subID, adminKey)
	if d.Timeout != nil || d.RetrySchedule != nil || d.RetryOn != nil || d.PermanentOn != nil {
		t.Fatalf("after clearing: %+v", d)
	}
	mustContain(t, "cleared", v.get(subPage), `data-testid="sub-timeout">the sink&#39;s<`,
		`data-testid="sub-retry_schedule">the sink&#39;s<`, `data-testid="sub-retry_on">the sink&#39;s<`)
}

func TestPortalSetsDeliveryOptions(t *testing.T) {
	e := newEnv(t, "")
	var app struct {
		ID string `json:"id"`
	}
	e.apiCall(t, http.MethodPost, "/v1/applications", adminKey, map[string]any{"name": "Mine"}, &app)
	v := e.visitor(t)
	link := e.portalLink(t, app.ID, "")
	v.openPortal(link)
	mustContain(t, "portal start", v.get("/portal/"), `name="retry_on"`, `name="permanent_on"`)
	p := v.post("/portal/subscriptions", url.Values{"url": {e.rcv.srv.URL + "/mine"}, "event_types": {"*"},
		"timeout": {"2s"}, "retry_schedule": {"5s"}, "retry_on": {"409"}, "permanent_on": {"5xx"}})
	mustStatus(t, "portal create", p, http.StatusOK)
	l := subLink.FindStringSubmatch(p.body)
	if l == nil {
		t.Fatalf("no link: %s", p.body)
	}
	d := e.delivery(t, app.ID, l[2], link.token)
	if d.Timeout == nil || *d.Timeout != "2s" || strings.Join(d.RetrySchedule, ",") != "5s" || raw(d.RetryOn) != "409" ||
		raw(d.PermanentOn) != `"5xx"` {
		t.Fatalf("portal created with %+v", d)
	}
	mustContain(t, "portal page", v.get("/portal/subscriptions/"+l[2]), `data-testid="sub-timeout">2s<`, `data-testid="sub-permanent_on">5xx<`)
}

// The endpoint form sets compression and batching: a bad limit is shown
// at its field with the input kept; the set options are on the page's
// facts, in the edit form and in the API; unchecked, they go back to off.
func TestEndpointFormBatchAndCompression(t *testing.T) {
	e := newEnv(t, "")
	v := e.visitor(t)
	v.mustLogin()
	mustStatus(t, "applications", v.get("/console/applications"), http.StatusOK)
	mustStatus(t, "create application", v.post("/console/applications", url.Values{"name": {"Acme"}, "id": {"acme"}}), http.StatusSeeOther)
	hook := e.rcv.srv.URL + "/hook"
	mustContain(t, "new form", v.get("/console/applications/acme"), `name="compression"`, `name="batch"`, `name="batch_max_events"`, `name="batch_max_wait"`)

	form := url.Values{"url": {hook}, "event_types": {"*"}, "compression": {"gzip"}, "batch": {"true"},
		"batch_max_events": {"5000"}, "batch_max_wait": {"2s"}}
	p := v.post("/console/applications/acme/subscriptions", form)
	mustStatus(t, "bad max events", p, http.StatusUnprocessableEntity)
	mustContain(t, "bad max events", p, `data-testid="error-batch_max_events">Batch max events must be 1 to 1000`, `value="5000"`)
	form.Set("batch_max_events", "50")
	p = v.post("/console/applications/acme/subscriptions", form)
	mustStatus(t, "create", p, http.StatusOK)
	l := subLink.FindStringSubmatch(p.body)
	if l == nil {
		t.Fatalf("no link on the answer: %s", p.body)
	}
	subPage, subID := l[1], l[2]
	var got struct {
		Compression *string `json:"compression"`
		Batch       *struct {
			MaxEvents int    `json:"max_events"`
			MaxBytes  int    `json:"max_bytes"`
			MaxWait   string `json:"max_wait"`
		} `json:"batch"`
	}
	e.apiCall(t, http.MethodGet, "/v1/applications/acme/subscriptions/"+subID, adminKey, nil, &got)
	if got.Compression == nil || *got.Compression != "gzip" || got.Batch == nil || got.Batch.MaxEvents != 50 || got.Batch.MaxWait != "2s" || got.Batch.MaxBytes != 1048576 {
		t.Fatalf("created with compression %v batch %+v", got.Compression, got.Batch)
	}
	mustContain(t, "page", v.get(subPage), `data-testid="sub-compression">gzip (bodies of 1 KiB or more)<`,
		`data-testid="sub-batch">up to 50 events or 1048576 bytes a request, waiting up to 2s<`,
		`name="compression" type="checkbox" value="gzip" checked`, `name="batch_max_events" type="text" inputmode="numeric" value="50"`)

	mustStatus(t, "off", v.post(subPage+"/edit", url.Values{"url": {hook}, "event_types": {"*"}}), http.StatusSeeOther)
	got.Compression, got.Batch = nil, nil
	e.apiCall(t, http.MethodGet, "/v1/applications/acme/subscriptions/"+subID, adminKey, nil, &got)
	if got.Compression != nil || got.Batch != nil {
		t.Fatalf("after unchecking: compression %v batch %+v", got.Compression, got.Batch)
	}
	mustContain(t, "off", v.get(subPage), `data-testid="sub-compression">none<`, `data-testid="sub-batch">one request per event<`)
}
