package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookbus/hookbus/core/aggregate"
	"github.com/hookbus/hookbus/core/signing"
	"github.com/hookbus/hookbus/core/store"
	"github.com/hookbus/hookbus/internal/testenv"
)

// digestReceiver records the verified deliveries of digests: each body by
// webhook-id, every copy.
type digestReceiver struct {
	t      *testing.T
	URL    string
	secret signing.Secret
	mu     sync.Mutex
	bodies map[string][][]byte
	order  []string
	bad    int
}

func newDigestReceiver(t *testing.T) *digestReceiver {
	t.Helper()
	sec, err := signing.ParseSecret(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	r := &digestReceiver{t: t, secret: sec, bodies: map[string][][]byte{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, err := verifiedBody(r.secret, req)
		r.mu.Lock()
		defer r.mu.Unlock()
		if err != nil {
			r.bad++
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		id := req.Header.Get("webhook-id")
		if _, ok := r.bodies[id]; !ok {
			r.order = append(r.order, id)
		}
		r.bodies[id] = append(r.bodies[id], body)
		w.WriteHeader(http.StatusNoContent)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	r.URL = "http://" + ln.Addr().String() + "/hooks"
	return r
}

// digest is a delivered window's output as the tests read it.
type digest struct {
	ID      string            `json:"id"`
	Type    string            `json:"type"`
	Source  string            `json:"source"`
	Subject string            `json:"subject"`
	Time    time.Time         `json:"time"`
	Data    json.RawMessage   `json:"data"`
	Meta    map[string]string `json:"metadata"`
}

// digests returns one decoded body per distinct id, in arrival order,
// and fails the test when two copies of one id differ.
func (r *digestReceiver) digests() []digest {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []digest
	for _, id := range r.order {
		copies := r.bodies[id]
		var d digest
		if err := json.Unmarshal(copies[0], &d); err != nil {
			r.t.Fatalf("digest %s: %v: %s", id, err, copies[0])
		}
		for _, c := range copies[1:] {
			var other digest
			_ = json.Unmarshal(c, &other)
			if other.ID != d.ID || !bytes.Equal(other.Data, d.Data) {
				r.t.Errorf("two copies of %s differ:\n%s\n%s", id, copies[0], c)
			}
		}
		out = append(out, d)
	}
	return out
}

// batchEvents reads a default digest's data: the window's events.
func batchEvents(t *testing.T, d digest) []struct {
	ID   string          `json:"id"`
	Data json.RawMessage `json:"data"`
} {
	t.Helper()
	var evs []struct {
		ID   string          `json:"id"`
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(d.Data, &evs); err != nil {
		t.Fatalf("digest %s data: %v: %s", d.ID, err, d.Data)
	}
	return evs
}

// openWindows counts a pipeline's open windows in the instance's store
// (the SQLite file under data_dir, opened beside the running server).
func openWindows(t *testing.T, dataDir, pipeline string) int {
	t.Helper()
	s, err := store.Open(context.Background(), "sqlite", "", dataDir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	n, err := s.OpenWindows(context.Background(), pipeline)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func customerEvents(prefix, customer string, first, n int) string {
	var b strings.Builder
	b.WriteByte('[')
	for i := first; i < first+n; i++ {
		if i > first {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":"%s-%d","type":"order.paid","source":"shop","data":{"customer":"%s","amount":%d}}`, prefix, i, customer, i)
	}
	b.WriteByte(']')
	return b.String()
}

func mustPost(t *testing.T, addr, source, body string) {
	t.Helper()
	if st := postEvents(httpClient(), addr, source, body); st != http.StatusAccepted {
		t.Fatalf("post to %s: status %d", source, st)
	}
}

// Windows by count, by time and by key through the real binary: a window
// closes as soon as it holds max_events, or window after its first event;
// each key has its own; a script makes the digest, and the steps after
// the aggregate step run on it.
func TestAggregateWindowsByCountTimeAndKey(t *testing.T) {
	rcv := newDigestReceiver(t)
	addr := freeAddr(t)
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	writeFile(t, dir, "digest.js", `function aggregate(events, ctx) {
  var total = 0;
  for (var i = 0; i < events.length; i++) total += events[i].data.amount;
  return {type: "orders.digest", subject: ctx.key,
    data: {customer: ctx.key, orders: ctx.count, total: total, start: ctx.window_start, end: ctx.window_end, ids: events.map(function (e) { return e.id; })}};
}
`)
	writeFile(t, dir, "only_big.js", "function filter(event) { return event.data.amount >= 10; }\n")
	writeFile(t, dir, "stamp.js", "function transform(event, ctx) { event.metadata = {after: ctx.pipeline}; return event; }\n")
	cfg := writeConfig(t, dir, `version: 1
server: {listen: "`+addr+`", shutdown_timeout: 10s}
data_dir: `+dataDir+`
log: {level: warn}
sources:
  c: {type: http}
  t: {type: http}
  s: {type: http}
sinks:
  partner:
    type: webhook
    config: {url: `+rcv.URL+`, secret: `+testSecret+`, allow_private_networks: true, retry: {schedule: [100ms, 500ms]}}
pipelines:
  bycount:
    from: [c]
    steps:
      - aggregate: {key: data.customer, window: 1h, max_events: 3}
    to: [partner]
  bytime:
    from: [t]
    steps:
      - aggregate: {key: data.customer, window: 1500ms}
    to: [partner]
  scripted:
    from: [s]
    steps:
      - filter: only_big.js
      - aggregate: {key: data.customer, window: 1s, script: digest.js}
      - transform: stamp.js
    to: [partner]
`)
	startHookbus(t, cfg, addr)

	// By count: 7 events of A make two full windows of 3; A's seventh and
	// B's two wait for their hour.
	mustPost(t, addr, "c", customerEvents("a", "A", 1, 7))
	mustPost(t, addr, "c", customerEvents("b", "B", 1, 2))
	testenv.Eventually(t, testenv.Timeout(30*time.Second), "two full windows of A delivered", func() bool { return len(rcv.digests()) >= 2 })
	testenv.Eventually(t, testenv.Timeout(30*time.Second), "A's last event and B's in open windows", func() bool { return openWindows(t, dataDir, "bycount") == 2 })
	ds := rcv.digests()
	if len(ds) != 2 {
		t.Fatalf("%d digests, want 2: %+v", len(ds), ds)
	}
	// Source messages run concurrently: which six of A's seven fill the
	// windows is the order they were handled in.
	got := map[string]bool{}
	for _, d := range ds {
		if d.Type != "order.paid.batch" || d.Subject != "A" || d.Source != "shop" || !strings.HasPrefix(d.ID, "agg_") {
			t.Errorf("digest envelope %+v", d)
		}
		evs := batchEvents(t, d)
		if len(evs) != 3 {
			t.Errorf("a full window of %d events, want 3", len(evs))
		}
		for _, ev := range evs {
			if !strings.HasPrefix(ev.ID, "a-") || got[ev.ID] {
				t.Errorf("event %s in a full window of A (again?)", ev.ID)
			}
			got[ev.ID] = true
		}
	}

	// By time and by key: X's two events and Y's one close 1.5s after
	// each window's first event, one digest per key.
	sent := time.Now()
	mustPost(t, addr, "t", customerEvents("x", "X", 1, 2))
	mustPost(t, addr, "t", customerEvents("y", "Y", 1, 1))
	testenv.Eventually(t, testenv.Timeout(30*time.Second), "the time windows of X and Y delivered", func() bool { return len(rcv.digests()) >= 4 })
	if waited := time.Since(sent); waited < 1500*time.Millisecond {
		t.Fatalf("time windows closed after %s, before their 1.5s", waited)
	}
	byKey := map[string][]string{}
	for _, d := range rcv.digests()[2:] {
		for _, ev := range batchEvents(t, d) {
			byKey[d.Subject] = append(byKey[d.Subject], ev.ID)
		}
	}
	if strings.Join(byKey["X"], " ") != "x-1 x-2" || strings.Join(byKey["Y"], " ") != "y-1" || len(byKey) != 2 {
		t.Fatalf("time windows by key: %v", byKey)
	}

	// A script: the filter before the aggregate step drops the small
	// orders; the transform after it runs on the digest.
	mustPost(t, addr, "s", customerEvents("s", "S", 8, 5)) // amounts 8..12: 10, 11, 12 kept
	testenv.Eventually(t, testenv.Timeout(30*time.Second), "the scripted digest delivered", func() bool { return len(rcv.digests()) >= 5 })
	d := rcv.digests()[4]
	var data struct {
		Customer   string
		Orders     int
		Total      int
		Start, End time.Time
		IDs        []string
	}
	if err := json.Unmarshal(d.Data, &data); err != nil {
		t.Fatal(err)
	}
	slices.Sort(data.IDs)
	if d.Type != "orders.digest" || data.Customer != "S" || data.Orders != 3 || data.Total != 33 || !slices.Equal(data.IDs, []string{"s-10", "s-11", "s-12"}) {
		t.Fatalf("scripted digest %+v: %+v", d, data)
	}
	if d.Meta["after"] != "scripted" {
		t.Fatalf("the step after aggregate did not run on the digest: %+v", d)
	}
	if data.End.Sub(data.Start) != time.Second {
		t.Fatalf("window %s..%s, want 1s", data.Start, data.End)
	}
	// The id is derived from the pipeline, the key and the window start.
	if want := aggregate.OutputID("scripted", "S", data.Start); d.ID != want {
		t.Fatalf("digest id %s, want %s", d.ID, want)
	}
	if rcv.bad > 0 {
		t.Fatalf("%d deliveries failed verification", rcv.bad)
	}
}

// kill -9 with 30 open windows, then a restart: every accepted event is
// in exactly one delivered digest; a digest delivered twice is the same
// digest (same id, same events).
func TestAggregateSurvivesKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test")
	}
	const keys, perKey = 30, 10
	rcv := newDigestReceiver(t)
	addr := freeAddr(t)
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	cfg := writeConfig(t, dir, `version: 1
server: {listen: "`+addr+`", shutdown_timeout: 10s}
data_dir: `+dataDir+`
log: {level: warn}
sources:
  shop: {type: http}
sinks:
  partner:
    type: webhook
    config: {url: `+rcv.URL+`, secret: `+testSecret+`, allow_private_networks: true, retry: {schedule: [100ms, 500ms, 1s]}}
pipelines:
  digests:
    from: [shop]
    steps:
      - aggregate: {key: data.customer, window: 4s, max_events: 1000}
    to: [partner]
`)
	p := startHookbus(t, cfg, addr)
	var accepted []string
	post := func(round int) {
		for k := range keys {
			prefix := fmt.Sprintf("r%d-k%d", round, k)
			mustPost(t, addr, "shop", customerEvents(prefix, fmt.Sprintf("cust-%d", k), 0, perKey))
			for i := range perKey {
				accepted = append(accepted, fmt.Sprintf("%s-%d", prefix, i))
			}
		}
	}
	post(1)
	testenv.Eventually(t, testenv.Timeout(30*time.Second), "30 open windows", func() bool { return openWindows(t, dataDir, "digests") == keys })
	if n := len(rcv.digests()); n != 0 {
		t.Fatalf("%d digests before the windows' time", n)
	}
	p.kill()

	p = startHookbus(t, cfg, addr)
	post(2)
	want := map[string]bool{}
	for _, id := range accepted {
		want[id] = true
	}
	in := func() map[string]int {
		seen := map[string]int{}
		for _, d := range rcv.digests() {
			for _, ev := range batchEvents(t, d) {
				seen[ev.ID]++
			}
		}
		return seen
	}
	testenv.Eventually(t, testenv.Timeout(60*time.Second), "every accepted event in a delivered digest", func() bool { return len(in()) >= len(want) })
	for id, n := range in() {
		if !want[id] {
			t.Errorf("digest holds %s, never sent", id)
		}
		if n != 1 {
			t.Errorf("event %s is in %d distinct digests", id, n)
		}
	}
	if rcv.bad > 0 {
		t.Fatalf("%d deliveries failed verification", rcv.bad)
	}
	p.stop()
}

// Mistakes in an aggregate step are reported by `hookbus validate` with
// their key paths, all at once.
func TestAggregateConfigErrorsNameTheKeyPath(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "t.js", "function transform(e) { return e; }\n")
	path := writeConfig(t, dir, `version: 1
sources:
  shop: {type: http}
sinks:
  partner:
    type: webhook
    config: {url: "https://example.com/hooks", secret: `+testSecret+`}
pipelines:
  p:
    from: [shop]
    steps:
      - aggregate: {key: "data..customer", max_events: -1, max_keys: -2, script: nope.js}
      - aggregate: {window: 1m, windw: 2m}
      - transform: t.js
        aggregate: {window: 1m}
    to: [partner]
`)
	_, stderr, code := runExit(t, "", "validate", "--config", path)
	if code != 2 {
		t.Fatalf("exit code %d, want 2; stderr: %s", code, stderr)
	}
	for _, want := range []string{
		"pipelines.p.steps[0].aggregate.key: ",
		"pipelines.p.steps[0].aggregate.window: required",
		"pipelines.p.steps[0].aggregate.max_events: must be between 1 and 100000",
		"pipelines.p.steps[0].aggregate.max_keys: ",
		"pipelines.p.steps[0].aggregate.script: script nope.js not found",
		"pipelines.p.steps[1].aggregate.windw: unknown key",
		"pipelines.p.steps[1].aggregate: a pipeline has at most one aggregate step",
		"pipelines.p.steps[2]: set exactly one of filter, transform or aggregate",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("validate output lacks %q:\n%s", want, stderr)
		}
	}
}

// `hookbus test` runs an aggregate script's cases (events in, the digest
// out), and `hookbus script run` hands it several events as one window.
func TestAggregateScriptCasesAndRun(t *testing.T) {
	dir := t.TempDir()
	js := writeFile(t, dir, "digest.js", `function aggregate(events, ctx) {
  if (events.length === 0) return null;
  var total = 0;
  for (var i = 0; i < events.length; i++) total += events[i].data.amount;
  if (total < 0) throw new Error("negative total");
  return {type: "orders.digest", data: {customer: ctx.key, orders: ctx.count, total: total, end: ctx.window_end}};
}
`)
	writeFile(t, dir, "digest.cases.json", `[
  {"name": "two orders", "ctx": {"key": "c-1"},
   "events": [{"id": "o1", "type": "order.paid", "time": "2026-01-02T03:04:00Z", "data": {"amount": 5}},
              {"id": "o2", "type": "order.paid", "time": "2026-01-02T03:04:30Z", "data": {"amount": 7}}],
   "expect": [{"id": "`+aggregate.OutputID("test", "c-1", time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC))+`", "type": "orders.digest",
               "data": {"customer": "c-1", "orders": 2, "total": 12, "end": "2026-01-02T03:04:30Z"}}]},
  {"name": "wrong total", "events": [{"id": "o1", "type": "order.paid", "data": {"amount": 5}}],
   "expect": [{"type": "orders.digest", "data": {"total": 6}}]},
  {"name": "throws", "events": [{"id": "o1", "type": "order.paid", "data": {"amount": -5}}], "expect_error": "digest.js:5:"}
]`)
	out, _, code := runExit(t, "", "test", js)
	if code != 1 {
		t.Fatalf("exit %d, want 1:\n%s", code, out)
	}
	for _, want := range []string{
		"ok   " + js + ": two orders",
		"FAIL " + js + ": wrong total: output differs from expect",
		"ok   " + js + ": throws",
		"1 script, 3 cases: 2 passed, 1 failed",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	events := `[{"id":"o1","type":"order.paid","data":{"amount":5}},{"id":"o2","type":"order.paid","data":{"amount":7}}]`
	out, stderr, code := runExit(t, events, "script", "run", js, "--event", "-", "--key", "c-9")
	if code != 0 || !strings.Contains(out, `"total": 12`) || !strings.Contains(out, `"customer": "c-9"`) || !strings.Contains(out, `"kept": true`) {
		t.Fatalf("script run with an array: exit %d\n%s%s", code, out, stderr)
	}
	// A script without aggregate runs on each event of the array.
	tr := writeFile(t, dir, "double.js", "function transform(e) { e.data.amount *= 2; return e; }\n")
	out, stderr, code = runExit(t, events, "script", "run", tr, "--event", "-")
	var results []struct {
		Kept   bool
		Events []struct{ Data struct{ Amount int } }
	}
	if err := json.Unmarshal([]byte(out), &results); code != 0 || err != nil || len(results) != 2 || results[1].Events[0].Data.Amount != 14 {
		t.Fatalf("script run of a transform on an array: exit %d, %v\n%s%s", code, err, out, stderr)
	}
}

// Two instances on one NATS queue and one PostgreSQL store share the
// windows: events sent to either join the same key's window, the
// windows are closed by one instance or the other, and every event is in
// exactly one delivered digest; one instance killed meanwhile leaves its
// windows to the other.
func TestAggregateTwoInstancesSharePostgres(t *testing.T) {
	ns := natsNamespace(t, "hbagg")
	dsn := postgresSchema(t)
	rcv := newDigestReceiver(t)
	conf := func(addr string) string {
		dir := t.TempDir()
		return writeConfig(t, dir, `version: 1
server: {listen: "`+addr+`", shutdown_timeout: 10s}
data_dir: `+filepath.Join(dir, "data")+`
log: {level: warn}
queue: {driver: nats, url: "`+natsURL+`", namespace: `+ns+`}
store: {driver: postgres, dsn: "`+dsn+`"}
sources:
  shop: {type: http}
sinks:
  partner:
    type: webhook
    config: {url: `+rcv.URL+`, secret: `+testSecret+`, allow_private_networks: true, retry: {schedule: [100ms, 500ms, 1s]}}
pipelines:
  digests:
    from: [shop]
    steps:
      - aggregate: {key: data.customer, window: 2s}
    to: [partner]
`)
	}
	addrA, addrB := freeAddr(t), freeAddr(t)
	a := startHookbus(t, conf(addrA), addrA)
	b := startHookbus(t, conf(addrB), addrB)
	const keys, perKey = 20, 6
	var want []string
	for k := range keys {
		for half, addr := range []string{addrA, addrB} {
			prefix := fmt.Sprintf("k%d-h%d", k, half)
			mustPost(t, addr, "shop", customerEvents(prefix, fmt.Sprintf("cust-%d", k), 0, perKey/2))
			for i := range perKey / 2 {
				want = append(want, fmt.Sprintf("%s-%d", prefix, i))
			}
		}
	}
	a.kill() // b closes the windows a opened
	seen := func() map[string]int {
		n := map[string]int{}
		for _, d := range rcv.digests() {
			for _, ev := range batchEvents(t, d) {
				n[ev.ID]++
			}
		}
		return n
	}
	testenv.Eventually(t, testenv.Timeout(90*time.Second), "every event in a delivered digest", func() bool { return len(seen()) >= len(want) })
	got := seen()
	for _, id := range want {
		if got[id] != 1 {
			t.Errorf("event %s is in %d distinct digests", id, got[id])
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d distinct events in digests, want %d", len(got), len(want))
	}
	b.stop()
}
