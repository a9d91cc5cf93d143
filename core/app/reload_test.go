package app

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookbus/hookbus/internal/testenv"
)

// Tests of what a reload does with plugin processes, sources and API keys,
// on a running instance: each rewrites its configuration file and calls
// Reload, as SIGHUP and POST /v1/admin/reload do.

// reloadHead starts every reloadable config: the file is not watched, so
// only the test's Reload calls apply it.
const reloadHead = configHead + "reload: {watch: false}\n"

// reloadable is an instance started from a configuration file the test
// rewrites and reloads.
type reloadable struct {
	t    *testing.T
	dir  string
	path string
	a    *App
	// tag marks this test's plugin processes (see pluginPids).
	tag string
}

// startReloadable writes y ("DIR" replaced with a fresh directory, "TAG"
// with the test's plugin tag) as the configuration file, loads it as
// `hookbus run` does (cfg.File set) and starts an instance from it.
func startReloadable(t *testing.T, y string) *reloadable {
	t.Helper()
	r := &reloadable{t: t, dir: t.TempDir(), tag: fmt.Sprintf("%d-%s", os.Getpid(), strings.ReplaceAll(t.Name(), "/", "-"))}
	r.path = filepath.Join(r.dir, "config.yaml")
	r.write(y)
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg, err := LoadConfig(r.path, log)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	r.a = startApp(t, cfg)
	return r
}

func (r *reloadable) write(y string) {
	r.t.Helper()
	y = strings.ReplaceAll(strings.ReplaceAll(y, "DIR", r.dir), "TAG", r.tag)
	if err := os.WriteFile(r.path, []byte(y), 0o644); err != nil {
		r.t.Fatal(err)
	}
}

// reload rewrites the configuration file with y and reloads it.
func (r *reloadable) reload(y string) (ReloadResult, error) {
	r.t.Helper()
	r.write(y)
	ctx, cancel := context.WithTimeout(context.Background(), testenv.Timeout(60*time.Second))
	defer cancel()
	return r.a.Reload(ctx, "test")
}

// mustReload reloads y and fails the test unless every part of it applied.
func (r *reloadable) mustReload(y string) ReloadResult {
	r.t.Helper()
	start := time.Now()
	res, err := r.reload(y)
	if err != nil || !res.OK || len(res.Errors) > 0 {
		r.t.Fatalf("reload: %v, result %+v", err, res)
	}
	r.t.Logf("reload took %s: %+v", time.Since(start).Round(time.Millisecond), res.Changes)
	return res
}

// pluginPids lists the live processes whose environment holds
// hookbus_test_tag=tag: the plugin processes of the test whose plugins
// entries set that env (zombies have no environment and are not listed).
func (r *reloadable) pluginPids() []int {
	r.t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		r.t.Skipf("no /proc to find plugin processes in: %v", err)
	}
	want := []byte("hookbus_test_tag=" + r.tag + "\x00")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil || !bytes.Contains(env, want) {
			continue
		}
		pids = append(pids, pid)
	}
	slices.Sort(pids)
	return pids
}

// onePluginPid waits until exactly one of the test's plugin processes
// runs (the brief config checks of a reload are gone) and returns it.
func (r *reloadable) onePluginPid(what string) int {
	r.t.Helper()
	var pids []int
	testenv.Eventually(r.t, 30*time.Second, what+": one plugin process", func() bool {
		pids = r.pluginPids()
		return len(pids) == 1
	})
	return pids[0]
}

// readyNames returns /readyz's status and the components it lists as not ready.
func (r *reloadable) readyNames() (int, []string) {
	r.t.Helper()
	code, rz := readyz(r.t, r.a)
	var names []string
	nr, _ := rz["not_ready"].([]any)
	for _, n := range nr {
		names = append(names, fmt.Sprint(n))
	}
	return code, names
}

// metricsText is the /metrics page.
func metricsText(t *testing.T, a *App) string {
	t.Helper()
	resp, err := http.Get("http://" + a.Addr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// postEvent sends one event to an http source and returns the status.
func postEvent(t *testing.T, a *App, source, key, id string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+a.Addr()+"/v1/sources/"+source+"/events", strings.NewReader(`{"id":"`+id+`","type":"order.paid"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func mustPost(t *testing.T, a *App, source, id string) {
	t.Helper()
	if status := postEvent(t, a, source, "", id); status != http.StatusAccepted {
		t.Fatalf("POST %s to %s: %d, want 202", id, source, status)
	}
}

func webhookSink(name, typ, url string) string {
	return `  ` + name + `:
    type: ` + typ + `
    config: {url: "` + url + `", secret: ` + testSecret + `, allow_private_networks: true, retry: {schedule: [50ms]}}
`
}

// TestReloadPluginSinkLifecycle adds a sink served by the webhook plugin
// (and the plugin entry) by reload, changes its URL, then removes it: the
// added one delivers; the change stops the old process and the new one
// receives; the removal stops its process and leaves no trace in /readyz
// or the readiness gauge, while the built-in sink beside it goes on.
func TestReloadPluginSinkLifecycle(t *testing.T) {
	t.Parallel()
	base, first, second := newReceiver(t), newReceiver(t), newReceiver(t)
	wh := pluginBinary(t, "hookbus-webhook")
	head := reloadHead + `sources:
  shop: {type: http}
`
	withPlugin := func(url string) string {
		return head + `plugins:
  wh: {path: ` + wh + `, env: {hookbus_test_tag: TAG}}
sinks:
` + webhookSink("base", "webhook", base.srv.URL) + webhookSink("partner", "wh", url) + `pipelines:
  orders: {from: [shop], to: [base]}
  fan: {from: [shop], to: [partner]}
`
	}
	without := head + `sinks:
` + webhookSink("base", "webhook", base.srv.URL) + `pipelines:
  orders: {from: [shop], to: [base]}
`
	r := startReloadable(t, without)
	if pids := r.pluginPids(); len(pids) != 0 {
		t.Fatalf("plugin processes before the reload: %v", pids)
	}

	// Added.
	res := r.mustReload(withPlugin(first.srv.URL))
	if !slices.Contains(res.Changes.Added, "sink partner") || !slices.Contains(res.Changes.Added, "pipeline fan") {
		t.Errorf("added = %v, want sink partner and pipeline fan", res.Changes.Added)
	}
	p1 := r.onePluginPid("after adding the sink")
	mustPost(t, r.a, "shop", "e1")
	testenv.Eventually(t, 20*time.Second, "e1 delivered by the added plugin sink", func() bool {
		return len(first.attempts("e1")) == 1 && len(base.attempts("e1")) == 1
	})
	if v := metricValue(t, r.a, `hookbus_component_ready{component="sink partner"}`); v != 1 {
		t.Errorf("component ready gauge of the added sink = %v, want 1", v)
	}

	// Changed: a new process delivers to the new URL, the old one is gone.
	res = r.mustReload(withPlugin(second.srv.URL))
	if !slices.Equal(res.Changes.Changed, []string{"sink partner"}) || len(res.Changes.Added)+len(res.Changes.Removed) != 0 {
		t.Errorf("changes = %+v, want only sink partner changed", res.Changes)
	}
	p2 := r.onePluginPid("after changing the sink")
	if p2 == p1 {
		t.Fatalf("the plugin process %d still runs after its sink changed", p1)
	}
	mustPost(t, r.a, "shop", "e2")
	testenv.Eventually(t, 20*time.Second, "e2 delivered by the changed sink", func() bool {
		return len(second.attempts("e2")) == 1 && len(base.attempts("e2")) == 1
	})
	if n := len(first.attempts("e2")); n != 0 {
		t.Errorf("the old URL got e2 %d times after the change", n)
	}

	// Removed (with its plugin entry).
	res = r.mustReload(without)
	if !slices.Contains(res.Changes.Removed, "sink partner") || !slices.Contains(res.Changes.Removed, "pipeline fan") {
		t.Errorf("removed = %v, want sink partner and pipeline fan", res.Changes.Removed)
	}
	testenv.Eventually(t, 20*time.Second, "the removed sink's plugin process gone", func() bool { return len(r.pluginPids()) == 0 })
	if code, names := r.readyNames(); code != http.StatusOK || len(names) != 0 {
		t.Errorf("/readyz after the removal: %d %v", code, names)
	}
	if m := metricsText(t, r.a); strings.Contains(m, `hookbus_component_ready{component="sink partner"}`) {
		t.Errorf("the readiness gauge still has the removed sink")
	}
	if st := r.a.Status(); slices.Contains(st.Sinks, "partner") || slices.Contains(st.Pipelines, "fan") {
		t.Errorf("status after the removal: sinks %v, pipelines %v", st.Sinks, st.Pipelines)
	}
	mustPost(t, r.a, "shop", "e3")
	testenv.Eventually(t, 20*time.Second, "e3 delivered by the remaining sink", func() bool { return len(base.attempts("e3")) == 1 })
	if n := len(first.attempts("e3")) + len(second.attempts("e3")); n != 0 {
		t.Errorf("e3 reached the removed sink %d times", n)
	}
}

// lineWriter appends JSON lines to a file until stopped, one at a time,
// so that a file source has something new to emit at any moment.
type lineWriter struct {
	stop chan struct{}
	done chan struct{}
	mu   sync.Mutex
	n    int
	err  error
}

func startLineWriter(t *testing.T, path string) *lineWriter {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	w := &lineWriter{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		defer f.Close()
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-tick.C:
			}
			w.mu.Lock()
			_, err := fmt.Fprintf(f, `{"id":"line-%d","type":"file.line"}`+"\n", w.n)
			w.n++
			if err != nil && w.err == nil {
				w.err = err
			}
			w.mu.Unlock()
		}
	}()
	t.Cleanup(w.halt)
	return w
}

// halt stops the writer and waits for it.
func (w *lineWriter) halt() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}

func (w *lineWriter) written() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n
}

// TestReloadPluginSource adds a plugin source (the file source plugin) to
// a pipeline by reload while lines are being written: it emits them. Then
// a reload removes it while it is still emitting: its process stops, and
// every event it had queued (hookbus_events_received_total) is delivered.
func TestReloadPluginSource(t *testing.T) {
	t.Parallel()
	for _, driver := range []string{"embedded", "memory"} {
		t.Run(driver, func(t *testing.T) {
			t.Parallel()
			testReloadPluginSource(t, driver)
		})
	}
}

func testReloadPluginSource(t *testing.T, driver string) {
	head := strings.Replace(reloadHead, "{driver: memory}", "{driver: "+driver+"}", 1)
	rcv := newReceiver(t)
	in := filepath.Join(t.TempDir(), "in.jsonl")
	sinks := `sinks:
  partner: {type: webhook, config: {url: "` + rcv.srv.URL + `", secret: ` + testSecret + `, allow_private_networks: true}}
`
	without := head + `sources:
  shop: {type: http}
` + sinks + `pipelines:
  orders: {from: [shop], to: [partner]}
`
	with := head + `plugins:
  tail: {path: ` + pluginBinary(t, "file-source") + `, env: {hookbus_test_tag: TAG}}
sources:
  shop: {type: http}
  files: {type: tail, config: {path: ` + in + `, poll_interval: 5ms, batch_size: 5}}
` + sinks + `pipelines:
  orders: {from: [shop, files], to: [partner]}
`
	r := startReloadable(t, without)
	w := startLineWriter(t, in)
	testenv.Eventually(t, 10*time.Second, "lines written", func() bool { return w.written() > 20 })
	fromFiles := func() int {
		n := 0
		for _, d := range rcv.all() {
			if d.Event.Source == "files" {
				n++
			}
		}
		return n
	}
	if n := fromFiles(); n != 0 {
		t.Fatalf("%d events from a source not configured yet", n)
	}

	res := r.mustReload(with)
	if !slices.Equal(res.Changes.Added, []string{"source files"}) || !slices.Equal(res.Changes.Changed, []string{"pipeline orders"}) {
		t.Errorf("changes = %+v, want source files added and pipeline orders changed", res.Changes)
	}
	r.onePluginPid("after adding the source")
	testenv.Eventually(t, 20*time.Second, "the added source's events delivered", func() bool { return fromFiles() > 50 })

	// Removed while it emits.
	res = r.mustReload(without)
	if !slices.Equal(res.Changes.Removed, []string{"source files"}) {
		t.Errorf("removed = %v, want source files", res.Changes.Removed)
	}
	testenv.Eventually(t, 20*time.Second, "the removed source's plugin process gone", func() bool { return len(r.pluginPids()) == 0 })
	queued := metricValue(t, r.a, `hookbus_events_received_total{source="files"}`)
	w.halt()
	if !testenv.Wait(30*time.Second, func() bool { return float64(fromFiles()) >= queued }) {
		t.Fatalf("%d of the %v events the source queued delivered (%d lines written)", fromFiles(), queued, w.written())
	}
	if v := metricValue(t, r.a, `hookbus_events_received_total{source="files"}`); v != queued {
		t.Errorf("received_total{source=files} went from %v to %v after the source was removed", queued, v)
	}
	if n := fromFiles(); float64(n) != queued {
		t.Errorf("%d deliveries of %v queued events", n, queued)
	}
	if code, names := r.readyNames(); code != http.StatusOK {
		t.Errorf("/readyz after the removal: %d %v", code, names)
	}
}

// TestReloadHTTPSource: an http source added by reload is served (202,
// delivered) where it was 404; removed, it is 404 again, and the other
// source goes on.
func TestReloadHTTPSource(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t)
	sinks := `sinks:
  partner: {type: webhook, config: {url: "` + rcv.srv.URL + `", secret: ` + testSecret + `, allow_private_networks: true}}
`
	without := reloadHead + `sources:
  shop: {type: http}
` + sinks + `pipelines:
  orders: {from: [shop], to: [partner]}
`
	with := reloadHead + `sources:
  shop: {type: http}
  billing: {type: http}
` + sinks + `pipelines:
  orders: {from: [shop], to: [partner]}
  invoices: {from: [billing], to: [partner]}
`
	r := startReloadable(t, without)
	if status := postEvent(t, r.a, "billing", "", "b0"); status != http.StatusNotFound {
		t.Fatalf("POST to a source not configured yet: %d, want 404", status)
	}
	res := r.mustReload(with)
	if !slices.Contains(res.Changes.Added, "source billing") || !slices.Contains(res.Changes.Added, "pipeline invoices") {
		t.Errorf("added = %v, want source billing and pipeline invoices", res.Changes.Added)
	}
	mustPost(t, r.a, "billing", "b1")
	testenv.Eventually(t, 20*time.Second, "b1 delivered", func() bool { return len(rcv.attempts("b1")) == 1 })
	if d := rcv.attempts("b1")[0]; d.Event.Source != "billing" {
		t.Errorf("b1 arrived from source %q", d.Event.Source)
	}

	r.mustReload(without)
	if status := postEvent(t, r.a, "billing", "", "b2"); status != http.StatusNotFound {
		t.Errorf("POST to a removed source: %d, want 404", status)
	}
	mustPost(t, r.a, "shop", "s1")
	testenv.Eventually(t, 20*time.Second, "s1 delivered", func() bool { return len(rcv.attempts("s1")) == 1 })
	if n := len(rcv.attempts("b2")); n != 0 {
		t.Errorf("b2, posted to the removed source, delivered %d times", n)
	}
}

// TestReloadAPIKeys: server.api_keys changed by reload apply at once: the
// old key gets 401, the new one works; removed, /v1 is open again.
func TestReloadAPIKeys(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t)
	cfg := func(keys string) string {
		return strings.Replace(reloadHead, "shutdown_timeout: 5s", "shutdown_timeout: 5s, api_keys: "+keys, 1) + `sources:
  shop: {type: http}
sinks:
  partner: {type: webhook, config: {url: "` + rcv.srv.URL + `", secret: ` + testSecret + `, allow_private_networks: true}}
pipelines:
  orders: {from: [shop], to: [partner]}
`
	}
	r := startReloadable(t, cfg("[old-key-1]"))
	for _, c := range []struct{ key, id string }{{"", "k0"}, {"new-key-2", "k1"}} {
		if status := postEvent(t, r.a, "shop", c.key, c.id); status != http.StatusUnauthorized {
			t.Fatalf("POST with key %q before the reload: %d, want 401", c.key, status)
		}
	}
	if status := postEvent(t, r.a, "shop", "old-key-1", "k2"); status != http.StatusAccepted {
		t.Fatalf("POST with the old key before the reload: %d, want 202", status)
	}

	r.mustReload(cfg("[new-key-2]"))
	if status := postEvent(t, r.a, "shop", "old-key-1", "k3"); status != http.StatusUnauthorized {
		t.Errorf("POST with the old key after the reload: %d, want 401", status)
	}
	if status := postEvent(t, r.a, "shop", "new-key-2", "k4"); status != http.StatusAccepted {
		t.Errorf("POST with the new key after the reload: %d, want 202", status)
	}
	req, err := http.NewRequest(http.MethodGet, "http://"+r.a.Addr()+"/v1/admin/status", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer old-key-1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /v1/admin/status with the old key: %d, want 401", resp.StatusCode)
	}

	r.mustReload(cfg("[]"))
	if status := postEvent(t, r.a, "shop", "", "k5"); status != http.StatusAccepted {
		t.Errorf("POST without a key once api_keys is empty: %d, want 202", status)
	}
	testenv.Eventually(t, 20*time.Second, "k2, k4 and k5 delivered", func() bool {
		return len(rcv.attempts("k2")) == 1 && len(rcv.attempts("k4")) == 1 && len(rcv.attempts("k5")) == 1
	})
	for _, id := range []string{"k0", "k1", "k3"} {
		if n := len(rcv.attempts(id)); n != 0 {
			t.Errorf("%s, refused with 401, delivered %d times", id, n)
		}
	}
}

// stuckSinkConfig is a config whose plugin sink partner (crashsink, init
// timeout initTimeout) hangs in Init while the file hang exists (hang ""
// : it initialises); with pipeline, orders sends to it.
func stuckSinkConfig(crash, initTimeout, hang string, withSink bool) string {
	y := reloadHead + `plugins:
  stuck: {path: ` + crash + `, init_timeout: ` + initTimeout + `, env: {hookbus_test_tag: TAG}}
sources:
  shop: {type: http}
sinks:
  other: {type: stuck, config: {}}
`
	if withSink {
		opt := ""
		if hang != "" {
			opt = "hang_init_while: " + hang
		}
		y += `  partner: {type: stuck, config: {` + opt + `}}
pipelines:
  orders: {from: [shop], to: [partner]}
  rest: {from: [shop], to: [other]}
`
	} else {
		y += `pipelines:
  rest: {from: [shop], to: [other]}
`
	}
	return y
}

// TestReloadReplacesStuckPluginSink: a plugin sink stuck in Init at start
// (retrying in the background), then replaced by reload with a config it
// initialises with, or removed. Either way the old sink's background
// retry has ended when Reload returns (so no init failure is counted for
// it after), its process is gone, and /readyz no longer names it; the
// replacement delivers the events that waited.
func TestReloadReplacesStuckPluginSink(t *testing.T) {
	t.Parallel()
	crash := pluginBinary(t, "crashsink")
	for _, replace := range []bool{true, false} {
		name := "removed"
		if replace {
			name = "replaced"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			hang := filepath.Join(t.TempDir(), "hang")
			if err := os.WriteFile(hang, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			// Short, so that the old sink retries often; long enough for a
			// plugin to start on a loaded machine.
			initTimeout := testenv.Timeout(2 * time.Second).String()
			r := startReloadable(t, stuckSinkConfig(crash, initTimeout, hang, true))
			failures := `hookbus_plugin_init_failures_total{component="sink partner",plugin="stuck"}`
			mustPost(t, r.a, "shop", "w1")
			code, names := r.readyNames()
			if code != http.StatusServiceUnavailable || len(names) != 1 || !strings.HasPrefix(names[0], "sink partner: ") {
				t.Fatalf("/readyz while the sink is stuck: %d %v", code, names)
			}
			testenv.Eventually(t, 60*time.Second, "the stuck sink retried in the background", func() bool {
				return metricValue(t, r.a, failures) >= 2
			})
			// Two processes: other's and the stuck one's.
			testenv.Eventually(t, 30*time.Second, "two plugin processes", func() bool { return len(r.pluginPids()) == 2 })
			before := r.pluginPids()
			old := r.a.rt.Load().sinks["partner"]

			if replace {
				r.mustReload(stuckSinkConfig(crash, initTimeout, "", true))
			} else {
				r.mustReload(stuckSinkConfig(crash, initTimeout, "", false))
			}
			select {
			case <-old.done:
			default:
				t.Fatal("the old sink's background initialisation still runs after the reload")
			}
			atReload := metricValue(t, r.a, failures)
			if replace {
				testenv.Eventually(t, 30*time.Second, "w1 delivered by the replacement", func() bool {
					return metricValue(t, r.a, `hookbus_events_delivered_total{pipeline="orders",sink="partner"}`) == 1
				})
				mustPost(t, r.a, "shop", "w2")
				testenv.Eventually(t, 30*time.Second, "w2 delivered by the replacement", func() bool {
					return metricValue(t, r.a, `hookbus_events_delivered_total{pipeline="orders",sink="partner"}`) == 2
				})
				if v := metricValue(t, r.a, `hookbus_component_ready{component="sink partner"}`); v != 1 {
					t.Errorf("component ready gauge of the replacement = %v, want 1", v)
				}
			} else if m := metricsText(t, r.a); strings.Contains(m, `hookbus_component_ready{component="sink partner"}`) {
				t.Errorf("the readiness gauge still has the removed sink")
			}
			// The stuck process is gone; other's runs on (and, replaced,
			// the new partner's).
			want := 1
			if replace {
				want = 2
			}
			var after []int
			testenv.Eventually(t, 30*time.Second, "the stuck plugin process gone", func() bool {
				after = r.pluginPids()
				return len(after) == want
			})
			kept := 0
			for _, p := range after {
				if slices.Contains(before, p) {
					kept++
				}
			}
			if kept != 1 {
				t.Errorf("plugin processes before the reload %v, after %v: want other's kept and the stuck one gone", before, after)
			}
			if code, names := r.readyNames(); code != http.StatusOK {
				t.Errorf("/readyz after the reload: %d %v", code, names)
			}
			if v := metricValue(t, r.a, failures); v != atReload {
				t.Errorf("init failures went from %v to %v after the reload", atReload, v)
			}
		})
	}
}

// TestReloadRejectedPluginSinkConfig: a reload whose new or changed plugin
// sink config the plugin rejects (its ValidateConfig) is refused with a
// *ReloadError naming sinks.<name>.config.<field>, and nothing of it
// applies: the running sink, its process and the status stay as they were.
func TestReloadRejectedPluginSinkConfig(t *testing.T) {
	t.Parallel()
	first, second := newReceiver(t), newReceiver(t)
	wh := pluginBinary(t, "hookbus-webhook")
	// extra is added to partner's config block; more adds sinks and a
	// pipeline to them.
	cfg := func(url, extra, more string) string {
		y := reloadHead + `plugins:
  wh: {path: ` + wh + `, env: {hookbus_test_tag: TAG}}
sources:
  shop: {type: http}
sinks:
  partner:
    type: wh
    config: {url: "` + url + `", secret: ` + testSecret + `, allow_private_networks: true` + extra + `}
` + more + `pipelines:
  orders: {from: [shop], to: [partner]}
`
		if more != "" {
			y += "  fan: {from: [shop], to: [late]}\n"
		}
		return y
	}
	r := startReloadable(t, cfg(first.srv.URL, "", ""))
	pid := r.onePluginPid("at start")
	st := r.a.Status()
	for _, tt := range []struct {
		name, y, field string
	}{
		{"changed sink", cfg(second.srv.URL, ", timeout: -1s", ""), "sinks.partner.config.timeout"},
		{"added sink", cfg(first.srv.URL, "", `  late: {type: wh, config: {url: "`+second.srv.URL+`", secret: `+testSecret+`, allow_private_networks: true, headers: {webhook-id: x}}}
`), "sinks.late.config.headers"},
	} {
		res, err := r.reload(tt.y)
		var re *ReloadError
		if !errors.As(err, &re) {
			t.Fatalf("%s: reload = %v (%T), want a *ReloadError", tt.name, err, err)
		}
		t.Logf("%s: %v", tt.name, err)
		found := false
		for _, p := range re.Problems {
			found = found || strings.HasPrefix(p.Path, tt.field)
		}
		if !found {
			t.Errorf("%s: problems %v do not name %s", tt.name, re.Problems, tt.field)
		}
		if res.OK || len(res.Errors) == 0 || !strings.HasPrefix(res.Errors[0].Field, tt.field) {
			t.Errorf("%s: result %+v, want not OK with the problem", tt.name, res)
		}
		if now := r.a.Status(); now.Version != st.Version || now.Hash != st.Hash || !slices.Equal(now.Sinks, st.Sinks) || !slices.Equal(now.Pipelines, st.Pipelines) {
			t.Errorf("%s: status went from %+v to %+v", tt.name, st, now)
		}
		if got := r.onePluginPid("after the refused reload"); got != pid {
			t.Errorf("%s: the plugin process is %d after the refused reload, was %d", tt.name, got, pid)
		}
		id := "r-" + strings.ReplaceAll(tt.name, " ", "-")
		mustPost(t, r.a, "shop", id)
		testenv.Eventually(t, 20*time.Second, id+" delivered by the running sink", func() bool { return len(first.attempts(id)) == 1 })
		if n := len(second.attempts(id)); n != 0 {
			t.Errorf("%s: the refused config's URL got %d deliveries", tt.name, n)
		}
	}
	if last := r.a.Status().LastReload; last == nil || last.OK || last.Trigger != "test" {
		t.Errorf("last reload %+v, want the refused one", last)
	}

	// The same through POST /v1/admin/reload: 422 naming the field.
	r.write(cfg(second.srv.URL, ", timeout: -1s", ""))
	resp, err := http.Post("http://"+r.a.Addr()+"/v1/admin/reload", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(string(body), `"sinks.partner.config.timeout`) {
		t.Errorf("POST /v1/admin/reload: %d %s, want 422 naming sinks.partner.config.timeout", resp.StatusCode, body)
	}
	if now := r.a.Status(); now.Version != st.Version || r.onePluginPid("after the refused reload") != pid {
		t.Errorf("the refused reload through the endpoint changed the version (%d, was %d) or the plugin process", now.Version, st.Version)
	}
}

// TestRefusedReloadKeepsStuckSinkNotReady: a reload refused after its new
// sinks were built (here: a filter step whose script has no filter
// function) changes nothing, readiness included: the replacement built for
// a stuck sink initialised and was closed again, and /readyz still names
// the running, stuck one.
func TestRefusedReloadKeepsStuckSinkNotReady(t *testing.T) {
	t.Parallel()
	crash := pluginBinary(t, "crashsink")
	hang := filepath.Join(t.TempDir(), "hang")
	if err := os.WriteFile(hang, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	initTimeout := testenv.Timeout(2 * time.Second).String()
	r := startReloadable(t, stuckSinkConfig(crash, initTimeout, hang, true))
	if code, names := r.readyNames(); code != http.StatusServiceUnavailable || len(names) != 1 {
		t.Fatalf("/readyz while the sink is stuck: %d %v", code, names)
	}
	b, err := os.ReadFile(filepath.Join("testdata", "reshape.js"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(r.dir, "reshape.js"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(stuckSinkConfig(crash, initTimeout, "", true), "  rest: {from: [shop], to: [other]}",
		"  rest: {from: [shop], to: [other], steps: [{filter: reshape.js}]}", 1)
	res, err := r.reload(bad)
	var re *ReloadError
	if !errors.As(err, &re) || res.OK {
		t.Fatalf("reload = %v, %+v; want it refused", err, res)
	}
	t.Logf("refused: %v", err)
	code, names := r.readyNames()
	if code != http.StatusServiceUnavailable || len(names) != 1 || !strings.HasPrefix(names[0], "sink partner: ") {
		t.Errorf("/readyz after the refused reload: %d %v, want the stuck sink named", code, names)
	}
	if v := metricValue(t, r.a, `hookbus_component_ready{component="sink partner"}`); v != 0 {
		t.Errorf("component ready gauge = %v after the refused reload, want 0 (the running sink is stuck)", v)
	}
}
