package app

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookbus/hookbus/core/config"
	"github.com/hookbus/hookbus/core/signing"
	"github.com/hookbus/hookbus/sdk"
)

const testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// receiver is a webhook endpoint that verifies signatures and answers
// with a programmable status per event id.
type receiver struct {
	t      *testing.T
	srv    *httptest.Server
	secret signing.Secret
	mu     sync.Mutex
	got    []delivery
	plan   map[string][]response // event id -> answers in order; then 200
	delay  time.Duration
	badSig int
}

type response struct {
	status     int
	retryAfter string
}

type delivery struct {
	ID, WebhookID string
	Event         sdk.Event
	At            time.Time
}

func newReceiver(t *testing.T) *receiver {
	t.Helper()
	sec, err := signing.ParseSecret(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	r := &receiver{t: t, secret: sec, plan: map[string][]response{}}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	if err := signing.Verify(r.secret, req.Header.Get("webhook-id"), req.Header.Get("webhook-timestamp"), req.Header.Get("webhook-signature"), body, 5*time.Minute, time.Now()); err != nil {
		r.mu.Lock()
		r.badSig++
		r.mu.Unlock()
		http.Error(w, "bad signature: "+err.Error(), http.StatusUnauthorized)
		return
	}
	var ev sdk.Event
	if err := json.Unmarshal(body, &ev); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if r.delay > 0 {
		time.Sleep(r.delay)
	}
	r.mu.Lock()
	r.got = append(r.got, delivery{ID: ev.ID, WebhookID: req.Header.Get("webhook-id"), Event: ev, At: time.Now()})
	var resp response
	if p := r.plan[ev.ID]; len(p) > 0 {
		resp, r.plan[ev.ID] = p[0], p[1:]
	}
	r.mu.Unlock()
	if resp.retryAfter != "" {
		w.Header().Set("Retry-After", resp.retryAfter)
	}
	if resp.status != 0 {
		w.WriteHeader(resp.status)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (r *receiver) answer(id string, rs ...response) {
	r.mu.Lock()
	r.plan[id] = rs
	r.mu.Unlock()
}

// attempts returns every request received for an event id.
func (r *receiver) attempts(id string) []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []delivery
	for _, d := range r.got {
		if d.ID == id {
			out = append(out, d)
		}
	}
	return out
}

func (r *receiver) all() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]delivery(nil), r.got...)
}

// testConfig writes a config file for a memory-queue instance delivering
// to url, with the given pipeline steps, and loads it the way `hookbus run` does.
func testConfig(t *testing.T, driver, url string, steps string, extraSink string) *config.Config {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"only_paid.js", "reshape.js", "faulty.js"} {
		b, err := os.ReadFile(filepath.Join("testdata", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	y := `version: 1
server: {listen: "127.0.0.1:0", shutdown_timeout: 5s}
data_dir: ` + filepath.Join(dir, "data") + `
queue: {driver: ` + driver + `}
# Generous: the script deadline is not what these tests test, and a loaded
# machine under -race can stall a short call past 100ms.
scripts: {timeout: 1s}
sources:
  shop: {type: http}
sinks:
  partner:
    type: webhook
    config:
      url: ` + url + `
      secret: ` + testSecret + `
      timeout: 2s
      allow_private_networks: true
      retry: {schedule: [50ms, 50ms, 50ms]}
` + extraSink + `
pipelines:
  orders:
    from: [shop]
    steps:
` + steps + `
    to: [partner]
`
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path, config.LoadOptions{Env: []string{}, Checkers: Checkers(ScriptOptions(config.Default(), nil))})
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return cfg
}

func startApp(t *testing.T, cfg *config.Config) *App {
	t.Helper()
	a := runApp(t, cfg, testWriter{t})
	t.Cleanup(func() { stopApp(t, a) })
	return a
}

// runApp starts an instance that logs warnings and errors to w; the caller
// stops it with stopApp.
func runApp(t *testing.T, cfg *config.Config, w io.Writer) *App {
	t.Helper()
	log := slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
	a, err := New(context.Background(), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return a
}

func stopApp(t *testing.T, a *App) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// post sends a body to the ingest endpoint and returns status and body.
func post(t *testing.T, a *App, source, contentType, body string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Post("http://"+a.Addr()+"/v1/sources/"+source+"/events", contentType, bytes.NewReader([]byte(body)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

func getJSON(t *testing.T, a *App, path string, v any) {
	t.Helper()
	resp, err := http.Get("http://" + a.Addr() + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}
