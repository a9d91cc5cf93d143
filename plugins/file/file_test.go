package file_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/hookbus/hookbus/internal/testenv"
	"github.com/hookbus/hookbus/plugins/file"
	"github.com/hookbus/hookbus/sdk"
	"github.com/hookbus/hookbus/sdk/plugintest"
)

var fileSink, fileSource string

func TestMain(m *testing.M) {
	fileSink = testenv.MustBuild("./cmd/file-sink")
	fileSource = testenv.MustBuild("./cmd/file-source")
	testenv.Main(m)
}

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
	plugintest.RunSinkBinary(t, fileSink, opts)
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
	plugintest.RunSourceBinary(t, fileSource, sourceOptions(t))
}

func TestDescribeBinary(t *testing.T) {
	m := plugintest.Describe(t, fileSink)
	if m.Name != "file" || len(m.Kinds) != 1 || m.Kinds[0] != "sink" || !json.Valid(m.ConfigSchema) || len(m.ConfigSchema) == 0 {
		t.Fatalf("manifest = %+v", m)
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name, config, want string
	}{
		{"missing path", `{}`, "path: file sink needs a path"},
		{"unknown field", `{"path": "x", "colour": 1}`, `unknown field "colour"`},
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
