package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hookbus/hookbus/core/config"
	"github.com/hookbus/hookbus/internal/testenv"
	"github.com/hookbus/hookbus/sdk"
)

// Plugin binaries the tests run are built on first use (a test run that
// needs none builds none), once per test binary.

// pluginPackages maps binary names to their packages, relative to core/app.
var pluginPackages = map[string]string{
	"hookbus-webhook":     "../../plugins/webhook/cmd/hookbus-webhook",
	"hookbus-http-source": "../../plugins/http/cmd/hookbus-http-source",
	"file-source":         "../../plugins/file/cmd/file-source",
	"crashsink":           "../pluginhost/testdata/crashsink",
	"stucksource":         "./testdata/stucksource",
}

func TestMain(m *testing.M) { testenv.Main(m) }

// pluginBinary returns the path of a built plugin binary.
func pluginBinary(tb testing.TB, name string) string {
	tb.Helper()
	pkg, ok := pluginPackages[name]
	if !ok {
		tb.Fatalf("no plugin binary %q", name)
	}
	return testenv.BuildBinary(tb, pkg)
}

// loadConfig writes y as a config file and loads it as `hookbus run` does.
// "DIR" in y is replaced with a fresh directory.
func loadConfig(t *testing.T, y string) *config.Config {
	t.Helper()
	dir := t.TempDir()
	y = strings.ReplaceAll(y, "DIR", dir)
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path, config.LoadOptions{Env: []string{}, Checkers: Checkers(ScriptOptions(config.Default(), nil))})
	if err != nil {
		t.Fatalf("config: %v\n%s", err, y)
	}
	return cfg
}

const configHead = `version: 1
server: {listen: "127.0.0.1:0", shutdown_timeout: 5s}
data_dir: DIR/data
queue: {driver: memory}
`

// TestWebhookPluginSink delivers through the built hookbus-webhook plugin:
// signed, with hookbus' own retry schedule after a 503.
func TestWebhookPluginSink(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t)
	a := startApp(t, loadConfig(t, configHead+`plugins:
  wh: {path: `+pluginBinary(t, "hookbus-webhook")+`}
sources:
  shop: {type: http}
sinks:
  partner:
    type: wh
    config:
      url: `+rcv.srv.URL+`/hooks
      secret: `+testSecret+`
      allow_private_networks: true
      retry: {schedule: [50ms]}
pipelines:
  orders: {from: [shop], to: [partner]}
`))
	rcv.answer("e2", response{status: http.StatusServiceUnavailable})
	rcv.answer("e3", response{status: http.StatusBadRequest})
	status, body := post(t, a, "shop", "application/json",
		`[{"id":"e1","type":"order.paid","data":{"n":1}},{"id":"e2","type":"order.paid","data":{"n":2}},{"id":"e3","type":"order.paid"}]`)
	if status != http.StatusAccepted {
		t.Fatalf("ingest: %d %v", status, body)
	}
	testenv.Eventually(t, 10*time.Second, "e1 delivered once and e2 twice (after a 503)", func() bool {
		return len(rcv.attempts("e1")) == 1 && len(rcv.attempts("e2")) == 2
	})
	testenv.Eventually(t, 10*time.Second, "e3 dead-lettered", func() bool {
		return metricValue(t, a, `hookbus_events_dead_lettered_total{kind="permanent",pipeline="orders",sink="partner"}`) == 1
	})
	if d := rcv.attempts("e1")[0]; d.WebhookID != "e1" || string(d.Event.Data) != `{"n":1}` || d.Event.Source != "shop" {
		t.Errorf("e1 arrived as %+v", d)
	}
	rcv.mu.Lock()
	bad := rcv.badSig
	rcv.mu.Unlock()
	if bad != 0 {
		t.Errorf("%d deliveries had bad signatures", bad)
	}
	if n := len(rcv.attempts("e3")); n != 1 {
		t.Errorf("e3 (400) was attempted %d times, want 1", n)
	}
}

// startFileSourceApp runs an instance whose pipeline reads the JSON lines
// file in through the file source plugin, batch lines at a time, and
// delivers to rcv.
func startFileSourceApp(t *testing.T, rcv *receiver, in string, batch int) *App {
	t.Helper()
	return startApp(t, loadConfig(t, configHead+`plugins:
  tail: {path: `+pluginBinary(t, "file-source")+`}
sources:
  files:
    type: tail
    config: {path: `+in+`, poll_interval: 10ms, batch_size: `+strconv.Itoa(batch)+`}
sinks:
  partner:
    type: webhook
    config: {url: `+rcv.srv.URL+`, secret: `+testSecret+`, allow_private_networks: true}
pipelines:
  fromfile: {from: [files], to: [partner]}
`))
}

// TestFileSourcePlugin feeds a pipeline from the file source plugin.
func TestFileSourcePlugin(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t)
	in := filepath.Join(t.TempDir(), "in.jsonl")
	a := startFileSourceApp(t, rcv, in, 2)
	f, err := os.OpenFile(in, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for i := range 5 {
		fmt.Fprintf(f, `{"id": "line-%d", "type": "file.line", "data": {"n": %d}}`+"\n", i, i)
	}
	testenv.Eventually(t, 10*time.Second, "5 lines delivered", func() bool { return len(rcv.all()) >= 5 })
	for i := range 5 {
		got := rcv.attempts(fmt.Sprintf("line-%d", i))
		if len(got) != 1 || got[0].Event.Type != "file.line" || got[0].Event.Source != "files" {
			t.Errorf("line-%d arrived as %+v", i, got)
		}
	}
	if v := metricValue(t, a, `hookbus_events_received_total{source="files"}`); v != 5 {
		t.Errorf("received_total{source=files} = %v, want 5", v)
	}
}

// TestHTTPSourcePluginToWebhookPlugin runs both built-ins out of process:
// a producer gets 202 from the http source plugin only after hookbus
// queued the events, and the webhook plugin delivers them.
func TestHTTPSourcePluginToWebhookPlugin(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := ln.Addr().String()
	ln.Close()
	startApp(t, loadConfig(t, configHead+`plugins:
  ingest: {path: `+pluginBinary(t, "hookbus-http-source")+`}
  wh: {path: `+pluginBinary(t, "hookbus-webhook")+`}
sources:
  shop: {type: ingest, config: {listen: "`+listen+`"}}
sinks:
  partner:
    type: wh
    config: {url: `+rcv.srv.URL+`, secret: `+testSecret+`, allow_private_networks: true}
pipelines:
  orders: {from: [shop], to: [partner]}
`))
	// The plugin source is started by Start; its listener is up after Init.
	resp, err := http.Post("http://"+listen+"/v1/sources/shop/events", "application/json",
		bytes.NewReader([]byte(`[{"id":"p1","type":"order.paid"},{"id":"p2","type":"order.paid","data":{"x":1}}]`)))
	if err != nil {
		t.Fatal(err)
	}
	var acc struct{ IDs []string }
	_ = json.NewDecoder(resp.Body).Decode(&acc)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted || len(acc.IDs) != 2 {
		t.Fatalf("ingest through the plugin: %d %v", resp.StatusCode, acc)
	}
	testenv.Eventually(t, 10*time.Second, "p1 and p2 delivered", func() bool {
		return len(rcv.attempts("p1")) == 1 && len(rcv.attempts("p2")) == 1
	})
	if d := rcv.attempts("p2")[0]; string(d.Event.Data) != `{"x":1}` || d.Event.Source != "shop" {
		t.Errorf("p2 arrived as %+v", d.Event)
	}
}

// TestCrashingSinkPlugin uses sink plugins that exit at every 20th and at
// every 3rd event: hookbus restarts them, retries the deliveries a crash
// cut off, and every event is delivered, none dead-lettered. Every 3rd is
// far below the batch size (64) and the plugin's max_in_flight (16): only
// the batcher's shrinking window, down to one delivery at a time, lets
// such a plugin answer anything.
func TestCrashingSinkPlugin(t *testing.T) {
	t.Parallel()
	for _, every := range []int{20, 3} {
		t.Run(fmt.Sprintf("every %d events", every), func(t *testing.T) {
			t.Parallel()
			testCrashingSinkPlugin(t, every)
		})
	}
}

func testCrashingSinkPlugin(t *testing.T, every int) {
	const n = 40
	a := startApp(t, loadConfig(t, configHead+`plugins:
  crash: {path: `+pluginBinary(t, "crashsink")+`}
sources:
  shop: {type: http}
sinks:
  crashy:
    type: crash
    config:
      crash_every: `+strconv.Itoa(every)+`
      retry: {schedule: [10ms, 10ms, 10ms, 10ms, 10ms, 10ms, 10ms, 10ms, 10ms, 10ms, 10ms, 10ms, 10ms, 10ms, 10ms, 10ms, 10ms, 10ms, 10ms, 10ms]}
pipelines:
  p: {from: [shop], to: [crashy]}
`))
	var evs []string
	for i := range n {
		evs = append(evs, fmt.Sprintf(`{"id":"c%d","type":"t"}`, i))
	}
	if status, body := post(t, a, "shop", "application/json", "["+strings.Join(evs, ",")+"]"); status != http.StatusAccepted {
		t.Fatalf("ingest: %d %v", status, body)
	}
	delivered := `hookbus_events_delivered_total{pipeline="p",sink="crashy"}`
	testenv.Eventually(t, 30*time.Second, fmt.Sprintf("%d events delivered", n), func() bool {
		return metricValue(t, a, delivered) >= n
	})
	if v := metricValue(t, a, delivered); v != n {
		t.Errorf("%s = %v, want %d", delivered, v, n)
	}
	if v := metricValue(t, a, `hookbus_plugin_restarts_total{plugin="crash/crashy"}`); v < 1 {
		t.Errorf("hookbus_plugin_restarts_total = %v, want > 0", v)
	}
	if v := metricValue(t, a, `hookbus_delivery_retries_total{sink="crashy"}`); v < 1 {
		t.Errorf("hookbus_delivery_retries_total = %v, want > 0 (deliveries cut off by a crash are retried)", v)
	}
	for _, kind := range []string{"permanent", "exhausted", "delivery"} {
		if v := metricValue(t, a, `hookbus_events_dead_lettered_total{kind="`+kind+`",pipeline="p",sink="crashy"}`); v != 0 {
			t.Errorf("dead-lettered (%s) = %v, want 0", kind, v)
		}
	}
}

// TestValidatePlugins checks plugin config blocks the way `hookbus
// validate` does: each problem comes back with its key path and the
// plugin's (or its schema's) own message.
func TestValidatePlugins(t *testing.T) {
	t.Parallel()
	crash := pluginBinary(t, "crashsink")
	wh := pluginBinary(t, "hookbus-webhook")
	hang := filepath.Join(t.TempDir(), "hang")
	if err := os.WriteFile(hang, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	initTimeout := testenv.Timeout(5 * time.Second).String()
	tests := []struct {
		name  string
		sinks string
		want  []string // substrings of the error; none means valid
		// atLoad: config.Load finds the problem already (the shared sink
		// settings are hookbus's, checked for plugin sinks too).
		atLoad bool
	}{
		{
			name:  "valid",
			sinks: `  x: {type: crash, config: {crash_every: 3, retry: {schedule: [1s]}}}`,
		},
		{
			name:  "plugin's own validation",
			sinks: `  x: {type: crash, config: {crash_every: -1}}`,
			want:  []string{"sinks.x.config.crash_every: crashsink wants crash_every >= 0, got -1"},
		},
		{
			name:  "schema",
			sinks: `  x: {type: crash, config: {colour: red}}`,
			want:  []string{"sinks.x.config", "colour"},
		},
		{
			name:   "bad retry block",
			sinks:  `  x: {type: crash, config: {retry: {schedule: [soon]}}}`,
			want:   []string{"sinks.x.config.retry.schedule[0]", `"soon"`},
			atLoad: true,
		},
		{
			name: "webhook plugin, several problems",
			sinks: `  partner: {type: wh, config: {url: "https://example.com", secret: ` + testSecret + `, timeout: -1s, headers: {webhook-id: x}}}
  other: {type: crash, config: {crash_every: -2}}`,
			want: []string{"sinks.partner.config.timeout: ", "sinks.partner.config.headers", "sinks.other.config.crash_every: crashsink wants crash_every >= 0, got -2"},
		},
		{
			name:  "plugin hangs in its config check",
			sinks: `  slow: {type: stuck, config: {hang_init_while: ` + hang + `}}`,
			want:  []string{"sinks.slow.config: plugin stuck did not answer its config check within " + initTimeout + " (plugins.stuck.init_timeout)"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			y := configHead + `plugins:
  crash: {path: ` + crash + `}
  wh: {path: ` + wh + `}
  stuck: {path: ` + crash + `, init_timeout: ` + initTimeout + `}
sources:
  shop: {type: http}
sinks:
` + tt.sinks + `
pipelines:
  p: {from: [shop], to: [` + firstSink(tt.sinks) + `]}
`
			var err error
			if tt.atLoad {
				path := filepath.Join(t.TempDir(), "config.yaml")
				if err := os.WriteFile(path, []byte(strings.ReplaceAll(y, "DIR", t.TempDir())), 0o644); err != nil {
					t.Fatal(err)
				}
				_, err = config.Load(path, config.LoadOptions{Env: []string{}, Checkers: Checkers(ScriptOptions(config.Default(), nil))})
			} else {
				cfg := loadConfig(t, y)
				ctx, cancel := context.WithTimeout(context.Background(), testenv.Timeout(30*time.Second))
				defer cancel()
				err = ValidatePlugins(ctx, cfg, slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})))
			}
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("ValidatePlugins: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("ValidatePlugins accepted %s", tt.sinks)
			}
			t.Logf("ValidatePlugins: %v", err)
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// firstSink is the name of the first sink in a sinks block.
func firstSink(block string) string {
	name, _, _ := strings.Cut(strings.TrimSpace(block), ":")
	return name
}

// TestPluginSourceNumberOutOfRange: the host refuses a plugin source's batch
// holding a number no float64 can hold, naming the event and field, and
// queues nothing of it; the file source skips such a line (logging why) and
// goes on with the next ones.
func TestPluginSourceNumberOutOfRange(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t)
	in := filepath.Join(t.TempDir(), "in.jsonl")
	a := startFileSourceApp(t, rcv, in, 10)
	// The host side, as any source plugin reaches it.
	var bad sdk.Event
	if err := json.Unmarshal([]byte(`{"id":"direct-bad","type":"t","data":{"items":[{"price":1e700}]}}`), &bad); err != nil {
		t.Fatal(err)
	}
	err := sourceEmitter{e: a.Engine, source: "files"}.Emit(context.Background(), []sdk.Event{{ID: "direct-ok", Type: "t"}, bad})
	if err == nil || !strings.Contains(err.Error(), "event 1") || !strings.Contains(err.Error(), "data.items[0].price") {
		t.Fatalf("Emit = %v, want an error naming event 1 and data.items[0].price", err)
	}

	// The file source plugin skips the bad line and delivers the others.
	lines := `{"id":"line-0","type":"file.line"}` + "\n" +
		`{"id":"line-1","type":"file.line","data":{"n":-1e400}}` + "\n" +
		`{"id":"line-2","type":"file.line"}` + "\n"
	if err := os.WriteFile(in, []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 20*time.Second, "lines 0 and 2 delivered", func() bool {
		return len(rcv.attempts("line-0")) == 1 && len(rcv.attempts("line-2")) == 1
	})
	for _, id := range []string{"direct-ok", "line-1"} {
		if n := len(rcv.attempts(id)); n != 0 {
			t.Errorf("%s delivered %d times, want 0", id, n)
		}
	}
	if v := metricValue(t, a, `hookbus_events_received_total{source="files"}`); v != 2 {
		t.Errorf("received_total{source=files} = %v, want 2", v)
	}
}

// TestPluginSourceEventWithoutType: the host rejects a source's event
// without a type as sdk.ErrRejected naming the event and field (not as a
// transient failure), logs it at warn naming the plugin, and the file
// source skips that line and delivers the others.
func TestPluginSourceEventWithoutType(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t)
	in := filepath.Join(t.TempDir(), "in.jsonl")
	logs := &syncBuffer{}
	a := runApp(t, loadConfig(t, configHead+`plugins:
  tail: {path: `+pluginBinary(t, "file-source")+`}
sources:
  files:
    type: tail
    config: {path: `+in+`, poll_interval: 10ms, batch_size: 10}
sinks:
  partner:
    type: webhook
    config: {url: `+rcv.srv.URL+`, secret: `+testSecret+`, allow_private_networks: true}
pipelines:
  fromfile: {from: [files], to: [partner]}
`), io.MultiWriter(logs, testWriter{t}))
	t.Cleanup(func() { stopApp(t, a) })
	err := sourceEmitter{e: a.Engine, source: "files"}.Emit(context.Background(), []sdk.Event{{ID: "direct-ok", Type: "t"}, {ID: "direct-bad"}})
	var re *sdk.RejectedError
	if !errors.Is(err, sdk.ErrRejected) || errors.Is(err, sdk.ErrNotQueued) || !errors.As(err, &re) ||
		len(re.Rejections) != 1 || re.Rejections[0].Index != 1 || re.Rejections[0].Field != "type" {
		t.Fatalf("Emit = %v, want sdk.ErrRejected naming event 1 and field type", err)
	}

	lines := `{"id":"line-0","type":"file.line"}` + "\n" + `{"id":"line-1"}` + "\n" + `{"id":"line-2","type":"file.line"}` + "\n"
	if err := os.WriteFile(in, []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 20*time.Second, "lines 0 and 2 delivered", func() bool {
		return len(rcv.attempts("line-0")) == 1 && len(rcv.attempts("line-2")) == 1
	})
	for _, id := range []string{"direct-ok", "line-1"} {
		if n := len(rcv.attempts(id)); n != 0 {
			t.Errorf("%s delivered %d times, want 0", id, n)
		}
	}
	testenv.Eventually(t, 10*time.Second, "the rejection and the plugin's warning in the log", func() bool {
		s := logs.String()
		return strings.Contains(s, `level=WARN msg="source batch rejected; nothing of it was queued" plugin=tail/files`) &&
			strings.Contains(s, `level=WARN msg="skipping an event hookbus rejected" plugin=tail/files`)
	})
}
