package app

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookbus/hookbus/core/attempt"
	"github.com/hookbus/hookbus/core/subscription"
	"github.com/hookbus/hookbus/internal/testenv"
)

// logReceiver is a webhook endpoint whose answer to each request is
// answer(event id, the request's number for that id from 1); it counts
// the statuses it answered.
type logReceiver struct {
	srv    *httptest.Server
	answer func(id string, n int) (status int, body string)

	mu       sync.Mutex
	requests map[string]int
	statuses map[int]int
}

func newLogReceiver(t *testing.T, answer func(id string, n int) (int, string)) *logReceiver {
	r := &logReceiver{answer: answer, requests: map[string]int{}, statuses: map[int]int{}}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		_, _ = io.Copy(io.Discard, req.Body)
		id := req.Header.Get("Webhook-Id")
		r.mu.Lock()
		r.requests[id]++
		n := r.requests[id]
		r.mu.Unlock()
		status, body := r.answer(id, n)
		w.Header().Set("X-Receiver", "log")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
		r.mu.Lock()
		r.statuses[status]++
		r.mu.Unlock()
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *logReceiver) count(status int) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.statuses[status]
}

func (r *logReceiver) total() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.statuses {
		n += c
	}
	return n
}

const attemptLogConfig = `version: 1
server: {listen: "127.0.0.1:0", shutdown_timeout: 5s}
data_dir: DIR/data
queue: {driver: embedded}
reload: {watch: false}
STORE
sources:
  shop: {type: http}
sinks:
  partner:
    type: webhook
    config:
      url: URL/hooks
      secret: ` + testSecret + `
      timeout: 5s
      allow_private_networks: true
      headers: {Authorization: "Bearer s3cret-token", X-Tenant: shop}
      retry: {schedule: [50ms, 50ms]}
  partners:
    type: subscriptions
    config:
      allow_private_networks: true
      timeout: 5s
      retry: {schedule: [50ms, 50ms]}
pipelines:
  orders:
    from: [shop]
    to: [partner]
  platform:
    from: [shop]
    to: [partners]
`

// attemptLogStores are the stores the delivery log's app tests run on:
// SQLite under data_dir, and a fresh schema of the machine's PostgreSQL
// (required in CI, else skipped when it does not run), dropped at the end.
var attemptLogStores = []struct {
	name  string
	store func(t *testing.T) string // the store block of the configuration
}{
	{"sqlite", func(*testing.T) string { return "" }},
	{"postgres", func(t *testing.T) string {
		testenv.NeedService(t, "127.0.0.1:5432")
		const pg = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
		schema := fmt.Sprintf("hbapp_%d", time.Now().UnixNano())
		admin, err := sql.Open("pgx", pg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { admin.Close() })
		if _, err := admin.Exec(`CREATE SCHEMA ` + schema); err != nil {
			t.Fatal(err)
		}
		// Registered before the app's cleanup, so it runs after it.
		t.Cleanup(func() {
			if _, err := admin.Exec(`DROP SCHEMA ` + schema + ` CASCADE`); err != nil {
				t.Logf("drop schema %s: %v", schema, err)
			}
		})
		return `store: {driver: postgres, dsn: "` + pg + `&search_path=` + schema + `"}`
	}},
}

func attemptLogApp(t *testing.T, url, store string) *App {
	t.Helper()
	y := strings.NewReplacer("URL", url, "STORE", store).Replace(attemptLogConfig)
	a := startApp(t, loadConfig(t, y))
	if a.Attempts == nil {
		t.Fatal("the store keeps no delivery log (App.Attempts is nil)")
	}
	return a
}

// subscribe registers a subscription of application acme to url.
func subscribe(t *testing.T, a *App, url string) subscription.Subscription {
	t.Helper()
	ctx := context.Background()
	if _, err := a.Store.CreateApplication(ctx, subscription.Application{ID: "acme", Name: "Acme"}); err != nil && !errors.Is(err, subscription.ErrConflict) {
		t.Fatal(err)
	}
	sub, err := a.Store.CreateSubscription(ctx, subscription.Subscription{App: "acme", URL: url, EventTypes: []string{"order.*"},
		Secrets: []subscription.Secret{{Value: testSecret, Created: time.Now()}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Subscriptions.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	return sub
}

// attemptsOf lists the attempts f selects, oldest first.
func loggedAttempts(t *testing.T, a *App, f attempt.Filter) []attempt.Attempt {
	t.Helper()
	f.Limit = 500
	got, _, err := a.Attempts.ListAttempts(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	for i, j := 0, len(got)-1; i < j; i, j = i+1, j-1 {
		got[i], got[j] = got[j], got[i]
	}
	return got
}

// The delivery log of a running instance: a webhook sink's attempts with
// their outcome, number, status, error, capped response body, response
// headers, URL, webhook-id and redacted credentials; the subscriptions
// sink's name their application and subscription; the events are on
// record for each sink.
func TestDeliveryLogRecordsEveryAttempt(t *testing.T) {
	t.Parallel()
	for _, st := range attemptLogStores {
		t.Run(st.name, func(t *testing.T) {
			t.Parallel()
			testDeliveryLogRecordsEveryAttempt(t, st.store(t))
		})
	}
}

func testDeliveryLogRecordsEveryAttempt(t *testing.T, store string) {
	big := strings.Repeat("0123456789abcdef", 1024) // 16 KiB
	rcv := newLogReceiver(t, func(id string, n int) (int, string) {
		switch id {
		case "flaky":
			if n == 1 {
				return 503, "try later"
			}
		case "bad":
			return 400, "no such order"
		case "big":
			return 200, big
		}
		return 200, "ok"
	})
	a := attemptLogApp(t, rcv.srv.URL, store)
	sub := subscribe(t, a, rcv.srv.URL+"/sub")
	post(t, a, "shop", "application/json", `[
		{"id":"ok","type":"order.paid","application":"acme","data":{"n":1}},
		{"id":"flaky","type":"order.paid","data":{"n":2}},
		{"id":"bad","type":"order.paid","data":{"n":3}},
		{"id":"big","type":"order.paid","data":{"n":4}}]`)

	// Webhook sink: 1 + 2 + 1 + 1 attempts; the subscription: ok's.
	testenv.Eventually(t, 30*time.Second, "6 attempts on record", func() bool {
		return len(loggedAttempts(t, a, attempt.Filter{})) >= 6
	})
	type want struct {
		outcome attempt.Outcome
		status  int
		err     string
		body    string
	}
	for id, ws := range map[string][]want{
		"ok":    {{attempt.Delivered, 200, "", "ok"}},
		"flaky": {{attempt.Retry, 503, "HTTP 503: try later", "try later"}, {attempt.Delivered, 200, "", "ok"}},
		"bad":   {{attempt.Failed, 400, "HTTP 400: no such order", "no such order"}},
		"big":   {{attempt.Delivered, 200, "", big[:attempt.MaxResponseBody]}},
	} {
		got := loggedAttempts(t, a, attempt.Filter{EventID: id, Sink: "partner"})
		if len(got) != len(ws) {
			t.Fatalf("%s: %d attempts on record, want %d: %+v", id, len(got), len(ws), got)
		}
		for i, w := range ws {
			at := got[i]
			if at.Number != i+1 || at.Outcome != w.outcome || at.StatusCode != w.status || at.Error != w.err || string(at.ResponseBody) != w.body {
				t.Errorf("%s attempt %d: number %d, %s, status %d, error %q, body %d bytes; want %+v", id, i+1, at.Number, at.Outcome, at.StatusCode, at.Error, len(at.ResponseBody), w)
			}
			if at.URL != rcv.srv.URL+"/hooks" || at.WebhookID != id || at.Pipeline != "orders" || at.Source != "shop" || at.EventType != "order.paid" {
				t.Errorf("%s attempt %d: url %q webhook-id %q pipeline %q source %q type %q", id, i+1, at.URL, at.WebhookID, at.Pipeline, at.Source, at.EventType)
			}
			if at.RequestHeaders.Get("Authorization") != "[redacted]" || at.RequestHeaders.Get("X-Tenant") != "shop" ||
				at.RequestHeaders.Get("Webhook-Signature") == "" || at.ResponseHeaders.Get("X-Receiver") != "log" {
				t.Errorf("%s attempt %d: request headers %v, response headers %v", id, i+1, at.RequestHeaders, at.ResponseHeaders)
			}
			if at.ReceivedAt.IsZero() || at.StartedAt.Before(at.ReceivedAt) || at.Duration <= 0 {
				t.Errorf("%s attempt %d: received %v, started %v, took %v", id, i+1, at.ReceivedAt, at.StartedAt, at.Duration)
			}
		}
	}
	if got := loggedAttempts(t, a, attempt.Filter{EventID: "ok", Sink: "partner"}); got[0].Application != "acme" {
		t.Errorf("the event's application attribute is not on its attempt: %q", got[0].Application)
	}

	subs := loggedAttempts(t, a, attempt.Filter{Subscription: sub.ID})
	if len(subs) != 1 || subs[0].EventID != "ok" || subs[0].Application != "acme" || subs[0].Sink != "partners" ||
		subs[0].Outcome != attempt.Delivered || subs[0].URL != rcv.srv.URL+"/sub" || subs[0].WebhookID != "ok" {
		t.Fatalf("the subscription's attempts: %+v", subs)
	}
	if got := loggedAttempts(t, a, attempt.Filter{Application: "acme", Sink: "partners"}); len(got) != 1 {
		t.Errorf("by application: %+v", got)
	}

	evs, err := a.Attempts.GetEvent(context.Background(), "ok")
	if err != nil {
		t.Fatal(err)
	}
	sinks := map[string]attempt.Event{}
	for _, ev := range evs {
		sinks[ev.Sink] = ev
	}
	for _, s := range []string{"partner", "partners"} {
		ev, ok := sinks[s]
		if !ok || ev.Type != "order.paid" || ev.Source != "shop" || ev.Application != "acme" || ev.ReceivedAt.IsZero() ||
			!strings.Contains(string(ev.Payload), `"n":1`) {
			t.Errorf("event ok on record for %s: %+v (all: %+v)", s, ev, evs)
		}
	}
}

// store.attempt_log: false records nothing; the deliveries go on.
func TestDeliveryLogOff(t *testing.T) {
	t.Parallel()
	rcv := newLogReceiver(t, func(string, int) (int, string) { return 200, "ok" })
	a := attemptLogApp(t, rcv.srv.URL, "store: {attempt_log: false}")
	if a.attemptWriter != nil || a.recorder() != nil {
		t.Fatal("a delivery log writer runs with store.attempt_log false")
	}
	post(t, a, "shop", "application/json", `[{"id":"e1","type":"order.paid","data":{}},{"id":"e2","type":"order.paid","data":{}}]`)
	testenv.Eventually(t, 30*time.Second, "both delivered", func() bool { return rcv.count(200) == 2 })
	if got := loggedAttempts(t, a, attempt.Filter{}); len(got) != 0 {
		t.Fatalf("attempts recorded with the log off: %+v", got)
	}
	if _, err := a.Attempts.GetEvent(context.Background(), "e1"); !errors.Is(err, attempt.ErrNotFound) {
		t.Fatalf("event on record with the log off: %v", err)
	}
}

// The pruner deletes the events and attempts past their retention.
func TestDeliveryLogRetentionPrunes(t *testing.T) {
	t.Parallel()
	rcv := newLogReceiver(t, func(string, int) (int, string) { return 200, "ok" })
	a := attemptLogApp(t, rcv.srv.URL, "store: {event_retention: 1s, attempt_retention: 2s}")
	post(t, a, "shop", "application/json", `{"id":"old","type":"order.paid","data":{}}`)
	testenv.Eventually(t, 30*time.Second, "the attempt on record", func() bool { return len(loggedAttempts(t, a, attempt.Filter{EventID: "old"})) == 1 })
	if _, err := a.Attempts.GetEvent(context.Background(), "old"); err != nil {
		t.Fatal(err)
	}
	// Nothing is past retention yet: a pass deletes nothing of it.
	a.pruneAttemptLog(context.Background())
	if len(loggedAttempts(t, a, attempt.Filter{EventID: "old"})) != 1 {
		t.Fatal("pruned before its retention")
	}
	testenv.Eventually(t, 30*time.Second, "the event pruned", func() bool {
		a.pruneAttemptLog(context.Background())
		_, err := a.Attempts.GetEvent(context.Background(), "old")
		return errors.Is(err, attempt.ErrNotFound)
	})
	testenv.Eventually(t, 30*time.Second, "the attempt pruned", func() bool {
		a.pruneAttemptLog(context.Background())
		return len(loggedAttempts(t, a, attempt.Filter{EventID: "old"})) == 0
	})
}

// The figures of a sink and of a subscription equal the counts their
// receivers saw: N events of which a known share fails for good and a
// known share fails once.
func TestDeliveryLogStatsMatchTheReceivers(t *testing.T) {
	t.Parallel()
	for _, st := range attemptLogStores {
		t.Run(st.name, func(t *testing.T) {
			t.Parallel()
			testDeliveryLogStatsMatchTheReceivers(t, st.store(t))
		})
	}
}

func testDeliveryLogStatsMatchTheReceivers(t *testing.T, store string) {
	const n = 60
	answer := func(id string, req int) (int, string) {
		var i int
		_, _ = fmt.Sscanf(id, "e%d", &i)
		switch {
		case i%5 == 0:
			return 422, "rejected" // a fifth fails for good
		case i%10 == 1 && req == 1:
			// A tenth fails once: spread out, so that the subscription's
			// circuit (3 failures in a row) stays closed.
			return 503, "busy"
		}
		return 200, "ok"
	}
	hooks := newLogReceiver(t, answer)
	subRcv := newLogReceiver(t, answer)
	a := attemptLogApp(t, hooks.srv.URL, store)
	sub := subscribe(t, a, subRcv.srv.URL)
	var b strings.Builder
	b.WriteString("[")
	for i := range n {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `{"id":"e%d","type":"order.paid","application":"acme","data":{}}`, i)
	}
	b.WriteString("]")
	if code, body := post(t, a, "shop", "application/json", b.String()); code != http.StatusAccepted {
		t.Fatalf("ingest: %d %v", code, body)
	}
	const failed, retried = n / 5, n / 10
	for _, r := range []*logReceiver{hooks, subRcv} {
		testenv.Eventually(t, 60*time.Second, "every delivery ended", func() bool { return r.count(200) == n-failed && r.count(422) == failed })
	}
	for _, c := range []struct {
		name  string
		scope attempt.Scope
		rcv   *logReceiver
	}{{"sink", attempt.Scope{Sink: "partner"}, hooks}, {"subscription", attempt.Scope{Sink: "partners", Subscription: sub.ID}, subRcv}} {
		var st attempt.Stats
		testenv.Eventually(t, 30*time.Second, c.name+": every attempt in the figures", func() bool {
			var err error
			st, err = a.Attempts.Stats(context.Background(), c.scope, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			return st.Attempts == int64(c.rcv.total())
		})
		if st.Delivered != int64(c.rcv.count(200)) || st.Failed != int64(c.rcv.count(422)) || st.Retried != int64(c.rcv.count(503)) ||
			st.Retried != retried || st.Attempts != st.Delivered+st.Failed+st.Retried {
			t.Errorf("%s: stats %+v; the receiver answered 200×%d, 422×%d, 503×%d", c.name, st, c.rcv.count(200), c.rcv.count(422), c.rcv.count(503))
		}
		wantRate := float64(n-failed) / float64(n+retried)
		wantDelivery := float64(n-failed) / float64(n)
		if math.Abs(st.SuccessRate-wantRate) > 1e-9 || math.Abs(st.DeliverySuccessRate-wantDelivery) > 1e-9 {
			t.Errorf("%s: success rate %v, delivery success rate %v; want %v and %v", c.name, st.SuccessRate, st.DeliverySuccessRate, wantRate, wantDelivery)
		}
		if st.LatencyP50 <= 0 || st.LatencyP99 < st.LatencyP50 || st.DelayP50 <= 0 || st.DelayP99 < st.DelayP50 {
			t.Errorf("%s: latency p50 %v p99 %v, delay p50 %v p99 %v", c.name, st.LatencyP50, st.LatencyP99, st.DelayP50, st.DelayP99)
		}
	}
}

// A reload applies the retentions (the pruner reads them at each pass)
// and refuses to turn the log off or on, naming store.attempt_log.
func TestDeliveryLogReload(t *testing.T) {
	t.Parallel()
	rcv := newLogReceiver(t, func(string, int) (int, string) { return 200, "ok" })
	a := attemptLogApp(t, rcv.srv.URL, "")
	b, err := os.ReadFile(a.boot.File)
	if err != nil {
		t.Fatal(err)
	}
	rewrite := func(store string) {
		t.Helper()
		y := strings.Replace(string(b), "reload: {watch: false}\n", "reload: {watch: false}\n"+store+"\n", 1)
		if err := os.WriteFile(a.boot.File, []byte(y), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	rewrite("store: {event_retention: 1h, attempt_retention: 2h}")
	if _, err := a.Reload(context.Background(), "test"); err != nil {
		t.Fatal(err)
	}
	if s := a.rt.Load().cfg.Store; s.EventRetention != time.Hour || s.AttemptRetention != 2*time.Hour {
		t.Fatalf("after the reload: store = %+v", s)
	}
	rewrite("store: {attempt_log: false}")
	_, err = a.Reload(context.Background(), "test")
	var re *ReloadError
	if !errors.As(err, &re) || len(re.Problems) != 1 || re.Problems[0].Path != "store.attempt_log" {
		t.Fatalf("reload turning the log off = %v, want refused naming store.attempt_log", err)
	}
	if a.recorder() == nil {
		t.Fatal("the log stopped recording")
	}
}
