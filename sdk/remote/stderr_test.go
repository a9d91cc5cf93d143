package remote

import (
	"bytes"
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// captured is an hclog sink recording each line as JSON.
type captured struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (c *captured) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.Write(p)
}

func (c *captured) lines(t *testing.T) []map[string]any {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(c.buf.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

func TestLineLogger(t *testing.T) {
	c := &captured{}
	w := newLineLogger(hclog.New(&hclog.LoggerOptions{Output: c, JSONFormat: true, Level: hclog.Info}))
	// Written in pieces, as go-plugin does (the line, then its newline).
	for _, p := range []string{
		`{"@level":"warn","@message":"nine digits","@timestamp":"2026-12-02T13:00:00.123456789Z","k":"v","@module":"m"}`, "\n",
		`{"@level":"debug","@message":"below the level"}` + "\n",
		`{"@message":"no level"}` + "\nplain ", "line\n",
		"[ERROR] prefixed\n",
		"\n",
		`{"not": "hclog"}` + "\n",
		"panic: boom\n", "goroutine 1 [running]:\n",
	} {
		if _, err := w.Write([]byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	want := []struct{ level, msg string }{
		{"warn", "nine digits"},
		{"info", "no level"},
		{"info", "plain line"},
		{"error", "[ERROR] prefixed"},
		{"info", `{"not": "hclog"}`},
		{"error", "panic: boom"},
		{"error", "goroutine 1 [running]:"},
	}
	got := c.lines(t)
	if len(got) != len(want) {
		t.Fatalf("logged %d lines, want %d: %v", len(got), len(want), got)
	}
	for i, w := range want {
		if got[i]["@level"] != w.level || got[i]["@message"] != w.msg {
			t.Errorf("line %d = %v, want %s %q", i, got[i], w.level, w.msg)
		}
	}
	if got[0]["k"] != "v" || got[0]["module"] != "m" || got[0]["@timestamp"] == "2026-12-02T13:00:00.123456789Z" {
		t.Errorf("attributes of the first line = %v", got[0])
	}
}

// TestLineLoggerSplitsLongLines: an unterminated run of output is logged
// in pieces of maxLogLine, not buffered without bound.
func TestLineLoggerSplitsLongLines(t *testing.T) {
	c := &captured{}
	w := newLineLogger(hclog.New(&hclog.LoggerOptions{Output: c, JSONFormat: true}))
	// go-plugin hands over a line longer than its buffer in pieces, the
	// newline last.
	long := strings.Repeat("x", maxLogLine+10)
	for _, p := range []string{long[:100], long[100:], "\n"} {
		if _, err := w.Write([]byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	got := c.lines(t)
	if len(got) != 2 || len(got[0]["@message"].(string)) != maxLogLine || got[1]["@message"] != "xxxxxxxxxx" {
		t.Fatalf("a line of %d bytes logged as %d lines", len(long), len(got))
	}
}

func TestStderrOffMutesOnlyGoPluginsStderrLogger(t *testing.T) {
	base := hclog.New(&hclog.LoggerOptions{Output: &captured{}})
	l := newStderrOff(base, "/usr/lib/hookbus/acme")
	if got := l.Named("acme").GetLevel(); got != hclog.Off {
		t.Errorf("Named(acme) level = %v, want off", got)
	}
	if got := l.Named("stdio").GetLevel(); got == hclog.Off {
		t.Error("Named(stdio) is muted too")
	}
}
