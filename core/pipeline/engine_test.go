package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookbus/hookbus/core/deadletter"
	"github.com/hookbus/hookbus/core/queue"
	"github.com/hookbus/hookbus/core/retry"
	"github.com/hookbus/hookbus/core/script"
	"github.com/hookbus/hookbus/internal/testenv"
	"github.com/hookbus/hookbus/sdk"
)

// collectSink records every event delivered to it.
type collectSink struct {
	mu  sync.Mutex
	ids []string
}

func (s *collectSink) Init(context.Context, json.RawMessage) (sdk.SinkInfo, error) {
	return sdk.SinkInfo{}, nil
}

func (s *collectSink) Deliver(_ context.Context, batch []sdk.Delivery) []sdk.Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	res := make([]sdk.Result, len(batch))
	for i, d := range batch {
		s.ids = append(s.ids, d.Event.ID)
		res[i] = sdk.Result{Outcome: sdk.OK}
	}
	return res
}

func (s *collectSink) Close(context.Context) error { return nil }

func (s *collectSink) delivered() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.ids...)
}

// deadLetters records the engine's dead letters.
type deadLetters struct {
	mu  sync.Mutex
	dls []deadletter.DeadLetter
}

func (d *deadLetters) RecordDeadLetter(_ context.Context, dl deadletter.DeadLetter) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.dls = append(d.dls, dl)
	return nil
}

func (d *deadLetters) all() []deadletter.DeadLetter {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]deadletter.DeadLetter(nil), d.dls...)
}

// stepFunc is a Step made of a function.
type stepFunc struct {
	name string
	run  func(context.Context, sdk.Event, StepContext) ([]sdk.Event, error)
}

func (s stepFunc) Name() string { return s.name }

func (s stepFunc) Run(ctx context.Context, ev sdk.Event, sc StepContext) ([]sdk.Event, error) {
	return s.run(ctx, ev, sc)
}

// scriptStep runs a compiled script's transform.
type scriptStep struct{ s *script.Script }

func (s scriptStep) Name() string { return s.s.Name() }

func (s scriptStep) Run(ctx context.Context, ev sdk.Event, sc StepContext) ([]sdk.Event, error) {
	return s.s.Transform(ctx, ev, script.Context{Pipeline: sc.Pipeline, Sink: sc.Sink, Attempt: sc.Attempt})
}

type testEngine struct {
	*Engine
	q    queue.Queue
	sink *collectSink
	dls  *deadLetters
}

// startEngine runs one pipeline "p" from source "src" through steps to sink
// "out" on q (the memory queue when nil).
func startEngine(t *testing.T, q queue.Queue, opts Options, steps ...Step) *testEngine {
	t.Helper()
	if q == nil {
		q = queue.NewMemory()
	}
	te := &testEngine{q: q, sink: &collectSink{}, dls: &deadLetters{}}
	opts.Queue = q
	opts.Pipelines = []Pipeline{{Name: "p", From: []string{"src"}, Steps: steps, To: []string{"out"}}}
	opts.Sinks = map[string]Sink{"out": {Name: "out", Sink: te.sink, Schedule: retry.Schedule{}}}
	opts.DeadLetters = te.dls
	e, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = e.Close()
		if c, ok := q.(interface{ Close() error }); ok {
			_ = c.Close()
		}
	})
	te.Engine = e
	return te
}

func publishEvents(t *testing.T, e *Engine, ids ...string) {
	t.Helper()
	evs := make([]sdk.Event, len(ids))
	for i, id := range ids {
		evs[i] = sdk.Event{ID: id, Type: "order.paid", Data: json.RawMessage(`{"n":1}`)}
	}
	if err := e.Publish(context.Background(), "src", evs); err != nil {
		t.Fatal(err)
	}
}

// A step that panics dead-letters its event as a script error with its
// pipeline, sink and source, and the dead letter replays through the
// pipeline once the step behaves.
func TestStepPanicDeadLettersReplayably(t *testing.T) {
	var broken atomic.Bool
	broken.Store(true)
	step := stepFunc{name: "panicky.js", run: func(_ context.Context, ev sdk.Event, _ StepContext) ([]sdk.Event, error) {
		if broken.Load() && ev.ID == "bad" {
			panic("getter threw")
		}
		return []sdk.Event{ev}, nil
	}}
	te := startEngine(t, nil, Options{}, step)
	publishEvents(t, te.Engine, "bad", "good")
	testenv.Eventually(t, 10*time.Second, "a dead letter and a delivery", func() bool {
		return len(te.dls.all()) == 1 && len(te.sink.delivered()) == 1
	})
	dl := te.dls.all()[0]
	if dl.Kind != deadletter.KindScript || dl.Pipeline != "p" || dl.Sink != "out" || dl.Source != "src" || dl.Event.ID != "bad" {
		t.Fatalf("dead letter = %+v, want kind script, pipeline p, sink out, source src, event bad", dl)
	}
	if !strings.Contains(dl.Reason, "panicky.js") || !strings.Contains(dl.Reason, "getter threw") {
		t.Fatalf("reason %q does not name the step and the panic", dl.Reason)
	}
	broken.Store(false)
	if err := te.Replay(context.Background(), dl); err != nil {
		t.Fatalf("replay: %v", err)
	}
	testenv.Eventually(t, 10*time.Second, "the replayed event delivered", func() bool {
		return len(te.sink.delivered()) == 2
	})
	if got := te.sink.delivered(); got[1] != "bad" {
		t.Fatalf("delivered %v, want the replayed event last", got)
	}
}

// A step that times out once is tried again and its event delivered.
func TestScriptTimeoutRetriedThenDelivered(t *testing.T) {
	var calls atomic.Int32
	step := stepFunc{name: "slow.js", run: func(_ context.Context, ev sdk.Event, _ StepContext) ([]sdk.Event, error) {
		if calls.Add(1) == 1 {
			return nil, fmt.Errorf("slow.js:2:3: %w", script.ErrTimeout)
		}
		return []sdk.Event{ev}, nil
	}}
	te := startEngine(t, nil, Options{ScriptTimeoutBackoff: 10 * time.Millisecond}, step)
	publishEvents(t, te.Engine, "e1")
	testenv.Eventually(t, 10*time.Second, "the event delivered after its timeout", func() bool {
		return len(te.sink.delivered()) == 1
	})
	if n := len(te.dls.all()); n != 0 {
		t.Fatalf("%d dead letters, want none: %+v", n, te.dls.all())
	}
	if n := calls.Load(); n != 2 {
		t.Fatalf("step ran %d times, want 2", n)
	}
}

// A step interrupted by the heap watch once (script.ErrMemory: maybe
// another call's allocations) is tried again and its event delivered; one
// that always runs out is dead-lettered after max_timeouts tries.
func TestScriptMemoryInterruptRetried(t *testing.T) {
	var calls atomic.Int32
	step := stepFunc{name: "big.js", run: func(_ context.Context, ev sdk.Event, _ StepContext) ([]sdk.Event, error) {
		if calls.Add(1) == 1 || ev.ID == "hog" {
			return nil, fmt.Errorf("big.js:2:3: %w", script.ErrMemory)
		}
		return []sdk.Event{ev}, nil
	}}
	te := startEngine(t, nil, Options{MaxScriptTimeouts: 3, ScriptTimeoutBackoff: 10 * time.Millisecond}, step)
	publishEvents(t, te.Engine, "e1")
	testenv.Eventually(t, 10*time.Second, "the event delivered after its memory interrupt", func() bool {
		return len(te.sink.delivered()) == 1
	})
	if n := len(te.dls.all()); n != 0 {
		t.Fatalf("%d dead letters, want none: %+v", n, te.dls.all())
	}
	publishEvents(t, te.Engine, "hog")
	testenv.Eventually(t, 20*time.Second, "the hog dead-lettered", func() bool {
		return len(te.dls.all()) == 1
	})
	dl := te.dls.all()[0]
	if dl.Kind != deadletter.KindScript || dl.Event.ID != "hog" || !strings.Contains(dl.Reason, "interrupted 3 times") {
		t.Fatalf("dead letter = %+v", dl)
	}
	if n := calls.Load(); n != 5 {
		t.Fatalf("step ran %d times, want 2 + 3", n)
	}
}

// A genuine infinite loop is dead-lettered with its position after
// max_timeouts tries, each waiting out a growing backoff.
func TestInfiniteLoopDeadLetteredAfterMaxTimeouts(t *testing.T) {
	s, err := script.CompileSource("loop.js", "function transform(e) {\n  while (true) {}\n}\n", script.Options{Timeout: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	step := stepFunc{name: s.Name(), run: func(ctx context.Context, ev sdk.Event, sc StepContext) ([]sdk.Event, error) {
		calls.Add(1)
		return scriptStep{s}.Run(ctx, ev, sc)
	}}
	te := startEngine(t, nil, Options{MaxScriptTimeouts: 4, ScriptTimeoutBackoff: 10 * time.Millisecond}, step)
	publishEvents(t, te.Engine, "loop")
	testenv.Eventually(t, 20*time.Second, "the looping event dead-lettered", func() bool {
		return len(te.dls.all()) == 1
	})
	dl := te.dls.all()[0]
	if dl.Kind != deadletter.KindScript || dl.Sink != "out" || dl.Pipeline != "p" {
		t.Fatalf("dead letter = %+v", dl)
	}
	if !regexp.MustCompile(`^loop\.js:\d+:\d+: `).MatchString(dl.Reason) || !strings.Contains(dl.Reason, "timed out 4 times") {
		t.Fatalf("reason %q lacks the script position or the count", dl.Reason)
	}
	if n := calls.Load(); n != 4 {
		t.Fatalf("script ran %d times, want 4 (max_timeouts)", n)
	}
	if n := len(te.sink.delivered()); n != 0 {
		t.Fatalf("%d deliveries of a looping event", n)
	}
}

// A two-line transform with the default deadline dead-letters nothing
// while other goroutines starve the CPU: a timeout under load is retried.
func TestTransformUnderCPULoadDeadLettersNothing(t *testing.T) {
	s, err := script.CompileSource("two.js", "function transform(e) {\n  e.data.seen = true; return e;\n}\n", script.Options{})
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var burners sync.WaitGroup
	for range 2 * runtime.GOMAXPROCS(0) {
		burners.Add(1)
		go func() {
			defer burners.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				for i := 0; i < 1e6; i++ {
					_ = i * i
				}
			}
		}()
	}
	t.Cleanup(func() { close(stop); burners.Wait() })
	te := startEngine(t, nil, Options{ScriptTimeoutBackoff: 50 * time.Millisecond}, scriptStep{s})
	const n = 2000
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("e%d", i)
	}
	for i := 0; i < n; i += 100 {
		publishEvents(t, te.Engine, ids[i:i+100]...)
	}
	testenv.Eventually(t, 120*time.Second, "every event delivered", func() bool {
		return len(te.sink.delivered())+len(te.dls.all()) >= n
	})
	if dls := te.dls.all(); len(dls) != 0 {
		t.Fatalf("%d of %d events dead-lettered under load, first: %+v", len(dls), n, dls[0])
	}
}

// testDrivers are the queue drivers the poison and shutdown tests run on,
// each opened fresh by open (nil when its service is missing).
var testDrivers = []struct {
	name string
	open func(t *testing.T) queue.Queue
}{
	{"memory", func(t *testing.T) queue.Queue {
		return queue.NewMemoryWith(queue.MemoryOptions{CloseGrace: 50 * time.Millisecond})
	}},
	{"embedded", func(t *testing.T) queue.Queue {
		q, err := queue.NewJetStream(context.Background(), queue.JetStreamOptions{DataDir: t.TempDir(), CloseGrace: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		return q
	}},
	{"nats", func(t *testing.T) queue.Queue {
		testenv.NeedService(t, "127.0.0.1:4222")
		ns := fmt.Sprintf("t%d", time.Now().UnixNano()%1e12)
		t.Cleanup(func() { _ = queue.DropNamespace(context.Background(), "nats", "nats://127.0.0.1:4222", ns) })
		q, err := queue.NewJetStream(context.Background(), queue.JetStreamOptions{URL: "nats://127.0.0.1:4222", Prefix: queue.JetStreamPrefix(ns), CloseGrace: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		return q
	}},
	{"redis", func(t *testing.T) queue.Queue {
		testenv.NeedService(t, "127.0.0.1:6379")
		ns := fmt.Sprintf("t%d", time.Now().UnixNano()%1e12)
		t.Cleanup(func() { _ = queue.DropNamespace(context.Background(), "redis", "redis://127.0.0.1:6379/0", ns) })
		q, err := queue.NewRedis(context.Background(), queue.RedisOptions{URL: "redis://127.0.0.1:6379/0", Namespace: ns, ClaimIdle: time.Minute, ClaimInterval: 200 * time.Millisecond, CloseGrace: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		return q
	}},
	{"postgres", func(t *testing.T) queue.Queue {
		const url = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
		testenv.NeedService(t, "127.0.0.1:5432")
		ns := fmt.Sprintf("t%d", time.Now().UnixNano()%1e12)
		t.Cleanup(func() { _ = queue.DropNamespace(context.Background(), "postgres", url, ns) })
		q, err := queue.NewPostgres(context.Background(), queue.PostgresOptions{URL: url, Namespace: ns, PollInterval: 50 * time.Millisecond, AckDeadline: time.Minute, CloseGrace: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		return q
	}},
}

// newEngineOn builds (without starting) an engine for pipeline "p" from
// "src" to "out" on q, sharing sink and dead letters across restarts.
func newEngineOn(t *testing.T, q queue.Queue, sink *collectSink, dls *deadLetters, opts Options, steps ...Step) *Engine {
	t.Helper()
	opts.Queue = q
	opts.Pipelines = []Pipeline{{Name: "p", From: []string{"src"}, Steps: steps, To: []string{"out"}}}
	opts.Sinks = map[string]Sink{"out": {Name: "out", Sink: sink}}
	opts.DeadLetters = dls
	e, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// A message whose processing never reaches an outcome (here a step that
// hangs, and the process stops each time) is dead-lettered as poison after
// max_deliveries deliveries, before its step runs again.
func TestPoisonMessageDeadLettered(t *testing.T) {
	for _, d := range testDrivers {
		t.Run(d.name, func(t *testing.T) {
			q := d.open(t)
			t.Cleanup(func() {
				if c, ok := q.(interface{ Close() error }); ok {
					_ = c.Close()
				}
			})
			release := make(chan struct{})
			t.Cleanup(func() { close(release) })
			var entered atomic.Int32
			hang := stepFunc{name: "hang.js", run: func(_ context.Context, ev sdk.Event, _ StepContext) ([]sdk.Event, error) {
				entered.Add(1)
				<-release
				return []sdk.Event{ev}, nil
			}}
			sink, dls := &collectSink{}, &deadLetters{}
			const maxDeliveries = 3
			opts := Options{MaxDeliveries: maxDeliveries, CloseTimeout: 50 * time.Millisecond}
			for run := 1; run <= maxDeliveries+1; run++ {
				e := newEngineOn(t, q, sink, dls, opts, hang)
				ctx, cancel := context.WithCancel(context.Background())
				if err := e.Start(ctx); err != nil {
					t.Fatal(err)
				}
				if run == 1 {
					publishEvents(t, e, "poison")
				}
				if run <= maxDeliveries {
					testenv.Eventually(t, 30*time.Second, fmt.Sprintf("delivery %d reaches the step", run), func() bool {
						return entered.Load() == int32(run)
					})
				} else {
					testenv.Eventually(t, 30*time.Second, "the poison message dead-lettered", func() bool {
						if entered.Load() > maxDeliveries {
							t.Fatalf("the step ran a %dth time", entered.Load())
						}
						return len(dls.all()) == 1
					})
				}
				// The process stops with the step still hanging.
				_ = e.Close()
				cancel()
			}
			dl := dls.all()[0]
			if dl.Kind != deadletter.KindPoison || dl.Attempts != maxDeliveries || dl.Pipeline != "p" || dl.Sink != "out" || dl.Source != "src" {
				t.Fatalf("dead letter = %+v, want kind poison with %d attempts for p/out from src", dl, maxDeliveries)
			}
			if n := entered.Load(); n != maxDeliveries {
				t.Fatalf("step entered %d times, want %d", n, maxDeliveries)
			}
		})
	}
}
