package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hookbus/hookbus/core/config"
	"github.com/hookbus/hookbus/internal/testenv"
)

// readyz returns /readyz's status and decoded body.
func readyz(t *testing.T, a *App) (int, map[string]any) {
	t.Helper()
	resp, err := http.Get("http://" + a.Addr() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("/readyz body %q: %v", b, err)
	}
	return resp.StatusCode, m
}

// TestPluginSinkStuckInInitDoesNotStopTheInstance starts an instance whose
// plugin sink hangs in Init: the instance starts anyway and takes events,
// /readyz names the sink, the init failures are counted, the events wait in
// the (embedded, durable) queue without a delivery attempt, and once the
// plugin initialises they are all delivered.
func TestPluginSinkStuckInInitDoesNotStopTheInstance(t *testing.T) {
	t.Parallel()
	testPluginSinkFailingInit(t, "hang_init_while", "timed out after ")
}

// TestPluginSinkCrashingInInitDoesNotStopTheInstance: the same with a
// plugin that exits in Init.
func TestPluginSinkCrashingInInitDoesNotStopTheInstance(t *testing.T) {
	t.Parallel()
	testPluginSinkFailingInit(t, "crash_init_while", "plugin unavailable")
}

func testPluginSinkFailingInit(t *testing.T, option, reason string) {
	hang := filepath.Join(t.TempDir(), "hang")
	if err := os.WriteFile(hang, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// Long enough for the plugin to start on a loaded machine: only a
	// plugin stuck in Init runs into it.
	initTimeout := testenv.Timeout(5 * time.Second).String()
	cfg := loadConfig(t, `version: 1
server: {listen: "127.0.0.1:0", shutdown_timeout: 5s}
data_dir: DIR/data
queue: {driver: embedded}
plugins:
  stuck: {path: `+pluginBinary(t, "crashsink")+`, init_timeout: `+initTimeout+`}
sources:
  shop: {type: http}
sinks:
  partner: {type: stuck, config: {`+option+`: `+hang+`}}
pipelines:
  orders: {from: [shop], to: [partner]}
`)
	start := time.Now()
	a := startApp(t, cfg)
	// New waits for one init_timeout, not for the 60s call timeout.
	if took := time.Since(start); took > testenv.Timeout(20*time.Second) {
		t.Errorf("start took %s with a stuck plugin", took)
	}
	status, body := post(t, a, "shop", "application/json",
		`[{"id":"e1","type":"order.paid"},{"id":"e2","type":"order.paid"},{"id":"e3","type":"order.paid"}]`)
	if status != http.StatusAccepted {
		t.Fatalf("ingest while the plugin is stuck: %d %v", status, body)
	}
	code, rz := readyz(t, a)
	if code != http.StatusServiceUnavailable || rz["ready"] != false {
		t.Fatalf("/readyz while stuck: %d %v", code, rz)
	}
	nr, _ := rz["not_ready"].([]any)
	// On a loaded machine the first attempt may run out of time while the
	// plugin is still starting ("start: timed out"), so the step is not checked.
	if option == "hang_init_while" {
		reason += initTimeout
	}
	if len(nr) != 1 || !strings.HasPrefix(nr[0].(string), "sink partner: plugin stuck: ") || !strings.Contains(nr[0].(string), reason) {
		t.Errorf("/readyz not_ready = %v, want the sink and the timeout", rz["not_ready"])
	}
	if v := metricValue(t, a, `hookbus_plugin_init_failures_total{component="sink partner",plugin="stuck"}`); v < 1 {
		t.Errorf("init failures = %v, want >= 1", v)
	}
	if v := metricValue(t, a, `hookbus_component_ready{component="sink partner"}`); v != 0 {
		t.Errorf("component ready gauge = %v while stuck, want 0", v)
	}
	// The events wait: nothing is attempted, retried or dead-lettered.
	testenv.Eventually(t, 60*time.Second, "the failure retried in the background", func() bool {
		return metricValue(t, a, `hookbus_plugin_init_failures_total{component="sink partner",plugin="stuck"}`) >= 2
	})
	for _, s := range []string{
		`hookbus_delivery_attempts_total{outcome="retry",sink="partner",status_class="none"}`,
		`hookbus_events_dead_lettered_total{kind="exhausted",pipeline="orders",sink="partner"}`,
	} {
		if v := metricValue(t, a, s); v != 0 {
			t.Errorf("%s = %v while the plugin is stuck, want 0", s, v)
		}
	}
	if err := os.Remove(hang); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 120*time.Second, "all three events delivered after the plugin initialised", func() bool {
		return metricValue(t, a, `hookbus_events_delivered_total{pipeline="orders",sink="partner"}`) == 3
	})
	code, rz = readyz(t, a)
	if code != http.StatusOK || rz["status"] != "ready" {
		t.Errorf("/readyz after init: %d %v", code, rz)
	}
	if v := metricValue(t, a, `hookbus_component_ready{component="sink partner"}`); v != 1 {
		t.Errorf("component ready gauge = %v after init, want 1", v)
	}
}

// TestPluginSinkRejectedConfigsFailStartup: a config the plugin answers is
// wrong is permanent; New reports every such sink, by key path.
func TestPluginSinkRejectedConfigsFailStartup(t *testing.T) {
	t.Parallel()
	cfg := loadConfig(t, configHead+`plugins:
  crash: {path: `+pluginBinary(t, "crashsink")+`}
sources:
  shop: {type: http}
sinks:
  a: {type: crash, config: {crash_every: -1}}
  b: {type: crash, config: {crash_every: -2}}
pipelines:
  orders: {from: [shop], to: [a, b]}
`)
	a, err := New(context.Background(), cfg, slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err == nil {
		_ = a.Shutdown(context.Background())
		t.Fatal("New accepted configs the plugin rejects")
	}
	var errs *config.Errors
	if !errors.As(err, &errs) || len(*errs) != 2 {
		t.Fatalf("New: %v (%T), want two *config.Errors", err, err)
	}
	for _, w := range []string{"sinks.a.config.crash_every: crashsink wants crash_every >= 0, got -1", "sinks.b.config.crash_every: crashsink wants crash_every >= 0, got -2"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not contain %q", err, w)
		}
	}
}

// TestPluginSourceStuckInInitDoesNotStopTheInstance: a plugin source that
// hangs in Init does not keep the instance from starting; /readyz names it
// until it initialises and then runs.
func TestPluginSourceStuckInInitDoesNotStopTheInstance(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t)
	hang := filepath.Join(t.TempDir(), "hang")
	if err := os.WriteFile(hang, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	initTimeout := testenv.Timeout(5 * time.Second).String()
	a := startApp(t, loadConfig(t, configHead+`plugins:
  stuck: {path: `+pluginBinary(t, "stucksource")+`, init_timeout: `+initTimeout+`}
sources:
  shop: {type: http}
  ticks: {type: stuck, config: {hang_init_while: `+hang+`, emit_id: s1}}
sinks:
  partner: {type: webhook, config: {url: "`+rcv.srv.URL+`/hooks", secret: `+testSecret+`, allow_private_networks: true}}
pipelines:
  orders: {from: [shop, ticks], to: [partner]}
`))
	if status, body := post(t, a, "shop", "application/json", `{"id":"h1","type":"order.paid"}`); status != http.StatusAccepted {
		t.Fatalf("ingest while the source plugin is stuck: %d %v", status, body)
	}
	testenv.Eventually(t, 30*time.Second, "the http source's event delivered", func() bool { return len(rcv.attempts("h1")) == 1 })
	code, rz := readyz(t, a)
	nr, _ := rz["not_ready"].([]any)
	if code != http.StatusServiceUnavailable || len(nr) != 1 || !strings.HasPrefix(nr[0].(string), "source ticks: plugin stuck: ") {
		t.Fatalf("/readyz while the source is stuck: %d %v", code, rz)
	}
	if v := metricValue(t, a, `hookbus_plugin_init_failures_total{component="source ticks",plugin="stuck"}`); v < 1 {
		t.Errorf("init failures = %v, want >= 1", v)
	}
	if err := os.Remove(hang); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 120*time.Second, "the source's event delivered once it initialised", func() bool { return len(rcv.attempts("s1")) == 1 })
	if code, rz := readyz(t, a); code != http.StatusOK {
		t.Errorf("/readyz after the source initialised: %d %v", code, rz)
	}
}

// TestPluginSinkInitialisedLateKeepsItsMaxInFlight: a plugin sink that
// declares max_in_flight 1 in Init (a serial sink) gets its deliveries one
// at a time, also when its Init failed at startup and succeeded on a
// background retry: the pipeline's default window does not stay in place.
func TestPluginSinkInitialisedLateKeepsItsMaxInFlight(t *testing.T) {
	t.Parallel()
	testPluginSinkMaxInFlight(t, true)
}

// TestPluginSinkKeepsItsMaxInFlight: the same for a plugin that
// initialises at startup.
func TestPluginSinkKeepsItsMaxInFlight(t *testing.T) {
	t.Parallel()
	testPluginSinkMaxInFlight(t, false)
}

func testPluginSinkMaxInFlight(t *testing.T, late bool) {
	dir := t.TempDir()
	crash, peakFile := filepath.Join(dir, "crash"), filepath.Join(dir, "peak")
	if late {
		if err := os.WriteFile(crash, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// hold_ms: each delivery waits that long for a second one to overlap it.
	a := startApp(t, loadConfig(t, `version: 1
server: {listen: "127.0.0.1:0", shutdown_timeout: 5s}
data_dir: DIR/data
queue: {driver: embedded}
plugins:
  serial: {path: `+pluginBinary(t, "crashsink")+`, init_timeout: `+testenv.Timeout(5*time.Second).String()+`}
sources:
  shop: {type: http}
sinks:
  partner: {type: serial, config: {max_in_flight: 1, crash_init_while: `+crash+`, concurrency_file: `+peakFile+`, hold_ms: 50}}
pipelines:
  orders: {from: [shop], to: [partner]}
`))
	const n = 20
	evs := make([]string, n)
	for i := range evs {
		evs[i] = fmt.Sprintf(`{"id":"e%d","type":"order.paid"}`, i)
	}
	// Queued before the plugin initialised (late), so all wait at once.
	if status, body := post(t, a, "shop", "application/json", "["+strings.Join(evs, ",")+"]"); status != http.StatusAccepted {
		t.Fatalf("ingest: %d %v", status, body)
	}
	if late {
		if code, rz := readyz(t, a); code != http.StatusServiceUnavailable {
			t.Fatalf("/readyz before the plugin initialised: %d %v", code, rz)
		}
		if err := os.Remove(crash); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, 120*time.Second, "all events delivered", func() bool {
		return metricValue(t, a, `hookbus_events_delivered_total{pipeline="orders",sink="partner"}`) == n
	})
	b, err := os.ReadFile(peakFile)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != "1" {
		t.Errorf("the plugin had %s deliveries at once, want 1 (its max_in_flight)", b)
	}
}
