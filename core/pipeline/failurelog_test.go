package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookbus/hookbus/core/queue"
	"github.com/hookbus/hookbus/core/retry"
	"github.com/hookbus/hookbus/internal/testenv"
	"github.com/hookbus/hookbus/sdk"
)

// The first failure logs; the next ones within the period are counted and
// reported by the first line after it.
func TestFailureLogFoldsAPeriod(t *testing.T) {
	var f failureLog
	t0 := time.Unix(1000, 0)
	if ok, n := f.allow(t0); !ok || n != 0 {
		t.Fatalf("first failure: allow %v, %d held", ok, n)
	}
	for i := range 5 {
		if ok, _ := f.allow(t0.Add(time.Duration(i+1) * time.Second)); ok {
			t.Fatalf("failure %d within the period logged", i+2)
		}
	}
	if ok, n := f.allow(t0.Add(failureLogEvery)); !ok || n != 5 {
		t.Fatalf("first failure after the period: allow %v with %d held, want true with 5", ok, n)
	}
	if ok, _ := f.allow(t0.Add(failureLogEvery + time.Second)); ok {
		t.Fatal("the period starts again at the line that logged")
	}
}

// failingSink answers every delivery with a retry and counts the attempts.
type failingSink struct {
	mu       sync.Mutex
	attempts int
}

func (s *failingSink) Init(context.Context, json.RawMessage) (sdk.SinkInfo, error) {
	return sdk.SinkInfo{}, nil
}

func (s *failingSink) Deliver(_ context.Context, batch []sdk.Delivery) []sdk.Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	res := make([]sdk.Result, len(batch))
	for i := range batch {
		s.attempts++
		res[i] = sdk.Result{Outcome: sdk.Retry, Reason: "HTTP 503", StatusCode: 503}
	}
	return res
}

func (s *failingSink) Close(context.Context) error { return nil }

func (s *failingSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.attempts
}

// lockedBuffer is a log destination safe for the engine's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A dead endpoint's failed attempts log one info line per period, not one
// each.
func TestDeadSinkLogsAFewLines(t *testing.T) {
	var logs lockedBuffer
	sink := &failingSink{}
	e, _ := runEngine(t, Options{
		Queue:       queue.NewMemory(),
		Logger:      slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
		Pipelines:   []Pipeline{{Name: "p", From: []string{"src"}, To: []string{"dead"}}},
		Sinks:       map[string]Sink{"dead": {Name: "dead", Sink: sink, Schedule: retry.Schedule{Delays: []time.Duration{time.Hour}}}},
		DeadLetters: &deadLetters{},
	})
	const n = 40
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("e%d", i)
	}
	publishEvents(t, e, ids...)
	testenv.Eventually(t, 30*time.Second, "every event attempted once", func() bool { return sink.count() >= n })
	lines := strings.Count(logs.String(), "delivery failed; retry scheduled")
	if lines < 1 || lines > 3 {
		t.Fatalf("%d failed attempts logged %d info lines, want 1 to 3:\n%s", n, lines, logs.String())
	}
}
