//go:build unix

package nodesink_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/hookbus/hookbus/internal/testenv"
	"github.com/hookbus/hookbus/sdk"
	"github.com/hookbus/hookbus/sdk/plugintest"
	pluginv1 "github.com/hookbus/hookbus/sdk/proto/hookbus/plugin/v1"
	"github.com/hookbus/hookbus/sdk/remote"
)

// raw is a delivery whose event is sent as these exact bytes.
func raw(id, body string) sdk.Delivery {
	d := plugintest.SampleEvents(1)[0]
	d.Event.ID = id
	d.Raw = json.RawMessage(body)
	return d
}

func sinkOptions(t *testing.T) plugintest.SinkOptions {
	out := filepath.Join(t.TempDir(), "out.jsonl")
	big := plugintest.SampleEvents(1)[0]
	big.Event.ID = "big"
	big.Event.Data = json.RawMessage(`"` + strings.Repeat("x", 1000) + `"`)
	return plugintest.SinkOptions{
		Config:    json.RawMessage(fmt.Sprintf(`{"path": %q, "max_event_bytes": 512}`, out)),
		BadConfig: json.RawMessage(`{"path": "", "fsync": "yes"}`),
		Cases: []plugintest.SinkCase{
			{Name: "ok", Deliveries: plugintest.SampleEvents(3), Want: []sdk.Outcome{sdk.OK, sdk.OK, sdk.OK}},
			{Name: "too big", Deliveries: append(plugintest.SampleEvents(1), big), Want: []sdk.Outcome{sdk.OK, sdk.Permanent}},
			{Name: "exact bytes", Deliveries: []sdk.Delivery{
				raw("lines", "{\n  \"id\": \"lines\",\r\n  \"type\": \"t\", \"data\": \"a\\nb\"\n}"),
				raw("num", `{"id":"num","type":"t","data":{"n":12345678901234567890123}}`),
				raw("array", `[1, 2]`),
			}, Want: []sdk.Outcome{sdk.OK, sdk.OK, sdk.Permanent}},
		},
		Check: func(t *testing.T) {
			lines := readLines(t, out)
			byID := map[string]string{}
			for _, l := range lines {
				var ev struct{ ID string }
				if err := json.Unmarshal([]byte(l), &ev); err != nil {
					t.Fatalf("line is not a JSON event: %v: %s", err, l)
				}
				byID[ev.ID] = l
			}
			var ev sdk.Event
			if err := json.Unmarshal([]byte(byID["evt-0"]), &ev); err != nil {
				t.Fatalf("evt-0: %v (lines %q)", err, lines)
			}
			if ev.Type != "plugintest.sample" || string(ev.Data) != `{"n":0}` || string(ev.Extensions["traceparent"]) != `"00-abc"` {
				t.Errorf("evt-0 written as %s", byID["evt-0"])
			}
			if got, want := byID["lines"], `{  "id": "lines",  "type": "t", "data": "a\nb"}`; got != want {
				t.Errorf("event with line breaks written as %q, want %q", got, want)
			}
			if !strings.Contains(byID["num"], "12345678901234567890123") {
				t.Errorf("big number not kept digit for digit: %s", byID["num"])
			}
			if _, ok := byID["big"]; ok {
				t.Error("the dead-lettered event was written")
			}
		},
	}
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 8<<20)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}

// TestSinkBinaryConformance runs hookbus' conformance suite against the
// plugin, started through its launcher exactly as hookbus starts it.
func TestSinkBinaryConformance(t *testing.T) {
	bin := launcher(t)
	start := time.Now()
	plugintest.RunSinkBinary(t, bin, sinkOptions(t))
	t.Logf("conformance suite ran in %s", time.Since(start).Round(time.Millisecond))
}

// TestProtoIsTheSDKs: the example ships a copy of plugin.proto so it can be
// copied out of this repository; it must not drift from the SDK's.
func TestProtoIsTheSDKs(t *testing.T) {
	want, err := os.ReadFile("../../../sdk/proto/hookbus/plugin/v1/plugin.proto")
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("proto/hookbus/plugin/v1/plugin.proto")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("proto/hookbus/plugin/v1/plugin.proto differs from sdk/proto/hookbus/plugin/v1/plugin.proto: copy it again")
	}
}

// logBuffer collects the host's log lines (hclog JSON) of a plugin.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// find returns the first line logged at level with message msg.
func (b *logBuffer) find(level, msg string) map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, l := range strings.Split(b.buf.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["@level"] == level && m["@message"] == msg {
			return m
		}
	}
	return nil
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// start runs the plugin as hookbus does, logging what it writes at info and
// above into the returned buffer.
func start(t *testing.T) (*remote.Client, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	c, err := remote.Start(remote.Options{
		Cmd:         exec.Command(launcher(t)),
		Logger:      hclog.New(&hclog.LoggerOptions{Name: "host", Output: logs, Level: hclog.Info, JSONFormat: true}),
		CallTimeout: plugintest.Timeout,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Kill)
	return c, logs
}

func ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), plugintest.Timeout)
	t.Cleanup(cancel)
	return ctx
}

func TestDescribe(t *testing.T) {
	m := plugintest.Describe(t, launcher(t))
	var schema map[string]any
	if m.Name != "node-sink" || len(m.Kinds) != 1 || m.Kinds[0] != sdk.KindSink || m.Version != "1.0.0" || json.Unmarshal(m.ConfigSchema, &schema) != nil {
		t.Fatalf("manifest = %+v", m)
	}
	if schema["additionalProperties"] != false || schema["$schema"] != "https://json-schema.org/draft/2020-12/schema" {
		t.Errorf("schema = %s", m.ConfigSchema)
	}
}

// TestConfigErrorsByField: ValidateConfig and Init report every problem
// at its own key, with the protocol's codes.
func TestConfigErrorsByField(t *testing.T) {
	c, _ := start(t)
	bad := json.RawMessage(`{"path": "", "fsync": "yes", "max_event_bytes": -1, "colour": 1}`)
	want := []string{"path", "fsync", "max_event_bytes", "colour"}
	for name, call := range map[string]func() error{
		"ValidateConfig": func() error { return c.ValidateConfig(ctx(t), sdk.KindSink, bad) },
		"Init": func() error {
			_, err := c.Sink().Init(ctx(t), bad)
			return err
		},
	} {
		t.Run(name, func(t *testing.T) {
			var re *remote.Error
			if err := call(); !errors.As(err, &re) || re.Code != pluginv1.ErrorCode_ERROR_CODE_INVALID_CONFIG {
				t.Fatalf("error %v, want an INVALID_CONFIG *remote.Error", err)
			}
			got := map[string]string{}
			for _, f := range re.Fields {
				got[f.Field] = f.Message
			}
			for _, f := range want {
				if got[f] == "" {
					t.Errorf("no problem reported for %s: %v", f, got)
				}
			}
			if !strings.Contains(re.Message, "colour: unknown field") {
				t.Errorf("message %q does not name the unknown key", re.Message)
			}
		})
	}
	t.Run("OtherKind", func(t *testing.T) {
		var re *remote.Error
		if err := c.ValidateConfig(ctx(t), sdk.KindSource, json.RawMessage(`{}`)); !errors.As(err, &re) || re.Code != pluginv1.ErrorCode_ERROR_CODE_UNIMPLEMENTED {
			t.Fatalf("ValidateConfig(source) = %v, want UNIMPLEMENTED", err)
		}
	})
	t.Run("UnopenablePath", func(t *testing.T) {
		_, err := c.Sink().Init(ctx(t), json.RawMessage(fmt.Sprintf(`{"path": %q}`, filepath.Join(t.TempDir(), "missing", "out.jsonl"))))
		var re *remote.Error
		if !errors.As(err, &re) || len(re.Fields) != 1 || re.Fields[0].Field != "path" || !strings.Contains(re.Message, "ENOENT") {
			t.Fatalf("Init with a path in a missing directory = %v, want an error at path", err)
		}
	})
}

// TestDeliverBeforeInit: the request is refused as a whole, so hookbus
// retries its deliveries.
func TestDeliverBeforeInit(t *testing.T) {
	c, _ := start(t)
	for _, r := range c.Sink().Deliver(ctx(t), plugintest.SampleEvents(2)) {
		if r.Outcome != sdk.Retry || !strings.Contains(r.Reason, "before a successful Init") {
			t.Fatalf("Deliver before Init: %+v", r)
		}
	}
}

// TestLargeBatch: one Deliver request far over gRPC's default 4 MiB limit.
func TestLargeBatch(t *testing.T) {
	c, _ := start(t)
	out := filepath.Join(t.TempDir(), "out.jsonl")
	s := c.Sink()
	if _, err := s.Init(ctx(t), json.RawMessage(fmt.Sprintf(`{"path": %q, "fsync": false}`, out))); err != nil {
		t.Fatal(err)
	}
	batch := plugintest.SampleEvents(6)
	for i := range batch {
		batch[i].Event.Data = json.RawMessage(`"` + strings.Repeat("x", 1<<20) + `"`)
	}
	for i, r := range s.Deliver(ctx(t), batch) {
		if r.Outcome != sdk.OK {
			t.Fatalf("delivery %d: %+v", i, r)
		}
	}
	if n := len(readLines(t, out)); n != 6 {
		t.Fatalf("%d lines written, want 6", n)
	}
}

// TestLogsAndShutdown: the plugin's stderr lines reach the host's log at
// their level, with their attributes, and GRPCController.Shutdown stops it.
func TestLogsAndShutdown(t *testing.T) {
	c, logs := start(t)
	out := filepath.Join(t.TempDir(), "out.jsonl")
	if _, err := c.Sink().Init(ctx(t), json.RawMessage(fmt.Sprintf(`{"path": %q}`, out))); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "the Init log line", func() bool { return logs.find("info", "appending events") != nil })
	if m := logs.find("info", "appending events"); m["path"] != out || m["module"] != "node-sink" {
		t.Errorf("Init line logged as %v", m)
	}
	c.Kill()
	if !c.Exited() {
		t.Fatal("plugin still running after Kill")
	}
	testenv.Eventually(t, 10*time.Second, "the shutdown log line", func() bool { return logs.find("info", "stopping") != nil })
	if m := logs.find("info", "stopping"); m["reason"] != "hookbus asked for shutdown" {
		t.Errorf("stop logged as %v; logs:\n%s", m, logs)
	}
}

// TestExitsWhenParentDies starts the plugin from a shell that then exits
// without killing it (no PR_SET_PDEATHSIG here): the plugin must notice it
// was re-parented and exit by itself.
func TestExitsWhenParentDies(t *testing.T) {
	bin := launcher(t)
	dir := t.TempDir()
	pidFile, stderrPath := filepath.Join(dir, "pid"), filepath.Join(dir, "stderr")
	stderr, err := os.Create(stderrPath)
	if err != nil {
		t.Fatal(err)
	}
	defer stderr.Close()
	sh := exec.Command("sh", "-c", `"$0" & echo $! > "$1"; read _; exit 0`, bin, pidFile)
	sh.Env = append(os.Environ(), sdk.Handshake.MagicCookieKey+"="+sdk.Handshake.MagicCookieValue, "PLUGIN_PROTOCOL_VERSIONS=1")
	sh.Stderr = stderr
	stdin, err := sh.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := sh.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sh.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "1|1|unix|") {
		t.Fatalf("handshake line %q: %v", line, err)
	}
	var pid int
	testenv.Eventually(t, 10*time.Second, "the shell to write the plugin's pid", func() bool {
		b, _ := os.ReadFile(pidFile)
		if !strings.HasSuffix(string(b), "\n") {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil
	})
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	if !alive(pid) {
		t.Fatal("plugin not running after its handshake")
	}
	stdin.Close() // the shell exits; the plugin is re-parented
	if err := sh.Wait(); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "the orphaned plugin to exit", func() bool { return !alive(pid) })
	testenv.Eventually(t, 10*time.Second, "its log line", func() bool {
		b, _ := os.ReadFile(stderrPath)
		return strings.Contains(string(b), `"@message":"hookbus exited; stopping"`)
	})
}

// alive tells whether pid is a live (not zombie) process.
func alive(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(fields) > 0 && fields[0] != "Z"
}

// TestNodeUnitTests runs the example's own tests (node:test) of the sink:
// cancelled requests write nothing, lines never interleave, outcomes.
func TestNodeUnitTests(t *testing.T) {
	launcher(t) // node present, dependencies installed
	out, err := exec.Command("node", "--test", "test/sink.test.js").CombinedOutput()
	if err != nil {
		t.Fatalf("node --test: %v\n%s", err, out)
	}
}
