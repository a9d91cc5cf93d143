package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/hookbus/hookbus/core/queue"
	"github.com/hookbus/hookbus/core/retry"
	"github.com/hookbus/hookbus/internal/testenv"
	"github.com/hookbus/hookbus/sdk"
)

// runEngine builds and starts an engine with opts, closed when t ends;
// ctx is the context it runs under.
func runEngine(t *testing.T, opts Options) (*Engine, context.Context) {
	t.Helper()
	e, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e, ctx
}

// tallySink counts deliveries per event id, shared by every version of a
// sink in a test.
type tallySink struct {
	tally *tally
	name  string
}

type tally struct {
	mu    sync.Mutex
	by    map[string]int
	sinks map[string]int // deliveries per sink version
	// stamps are the step versions events were stamped with.
	stamps map[string]string
}

func newTally() *tally {
	return &tally{by: map[string]int{}, sinks: map[string]int{}, stamps: map[string]string{}}
}

func (s *tallySink) Init(context.Context, json.RawMessage) (sdk.SinkInfo, error) {
	return sdk.SinkInfo{}, nil
}
func (s *tallySink) Close(context.Context) error { return nil }

func (s *tallySink) Deliver(_ context.Context, batch []sdk.Delivery) []sdk.Result {
	s.tally.mu.Lock()
	defer s.tally.mu.Unlock()
	out := make([]sdk.Result, len(batch))
	for i, d := range batch {
		s.tally.by[d.Event.ID]++
		s.tally.sinks[s.name]++
		var data struct{ V string }
		_ = json.Unmarshal(d.Event.Data, &data)
		s.tally.stamps[d.Event.ID] = data.V
		out[i] = sdk.Result{Outcome: sdk.OK}
	}
	return out
}

func (t *tally) counts(ids []string) (missing, dups int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, id := range ids {
		switch n := t.by[id]; {
		case n == 0:
			missing++
		case n > 1:
			dups += n - 1
		}
	}
	return missing, dups
}

// stampStep sets data.v to its version.
func stampStep(v string) Step {
	return stepFunc{name: "stamp-" + v, run: func(_ context.Context, ev sdk.Event, _ StepContext) ([]sdk.Event, error) {
		ev.Data = json.RawMessage(fmt.Sprintf(`{"v":%q}`, v))
		return []sdk.Event{ev}, nil
	}}
}

// While events flow, the engine's sink is swapped in place (same window),
// replaced with a new consumer (window changed), the pipeline's steps are
// swapped, the pipeline is removed and set again, and a second sink is
// added and removed: on every driver, each event is delivered exactly once
// to the one sink it was queued for, and stamped by one version.
func TestChangesWhileRunningLoseNothing(t *testing.T) {
	for _, d := range testDrivers {
		t.Run(d.name, func(t *testing.T) {
			q := d.open(t)
			t.Cleanup(func() {
				if c, ok := q.(interface{ Close() error }); ok {
					_ = c.Close()
				}
			})
			tl := newTally()
			dls := &deadLetters{}
			sched := retry.Schedule{Delays: []time.Duration{10 * time.Millisecond}}
			e, ctx := runEngine(t, Options{
				Queue: q, DeadLetters: dls, CloseTimeout: testenv.Timeout(20 * time.Second),
				Pipelines: []Pipeline{{Name: "p", From: []string{"src"}, Steps: []Step{stampStep("0")}, To: []string{"out"}}},
				Sinks:     map[string]Sink{"out": {Name: "out", Sink: &tallySink{tally: tl, name: "v0"}, MaxInFlight: 8, Schedule: sched}},
			})

			const total = 1500
			var ids []string
			var published atomic.Int64
			done := make(chan struct{})
			go func() {
				defer close(done)
				for i := 0; i < total; i += 10 {
					var evs []sdk.Event
					for j := i; j < i+10; j++ {
						evs = append(evs, sdk.Event{ID: fmt.Sprintf("e%d", j), Type: "t", Data: json.RawMessage(`{}`)})
					}
					if err := e.Publish(context.Background(), "src", evs); err != nil {
						t.Errorf("publish: %v", err)
						return
					}
					published.Add(10)
				}
			}()
			for i := range total {
				ids = append(ids, fmt.Sprintf("e%d", i))
			}
			delivered := func() int64 {
				tl.mu.Lock()
				defer tl.mu.Unlock()
				return int64(len(tl.by))
			}
			// Each change waits for events delivered since the last one, so
			// every version of the steps and the sink handles some, even on
			// a driver that consumes more slowly than the events come in;
			// the one after the pipeline's removal waits on the publisher.
			step := func(at int64, what string, f func() error) {
				t.Helper()
				count, of := delivered, "delivered"
				if what == "set the pipeline again" {
					count, of = published.Load, "published"
				}
				waited := time.Now()
				testenv.Eventually(t, time.Minute, fmt.Sprintf("%d %s", at, of), func() bool { return count() >= at })
				start := time.Now()
				if err := f(); err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				t.Logf("%s: after %s waiting for %d %s, took %s", what, start.Sub(waited).Round(time.Millisecond), at, of, time.Since(start).Round(time.Millisecond))
			}
			step(150, "swap the sink in place", func() error {
				return e.SetSink(ctx, Sink{Name: "out", Sink: &tallySink{tally: tl, name: "v1"}, MaxInFlight: 8, Schedule: sched})
			})
			step(300, "swap the steps", func() error {
				return e.SetPipeline(ctx, Pipeline{Name: "p", From: []string{"src"}, Steps: []Step{stampStep("1")}, To: []string{"out"}})
			})
			step(450, "replace the sink with a new window", func() error {
				return e.SetSink(ctx, Sink{Name: "out", Sink: &tallySink{tally: tl, name: "v2"}, MaxInFlight: 2, Schedule: sched})
			})
			step(600, "remove the pipeline", func() error { e.RemovePipeline("p"); return nil })
			step(750, "set the pipeline again", func() error {
				return e.SetPipeline(ctx, Pipeline{Name: "p", From: []string{"src"}, Steps: []Step{stampStep("2")}, To: []string{"out"}})
			})
			step(900, "add a second sink and send to both", func() error {
				if err := e.SetSink(ctx, Sink{Name: "side", Sink: &tallySink{tally: newTally(), name: "side"}, Schedule: sched}); err != nil {
					return err
				}
				return e.SetPipeline(ctx, Pipeline{Name: "p", From: []string{"src"}, Steps: []Step{stampStep("3")}, To: []string{"out", "side"}})
			})
			step(1050, "refuse to remove a sink a pipeline sends to", func() error {
				if err := e.RemoveSink("side"); err == nil {
					return fmt.Errorf("RemoveSink of a sink in use succeeded")
				}
				return nil
			})
			step(1200, "stop sending to the second sink and remove it", func() error {
				if err := e.SetPipeline(ctx, Pipeline{Name: "p", From: []string{"src"}, Steps: []Step{stampStep("4")}, To: []string{"out"}}); err != nil {
					return err
				}
				return e.RemoveSink("side")
			})
			<-done
			testenv.Eventually(t, 2*time.Minute, "every event delivered to out", func() bool {
				missing, _ := tl.counts(ids)
				return missing == 0
			})
			_, dups := tl.counts(ids)
			if dups != 0 {
				t.Errorf("%d duplicate deliveries across the changes", dups)
			}
			if n := len(dls.all()); n != 0 {
				t.Errorf("%d dead letters, first %+v", n, dls.all()[0])
			}
			tl.mu.Lock()
			versions := map[string]int{}
			for _, v := range tl.stamps {
				versions[v]++
			}
			perSink := fmt.Sprint(tl.sinks)
			tl.mu.Unlock()
			if len(versions) < 2 {
				t.Errorf("stamps %v: the step swap did not take effect", versions)
			}
			if got := e.Sinks(); len(got) != 1 || got[0] != "out" {
				t.Errorf("running sinks %v, want [out]", got)
			}
			t.Logf("%s: %d events, 0 lost, %d duplicates; deliveries per sink version %s; stamps %v", d.name, total, dups, perSink, versions)
		})
	}
}

// Retries an older hookbus left on a sink's retry topic (drivers without
// delayed nacks) reach the sink after DrainRetryTopics, with their attempt
// number, and the topic is gone.
func TestDrainRetryTopicsDeliversLeftRetries(t *testing.T) {
	for _, d := range testDrivers {
		if d.name == "embedded" || d.name == "nats" {
			continue // JetStream always had delayed nacks: its retry stream stayed empty
		}
		t.Run(d.name, func(t *testing.T) {
			q := d.open(t)
			t.Cleanup(func() {
				if c, ok := q.(interface{ Close() error }); ok {
					_ = c.Close()
				}
			})
			// What the retry pump's group held when the old version stopped.
			sub, err := q.Subscriber(queue.RetryGroup("out"), 1)
			if err != nil {
				t.Fatal(err)
			}
			if err := initialize(sub, queue.RetryTopic("out")); err != nil {
				t.Fatal(err)
			}
			_ = sub.Close()
			for i := range 3 {
				m := message.NewMessage(watermill.NewULID(), []byte(fmt.Sprintf(`{"id":"left-%d","type":"t","data":{}}`, i)))
				m.Metadata.Set(MetaRetryAttempt, "3")
				m.Metadata.Set(MetaDueAt, strconv.FormatInt(time.Now().Add(-time.Minute).UnixNano(), 10))
				if err := q.Publish(queue.RetryTopic("out"), m); err != nil {
					t.Fatal(err)
				}
			}
			sink := &attemptSink{}
			e, ctx := runEngine(t, Options{Queue: q, Sinks: map[string]Sink{"out": {Name: "out", Sink: sink}}})
			if err := e.DrainRetryTopics(ctx, []string{"out"}); err != nil {
				t.Fatal(err)
			}
			testenv.Eventually(t, time.Minute, "the left retries delivered", func() bool { return sink.count() == 3 })
			if a := sink.attempts(); a[0] != 3 {
				t.Errorf("attempts %v, want each at 3 (the attempt the retry was queued for)", a)
			}
		})
	}
}

// attemptSink records the attempt number of each delivery.
type attemptSink struct {
	mu sync.Mutex
	at []int
}

func (s *attemptSink) Init(context.Context, json.RawMessage) (sdk.SinkInfo, error) {
	return sdk.SinkInfo{}, nil
}
func (s *attemptSink) Close(context.Context) error { return nil }
func (s *attemptSink) Deliver(_ context.Context, batch []sdk.Delivery) []sdk.Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]sdk.Result, len(batch))
	for i, d := range batch {
		s.at = append(s.at, d.Attempt)
		out[i] = sdk.Result{Outcome: sdk.OK}
	}
	return out
}
func (s *attemptSink) count() int { s.mu.Lock(); defer s.mu.Unlock(); return len(s.at) }
func (s *attemptSink) attempts() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int(nil), s.at...)
}

// recordingQueue records the dedup ids of what is published to it.
type recordingQueue struct {
	queue.Queue
	mu    sync.Mutex
	dedup map[string]string // message UUID → MetaDedupID
}

func (q *recordingQueue) Publish(topic string, msgs ...*message.Message) error {
	q.mu.Lock()
	for _, m := range msgs {
		q.dedup[m.UUID] = m.Metadata.Get(queue.MetaDedupID)
	}
	q.mu.Unlock()
	return q.Queue.Publish(topic, msgs...)
}

// Only producer-given ids are idempotency keys: an id hookbus generated is
// published without a dedup id (nothing to look up or remember), one the
// producer gave with it.
func TestOnlyProducerIDsAreDedupKeys(t *testing.T) {
	q := &recordingQueue{Queue: queue.NewMemory(), dedup: map[string]string{}}
	e, err := New(Options{Queue: q})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	evs := []sdk.Event{{ID: "given", Type: "t"}, {ID: "01GENERATED", Type: "t"}}
	if err := e.PublishProducerIDs(context.Background(), "src", evs, []bool{true, false}); err != nil {
		t.Fatal(err)
	}
	if err := e.Publish(context.Background(), "src", []sdk.Event{{ID: "plain", Type: "t"}}); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	q.mu.Lock()
	for _, id := range q.dedup {
		got[id] = true
	}
	q.mu.Unlock()
	if !got["src/given"] || !got["src/plain"] || got["src/01GENERATED"] || len(got) != 3 || !got[""] {
		t.Fatalf("dedup ids published: %v; want src/given and src/plain, and none for the generated id", got)
	}
}
