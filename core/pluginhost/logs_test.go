package pluginhost_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hookbus/hookbus/core/pluginhost"
	"github.com/hookbus/hookbus/internal/testenv"
	"github.com/hookbus/hookbus/sdk"
)

// logLines parses the host's JSON log.
func logLines(t *testing.T, logs *logBuffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

// findLog returns the first log line with message msg.
func findLog(lines []map[string]any, msg string) map[string]any {
	for _, l := range lines {
		if l["msg"] == msg {
			return l
		}
	}
	return nil
}

// TestPluginLogsReachHostLog: what a plugin logs through sdk.Logger (made
// before or after Serve), the standard log package and plain writes to
// stderr shows up in the host's log at its level, with plugin=<name>,
// even with the host logging at info.
func TestPluginLogsReachHostLog(t *testing.T) {
	logs := &logBuffer{}
	h := pluginhost.New(slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})), nil)
	t.Cleanup(func() { _ = h.Close() })
	p, err := h.Start(ctx(t), "emitsource/chatty", fastSpec(emitSource))
	if err != nil {
		t.Fatal(err)
	}
	src, err := p.Source(ctx(t), json.RawMessage(`{"out": "`+filepath.Join(t.TempDir(), "out")+`", "batch": "ok"}`))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = src.Close(context.Background()) })
	want := map[string]string{
		"slog info before serve":         "INFO",
		"plain stderr line before serve": "INFO",
		"slog info after serve":          "INFO",
		"slog warning after serve":       "WARN",
		"standard log line":              "INFO",
		"plain stderr line after serve":  "INFO",
	}
	ok := testenv.Wait(15*time.Second, func() bool {
		lines := logLines(t, logs)
		for msg := range want {
			if findLog(lines, msg) == nil {
				return false
			}
		}
		return true
	})
	lines := logLines(t, logs)
	for msg, level := range want {
		l := findLog(lines, msg)
		if l == nil {
			t.Errorf("%q is not in the host's log", msg)
			continue
		}
		if l["level"] != level || l["plugin"] != "emitsource/chatty" {
			t.Errorf("%q logged as %v, want level %s and plugin=emitsource/chatty", msg, l, level)
		}
	}
	if l := findLog(lines, "slog info after serve"); l != nil && l["batch"] != "ok" {
		t.Errorf("the slog line lost its attribute: %v", l)
	}
	if !ok {
		t.Logf("host log:\n%s", logs.String())
	}
}

// checkingEmitter checks batches as hookbus' own emitter does
// (sdk.CheckBatch) and records what it accepted.
type checkingEmitter struct{ emitted }

func (e *checkingEmitter) Emit(ctx context.Context, evs []sdk.Event) error {
	if err := sdk.CheckBatch(evs); err != nil {
		return err
	}
	return e.emitted.Emit(ctx, evs)
}

// outcome is what testdata/emitsource's Emit returned.
type outcome struct {
	Error      string          `json:"error"`
	Rejected   bool            `json:"rejected"`
	NotQueued  bool            `json:"not_queued"`
	Rejections []sdk.Rejection `json:"rejections"`
	Remaining  int             `json:"remaining"`
	Then       string          `json:"then"`
}

// TestSourceBatchRejected: a batch refused for its events (a missing type,
// over the limits of HTTP ingest) reaches the plugin as sdk.ErrRejected
// naming the event, field and limit, not as ErrNotQueued; nothing of it is
// queued, the rest can be emitted again, and the host logs it at warn.
func TestSourceBatchRejected(t *testing.T) {
	tests := []struct {
		batch     string
		want      []sdk.Rejection // Reason: a substring
		remaining int
		queued    int // after emitting the remaining events
	}{
		{"mixed", []sdk.Rejection{{Index: 1, ID: "b", Field: "type", Reason: "required"}}, 2, 2},
		{"toomany", []sdk.Rejection{{Index: -1, Reason: fmt.Sprintf("the limit is %d", sdk.MaxBatchEvents)}}, 0, 0},
		{"toobig", []sdk.Rejection{{Index: 1, Reason: fmt.Sprintf("the limit is %d", sdk.MaxEventBytes)}}, 1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.batch, func(t *testing.T) {
			h, _, logs := newHost(t)
			p, err := h.Start(ctx(t), "emitsource/"+tt.batch, fastSpec(emitSource))
			if err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(t.TempDir(), "out")
			src, err := p.Source(ctx(t), json.RawMessage(fmt.Sprintf(`{"out": %q, "batch": %q}`, out, tt.batch)))
			if err != nil {
				t.Fatal(err)
			}
			em := &checkingEmitter{emitted{ids: map[string]int{}}}
			runCtx, stop := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- src.Run(runCtx, em) }()
			defer func() {
				stop()
				if err := <-done; err != nil {
					t.Errorf("Run = %v", err)
				}
				_ = src.Close(ctx(t))
			}()
			var got outcome
			testenv.Eventually(t, 15*time.Second, "the source's outcome", func() bool {
				b, err := os.ReadFile(out)
				return err == nil && json.Unmarshal(b, &got) == nil
			})
			if !got.Rejected || got.NotQueued {
				t.Fatalf("Emit = %q: rejected %v, not queued %v; want sdk.ErrRejected only", got.Error, got.Rejected, got.NotQueued)
			}
			if len(got.Rejections) != len(tt.want) {
				t.Fatalf("rejections = %+v, want %+v", got.Rejections, tt.want)
			}
			for i, w := range tt.want {
				r := got.Rejections[i]
				if r.Index != w.Index || r.ID != w.ID || r.Field != w.Field || !strings.Contains(r.Reason, w.Reason) {
					t.Errorf("rejection %d = %+v, want %+v", i, r, w)
				}
			}
			if got.Remaining != tt.remaining || got.Then != "" {
				t.Errorf("remaining %d (emitted again: %q), want %d accepted", got.Remaining, got.Then, tt.remaining)
			}
			if n := em.count(); n != tt.queued {
				t.Errorf("%d events queued, want %d (only the remaining ones, emitted again)", n, tt.queued)
			}
			l := findLog(logLines(t, logs), "source batch rejected; nothing of it was queued")
			if l == nil || l["level"] != "WARN" || l["plugin"] != "emitsource/"+tt.batch {
				t.Errorf("rejection log line = %v, want one at WARN naming the plugin", l)
			}
		})
	}
}
