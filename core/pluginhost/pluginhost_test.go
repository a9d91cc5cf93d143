package pluginhost_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hookbus/hookbus/core/pluginhost"
	"github.com/hookbus/hookbus/internal/testenv"
	"github.com/hookbus/hookbus/sdk"
	"github.com/hookbus/hookbus/sdk/plugintest"
	pluginv1 "github.com/hookbus/hookbus/sdk/proto/hookbus/plugin/v1"
	"github.com/hookbus/hookbus/sdk/remote"
)

var (
	crashsink  string
	hostBin    string
	fileSource string
	emitSource string
)

func TestMain(m *testing.M) {
	crashsink = testenv.MustBuild("./testdata/crashsink")
	hostBin = testenv.MustBuild("./testdata/host")
	fileSource = testenv.MustBuild("../../plugins/file/cmd/file-source")
	emitSource = testenv.MustBuild("./testdata/emitsource")
	testenv.Main(m)
}

// logBuffer collects the host's log for assertions.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newHost(t testing.TB) (*pluginhost.Host, *prometheus.Registry, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	reg := prometheus.NewRegistry()
	h := pluginhost.New(slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})), reg)
	t.Cleanup(func() { _ = h.Close() })
	return h, reg, logs
}

func fastSpec(path string) pluginhost.Spec {
	return pluginhost.Spec{Path: path, MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond, HealthInterval: 200 * time.Millisecond}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), testenv.Timeout(60*time.Second))
	t.Cleanup(cancel)
	return c
}

func events(prefix string, n int) []sdk.Delivery {
	out := make([]sdk.Delivery, n)
	for i := range out {
		out[i] = sdk.Delivery{Event: sdk.Event{ID: fmt.Sprintf("%s-%d", prefix, i), Type: "test.event"}, Attempt: 1}
	}
	return out
}

// deliverAll delivers every event, retrying those that come back Retry, and
// fails on a Permanent result or after the deadline.
func deliverAll(t *testing.T, s sdk.Sink, all []sdk.Delivery, batchSize int) (retries int) {
	t.Helper()
	pending := all
	deadline := time.Now().Add(testenv.Timeout(60 * time.Second))
	for len(pending) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d events still not delivered", len(pending))
		}
		var next []sdk.Delivery
		for start := 0; start < len(pending); start += batchSize {
			batch := pending[start:min(start+batchSize, len(pending))]
			results := s.Deliver(ctx(t), batch)
			if len(results) != len(batch) {
				t.Fatalf("%d results for %d deliveries", len(results), len(batch))
			}
			for i, r := range results {
				switch r.Outcome {
				case sdk.OK:
				case sdk.Retry:
					retries++
					d := batch[i]
					d.Attempt++
					next = append(next, d)
				default:
					t.Fatalf("event %s: %v %s", batch[i].Event.ID, r.Outcome, r.Reason)
				}
			}
		}
		pending = next
	}
	return retries
}

// TestRestartBackoffResetsAfterProgress: a plugin that crashes every few
// events but delivers in between is restarted at the minimum backoff each
// time; without the reset, the doubling backoff (max 1h here) would stall
// it within a dozen crashes.
func TestRestartBackoffResetsAfterProgress(t *testing.T) {
	h, _, _ := newHost(t)
	spec := fastSpec(crashsink)
	spec.MinBackoff, spec.MaxBackoff = 50*time.Millisecond, time.Hour
	p, err := h.Start(ctx(t), "crashy", spec)
	if err != nil {
		t.Fatal(err)
	}
	s, _, err := p.Sink(ctx(t), json.RawMessage(`{"crash_every": 3}`))
	if err != nil {
		t.Fatal(err)
	}
	deliverAll(t, s, events("progress", 45), 1)
	if p.Restarts() < 12 {
		t.Errorf("Restarts() = %d, want at least 12 (one per 3 events)", p.Restarts())
	}
}

func TestCrashingSinkLosesNothing(t *testing.T) {
	h, reg, logs := newHost(t)
	p, err := h.Start(ctx(t), "crashy", fastSpec(crashsink))
	if err != nil {
		t.Fatal(err)
	}
	s, info, err := p.Sink(ctx(t), json.RawMessage(`{"crash_every": 7}`))
	if err != nil {
		t.Fatal(err)
	}
	if info.MaxInFlight != 16 {
		t.Errorf("MaxInFlight = %d, want 16", info.MaxInFlight)
	}
	retries := deliverAll(t, s, events("crash", 60), 5)
	if retries == 0 {
		t.Error("no delivery was retried; the plugin never crashed?")
	}
	if p.Restarts() == 0 {
		t.Error("Restarts() = 0")
	}
	if got := restartsMetric(t, reg); got < 1 {
		t.Errorf("hookbus_plugin_restarts_total = %v", got)
	}
	if !strings.Contains(logs.String(), `"plugin":"crashy"`) {
		t.Errorf("no log line with plugin=crashy:\n%s", logs.String())
	}
	if err := s.Close(ctx(t)); err != nil {
		t.Fatal(err)
	}
}

func restartsMetric(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "hookbus_plugin_restarts_total" {
			m := mf.GetMetric()[0]
			if lbl := m.GetLabel(); len(lbl) != 1 || lbl[0].GetName() != "plugin" || lbl[0].GetValue() != "crashy" {
				t.Errorf("labels = %v", lbl)
			}
			return m.GetCounter().GetValue()
		}
	}
	t.Fatal("hookbus_plugin_restarts_total not registered")
	return 0
}

func TestHangingSinkIsRestarted(t *testing.T) {
	h, _, _ := newHost(t)
	spec := fastSpec(crashsink)
	spec.CallTimeout = 300 * time.Millisecond
	p, err := h.Start(ctx(t), "hangy", spec)
	if err != nil {
		t.Fatal(err)
	}
	s, _, err := p.Sink(ctx(t), json.RawMessage(`{"hang_on_type": "hang"}`))
	if err != nil {
		t.Fatal(err)
	}
	firstPid := p.Pid()
	hang := []sdk.Delivery{{Event: sdk.Event{ID: "h", Type: "hang"}, Attempt: 1}}
	res := s.Deliver(ctx(t), hang)
	if len(res) != 1 || res[0].Outcome != sdk.Retry || !strings.Contains(res[0].Reason, "did not answer") {
		t.Fatalf("hanging delivery: %+v", res)
	}
	deliverAll(t, s, events("after-hang", 10), 5)
	if p.Restarts() < 1 || p.Pid() == firstPid {
		t.Fatalf("restarts = %d, pid %d -> %d", p.Restarts(), firstPid, p.Pid())
	}
	if alive(firstPid) {
		t.Errorf("hung plugin %d still running", firstPid)
	}
}

func TestInvalidConfigRejectedWithPluginMessage(t *testing.T) {
	h, _, _ := newHost(t)
	p, err := h.Start(ctx(t), "crashsink", fastSpec(crashsink))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, config, field, want string
	}{
		{"plugin's own check", `{"crash_every": -1}`, "crash_every", "crashsink wants crash_every >= 0, got -1"},
		{"schema type", `{"crash_every": "often"}`, "crash_every", "got string, want integer"},
		{"schema unknown key", `{"colour": 1}`, "colour", "unknown key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := p.Validate(ctx(t), sdk.KindSink, json.RawMessage(tt.config))
			var ce *sdk.ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("Validate = %v, want a *sdk.ConfigError", err)
			}
			if ce.Field != tt.field || !strings.Contains(ce.Message, tt.want) {
				t.Fatalf("ConfigError = {%q %q}, want {%q ...%q...}", ce.Field, ce.Message, tt.field, tt.want)
			}
		})
	}
	// The schema's problems and the plugin's own, in one round, each field once.
	err = p.Validate(ctx(t), sdk.KindSink, json.RawMessage(`{"crash_every": -1, "colour": 1, "size": 2}`))
	var re *remote.Error
	if !errors.As(err, &re) || re.Code != pluginv1.ErrorCode_ERROR_CODE_INVALID_CONFIG {
		t.Fatalf("Validate = %v, want a *remote.Error with ERROR_CODE_INVALID_CONFIG", err)
	}
	var got []string
	for _, f := range re.Fields {
		got = append(got, f.Error())
	}
	if want := "colour: unknown key|size: unknown key|crash_every: crashsink wants crash_every >= 0, got -1"; strings.Join(got, "|") != want {
		t.Errorf("Validate fields = %q, want %q", strings.Join(got, "|"), want)
	}
	if err := p.Validate(ctx(t), sdk.KindSink, json.RawMessage(`{"crash_every": 3}`)); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	if err := p.Validate(ctx(t), sdk.KindSource, json.RawMessage(`{}`)); err == nil {
		t.Fatal("crashsink accepted a source config")
	}
	_, _, err = p.Sink(ctx(t), json.RawMessage(`{"crash_every": -1}`))
	if err == nil || !strings.Contains(err.Error(), "crashsink wants crash_every >= 0") {
		t.Fatalf("Sink(bad config) = %v", err)
	}
}

func TestDescribe(t *testing.T) {
	h, _, _ := newHost(t)
	p, err := h.Start(ctx(t), "crashsink", fastSpec(crashsink))
	if err != nil {
		t.Fatal(err)
	}
	m, err := p.Describe(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "crashsink" || len(m.Kinds) != 1 || m.Kinds[0] != sdk.KindSink || !json.Valid(m.ConfigSchema) {
		t.Fatalf("manifest = %+v", m)
	}
	once, err := h.Describe(ctx(t), "once", fastSpec(crashsink))
	if err != nil || once.Name != "crashsink" {
		t.Fatalf("Host.Describe = %+v, %v", once, err)
	}
	err = h.Validate(ctx(t), "once", fastSpec(crashsink), sdk.KindSink, json.RawMessage(`{"crash_every": -5}`))
	if err == nil || !strings.Contains(err.Error(), "crashsink wants crash_every >= 0, got -5") {
		t.Fatalf("Host.Validate = %v", err)
	}
}

func TestPluginEnvironment(t *testing.T) {
	t.Setenv("CRASHSINK_VERSION", "from-hookbus")
	h, _, _ := newHost(t)
	m, err := h.Describe(ctx(t), "env", fastSpec(crashsink))
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("from-hookbus/gomaxprocs=%d", max(1, runtime.NumCPU()/2))
	if m.Version != want {
		t.Errorf("inherited environment: version %q, want %q", m.Version, want)
	}
	spec := fastSpec(crashsink)
	spec.Env = []string{"CRASHSINK_VERSION=from-config", "GOMAXPROCS=3"}
	if m, err = h.Describe(ctx(t), "env", spec); err != nil {
		t.Fatal(err)
	}
	if m.Version != "from-config/gomaxprocs=3" {
		t.Errorf("configured env must win over hookbus' own: version %q", m.Version)
	}
}

func TestStartErrors(t *testing.T) {
	sum, err := exec.Command("sha256sum", crashsink).Output()
	if err != nil {
		t.Fatal(err)
	}
	good := strings.Fields(string(sum))[0]
	// Plugins in any language: these scripts start but do not speak the protocol.
	dir := t.TempDir()
	script := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	silent := script("silent", "exec sleep 30")
	v2 := script("v2", "echo '1|2|unix|/tmp/nowhere|grpc|'; exec sleep 30")
	tests := []struct {
		name string
		spec pluginhost.Spec
		want string
	}{
		{"stdout noise", pluginhost.Spec{Path: crashsink, Env: []string{"CRASHSINK_NOISE=1"}}, `its first line on stdout was "hello from a chatty plugin", not the handshake line`},
		{"no handshake line", pluginhost.Spec{Path: silent, StartTimeout: 300 * time.Millisecond}, "printed no handshake line on stdout within the start timeout (sdk/PROTOCOL.md section 2)"},
		{"other protocol version", pluginhost.Spec{Path: v2}, "speaks another hookbus plugin protocol version (hookbus speaks 1"},
		{"checksum mismatch", pluginhost.Spec{Path: crashsink, SHA256: strings.Repeat("0", 64)}, "checksum mismatch"},
		{"bad checksum", pluginhost.Spec{Path: crashsink, SHA256: "abc"}, "sha256: \"abc\" is not a hex SHA-256"},
		{"missing binary", pluginhost.Spec{Path: "/nonexistent/plugin"}, "/nonexistent/plugin"},
		{"not a plugin", pluginhost.Spec{Path: "/bin/true"}, "exited before completing the handshake"},
	}
	h, _, _ := newHost(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := h.Start(ctx(t), "x", tt.spec)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Start = %v, want %q", err, tt.want)
			}
			// Advice for any language: no Go-only remedy.
			for _, goOnly := range []string{"built with sdk.Serve", "must call sdk.Serve", "go build"} {
				if strings.Contains(err.Error(), goOnly) {
					t.Errorf("Start = %v: Go-only advice %q", err, goOnly)
				}
			}
		})
	}
	if _, err := h.Start(ctx(t), "x", pluginhost.Spec{Path: crashsink, SHA256: good}); err != nil {
		t.Fatalf("matching checksum: %v", err)
	}
}

func TestCloseStopsPlugins(t *testing.T) {
	h, _, _ := newHost(t)
	p, err := h.Start(ctx(t), "c", fastSpec(crashsink))
	if err != nil {
		t.Fatal(err)
	}
	pid := p.Pid()
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	waitGone(t, pid)
	if _, _, err := p.Sink(ctx(t), json.RawMessage(`{}`)); !errors.Is(err, pluginhost.ErrClosed) {
		t.Fatalf("Sink after Close = %v, want ErrClosed", err)
	}
}

// TestNoOrphanAfterHostKill9 kill -9s a host process and checks that its
// plugin dies too.
func TestNoOrphanAfterHostKill9(t *testing.T) {
	cmd := exec.Command(hostBin, crashsink)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("read plugin pid: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || pid <= 0 {
		t.Fatalf("host printed %q", line)
	}
	if !alive(pid) {
		t.Fatalf("plugin %d not running", pid)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	waitGone(t, pid)
}

func waitGone(t *testing.T, pid int) {
	t.Helper()
	testenv.Eventually(t, 10*time.Second, fmt.Sprintf("plugin process %d to exit", pid), func() bool { return !alive(pid) })
}

// alive reports whether pid is a running (not zombie) process.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return syscall.Kill(pid, 0) == nil
	}
	// The state follows the ")" that ends the command name.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || (s[i+2] != 'Z' && s[i+2] != 'X')
}

// Conformance of a plugin served through the supervised proxies.
func TestProxyConformance(t *testing.T) {
	h, _, _ := newHost(t)
	plugintest.RunSink(t, func() sdk.Sink {
		p, err := h.Start(context.Background(), "conf", fastSpec(crashsink))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = p.Close() })
		return &lazySink{p: p}
	}, plugintest.SinkOptions{
		Config:    json.RawMessage(`{}`),
		BadConfig: json.RawMessage(`{"crash_every": -2}`),
		Cases:     []plugintest.SinkCase{{Name: "ok", Deliveries: plugintest.SampleEvents(4), Want: []sdk.Outcome{sdk.OK, sdk.OK, sdk.OK, sdk.OK}}},
	})
}

// lazySink adapts Plugin.Sink (which initialises) to the sdk.Sink life cycle.
type lazySink struct {
	p *pluginhost.Plugin
	sdk.Sink
}

func (l *lazySink) Init(ctx context.Context, config json.RawMessage) (sdk.SinkInfo, error) {
	s, info, err := l.p.Sink(ctx, config)
	l.Sink = s
	return info, err
}

// emitted records what a source emitted through the proxy.
type emitted struct {
	mu  sync.Mutex
	ids map[string]int
}

func (e *emitted) Emit(_ context.Context, evs []sdk.Event) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, ev := range evs {
		e.ids[ev.ID]++
	}
	return nil
}

func (e *emitted) count() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.ids)
}

// TestSourceRunsAgainAfterCrash kills a source plugin mid-stream: the proxy
// runs the restarted plugin again and no event is lost.
func TestSourceRunsAgainAfterCrash(t *testing.T) {
	h, _, _ := newHost(t)
	p, err := h.Start(ctx(t), "tail", fastSpec(fileSource))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "in.jsonl")
	appendLines := func(from, to int) {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		for i := from; i < to; i++ {
			fmt.Fprintf(f, `{"id": "e%d", "type": "t"}`+"\n", i)
		}
	}
	src, err := p.Source(ctx(t), json.RawMessage(fmt.Sprintf(`{"path": %q, "batch_size": 3, "poll_interval": "10ms"}`, path)))
	if err != nil {
		t.Fatal(err)
	}
	em := &emitted{ids: map[string]int{}}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(runCtx, em) }()
	appendLines(0, 10)
	testenv.Eventually(t, 15*time.Second, "first events", func() bool { return em.count() == 10 })
	first := p.Pid()
	if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	appendLines(10, 20)
	testenv.Eventually(t, 15*time.Second, "events after the restart", func() bool { return em.count() == 20 })
	if p.Restarts() < 1 || p.Pid() == first {
		t.Fatalf("restarts = %d, pid %d -> %d", p.Restarts(), first, p.Pid())
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	if err := src.Close(ctx(t)); err != nil {
		t.Fatal(err)
	}
}

// TestTransportErrorsPointAtTheProtocol: a plugin (in any language) that
// gets the handshake's certificate or the TLS of the connection wrong is
// told which part of sdk/PROTOCOL.md to read.
func TestTransportErrorsPointAtTheProtocol(t *testing.T) {
	notls := testenv.BuildBinary(t, "./testdata/notls")
	h, _, _ := newHost(t)
	_, err := h.Describe(ctx(t), "badcert", pluginhost.Spec{Path: notls, Env: []string{"NOTLS_CERT=" + strings.Repeat("!", 60)}})
	if err == nil || !strings.Contains(err.Error(), "the certificate in its handshake line (field 6) is not valid") || !strings.Contains(err.Error(), "sdk/PROTOCOL.md sections 2-3") {
		t.Errorf("bad certificate field: %v", err)
	}
	_, err = h.Describe(ctx(t), "notls", pluginhost.Spec{Path: notls})
	if err == nil || !strings.Contains(err.Error(), "the plugin must serve TLS") || !strings.Contains(err.Error(), "sdk/PROTOCOL.md section 3") {
		t.Errorf("no TLS: %v", err)
	}
}
