package api

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/hookbus/hookbus/core/attempt"
	"github.com/hookbus/hookbus/core/store"
)

// testResender is the Resender the API tests give the server: it checks
// the events are on record (and the caller's application's), records
// what it was asked, and recovers with the store's Deliveries and
// MarkQueued (so a second recover queues nothing). Queueing itself is the
// engine's (core/app), tested there.
type testResender struct {
	st       attempt.Store
	mu       sync.Mutex
	resends  []attempt.ResendRequest
	recovers []attempt.RecoverQuery
}

func (r *testResender) Resend(ctx context.Context, req attempt.ResendRequest) (int, error) {
	r.mu.Lock()
	r.resends = append(r.resends, req)
	r.mu.Unlock()
	for _, id := range req.EventIDs {
		evs, err := r.st.GetEvent(ctx, id)
		if err != nil && !errors.Is(err, attempt.ErrNotFound) {
			return 0, err
		}
		if !slices.ContainsFunc(evs, func(ev attempt.Event) bool { return req.Application == "" || ev.Application == req.Application }) {
			return 0, fmt.Errorf("%w: no event %q on record", attempt.ErrNotFound, id)
		}
	}
	return len(req.EventIDs), nil
}

func (r *testResender) Recover(ctx context.Context, q attempt.RecoverQuery) (attempt.RecoverResult, error) {
	r.mu.Lock()
	r.recovers = append(r.recovers, q)
	r.mu.Unlock()
	ds, _, next, err := r.st.Deliveries(ctx, q)
	if err != nil {
		return attempt.RecoverResult{}, err
	}
	marked, err := r.st.MarkQueued(ctx, ds)
	if err != nil {
		return attempt.RecoverResult{}, err
	}
	return attempt.RecoverResult{Queued: len(marked), Scanned: len(ds), Cursor: next}, nil
}

func (r *testResender) last() (attempt.ResendRequest, attempt.RecoverQuery) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var rs attempt.ResendRequest
	var rq attempt.RecoverQuery
	if len(r.resends) > 0 {
		rs = r.resends[len(r.resends)-1]
	}
	if len(r.recovers) > 0 {
		rq = r.recovers[len(r.recovers)-1]
	}
	return rs, rq
}

// logFixture is a delivery log written through the store: event evt_1
// of acme (a retry then a delivery to subscription subA of the
// subscriptions sink "everyone", a delivery to the webhook sink
// "partner"), evt_2 of globex (failed without a response to subB), evt_3
// of no application (failed with a 400 at partner).
type logFixture struct {
	now                 time.Time
	subA, subB          SubscriptionJSON
	a1, a2, a3, e2, e3  attempt.Attempt
	acmeToken, globexTk string
}

func attemptID(t time.Time) string { return ulid.MustNew(ulid.Timestamp(t), rand.Reader).String() }

func eventRecord(id, typ, app, sink string, received time.Time) *attempt.Event {
	env := map[string]any{"id": id, "type": typ, "source": "shop", "data": map[string]any{"n": 1}}
	if app != "" {
		env["application"] = app
	}
	payload, _ := json.Marshal(env)
	return &attempt.Event{ID: id, Sink: sink, Pipeline: "all", Source: "shop", Type: typ, Application: app,
		ReceivedAt: received, Payload: payload, Metadata: map[string]string{"source": "shop"}}
}

func seedLog(t *testing.T, p *platform) logFixture {
	t.Helper()
	f := logFixture{now: time.Now().UTC().Truncate(time.Millisecond)}
	p.createApp("acme")
	p.createApp("globex")
	f.subA = p.createSub("acme", map[string]any{})
	f.subB = p.createSub("globex", map[string]any{})
	f.acmeToken = p.createToken("acme").Token
	f.globexTk = p.createToken("globex").Token
	at := func(d time.Duration) time.Time { return f.now.Add(d) }
	recv1, recv2, recv3 := at(-10*time.Second), at(-4500*time.Millisecond), at(-3500*time.Millisecond)
	base := func(start time.Time, ev, typ, app, sink, sub string, n int) attempt.Attempt {
		return attempt.Attempt{ID: attemptID(start), EventID: ev, EventType: typ, Sink: sink, Pipeline: "all", Source: "shop",
			Application: app, Subscription: sub, Number: n, StartedAt: start, ReceivedAt: map[string]time.Time{"evt_1": recv1, "evt_2": recv2, "evt_3": recv3}[ev]}
	}
	f.a1 = base(at(-9*time.Second), "evt_1", "order.paid", "acme", "everyone", f.subA.ID, 1)
	f.a1.Duration, f.a1.Outcome, f.a1.StatusCode, f.a1.Error = 120*time.Millisecond, attempt.Retry, 503, "HTTP 503"
	f.a1.URL, f.a1.WebhookID = "https://receiver.example/hooks", "msg_evt_1_a"
	f.a1.RequestHeaders = attempt.Redact(http.Header{"Authorization": {"Bearer partner-secret"}, "Webhook-Id": {"msg_evt_1_a"}, "Content-Type": {"application/json"}})
	f.a1.ResponseHeaders = http.Header{"Retry-After": {"5"}}
	f.a1.ResponseBody = []byte("busy, try later")
	f.a2 = base(at(-5*time.Second), "evt_1", "order.paid", "acme", "everyone", f.subA.ID, 2)
	f.a2.Duration, f.a2.Outcome, f.a2.StatusCode = 30*time.Millisecond, attempt.Delivered, 200
	f.a2.URL, f.a2.WebhookID, f.a2.ResponseBody = "https://receiver.example/hooks", "msg_evt_1_a", []byte{0xff, 0xfe, 0x00}
	f.a3 = base(at(-8*time.Second), "evt_1", "order.paid", "acme", "partner", "", 1)
	f.a3.Duration, f.a3.Outcome, f.a3.StatusCode = 50*time.Millisecond, attempt.Delivered, 204
	f.e2 = base(at(-4*time.Second), "evt_2", "user.created", "globex", "everyone", f.subB.ID, 1)
	f.e2.Duration, f.e2.Outcome, f.e2.Error = 10*time.Millisecond, attempt.Failed, "dial tcp 10.0.0.1:443: connection refused"
	f.e3 = base(at(-3*time.Second), "evt_3", "order.paid", "", "partner", "", 1)
	f.e3.Duration, f.e3.Outcome, f.e3.StatusCode, f.e3.Error = 20*time.Millisecond, attempt.Failed, 400, "HTTP 400"
	f.e3.ResponseBody = []byte(`{"error":"bad order"}`)
	entries := []attempt.Entry{
		{Attempt: f.a1, Event: eventRecord("evt_1", "order.paid", "acme", "everyone", recv1)},
		{Attempt: f.a3, Event: eventRecord("evt_1", "order.paid", "acme", "partner", recv1)},
		{Attempt: f.a2},
		{Attempt: f.e2, Event: eventRecord("evt_2", "user.created", "globex", "everyone", recv2)},
		{Attempt: f.e3, Event: eventRecord("evt_3", "order.paid", "", "partner", recv3)},
	}
	if err := p.att.WriteAttempts(t.Context(), entries); err != nil {
		t.Fatal(err)
	}
	return f
}

// ids lists the attempt ids of a list answer.
func attemptIDs(t *testing.T, a answer) ([]string, *string) {
	t.Helper()
	var l struct {
		Data       []AttemptJSON
		NextCursor *string `json:"next_cursor"`
	}
	a.json(t, &l)
	var out []string
	for _, x := range l.Data {
		if x.ResponseBody != nil || x.RequestHeaders != nil {
			t.Errorf("list item %s carries headers or a body", x.ID)
		}
		out = append(out, x.ID)
	}
	return out, l.NextCursor
}

func rfc(t time.Time) string { return url.QueryEscape(t.Format(time.RFC3339Nano)) }

// TestAttemptLog: the lists filter, page and scope as documented, one
// attempt carries its request and response, an event carries its records
// and attempts; application tokens see only their own application's.
func TestAttemptLog(t *testing.T) {
	eachStore(t, func(t *testing.T, st *store.Store) {
		p := newPlatform(t, st, nil)
		f := seedLog(t, p)
		a1, a2, a3, e2, e3 := f.a1.ID, f.a2.ID, f.a3.ID, f.e2.ID, f.e3.ID

		got, next := attemptIDs(t, p.must(http.StatusOK, "GET", "/v1/attempts", adminKey, nil))
		if want := []string{e3, e2, a2, a3, a1}; !slices.Equal(got, want) || next != nil {
			t.Fatalf("all attempts %v (next %v), want %v newest first", got, next, want)
		}
		for _, tt := range []struct {
			query string
			want  []string
		}{
			{"outcome=failed", []string{e3, e2}},
			{"outcome=retry", []string{a1}},
			{"status=503", []string{a1}},
			{"status=201", nil},
			{"sink=partner", []string{e3, a3}},
			{"application=acme", []string{a2, a3, a1}},
			{"subscription=" + f.subA.ID, []string{a2, a1}},
			{"event_id=evt_1", []string{a2, a3, a1}},
			{"event_type=user.created", []string{e2}},
			{"since=" + rfc(f.now.Add(-6*time.Second)), []string{e3, e2, a2}},
			{"since=" + rfc(f.now.Add(-9*time.Second)) + "&until=" + rfc(f.now.Add(-5*time.Second)), []string{a3, a1}},
			{"application=acme&outcome=delivered", []string{a2, a3}},
			{"sink=everyone&event_type=order.paid&status=200", []string{a2}},
		} {
			got, _ := attemptIDs(t, p.must(http.StatusOK, "GET", "/v1/attempts?"+tt.query, adminKey, nil))
			if !slices.Equal(got, tt.want) {
				t.Errorf("?%s: %v, want %v", tt.query, got, tt.want)
			}
		}
		// Pages of two, through the cursors, give them all once.
		var paged []string
		path := "/v1/attempts?limit=2"
		for pages := 0; ; pages++ {
			if pages > 5 {
				t.Fatal("the cursors do not end")
			}
			ids, next := attemptIDs(t, p.must(http.StatusOK, "GET", path, adminKey, nil))
			if len(ids) > 2 {
				t.Fatalf("page of %d with limit=2", len(ids))
			}
			paged = append(paged, ids...)
			if next == nil {
				break
			}
			path = "/v1/attempts?limit=2&cursor=" + url.QueryEscape(*next)
		}
		if want := []string{e3, e2, a2, a3, a1}; !slices.Equal(paged, want) {
			t.Fatalf("paged %v, want %v", paged, want)
		}

		// One attempt: request and response.
		var one AttemptJSON
		p.must(http.StatusOK, "GET", "/v1/attempts/"+a1, adminKey, nil).json(t, &one)
		if one.StatusCode == nil || *one.StatusCode != 503 || one.Outcome != "retry" || one.Number != 1 || one.DurationMS != 120 ||
			one.EventID != "evt_1" || one.EventType != "order.paid" || one.Sink != "everyone" || one.Application != "acme" ||
			one.Subscription != f.subA.ID || one.URL != "https://receiver.example/hooks" || one.WebhookID != "msg_evt_1_a" ||
			one.Error != "HTTP 503" || one.StartedAt != timeJSON(f.a1.StartedAt) || one.ReceivedAt == nil || *one.ReceivedAt != timeJSON(f.now.Add(-10*time.Second)) {
			t.Errorf("attempt %s: %+v", a1, one)
		}
		if one.ResponseBody == nil || *one.ResponseBody != "busy, try later" || one.ResponseBodyEncoding != BodyText {
			t.Errorf("response body %v (%s), want the text", one.ResponseBody, one.ResponseBodyEncoding)
		}
		if got := one.RequestHeaders["Authorization"]; !slices.Equal(got, []string{"[redacted]"}) {
			t.Errorf("Authorization sent as %q in the log, want redacted", got)
		}
		if got := one.ResponseHeaders["Retry-After"]; !slices.Equal(got, []string{"5"}) {
			t.Errorf("response headers %v", one.ResponseHeaders)
		}
		p.must(http.StatusOK, "GET", "/v1/attempts/"+a2, adminKey, nil).json(t, &one)
		if one.ResponseBody == nil || *one.ResponseBody != "//4A" || one.ResponseBodyEncoding != BodyBase64 {
			t.Errorf("binary response body %v (%s), want base64 //4A", one.ResponseBody, one.ResponseBodyEncoding)
		}
		var noResponse AttemptJSON
		p.must(http.StatusOK, "GET", "/v1/attempts/"+e2, adminKey, nil).json(t, &noResponse)
		if noResponse.StatusCode != nil || !strings.Contains(noResponse.Error, "connection refused") || noResponse.Outcome != "failed" {
			t.Errorf("attempt without a response: %+v", noResponse)
		}
		p.must(http.StatusNotFound, "GET", "/v1/attempts/"+attemptID(f.now), adminKey, nil).problem(t)
		p.must(http.StatusNotFound, "GET", "/v1/attempts/not-an-id", adminKey, nil).problem(t)

		// An event with both its records and all its attempts.
		var ev EventJSON
		p.must(http.StatusOK, "GET", "/v1/events/evt_1", adminKey, nil).json(t, &ev)
		sinks := []string{}
		for _, r := range ev.Records {
			sinks = append(sinks, r.Sink)
			var env map[string]any
			if err := json.Unmarshal(r.Payload, &env); err != nil || env["id"] != "evt_1" || env["application"] != "acme" {
				t.Errorf("record %s payload %s", r.Sink, r.Payload)
			}
		}
		slices.Sort(sinks)
		var evAttempts []string
		for _, a := range ev.Attempts {
			evAttempts = append(evAttempts, a.ID)
		}
		if ev.ID != "evt_1" || ev.Type != "order.paid" || ev.Application != "acme" || !slices.Equal(sinks, []string{"everyone", "partner"}) ||
			!slices.Equal(evAttempts, []string{a2, a3, a1}) || ev.AttemptsNextCursor != nil || ev.ReceivedAt == nil {
			t.Errorf("event evt_1: %+v (sinks %v, attempts %v)", ev, sinks, evAttempts)
		}
		if ev.Attempts[2].ResponseBody == nil || *ev.Attempts[2].ResponseBody != "busy, try later" {
			t.Errorf("an event's attempts carry what the endpoint answered: %+v", ev.Attempts[2])
		}
		var ev3 EventJSON
		p.must(http.StatusOK, "GET", "/v1/events/evt_3", adminKey, nil).json(t, &ev3)
		if len(ev3.Records) != 1 || ev3.Application != "" || len(ev3.Attempts) != 1 || ev3.Attempts[0].ID != e3 {
			t.Errorf("event evt_3: %+v", ev3)
		}
		p.must(http.StatusNotFound, "GET", "/v1/events/evt_none", adminKey, nil).problem(t)

		// An application token: its own application's attempts and events only.
		tok := f.acmeToken
		// Its deliveries to its subscriptions: not a3, the operator's
		// webhook sink partner, which acme's event also reached.
		got, _ = attemptIDs(t, p.must(http.StatusOK, "GET", "/v1/applications/acme/attempts", tok, nil))
		if want := []string{a2, a1}; !slices.Equal(got, want) {
			t.Errorf("acme's attempts %v, want %v", got, want)
		}
		got, _ = attemptIDs(t, p.must(http.StatusOK, "GET", "/v1/applications/acme/attempts?sink=partner", adminKey, nil))
		if len(got) != 0 {
			t.Errorf("acme's attempts at partner %v, want none: not a delivery to its subscriptions", got)
		}
		got, _ = attemptIDs(t, p.must(http.StatusOK, "GET", "/v1/applications/acme/attempts?outcome=failed", tok, nil))
		if len(got) != 0 {
			t.Errorf("acme's failed attempts %v, want none (the failures are globex's and no one's)", got)
		}
		got, _ = attemptIDs(t, p.must(http.StatusOK, "GET", "/v1/applications/globex/attempts", adminKey, nil))
		if !slices.Equal(got, []string{e2}) {
			t.Errorf("globex's attempts for the admin %v", got)
		}
		pr := p.must(http.StatusUnprocessableEntity, "GET", "/v1/applications/acme/attempts?application=globex", tok, nil).problem(t)
		fieldError(t, pr, "application")
		p.must(http.StatusOK, "GET", "/v1/applications/acme/attempts?application=acme", tok, nil)
		p.must(http.StatusOK, "GET", "/v1/applications/acme/attempts/"+a1, tok, nil)
		var scoped EventJSON
		p.must(http.StatusOK, "GET", "/v1/applications/acme/events/evt_1", tok, nil).json(t, &scoped)
		if len(scoped.Records) != 1 || scoped.Records[0].Sink != "everyone" || len(scoped.Attempts) != 2 || scoped.Attempts[0].ID != a2 {
			t.Errorf("acme's view of evt_1 (its subscription's records and attempts only): %+v", scoped)
		}
		for _, path := range []string{
			"/v1/applications/acme/attempts/" + e2, // globex's attempt
			"/v1/applications/acme/attempts/" + e3, // no application's
			"/v1/applications/acme/attempts/" + a3, // acme's event, at the operator's sink
			"/v1/applications/acme/events/evt_2",   // globex's event
			"/v1/applications/acme/events/evt_3",
			"/v1/applications/globex/attempts",
			"/v1/applications/globex/attempts/" + e2,
			"/v1/applications/globex/events/evt_2",
			"/v1/applications/nosuch/attempts",
		} {
			p.must(http.StatusNotFound, "GET", path, tok, nil).problem(t)
		}
		p.must(http.StatusNotFound, "GET", "/v1/applications/globex/events/evt_1", adminKey, nil).problem(t)
		p.must(http.StatusNotFound, "GET", "/v1/applications/globex/attempts/"+a1, adminKey, nil).problem(t)
		for _, path := range []string{"/v1/attempts", "/v1/attempts/" + a1, "/v1/events/evt_1", "/v1/sinks/partner/stats"} {
			p.must(http.StatusForbidden, "GET", path, tok, nil).problem(t)
		}
		p.must(http.StatusUnauthorized, "GET", "/v1/applications/acme/attempts", "", nil).problem(t)
	})
}

// TestAttemptQueryValidation: a bad filter value, or a parameter that is
// no filter, is a 422 naming it (a misspelt filter would widen the list).
func TestAttemptQueryValidation(t *testing.T) {
	eachStore(t, func(t *testing.T, st *store.Store) {
		p := newPlatform(t, st, nil)
		p.createApp("acme")
		for _, tt := range []struct{ query, field string }{
			{"outcome=lost", "outcome"},
			{"status=abc", "status"},
			{"status=99", "status"},
			{"status=600", "status"},
			{"since=yesterday", "since"},
			{"until=2026-13-01T00:00:00Z", "until"},
			{"since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z", "until"},
			{"since=2026-01-02T00:00:00Z&until=2026-01-02T00:00:00Z", "until"},
			{"limit=0", "limit"},
			{"limit=501", "limit"},
			{"limit=ten", "limit"},
			{"outcomes=failed", "outcomes"},
			{"event_type=order%20paid", "event_type"},
			{"event_type=order.*", "event_type"},
			{"sink=", "sink"},
			{"sink=a&sink=b", "sink"},
			{"application=" + strings.Repeat("a", 300), "application"},
			{"cursor=not-a-cursor", "cursor"},
		} {
			for _, path := range []string{"/v1/attempts?", "/v1/applications/acme/attempts?"} {
				a := p.do("GET", path+tt.query, adminKey, nil)
				if a.status != http.StatusUnprocessableEntity {
					t.Errorf("%s%s: %d, want 422: %s", path, tt.query, a.status, a.body)
					continue
				}
				fieldError(t, a.problem(t), tt.field)
			}
		}
		// Every error at once.
		pr := p.must(http.StatusUnprocessableEntity, "GET", "/v1/attempts?outcome=x&status=y&limit=0", adminKey, nil).problem(t)
		for _, f := range []string{"outcome", "status", "limit"} {
			fieldError(t, pr, f)
		}
		p.must(http.StatusOK, "GET", "/v1/attempts?since=2026-01-02T00:00:00.5%2B02:00&limit=500", adminKey, nil)
	})
}

// TestResendAndRecover: the requests are validated (each error names its
// member), scoped to the path's application, and handed to the
// Resender; a recover run twice queues each delivery once.
func TestResendAndRecover(t *testing.T) {
	eachStore(t, func(t *testing.T, st *store.Store) {
		p := newPlatform(t, st, &Options{APIKeys: []string{adminKey},
			SinkKnown: func(n string) bool { return n == "partner" || n == "everyone" }})
		f := seedLog(t, p)
		many := make([]string, MaxResendEvents+1)
		for i := range many {
			many[i] = fmt.Sprintf("evt_%d", i)
		}
		for _, tt := range []struct {
			path   string
			body   any
			fields []string
		}{
			{"/v1/resend", map[string]any{"sink": "partner"}, []string{"event_ids"}},
			{"/v1/resend", map[string]any{"event_ids": []string{}, "sink": "partner"}, []string{"event_ids"}},
			{"/v1/resend", map[string]any{"event_ids": many, "sink": "partner"}, []string{"event_ids"}},
			{"/v1/resend", map[string]any{"event_ids": "evt_1", "sink": "partner"}, []string{"event_ids"}},
			{"/v1/resend", map[string]any{"event_ids": []string{"evt_1", "evt_1"}, "sink": "partner"}, []string{"event_ids[1]"}},
			{"/v1/resend", map[string]any{"event_ids": []string{""}, "sink": "partner"}, []string{"event_ids[0]"}},
			{"/v1/resend", map[string]any{"event_ids": []string{"evt_1"}}, []string{"subscription"}},
			{"/v1/resend", map[string]any{"event_ids": []string{"evt_1"}, "sink": "partner", "subscription": f.subA.ID}, []string{"sink"}},
			{"/v1/resend", map[string]any{"event_ids": []string{"evt_1"}, "sink": "nosuch"}, []string{"sink"}},
			{"/v1/resend", map[string]any{"event_ids": []string{"evt_1"}, "sink": "partner", "sinks": "x"}, []string{"sinks"}},
			{"/v1/applications/acme/resend", map[string]any{"event_ids": []string{"evt_1"}, "sink": "partner"}, []string{"sink"}},
			{"/v1/recover", map[string]any{}, []string{"subscription", "since"}},
			{"/v1/recover", map[string]any{"sink": "partner"}, []string{"since"}},
			{"/v1/recover", map[string]any{"sink": "partner", "since": "last week"}, []string{"since"}},
			{"/v1/recover", map[string]any{"sink": "partner", "since": 5}, []string{"since"}},
			{"/v1/recover", map[string]any{"sink": "partner", "since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, []string{"until"}},
			{"/v1/recover", map[string]any{"sink": "partner", "since": "2026-01-02T00:00:00Z", "outcome": "retry"}, []string{"outcome"}},
			{"/v1/recover", map[string]any{"sink": "partner", "since": "2026-01-02T00:00:00Z", "limit": 0}, []string{"limit"}},
			{"/v1/recover", map[string]any{"sink": "partner", "since": "2026-01-02T00:00:00Z", "limit": 1001}, []string{"limit"}},
			{"/v1/recover", map[string]any{"sink": "nosuch", "since": "2026-01-02T00:00:00Z"}, []string{"sink"}},
			{"/v1/recover", map[string]any{"sink": "partner", "since": "2026-01-02T00:00:00Z", "all": true}, []string{"all"}},
			{"/v1/applications/acme/recover", map[string]any{"application": "globex", "since": "2026-01-02T00:00:00Z", "subscription": f.subA.ID}, []string{"application"}},
			{"/v1/applications/acme/recover", map[string]any{"since": "2026-01-02T00:00:00Z"}, []string{"subscription"}},
			{"/v1/applications/acme/recover", map[string]any{"since": "2026-01-02T00:00:00Z", "sink": "partner"}, []string{"subscription", "sink"}},
			// An application cannot probe which sinks the operator runs.
			{"/v1/applications/acme/recover", map[string]any{"since": "2026-01-02T00:00:00Z", "subscription": f.subA.ID, "sink": "no-such-sink"}, []string{"sink"}},
		} {
			a := p.do("POST", tt.path, adminKey, tt.body)
			if a.status != http.StatusUnprocessableEntity {
				t.Errorf("POST %s %v: %d, want 422: %s", tt.path, tt.body, a.status, a.body)
				continue
			}
			pr := a.problem(t)
			for _, field := range tt.fields {
				fieldError(t, pr, field)
			}
		}
		p.must(http.StatusBadRequest, "POST", "/v1/resend", adminKey, "").problem(t)
		p.must(http.StatusBadRequest, "POST", "/v1/recover", adminKey, "[1]").problem(t)

		// Resend: handed over as asked; the scoped route names the application.
		var rs ResendJSON
		p.must(http.StatusAccepted, "POST", "/v1/resend", adminKey, map[string]any{"event_ids": []string{"evt_1", "evt_3"}, "sink": "partner"}).json(t, &rs)
		if req, _ := p.res.last(); rs.Queued != 2 || req.Sink != "partner" || req.Application != "" || !slices.Equal(req.EventIDs, []string{"evt_1", "evt_3"}) {
			t.Errorf("resend: %+v, asked %+v", rs, req)
		}
		p.must(http.StatusAccepted, "POST", "/v1/applications/acme/resend", f.acmeToken, map[string]any{"event_ids": []string{"evt_1"}, "subscription": f.subA.ID}).json(t, &rs)
		if req, _ := p.res.last(); rs.Queued != 1 || req.Subscription != f.subA.ID || req.Application != "acme" {
			t.Errorf("scoped resend: %+v, asked %+v", rs, req)
		}
		pr := p.must(http.StatusNotFound, "POST", "/v1/applications/acme/resend", f.acmeToken, map[string]any{"event_ids": []string{"evt_2"}, "subscription": f.subA.ID}).problem(t)
		if !strings.Contains(pr.Detail, "evt_2") {
			t.Errorf("404 does not name the event: %q", pr.Detail)
		}
		p.must(http.StatusNotFound, "POST", "/v1/resend", adminKey, map[string]any{"event_ids": []string{"evt_none"}, "sink": "partner"}).problem(t)

		// Recover: the failed deliveries of the range, each queued once.
		since := f.now.Add(-time.Hour).Format(time.RFC3339)
		var rc RecoverJSON
		p.must(http.StatusAccepted, "POST", "/v1/recover", adminKey, map[string]any{"sink": "partner", "since": since}).json(t, &rc)
		if _, q := p.res.last(); rc.Queued != 1 || rc.Scanned != 1 || rc.NextCursor != nil || q.Sink != "partner" || q.All || q.Limit != DefaultRecoverLimit ||
			!q.Since.Equal(f.now.Add(-time.Hour).Truncate(time.Second)) {
			t.Errorf("recover of partner's failures: %+v, asked %+v", rc, q)
		}
		p.must(http.StatusAccepted, "POST", "/v1/recover", adminKey, map[string]any{"sink": "partner", "since": since}).json(t, &rc)
		if rc.Queued != 0 {
			t.Errorf("the same recover again queued %d, want 0", rc.Queued)
		}
		p.must(http.StatusAccepted, "POST", "/v1/recover", adminKey, map[string]any{"application": "globex", "since": since, "until": f.now.Format(time.RFC3339Nano), "limit": 10}).json(t, &rc)
		if _, q := p.res.last(); rc.Queued != 1 || q.Application != "globex" || q.Limit != 10 || !q.Until.Equal(f.now) {
			t.Errorf("recover of globex: %+v, asked %+v", rc, q)
		}
		// The application's own subscription: nothing failed; all of it is
		// its one delivery there.
		own := map[string]any{"since": since, "subscription": f.subA.ID}
		p.must(http.StatusAccepted, "POST", "/v1/applications/acme/recover", f.acmeToken, own).json(t, &rc)
		if _, q := p.res.last(); rc.Queued != 0 || q.Application != "acme" || q.Subscription != f.subA.ID {
			t.Errorf("acme's failures: %+v, asked %+v", rc, q)
		}
		own["outcome"] = "all"
		p.must(http.StatusAccepted, "POST", "/v1/applications/acme/recover", f.acmeToken, own).json(t, &rc)
		if _, q := p.res.last(); rc.Queued != 1 || !q.All {
			t.Errorf("all of acme's: %+v, asked %+v", rc, q)
		}
		// Another application's subscription under acme's path selects nothing.
		p.must(http.StatusAccepted, "POST", "/v1/applications/acme/recover", f.acmeToken,
			map[string]any{"since": since, "subscription": f.subB.ID, "outcome": "all"}).json(t, &rc)
		if rc.Queued != 0 || rc.Scanned != 0 {
			t.Errorf("acme recovering globex's subscription: %+v", rc)
		}
		// Tokens: admin routes 403, another application 404.
		p.must(http.StatusForbidden, "POST", "/v1/resend", f.acmeToken, map[string]any{"event_ids": []string{"evt_1"}, "sink": "partner"}).problem(t)
		p.must(http.StatusForbidden, "POST", "/v1/recover", f.acmeToken, map[string]any{"sink": "partner", "since": since}).problem(t)
		p.must(http.StatusNotFound, "POST", "/v1/applications/globex/recover", f.acmeToken, map[string]any{"since": since, "subscription": f.subB.ID}).problem(t)
		p.must(http.StatusNotFound, "POST", "/v1/applications/globex/resend", f.acmeToken, map[string]any{"event_ids": []string{"evt_2"}, "subscription": f.subB.ID}).problem(t)
	})
}

// TestStats: a subscription's and a sink's figures from the log, the
// windows, and who may read them.
func TestStats(t *testing.T) {
	eachStore(t, func(t *testing.T, st *store.Store) {
		p := newPlatform(t, st, &Options{APIKeys: []string{adminKey},
			SinkKnown: func(n string) bool { return n == "partner" || n == "everyone" }})
		f := seedLog(t, p)
		subA := "/v1/applications/acme/subscriptions/" + f.subA.ID + "/stats"
		var s StatsJSON
		p.must(http.StatusOK, "GET", subA+"?window=1h", adminKey, nil).json(t, &s)
		// a1 retry (120 ms), a2 delivered (30 ms) 5.03 s after ingest. The
		// store's percentiles come from histogram buckets: near, not exact.
		if s.Window != "1h" || s.Attempts != 2 || s.Delivered != 1 || s.Retried != 1 || s.Failed != 0 || s.SuccessRate != 0.5 ||
			s.DeliverySuccessRate != 1 || !near(s.LatencyP99MS, 120) || s.LatencyP50MS < 0.75*30 || s.LatencyP50MS > s.LatencyP99MS ||
			!near(s.DelayP50MS, 5030) || !near(s.DelayP99MS, 5030) || s.OldestWaiting != nil {
			t.Errorf("subA stats: %+v", s)
		}
		p.must(http.StatusOK, "GET", subA, f.acmeToken, nil).json(t, &s)
		if s.Window != "24h" || s.Attempts != 2 {
			t.Errorf("subA stats, default window: %+v", s)
		}
		// An event waiting for its retry shows as oldest_waiting.
		waiting := f.now.Add(-2 * time.Second)
		retry := attempt.Attempt{ID: attemptID(f.now.Add(-time.Second)), EventID: "evt_4", EventType: "order.paid", Sink: "everyone",
			Application: "acme", Subscription: f.subA.ID, Number: 1, StartedAt: f.now.Add(-time.Second), Duration: time.Millisecond,
			ReceivedAt: waiting, Outcome: attempt.Retry, StatusCode: 500}
		if err := p.att.WriteAttempts(t.Context(), []attempt.Entry{{Attempt: retry, Event: eventRecord("evt_4", "order.paid", "acme", "everyone", waiting)}}); err != nil {
			t.Fatal(err)
		}
		p.must(http.StatusOK, "GET", subA+"?window=7d", adminKey, nil).json(t, &s)
		if s.Window != "7d" || s.Attempts != 3 || s.Retried != 2 || s.OldestWaiting == nil || *s.OldestWaiting != timeJSON(waiting) {
			t.Errorf("subA stats with one waiting: %+v", s)
		}
		p.must(http.StatusOK, "GET", "/v1/sinks/partner/stats", adminKey, nil).json(t, &s)
		if s.Attempts != 2 || s.Delivered != 1 || s.Failed != 1 || s.DeliverySuccessRate != 0.5 || s.SuccessRate != 0.5 || s.OldestWaiting != nil {
			t.Errorf("partner stats: %+v", s)
		}
		for _, q := range []string{"?window=2h", "?window=", "?window=1h&window=7d", "?windows=1h"} {
			for _, path := range []string{subA, "/v1/sinks/partner/stats"} {
				pr := p.must(http.StatusUnprocessableEntity, "GET", path+q, adminKey, nil).problem(t)
				if len(pr.Errors) == 0 {
					t.Errorf("%s%s: no field named", path, q)
				}
			}
		}
		p.must(http.StatusNotFound, "GET", "/v1/sinks/nosuch/stats", adminKey, nil).problem(t)
		p.must(http.StatusNotFound, "GET", "/v1/applications/acme/subscriptions/"+f.subB.ID+"/stats", adminKey, nil).problem(t)
		p.must(http.StatusNotFound, "GET", "/v1/applications/globex/subscriptions/"+f.subB.ID+"/stats", f.acmeToken, nil).problem(t)
		p.must(http.StatusOK, "GET", "/v1/applications/globex/subscriptions/"+f.subB.ID+"/stats", f.globexTk, nil).json(t, &s)
		if s.Attempts != 1 || s.Failed != 1 || s.DeliverySuccessRate != 0 {
			t.Errorf("subB stats: %+v", s)
		}
		p.must(http.StatusForbidden, "GET", "/v1/sinks/partner/stats", f.acmeToken, nil).problem(t)
	})
}

// seriesTotals sums the points of a series and checks their steps: n
// points, step apart, oldest first, the last one the step of the answer.
func seriesTotals(t *testing.T, s StatsJSON, n int, step time.Duration) (attempts, delivered, failed int64) {
	t.Helper()
	if len(s.Series) != n {
		t.Fatalf("%s series: %d points, want %d", s.Window, len(s.Series), n)
	}
	var prev time.Time
	for i, pt := range s.Series {
		start, err := time.Parse(time.RFC3339Nano, pt.Start)
		if err != nil || !start.Equal(start.Truncate(step)) || i > 0 && start.Sub(prev) != step {
			t.Fatalf("%s series: point %d starts at %q (%v) after %v", s.Window, i, pt.Start, err, prev)
		}
		prev = start
		want := 0.0
		if pt.Attempts > 0 {
			want = float64(pt.Delivered) / float64(pt.Attempts)
		}
		if pt.SuccessRate != want || pt.Delivered+pt.Failed > pt.Attempts || pt.Delivered == 0 && pt.DelayP99MS != 0 {
			t.Errorf("%s series: point %d = %+v", s.Window, i, pt)
		}
		attempts, delivered, failed = attempts+pt.Attempts, delivered+pt.Delivered, failed+pt.Failed
	}
	if last := time.Now().UTC().Truncate(step); prev.After(last) || prev.Before(last.Add(-step)) {
		t.Errorf("%s series: the last point starts at %v, now's step at %v", s.Window, prev, last)
	}
	return attempts, delivered, failed
}

// TestApplicationStats: an application's figures are those of its
// subscriptions; every stats answer carries its series; another
// application's token reads nothing.
func TestApplicationStats(t *testing.T) {
	eachStore(t, func(t *testing.T, st *store.Store) {
		p := newPlatform(t, st, &Options{APIKeys: []string{adminKey},
			SinkKnown: func(n string) bool { return n == "partner" || n == "everyone" }})
		f := seedLog(t, p)
		var s StatsJSON
		// acme: a1 (retry) and a2 (delivered) to its subscription; a3 went
		// to the operator's sink partner and is not acme's.
		p.must(http.StatusOK, "GET", "/v1/applications/acme/stats?window=1h", f.acmeToken, nil).json(t, &s)
		if s.Window != "1h" || s.Attempts != 2 || s.Delivered != 1 || s.Retried != 1 || s.Failed != 0 || s.SuccessRate != 0.5 ||
			!near(s.DelayP99MS, 5030) || s.OldestWaiting != nil {
			t.Errorf("acme stats: %+v", s)
		}
		if a, d, fl := seriesTotals(t, s, 60, time.Minute); a != 2 || d != 1 || fl != 0 {
			t.Errorf("acme 1h series sums to %d attempts, %d delivered, %d failed", a, d, fl)
		}
		p.must(http.StatusOK, "GET", "/v1/applications/acme/stats", adminKey, nil).json(t, &s)
		if s.Window != "24h" || s.Attempts != 2 {
			t.Errorf("acme stats, default window: %+v", s)
		}
		if a, _, _ := seriesTotals(t, s, 24, time.Hour); a != 2 {
			t.Errorf("acme 24h series sums to %d attempts", a)
		}
		p.must(http.StatusOK, "GET", "/v1/applications/globex/stats?window=7d", f.globexTk, nil).json(t, &s)
		if s.Attempts != 1 || s.Failed != 1 || s.SuccessRate != 0 {
			t.Errorf("globex stats: %+v", s)
		}
		if a, d, fl := seriesTotals(t, s, 168, time.Hour); a != 1 || d != 0 || fl != 1 {
			t.Errorf("globex 7d series sums to %d attempts, %d delivered, %d failed", a, d, fl)
		}
		// The other stats answers carry their series too.
		p.must(http.StatusOK, "GET", "/v1/sinks/partner/stats?window=1h", adminKey, nil).json(t, &s)
		if a, d, fl := seriesTotals(t, s, 60, time.Minute); a != 2 || d != 1 || fl != 1 {
			t.Errorf("partner 1h series sums to %d attempts, %d delivered, %d failed", a, d, fl)
		}
		p.must(http.StatusOK, "GET", "/v1/applications/acme/subscriptions/"+f.subA.ID+"/stats?window=7d", f.acmeToken, nil).json(t, &s)
		if a, _, _ := seriesTotals(t, s, 168, time.Hour); a != 2 {
			t.Errorf("subA 7d series sums to %d attempts", a)
		}
		// An application with no traffic: zeros, every step present.
		p.createApp("initech")
		p.must(http.StatusOK, "GET", "/v1/applications/initech/stats?window=1h", adminKey, nil).json(t, &s)
		if a, _, _ := seriesTotals(t, s, 60, time.Minute); a != 0 || s.Attempts != 0 {
			t.Errorf("initech stats: %+v", s)
		}

		// Tenancy: another application's token is 404, as for an unknown one.
		p.must(http.StatusNotFound, "GET", "/v1/applications/acme/stats", f.globexTk, nil).problem(t)
		p.must(http.StatusNotFound, "GET", "/v1/applications/globex/stats?window=1h", f.acmeToken, nil).problem(t)
		p.must(http.StatusNotFound, "GET", "/v1/applications/nosuch/stats", adminKey, nil).problem(t)
		p.must(http.StatusUnauthorized, "GET", "/v1/applications/acme/stats", "", nil).problem(t)
		for _, q := range []string{"?window=2h", "?window=", "?from=1h"} {
			pr := p.must(http.StatusUnprocessableEntity, "GET", "/v1/applications/acme/stats"+q, adminKey, nil).problem(t)
			if len(pr.Errors) == 0 {
				t.Errorf("application stats%s: no field named", q)
			}
		}
	})
}

// near tells whether a percentile the store estimated is within one of
// its histogram buckets (each 1.3 times as wide as the one before) of
// the exact one.
func near(got, want float64) bool { return got >= want/1.35 && got <= want*1.35 }
