package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/hookbus/hookbus/core/api"
	"github.com/hookbus/hookbus/core/attempt"
	"github.com/hookbus/hookbus/core/store"
)

// cliResender recovers through the store's Deliveries and MarkQueued (so
// a second recover queues nothing) and counts resends; queueing is the
// engine's, tested in core/app.
type cliResender struct {
	st      attempt.Store
	mu      sync.Mutex
	resends []attempt.ResendRequest
}

func (r *cliResender) Resend(ctx context.Context, req attempt.ResendRequest) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.resends = append(r.resends, req)
	return len(req.EventIDs), nil
}

func (r *cliResender) Recover(ctx context.Context, q attempt.RecoverQuery) (attempt.RecoverResult, error) {
	ds, _, next, err := r.st.Deliveries(ctx, q)
	if err != nil {
		return attempt.RecoverResult{}, err
	}
	marked, err := r.st.MarkQueued(ctx, ds)
	return attempt.RecoverResult{Queued: len(marked), Scanned: len(ds), Cursor: next}, err
}

// deliveryLogServer serves the API on st with the delivery log on, over
// loopback HTTP.
func deliveryLogServer(t *testing.T, st *store.Store) (string, attempt.Store, *cliResender) {
	t.Helper()
	var att attempt.Store = st
	res := &cliResender{st: att}
	srv := api.New(api.Options{APIKeys: []string{platformKey}, Store: st, Subscriptions: st, Attempts: att, Resender: res,
		SinkKnown: func(n string) bool { return n == "partner" || n == "everyone" }})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	return "http://" + ln.Addr().String(), att, res
}

// TestDeliveryLogCLI drives attempts, events, resend, recover and stats
// through the built binary against an API server on a real store
// (SQLite and PostgreSQL), in tables and in --json.
func TestDeliveryLogCLI(t *testing.T) {
	for _, tt := range []struct {
		name string
		open func(t *testing.T) *store.Store
	}{
		{"sqlite", func(t *testing.T) *store.Store {
			st, err := store.Open(t.Context(), "sqlite", "", t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			return st
		}},
		{"postgres", func(t *testing.T) *store.Store {
			st, err := store.Open(t.Context(), "postgres", postgresSchema(t), "")
			if err != nil {
				t.Fatal(err)
			}
			return st
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			st := tt.open(t)
			t.Cleanup(func() { st.Close() })
			url, att, res := deliveryLogServer(t, st)
			deliveryLogRoundTrip(t, url, att, res)
		})
	}
}

func deliveryLogRoundTrip(t *testing.T, url string, att attempt.Store, res *cliResender) {
	env := append(os.Environ(), "HOOKBUS_URL="+url)
	run := func(key string, args ...string) (string, string, int) {
		t.Helper()
		return runEnv(t, env, append(append([]string{}, args...), "--api-key", key)...)
	}
	ok := func(args ...string) (string, string) {
		t.Helper()
		out, stderr, code := run(platformKey, args...)
		if code != 0 {
			t.Fatalf("hookbus %v: exit %d\n%s%s", args, code, out, stderr)
		}
		return out, stderr
	}
	fails := func(key string, code int, want string, args ...string) {
		t.Helper()
		out, stderr, got := run(key, args...)
		if got != code || !strings.Contains(stderr, want) {
			t.Fatalf("hookbus %v: exit %d, want %d with %q\n%s%s", args, got, code, want, out, stderr)
		}
	}
	contains := func(what, out string, wants ...string) {
		t.Helper()
		for _, w := range wants {
			if !strings.Contains(out, w) {
				t.Errorf("%s lacks %q:\n%s", what, w, out)
			}
		}
	}

	ok("apps", "create", "--id", "acme", "--name", "Acme")
	var sub struct{ ID string }
	out, _ := ok("subscriptions", "create", "acme", "--endpoint", "https://acme.example/hooks", "-e", "*", "--json")
	if err := json.Unmarshal([]byte(out), &sub); err != nil {
		t.Fatal(err)
	}
	var tok struct{ Token string }
	out, _ = ok("tokens", "create", "acme", "--json")
	if err := json.Unmarshal([]byte(out), &tok); err != nil {
		t.Fatal(err)
	}

	// The log: order-1 retried then delivered to acme's subscription;
	// order-2 and order-3 failed at the webhook sink partner.
	now := time.Now().UTC()
	mk := func(ago time.Duration, ev, sink, subID string, n int, o attempt.Outcome, status int, body string) attempt.Attempt {
		start := now.Add(-ago)
		a := attempt.Attempt{ID: ulid.MustNew(ulid.Timestamp(start), rand.Reader).String(), EventID: ev, EventType: "order.paid",
			Sink: sink, Pipeline: "all", Source: "shop", Subscription: subID, Number: n, StartedAt: start, Duration: 25 * time.Millisecond,
			ReceivedAt: now.Add(-time.Minute), Outcome: o, StatusCode: status, URL: "https://acme.example/hooks", WebhookID: "msg_" + ev,
			ResponseBody: []byte(body), ResponseHeaders: http.Header{"Content-Type": {"text/plain"}}}
		if subID != "" {
			a.Application = "acme"
		}
		if o != attempt.Delivered {
			a.Error = "HTTP " + http.StatusText(status)
		}
		return a
	}
	rec := func(ev, sink, app string) *attempt.Event {
		payload, _ := json.Marshal(map[string]any{"id": ev, "type": "order.paid", "source": "shop", "data": map[string]any{"order": ev}})
		return &attempt.Event{ID: ev, Sink: sink, Pipeline: "all", Source: "shop", Type: "order.paid", Application: app,
			ReceivedAt: now.Add(-time.Minute), Payload: payload}
	}
	retry := mk(50*time.Second, "order-1", "everyone", sub.ID, 1, attempt.Retry, 503, "busy")
	done := mk(40*time.Second, "order-1", "everyone", sub.ID, 2, attempt.Delivered, 200, "thanks")
	f2 := mk(30*time.Second, "order-2", "partner", "", 1, attempt.Failed, 400, "bad order")
	f3 := mk(20*time.Second, "order-3", "partner", "", 1, attempt.Failed, 422, "no such customer")
	if err := att.WriteAttempts(context.Background(), []attempt.Entry{
		{Attempt: retry, Event: rec("order-1", "everyone", "acme")}, {Attempt: done},
		{Attempt: f2, Event: rec("order-2", "partner", "")}, {Attempt: f3, Event: rec("order-3", "partner", "")},
	}); err != nil {
		t.Fatal(err)
	}

	// attempts list: a table, filters, pages, --json.
	out, _ = ok("attempts", "list")
	contains("attempts list", out, "ID", "OUTCOME", "STATUS", retry.ID, done.ID, f2.ID, f3.ID, "order-1", "HTTP Bad Request")
	out, _ = ok("attempts", "list", "--application", "acme", "--subscription", sub.ID, "--outcome", "retry", "--since", "1h")
	if !strings.Contains(out, retry.ID) || strings.Contains(out, done.ID) || strings.Contains(out, f2.ID) {
		t.Errorf("list of acme's retries:\n%s", out)
	}
	out, stderr := ok("attempts", "list", "--sink", "partner", "--limit", "1")
	if !strings.Contains(out, f3.ID) || strings.Contains(out, f2.ID) || !strings.Contains(stderr, "more: --cursor") {
		t.Errorf("one page of one:\n%s%s", out, stderr)
	}
	var page struct {
		Data       []api.AttemptJSON
		NextCursor *string `json:"next_cursor"`
	}
	out, _ = ok("attempts", "list", "--sink", "partner", "--limit", "1", "--all-pages", "--json")
	if err := json.Unmarshal([]byte(out), &page); err != nil || len(page.Data) != 2 || page.NextCursor != nil ||
		page.Data[0].ID != f3.ID || page.Data[1].ID != f2.ID {
		t.Fatalf("--all-pages --json: %+v %v\n%s", page, err, out)
	}
	out, _ = ok("attempts", "list", "--status", "422", "--until", now.Format(time.RFC3339Nano), "--json")
	if err := json.Unmarshal([]byte(out), &page); err != nil || len(page.Data) != 1 || page.Data[0].ID != f3.ID {
		t.Fatalf("--status 422: %+v %v", page, err)
	}
	fails(platformKey, 1, "HTTP 422 validation_failed", "attempts", "list", "--outcome", "lost")
	fails(platformKey, 2, "--since", "attempts", "list", "--since", "yesterday")

	// attempts get, events get.
	out, _ = ok("attempts", "get", retry.ID)
	contains("attempts get", out, "OUTCOME", "retry", "STATUS", "503", "RESPONSE BODY", "busy", "RESPONSE HEADER", "Content-Type: text/plain",
		"WEBHOOK ID", "msg_order-1", "SUBSCRIPTION", sub.ID)
	var one api.AttemptJSON
	out, _ = ok("attempts", "get", done.ID, "--json")
	if err := json.Unmarshal([]byte(out), &one); err != nil || one.ResponseBody == nil || *one.ResponseBody != "thanks" || one.Number != 2 {
		t.Fatalf("attempts get --json: %+v %v", one, err)
	}
	fails(platformKey, 1, "HTTP 404 not_found", "attempts", "get", "01ARZ3NDEKTSV4RRFFQ69G5FAV")
	out, _ = ok("events", "get", "order-1")
	contains("events get", out, "ID", "order-1", "APPLICATION", "acme", "PAYLOAD (everyone)", `"order":"order-1"`, retry.ID, done.ID, "delivered")
	var ev api.EventJSON
	out, _ = ok("events", "get", "order-2", "--json")
	if err := json.Unmarshal([]byte(out), &ev); err != nil || len(ev.Records) != 1 || len(ev.Attempts) != 1 || ev.Attempts[0].ID != f2.ID {
		t.Fatalf("events get --json: %+v %v", ev, err)
	}
	fails(platformKey, 1, "HTTP 404 not_found", "events", "get", "order-none")

	// The application token: its own, through --application.
	fails(tok.Token, 1, "HTTP 403 forbidden", "attempts", "list")
	if out, stderr, code := run(tok.Token, "attempts", "list", "--application", "acme"); code != 0 || !strings.Contains(out, done.ID) || strings.Contains(out, f2.ID) {
		t.Fatalf("attempts list as acme: exit %d\n%s%s", code, out, stderr)
	}
	if out, stderr, code := run(tok.Token, "events", "get", "order-1", "--application", "acme"); code != 0 || !strings.Contains(out, done.ID) {
		t.Fatalf("events get as acme: exit %d\n%s%s", code, out, stderr)
	}
	fails(tok.Token, 1, "HTTP 404 not_found", "events", "get", "order-2", "--application", "acme")
	fails(tok.Token, 1, "HTTP 404 not_found", "attempts", "get", f2.ID, "--application", "acme")

	// resend.
	out, _ = ok("resend", "--subscription", sub.ID, "order-1")
	contains("resend", out, "queued 1")
	out, _ = ok("resend", "--sink", "partner", "order-2", "order-3", "--json")
	var rs api.ResendJSON
	if err := json.Unmarshal([]byte(out), &rs); err != nil || rs.Queued != 2 {
		t.Fatalf("resend --json: %s %v", out, err)
	}
	if out, stderr, code := run(tok.Token, "resend", "--application", "acme", "--subscription", sub.ID, "order-1"); code != 0 || !strings.Contains(out, "queued 1") {
		t.Fatalf("resend as acme: exit %d\n%s%s", code, out, stderr)
	}
	res.mu.Lock()
	if len(res.resends) != 3 || res.resends[0].Subscription != sub.ID || res.resends[1].Sink != "partner" || res.resends[2].Application != "acme" {
		t.Errorf("resends asked: %+v", res.resends)
	}
	res.mu.Unlock()
	fails(platformKey, 2, "give --subscription or --sink", "resend", "order-1")
	fails(platformKey, 2, "give --subscription or --sink", "resend", "--sink", "partner", "--subscription", sub.ID, "order-1")
	fails(platformKey, 1, "HTTP 422 validation_failed", "resend", "--sink", "nosuch", "order-1")

	// recover: page by page with progress on stderr; the second run queues nothing.
	out, stderr = ok("recover", "--sink", "partner", "--since", "1h", "--page-size", "1")
	contains("recover", out, "queued 2 of 2 scanned")
	contains("recover progress", stderr, "queued 1 of 1 scanned (page 1)")
	out, _ = ok("recover", "--sink", "partner", "--since", "1h", "--json")
	var rc struct{ Queued, Scanned int }
	if err := json.Unmarshal([]byte(out), &rc); err != nil || rc.Queued != 0 {
		t.Fatalf("the same recover again: %s %v", out, err)
	}
	out, _ = ok("recover", "--application", "acme", "--subscription", sub.ID, "--since", now.Add(-time.Hour).Format(time.RFC3339), "--all")
	contains("recover --all", out, "queued 1 of 1 scanned")
	if out, stderr, code := run(tok.Token, "recover", "--application", "acme", "--subscription", sub.ID, "--since", "1h", "--all"); code != 0 || !strings.Contains(out, "queued 0 of 0 scanned") {
		t.Fatalf("recover as acme (already queued): exit %d\n%s%s", code, out, stderr)
	}
	fails(tok.Token, 1, "HTTP 422 validation_failed", "recover", "--application", "acme", "--since", "1h")
	fails(platformKey, 2, "give --subscription, --application or --sink", "recover", "--since", "1h")
	fails(platformKey, 2, "--since is required", "recover", "--sink", "partner")
	fails(tok.Token, 1, "HTTP 403 forbidden", "recover", "--sink", "partner", "--since", "1h")

	// stats.
	out, _ = ok("stats", "--subscription", "acme/"+sub.ID, "--window", "1h")
	contains("stats", out, "WINDOW", "1h", "ATTEMPTS", "DELIVERED", "SUCCESS RATE", "50.00%", "DELIVERY SUCCESS RATE", "100.00%", "LATENCY P99", " ms", "OLDEST WAITING")
	var s api.StatsJSON
	out, _ = ok("stats", "--sink", "partner", "--json")
	if err := json.Unmarshal([]byte(out), &s); err != nil || s.Window != "24h" || s.Attempts != 2 || s.Failed != 2 || s.DeliverySuccessRate != 0 {
		t.Fatalf("stats --sink --json: %+v %v", s, err)
	}
	if out, stderr, code := run(tok.Token, "stats", "--subscription", "acme/"+sub.ID); code != 0 || !strings.Contains(out, "ATTEMPTS") {
		t.Fatalf("stats as acme: exit %d\n%s%s", code, out, stderr)
	}
	fails(platformKey, 1, "HTTP 404 not_found", "stats", "--sink", "nosuch")
	fails(platformKey, 1, "HTTP 422 validation_failed", "stats", "--sink", "partner", "--window", "2h")
	fails(platformKey, 2, "want APP/SUB", "stats", "--subscription", sub.ID)
	out, _ = ok("stats", "--application", "acme", "--window", "1h")
	contains("stats --application", out, "WINDOW", "1h", "ATTEMPTS", "SUCCESS RATE", "50.00%", "ATTEMPTS OVER TIME")
	out, _ = ok("stats", "--application", "acme", "--window", "7d", "--json")
	s = api.StatsJSON{}
	if err := json.Unmarshal([]byte(out), &s); err != nil || s.Window != "7d" || s.Attempts == 0 || len(s.Series) != 168 {
		t.Fatalf("stats --application --json: %+v %v", s, err)
	}
	var total int64
	for _, p := range s.Series {
		total += p.Attempts
	}
	if total != s.Attempts {
		t.Errorf("stats --application: the series sums to %d attempts, the figures say %d", total, s.Attempts)
	}
	if out, stderr, code := run(tok.Token, "stats", "--application", "acme"); code != 0 || !strings.Contains(out, "ATTEMPTS") {
		t.Fatalf("stats --application as acme: exit %d\n%s%s", code, out, stderr)
	}
	fails(platformKey, 1, "HTTP 404 not_found", "stats", "--application", "nosuch")
	fails(platformKey, 2, "give --subscription APP/SUB, --application APP or --sink NAME", "stats", "--application", "acme", "--sink", "partner")
	fails(platformKey, 2, "give --subscription APP/SUB, --application APP or --sink NAME", "stats")
	fails(tok.Token, 1, "HTTP 403 forbidden", "stats", "--sink", "partner")
}

func TestSparkline(t *testing.T) {
	pts := func(n ...int64) []api.PointJSON {
		out := make([]api.PointJSON, len(n))
		for i, a := range n {
			out[i].Attempts = a
		}
		return out
	}
	for _, c := range []struct {
		in   []api.PointJSON
		want string
	}{
		{pts(0, 0, 0), "   "},
		{pts(0, 1, 7, 14), " ▁▄█"},
		{pts(5), "█"},
		{nil, ""},
	} {
		if got := sparkline(c.in); got != c.want {
			t.Errorf("sparkline(%v) = %q, want %q", c.in, got, c.want)
		}
	}
}
