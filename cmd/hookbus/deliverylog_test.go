package main

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookbus/hookbus/core/api"
	"github.com/hookbus/hookbus/internal/testenv"
)

// logReceiver is an endpoint for the delivery-log test: events whose id
// starts with "flaky-" get a 503 the first time, those starting with
// "fail-" a 400 until healed is set; the others, and those then, a 200.
type logReceiver struct {
	url    string
	healed atomic.Bool
	mu     sync.Mutex
	seen   map[string][]string // event id → the webhook-id of each request
	tries  map[string]int
}

func newLogReceiver(t *testing.T) *logReceiver {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &logReceiver{url: "http://" + ln.Addr().String() + "/hooks", seen: map[string][]string{}, tries: map[string]int{}}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		var ev struct{ ID string }
		_ = json.Unmarshal(body, &ev)
		r.mu.Lock()
		r.seen[ev.ID] = append(r.seen[ev.ID], req.Header.Get("webhook-id"))
		r.tries[ev.ID]++
		n := r.tries[ev.ID]
		r.mu.Unlock()
		switch {
		case strings.HasPrefix(ev.ID, "flaky-") && n == 1:
			w.Header().Set("Retry-After", "0")
			http.Error(w, "try again", http.StatusServiceUnavailable)
		case strings.HasPrefix(ev.ID, "fail-") && !r.healed.Load():
			http.Error(w, "unknown order "+ev.ID, http.StatusBadRequest)
		default:
			_, _ = w.Write([]byte("got " + ev.ID))
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return r
}

// requests is the webhook-ids of the requests event id got.
func (r *logReceiver) requests(id string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.seen[id]...)
}

// TestDeliveryLogEndToEnd: a running hookbus records its subscription
// deliveries (delivered, retried, failed), and the CLI finds them, shows
// the event and the figures, resends and recovers through the engine to
// the receiver, on SQLite and PostgreSQL.
func TestDeliveryLogEndToEnd(t *testing.T) {
	for _, tt := range []struct {
		name  string
		store func(t *testing.T) string
	}{
		{"sqlite", func(*testing.T) string { return "store: {driver: sqlite}" }},
		{"postgres", func(t *testing.T) string { return `store: {driver: postgres, dsn: "` + postgresSchema(t) + `"}` }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			addr := freeAddr(t)
			dir := t.TempDir()
			cfg := writeConfig(t, dir, `version: 1
server: {listen: "`+addr+`", api_keys: ["`+platformKey+`"]}
data_dir: `+filepath.Join(dir, "data")+`
log: {level: warn}
`+tt.store(t)+`
sources:
  shop: {type: http}
sinks:
  everyone:
    type: subscriptions
    config: {allow_private_networks: true, timeout: 5s, retry: {schedule: [100ms, 100ms]}}
pipelines:
  all: {from: [shop], to: [everyone]}
`)
			p := startHookbus(t, cfg, addr)
			defer p.stop()
			deliveryLogEndToEnd(t, "http://"+addr)
		})
	}
}

func deliveryLogEndToEnd(t *testing.T, url string) {
	env := append(os.Environ(), "HOOKBUS_URL="+url)
	run := func(key string, args ...string) (string, string, int) {
		t.Helper()
		return runEnv(t, env, append(append([]string{}, args...), "--api-key", key)...)
	}
	ok := func(args ...string) string {
		t.Helper()
		out, stderr, code := run(platformKey, args...)
		if code != 0 {
			t.Fatalf("hookbus %v: exit %d\n%s%s", args, code, out, stderr)
		}
		return out
	}
	list := func(args ...string) []api.AttemptJSON {
		t.Helper()
		var page struct{ Data []api.AttemptJSON }
		out := ok(append([]string{"attempts", "list", "--json", "--all-pages"}, args...)...)
		if err := json.Unmarshal([]byte(out), &page); err != nil {
			t.Fatalf("attempts list --json: %v\n%s", err, out)
		}
		return page.Data
	}
	rcv := newLogReceiver(t)
	ok("apps", "create", "--id", "acme", "--name", "Acme")
	var sub struct{ ID string }
	if err := json.Unmarshal([]byte(ok("subscriptions", "create", "acme", "--endpoint", rcv.url, "-e", "*", "--json")), &sub); err != nil {
		t.Fatal(err)
	}
	var tok struct{ Token string }
	if err := json.Unmarshal([]byte(ok("tokens", "create", "acme", "--json")), &tok); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"ok-1", "flaky-1", "fail-1"} {
		ok("send", "shop", "--type", "order.paid", "--application", "acme", "--id", id, "--data", `{"order":"`+id+`"}`)
	}
	// ok-1 delivered, flaky-1 retried then delivered, fail-1 failed: four attempts.
	testenv.Eventually(t, 30*time.Second, "four attempts in the log", func() bool { return len(list("--application", "acme")) == 4 })
	failed := list("--subscription", sub.ID, "--outcome", "failed")
	if len(failed) != 1 || failed[0].EventID != "fail-1" || failed[0].StatusCode == nil || *failed[0].StatusCode != 400 || failed[0].Number != 1 {
		t.Fatalf("failed attempts: %+v", failed)
	}
	got := ok("attempts", "get", failed[0].ID)
	for _, want := range []string{"OUTCOME", "failed", "STATUS", "400", "RESPONSE BODY", "unknown order fail-1", "URL", rcv.url, "WEBHOOK ID"} {
		if !strings.Contains(got, want) {
			t.Errorf("attempts get lacks %q:\n%s", want, got)
		}
	}
	var ev api.EventJSON
	if err := json.Unmarshal([]byte(ok("events", "get", "flaky-1", "--json")), &ev); err != nil {
		t.Fatal(err)
	}
	if len(ev.Records) != 1 || ev.Records[0].Sink != "everyone" || len(ev.Attempts) != 2 ||
		ev.Attempts[0].Outcome != "delivered" || ev.Attempts[0].Number != 2 || ev.Attempts[1].Outcome != "retry" ||
		ev.Attempts[0].WebhookID == "" || ev.Attempts[0].WebhookID != ev.Attempts[1].WebhookID {
		t.Fatalf("events get flaky-1: %+v", ev)
	}
	var payload struct{ Data struct{ Order string } }
	if err := json.Unmarshal(ev.Records[0].Payload, &payload); err != nil || payload.Data.Order != "flaky-1" {
		t.Fatalf("flaky-1's payload on record: %s %v", ev.Records[0].Payload, err)
	}
	var st api.StatsJSON
	if err := json.Unmarshal([]byte(ok("stats", "--subscription", "acme/"+sub.ID, "--window", "1h", "--json")), &st); err != nil {
		t.Fatal(err)
	}
	if st.Attempts != 4 || st.Delivered != 2 || st.Retried != 1 || st.Failed != 1 || st.SuccessRate != 0.5 || st.OldestWaiting != nil {
		t.Fatalf("stats: %+v", st)
	}
	if out, stderr, code := run(tok.Token, "attempts", "list", "--application", "acme", "--outcome", "failed"); code != 0 || !strings.Contains(out, failed[0].ID) {
		t.Fatalf("the application's token: exit %d\n%s%s", code, out, stderr)
	}
	// Resend: ok-1 again, with the same webhook-id.
	if out := ok("resend", "--subscription", sub.ID, "ok-1"); !strings.Contains(out, "queued 1") {
		t.Fatalf("resend: %s", out)
	}
	testenv.Eventually(t, 30*time.Second, "ok-1 delivered again", func() bool { return len(rcv.requests("ok-1")) == 2 })
	if ids := rcv.requests("ok-1"); ids[0] != ids[1] || ids[0] == "" {
		t.Errorf("webhook-ids of ok-1: %v, want the same twice", ids)
	}
	// Recover: fail-1, the one failed delivery, once however often it runs.
	rcv.healed.Store(true)
	if out := ok("recover", "--subscription", sub.ID, "--since", "1h"); !strings.Contains(out, "queued 1 of 1 scanned") {
		t.Fatalf("recover: %s", out)
	}
	if out := ok("recover", "--subscription", sub.ID, "--since", "1h"); !strings.Contains(out, "queued 0 of") {
		t.Fatalf("recover again: %s", out)
	}
	testenv.Eventually(t, 30*time.Second, "fail-1 recovered", func() bool {
		for _, a := range list("--event-id", "fail-1") {
			if a.Outcome == "delivered" {
				return true
			}
		}
		return false
	})
	if n := len(rcv.requests("fail-1")); n != 2 {
		t.Errorf("fail-1 reached the receiver %d times, want 2 (the failure, the one recovery)", n)
	}
}
