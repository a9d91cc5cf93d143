package file_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/hookbus/hookbus/internal/testenv"
	"github.com/hookbus/hookbus/plugins/file"
	"github.com/hookbus/hookbus/sdk"
	"github.com/hookbus/hookbus/sdk/plugintest"
	"github.com/hookbus/hookbus/sdk/remote"
)

// fileSink and fileSource build the plugin binaries (once per test run).
func fileSink(t testing.TB) string   { return plugintest.Build(t, "./cmd/file-sink") }
func fileSource(t testing.TB) string { return plugintest.Build(t, "./cmd/file-source") }

func sinkOptions(t *testing.T) (plugintest.SinkOptions, string) {
	path := filepath.Join(t.TempDir(), "out.jsonl")
	big := plugintest.SampleEvents(1)[0]
	big.Event.ID = "big"
	big.Event.Data = json.RawMessage(`"` + strings.Repeat("x", 300) + `"`)
	return plugintest.SinkOptions{
		Config:    json.RawMessage(fmt.Sprintf(`{"path": %q, "max_line_bytes": 256}`, path)),
		BadConfig: json.RawMessage(`{"max_line_bytes": -1}`),
		Cases: []plugintest.SinkCase{
			{Name: "ok", Deliveries: plugintest.SampleEvents(3), Want: []sdk.Outcome{sdk.OK, sdk.OK, sdk.OK}},
			{Name: "too big", Deliveries: append(plugintest.SampleEvents(1), big), Want: []sdk.Outcome{sdk.OK, sdk.Permanent}},
		},
		Check: func(t *testing.T) {
			lines := readLines(t, path)
			if len(lines) < 4 {
				t.Fatalf("file holds %d lines, want at least 4", len(lines))
			}
			var ev sdk.Event
			if err := json.Unmarshal([]byte(lines[0]), &ev); err != nil {
				t.Fatal(err)
			}
			if ev.ID != "evt-0" || string(ev.Extensions["traceparent"]) != `"00-abc"` {
				t.Errorf("first line = %s", lines[0])
			}
			for _, l := range lines {
				if strings.Contains(l, `"big"`) {
					t.Errorf("permanently failed event was written: %s", l)
				}
			}
		},
	}, path
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}

func TestSinkConformance(t *testing.T) {
	opts, _ := sinkOptions(t)
	plugintest.RunSink(t, func() sdk.Sink { return &file.Sink{} }, opts)
}

func TestSinkBinaryConformance(t *testing.T) {
	opts, _ := sinkOptions(t)
	plugintest.RunSinkBinary(t, fileSink(t), opts)
}

func sourceOptions(t *testing.T) plugintest.SourceOptions {
	path := filepath.Join(t.TempDir(), "in.jsonl")
	var n atomic.Int64
	return plugintest.SourceOptions{
		Config:    json.RawMessage(fmt.Sprintf(`{"path": %q, "batch_size": 2, "poll_interval": "10ms"}`, path)),
		BadConfig: json.RawMessage(`{"path": "x", "poll_interval": "soon"}`),
		Feed: func(t testing.TB, count int) {
			f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			for range count {
				i := n.Add(1)
				// Every other event has no id: the source derives one.
				id := ""
				if i%2 == 0 {
					id = fmt.Sprintf(`"id": "line-%d", `, i)
				}
				fmt.Fprintf(f, `{%s"type": "file.test", "data": {"n": %d}}`+"\n", id, i)
			}
		},
	}
}

func TestSourceConformance(t *testing.T) {
	plugintest.RunSource(t, func() sdk.Source { return file.NewSource(nil) }, sourceOptions(t))
}

func TestSourceBinaryConformance(t *testing.T) {
	plugintest.RunSourceBinary(t, fileSource(t), sourceOptions(t))
}

func TestDescribeBinary(t *testing.T) {
	m := plugintest.Describe(t, fileSink(t))
	if m.Name != "file" || len(m.Kinds) != 1 || m.Kinds[0] != "sink" || !json.Valid(m.ConfigSchema) || len(m.ConfigSchema) == 0 {
		t.Fatalf("manifest = %+v", m)
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name, config, want string
	}{
		{"missing path", `{}`, "path: file sink needs a path"},
		{"unknown field", `{"path": "x", "colour": 1}`, "colour: unknown key"},
		{"every problem", `{"colour": 1, "max_line_bytes": "big"}`, "colour: unknown key\nmax_line_bytes: want int, got \"big\"\npath: file sink needs a path"},
		{"negative", `{"path": "x", "max_line_bytes": -1}`, "max_line_bytes: must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := (&file.Sink{}).ValidateConfig(json.RawMessage(tt.config))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ValidateConfig(%s) = %v, want %q", tt.config, err, tt.want)
			}
		})
	}
}

// checkingEmitter checks batches as hookbus does (sdk.CheckBatch) and
// records the ids of what it accepted.
type checkingEmitter struct {
	mu  sync.Mutex
	ids []string
}

func (e *checkingEmitter) Emit(_ context.Context, evs []sdk.Event) error {
	if err := sdk.CheckBatch(evs); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, ev := range evs {
		e.ids = append(e.ids, ev.ID)
	}
	return nil
}

func (e *checkingEmitter) got() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.ids)
}

// TestSourceSkipsRejectedEvents: a line hookbus rejects (no type) is
// skipped with a warning naming it; the lines around it are queued and the
// offset moves past all three, instead of the batch being offered forever.
func TestSourceSkipsRejectedEvents(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "in.jsonl")
	lines := `{"id": "a", "type": "t"}` + "\n" + `{"id": "b"}` + "\n" + `{"id": "c", "type": "t"}` + "\n"
	if err := os.WriteFile(path, []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	var logs strings.Builder
	var logMu sync.Mutex
	logger := slog.New(slog.NewJSONHandler(writerFunc(func(p []byte) (int, error) {
		logMu.Lock()
		defer logMu.Unlock()
		return logs.Write(p)
	}), nil))
	src := file.NewSource(logger)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := src.Init(ctx, json.RawMessage(fmt.Sprintf(`{"path": %q, "poll_interval": "10ms"}`, path))); err != nil {
		t.Fatal(err)
	}
	em := &checkingEmitter{}
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, em) }()
	testenv.Eventually(t, 10*time.Second, "the offset past the three lines", func() bool {
		b, err := os.ReadFile(path + ".offset")
		return err == nil && strings.TrimSpace(string(b)) == fmt.Sprint(len(lines))
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	if got := em.got(); !slices.Equal(got, []string{"a", "c"}) {
		t.Errorf("queued %v, want [a c]", got)
	}
	logMu.Lock()
	defer logMu.Unlock()
	if !strings.Contains(logs.String(), `"level":"WARN","msg":"skipping an event hookbus rejected"`) || !strings.Contains(logs.String(), `event 1 (id \"b\"): field \"type\": required`) {
		t.Errorf("no warning naming the rejected event in:\n%s", logs.String())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// TestSourceBinaryLogs: the built file source's log lines (made with
// sdk.Logger before Serve) reach the host's log at their level.
func TestSourceBinaryLogs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "in.jsonl")
	if err := os.WriteFile(path, []byte("not json\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var logs strings.Builder
	logger := hclog.New(&hclog.LoggerOptions{Level: hclog.Info, JSONFormat: true, Output: writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logs.Write(p)
	})})
	c, err := remote.Start(remote.Options{Cmd: exec.Command(fileSource(t)), Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Kill()
	src := c.Source()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := src.Init(ctx, json.RawMessage(fmt.Sprintf(`{"path": %q, "poll_interval": "10ms"}`, path))); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, &checkingEmitter{}) }()
	testenv.Eventually(t, 10*time.Second, "the plugin's error line in the host's log", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return strings.Contains(logs.String(), `"@level":"error","@message":"skipping a line that is not an event"`)
	})
	cancel()
	<-done
}
