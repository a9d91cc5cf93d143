package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/hookbus/hookbus/core/aggregate"
	"github.com/hookbus/hookbus/core/deadletter"
	"github.com/hookbus/hookbus/core/queue"
	"github.com/hookbus/hookbus/core/script"
	"github.com/hookbus/hookbus/core/store"
	"github.com/hookbus/hookbus/internal/testenv"
	"github.com/hookbus/hookbus/sdk"
)

// windowStore is a SQLite store of the test's own.
func windowStore(t testing.TB) *store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), "sqlite", "", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// scriptAggregator runs a compiled script's aggregate.
type scriptAggregator struct{ s *script.Script }

func (a scriptAggregator) Name() string { return a.s.Name() }

func (a scriptAggregator) Aggregate(ctx context.Context, events []sdk.Event, w aggregate.Window) ([]sdk.Event, error) {
	return a.s.Aggregate(ctx, events, script.AggregateContext{Pipeline: w.Pipeline, Sink: w.Sink, Key: w.Key, WindowStart: w.Start, WindowEnd: w.End, Count: len(events), OutputID: w.OutputID()})
}

func aggStep(t *testing.T, key string, window time.Duration, maxEvents, maxKeys int, src string) *AggregateStep {
	t.Helper()
	path, err := aggregate.ParsePath(key)
	if err != nil {
		t.Fatal(err)
	}
	st := &AggregateStep{Path: path, Spec: aggregate.Spec{Key: key, Window: window, MaxEvents: maxEvents, MaxKeys: maxKeys}.WithDefaults()}
	if src != "" {
		s, err := script.CompileSource("digest.js", src, script.Options{})
		if err != nil {
			t.Fatal(err)
		}
		st.Script = scriptAggregator{s}
	}
	return st
}

func publishKeyed(t *testing.T, e *Engine, key string, ids ...string) {
	t.Helper()
	evs := make([]sdk.Event, len(ids))
	for i, id := range ids {
		evs[i] = sdk.Event{ID: id, Type: "order.paid", Data: json.RawMessage(fmt.Sprintf(`{"k":%q}`, key))}
	}
	if err := e.Publish(context.Background(), "src", evs); err != nil {
		t.Fatal(err)
	}
}

// A script that throws dead-letters every event of the window with the
// script line in the reason; nothing is delivered and the window is gone.
func TestAggregateScriptErrorDeadLettersTheWindow(t *testing.T) {
	st := aggStep(t, "data.k", time.Hour, 3, 0, "function aggregate(events) {\n  throw new Error(\"no digest today\");\n}\n")
	ws := windowStore(t)
	te := startEngine(t, nil, Options{Windows: ws}, st)
	publishKeyed(t, te.Engine, "a", "e1", "e2", "e3")
	testenv.Eventually(t, 10*time.Second, "three dead letters", func() bool { return len(te.dls.all()) == 3 })
	seen := map[string]bool{}
	for _, dl := range te.dls.all() {
		seen[dl.Event.ID] = true
		if dl.Kind != deadletter.KindScript || dl.Pipeline != "p" || dl.Sink != "out" || dl.Source != "src" ||
			!strings.Contains(dl.Reason, "digest.js:2:") || !strings.Contains(dl.Reason, "no digest today") {
			t.Fatalf("dead letter %+v", dl)
		}
	}
	if len(seen) != 3 || len(te.sink.delivered()) != 0 {
		t.Fatalf("dead-lettered %v, delivered %v", seen, te.sink.delivered())
	}
	testenv.Eventually(t, 10*time.Second, "the window deleted", func() bool {
		_, ok, _ := ws.NextDue(context.Background(), "p")
		return !ok
	})
}

// A script that returns null filters the window's events: counted as
// filtered, nothing delivered.
func TestAggregateNullFiltersTheWindow(t *testing.T) {
	st := aggStep(t, "", time.Hour, 2, 0, "function aggregate(events) { return null; }\n")
	te := startEngine(t, nil, Options{Windows: windowStore(t)}, st)
	publishKeyed(t, te.Engine, "a", "e1", "e2")
	testenv.Eventually(t, 10*time.Second, "two events filtered", func() bool {
		var m dto.Metric
		if err := te.m.Filtered.WithLabelValues("p", "out").Write(&m); err != nil {
			t.Fatal(err)
		}
		return m.GetCounter().GetValue() == 2
	})
	if len(te.sink.delivered()) != 0 || len(te.dls.all()) != 0 {
		t.Fatalf("delivered %v, dead letters %v", te.sink.delivered(), te.dls.all())
	}
}

// Opening a window over max_keys closes the oldest at once, long before
// its hour.
func TestAggregateMaxKeysClosesTheOldest(t *testing.T) {
	st := aggStep(t, "data.k", time.Hour, 0, 2, "")
	te := startEngine(t, nil, Options{Windows: windowStore(t)}, st)
	publishKeyed(t, te.Engine, "first", "f1")
	testenv.Eventually(t, 10*time.Second, "the first window open", func() bool {
		n, _ := te.opts.Windows.OpenWindows(context.Background(), "p")
		return n == 1
	})
	publishKeyed(t, te.Engine, "second", "s1")
	testenv.Eventually(t, 10*time.Second, "two windows open", func() bool {
		n, _ := te.opts.Windows.OpenWindows(context.Background(), "p")
		return n == 2
	})
	publishKeyed(t, te.Engine, "third", "t1")
	testenv.Eventually(t, 10*time.Second, "the oldest window delivered", func() bool { return len(te.sink.delivered()) == 1 })
	if n, _ := te.opts.Windows.OpenWindows(context.Background(), "p"); n != 2 {
		t.Fatalf("%d open windows after the eviction, want 2", n)
	}
}

// A reload that removes the aggregate step dead-letters the windows left
// open (replayable through the pipeline as it is now), instead of closing
// them into digests no step asks for.
func TestAggregateStepRemovedDeadLettersItsWindows(t *testing.T) {
	st := aggStep(t, "", 300*time.Millisecond, 0, 0, "")
	ws := windowStore(t)
	te := startEngine(t, nil, Options{Windows: ws}, st)
	publishKeyed(t, te.Engine, "a", "e1", "e2")
	testenv.Eventually(t, 10*time.Second, "a window open", func() bool {
		n, _ := ws.OpenWindows(context.Background(), "p")
		return n == 1
	})
	if err := te.SetPipeline(context.Background(), Pipeline{Name: "p", From: []string{"src"}, To: []string{"out"}}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "the window's events dead-lettered", func() bool { return len(te.dls.all()) == 2 })
	if dl := te.dls.all()[0]; !strings.Contains(dl.Reason, "no longer has an aggregate step") {
		t.Fatalf("dead letter %+v", dl)
	}
}

// A pipeline with two aggregate steps, or one on an engine without a
// window store, is refused.
func TestAggregateStepChecks(t *testing.T) {
	e, err := New(Options{Queue: queue.NewMemory(), Sinks: map[string]Sink{"out": {Name: "out", Sink: &collectSink{}}}})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	st := aggStep(t, "", time.Minute, 0, 0, "")
	if err := e.SetPipeline(context.Background(), Pipeline{Name: "p", From: []string{"src"}, Steps: []Step{st}, To: []string{"out"}}); err == nil || !strings.Contains(err.Error(), "window store") {
		t.Fatalf("no store: %v", err)
	}
	e2, err := New(Options{Queue: queue.NewMemory(), Windows: windowStore(t), Sinks: map[string]Sink{"out": {Name: "out", Sink: &collectSink{}}}})
	if err != nil {
		t.Fatal(err)
	}
	defer e2.Close()
	if err := e2.SetPipeline(context.Background(), Pipeline{Name: "p", From: []string{"src"}, Steps: []Step{st, st}, To: []string{"out"}}); err == nil || !strings.Contains(err.Error(), "at most one") {
		t.Fatalf("two steps: %v", err)
	}
}
