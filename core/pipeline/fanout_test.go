package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/hookbus/hookbus/core/deadletter"
	"github.com/hookbus/hookbus/core/envelope"
	"github.com/hookbus/hookbus/core/metrics"
	"github.com/hookbus/hookbus/core/queue"
	"github.com/hookbus/hookbus/core/retry"
	"github.com/hookbus/hookbus/internal/testenv"
	"github.com/hookbus/hookbus/sdk"
)

// scriptedFanout is a fan-out sink whose targets and answers are
// functions; it records every call of DeliverTarget.
type scriptedFanout struct {
	targets func(ev sdk.Event) ([]Target, error)
	answer  func(t Target, d sdk.Delivery, call int) TargetResult

	mu    sync.Mutex
	calls map[string][]int // "<event id>/<target id>" -> the attempt of each call
	tried map[string]bool  // keys with an answer other than a deferral
}

func newScriptedFanout(targets func(sdk.Event) ([]Target, error), answer func(Target, sdk.Delivery, int) TargetResult) *scriptedFanout {
	return &scriptedFanout{targets: targets, answer: answer, calls: map[string][]int{}, tried: map[string]bool{}}
}

func (f *scriptedFanout) Targets(ev sdk.Event, dst []Target) ([]Target, error) {
	ts, err := f.targets(ev)
	return append(dst, ts...), err
}

func (f *scriptedFanout) DeliverTarget(_ context.Context, t Target, d sdk.Delivery) TargetResult {
	key := d.Event.ID + "/" + t.ID
	f.mu.Lock()
	f.calls[key] = append(f.calls[key], d.Attempt)
	call := len(f.calls[key])
	f.mu.Unlock()
	tr := f.answer(t, d, call)
	if tr.Defer <= 0 {
		f.mu.Lock()
		f.tried[key] = true
		f.mu.Unlock()
	}
	return tr
}

func (f *scriptedFanout) attempts(key string) []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls[key])
}

func (f *scriptedFanout) settled(keys ...string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, k := range keys {
		if !f.tried[k] {
			return false
		}
	}
	return true
}

// fanoutEngine runs pipeline "p" from "src" to the fan-out sink "subs" on q.
func fanoutEngine(t *testing.T, q queue.Queue, f Fanout, dls *deadLetters, m *metrics.Metrics) *Engine {
	t.Helper()
	e, _ := runEngine(t, Options{
		Queue: q, Metrics: m, DeadLetters: dls, MaxDeliveries: 3, CloseTimeout: time.Second,
		Pipelines: []Pipeline{{Name: "p", From: []string{"src"}, To: []string{"subs"}}},
		Sinks: map[string]Sink{"subs": {Name: "subs", Fanout: f, MaxInFlight: 16,
			Schedule: retry.Schedule{Delays: []time.Duration{10 * time.Millisecond, 10 * time.Millisecond, 10 * time.Millisecond}}}},
	})
	return e
}

func closeQueue(t *testing.T, q queue.Queue) {
	t.Cleanup(func() {
		if c, ok := q.(interface{ Close() error }); ok {
			_ = c.Close()
		}
	})
}

// Each (event, target) pair is a delivery of its own: one target's
// retries, deferrals, filter and failures change nothing for the others;
// deferrals are not attempts (nor deliveries without an outcome, however
// many); an event without targets is filtered, one the sink cannot route
// is dead-lettered for the whole sink; a pair's dead letter names its
// application and subscription.
func TestFanoutPairsAreDeliveriesOfTheirOwn(t *testing.T) {
	for _, drv := range testDrivers {
		t.Run(drv.name, func(t *testing.T) {
			q := drv.open(t)
			closeQueue(t, q)
			const deferrals = 5 // above MaxDeliveries: deferrals are no poison
			f := newScriptedFanout(func(ev sdk.Event) ([]Target, error) {
				switch ev.ID {
				case "none":
					return nil, nil
				case "bad":
					return nil, errors.New(`application: the event has no "application" attribute`)
				}
				var ts []Target
				for _, id := range []string{"ok", "flaky", "gone", "busy", "picky", "deleted"} {
					ts = append(ts, Target{App: "app_1", ID: id})
				}
				return ts, nil
			}, func(tg Target, d sdk.Delivery, call int) TargetResult {
				switch tg.ID {
				case "flaky":
					if call < 3 {
						return TargetResult{Result: sdk.Result{Outcome: sdk.Retry, Reason: "HTTP 503", StatusCode: 503}}
					}
				case "gone":
					return TargetResult{Result: sdk.Result{Outcome: sdk.Permanent, Reason: "HTTP 400", StatusCode: 400}}
				case "busy":
					if call <= deferrals {
						return TargetResult{Defer: 5 * time.Millisecond, DeferReason: "rate_limit"}
					}
				case "picky":
					return TargetResult{Filtered: true}
				case "deleted":
					return TargetResult{Result: sdk.Result{Outcome: sdk.Permanent, Reason: "subscription deleted"}, Kind: deadletter.KindDiscarded}
				}
				return TargetResult{Result: sdk.Result{Outcome: sdk.OK, StatusCode: 200}}
			})
			dls, m := &deadLetters{}, metrics.New()
			e := fanoutEngine(t, q, f, dls, m)
			publishEvents(t, e, "ev1", "none", "bad")
			testenv.Eventually(t, 60*time.Second, "every pair settled and three dead letters recorded", func() bool {
				return f.settled("ev1/ok", "ev1/flaky", "ev1/gone", "ev1/busy", "ev1/picky", "ev1/deleted") && len(f.attempts("ev1/flaky")) == 3 && len(dls.all()) == 3
			})
			for key, want := range map[string][]int{
				"ev1/ok": {1}, "ev1/flaky": {1, 2, 3}, "ev1/gone": {1}, "ev1/picky": {1}, "ev1/deleted": {1},
				"ev1/busy": slices.Repeat([]int{1}, deferrals+1),
			} {
				if got := f.attempts(key); !slices.Equal(got, want) {
					t.Errorf("%s: attempts %v, want %v", key, got, want)
				}
			}
			byKind := map[deadletter.Kind]deadletter.DeadLetter{}
			for _, dl := range dls.all() {
				byKind[dl.Kind] = dl
			}
			if dl := byKind[deadletter.KindPermanent]; dl.Subscription != "gone" || dl.Application != "app_1" || dl.Sink != "subs" || dl.Pipeline != "p" || dl.Source != "src" || dl.Attempts != 1 || dl.Reason != "HTTP 400" {
				t.Errorf("permanent dead letter = %+v", dl)
			}
			if dl := byKind[deadletter.KindDiscarded]; dl.Subscription != "deleted" || dl.Application != "app_1" || dl.Reason != "subscription deleted" {
				t.Errorf("discarded dead letter = %+v", dl)
			}
			if dl := byKind[deadletter.KindInvalid]; dl.Event.ID != "bad" || dl.Subscription != "" || dl.Sink != "subs" || dl.Reason == "" {
				t.Errorf("invalid dead letter = %+v", dl)
			}
			if got := counterValue(m.Filtered.WithLabelValues("p", "subs")); got != 2 {
				t.Errorf("filtered = %v, want 2 (the event without targets, and picky's)", got)
			}
			if got := counterValue(m.Deferrals.WithLabelValues("subs", "rate_limit")); got != deferrals {
				t.Errorf("deferrals = %v, want %d", got, deferrals)
			}
			if got := counterValue(m.Delivered.WithLabelValues("p", "subs")); got != 3 {
				t.Errorf("delivered = %v, want 3 (ok, flaky, busy)", got)
			}
			if got := counterValue(m.Attempts.WithLabelValues("subs", "retry", "5xx")); got != 2 {
				t.Errorf("retry attempts = %v, want 2", got)
			}
		})
	}
}

// A replayed dead letter of one pair goes to that subscription only; the
// event is not fanned out again.
func TestFanoutReplayGoesToTheSubscriptionOnly(t *testing.T) {
	q := queue.NewMemory()
	closeQueue(t, q)
	var fixed sync.Map
	f := newScriptedFanout(func(sdk.Event) ([]Target, error) {
		return []Target{{App: "app_1", ID: "a"}, {App: "app_1", ID: "b"}}, nil
	}, func(tg Target, _ sdk.Delivery, _ int) TargetResult {
		if _, ok := fixed.Load(tg.ID); tg.ID == "b" && !ok {
			return TargetResult{Result: sdk.Result{Outcome: sdk.Permanent, Reason: "HTTP 422", StatusCode: 422}}
		}
		return TargetResult{Result: sdk.Result{Outcome: sdk.OK, StatusCode: 200}}
	})
	dls := &deadLetters{}
	e := fanoutEngine(t, q, f, dls, nil)
	publishEvents(t, e, "ev1")
	testenv.Eventually(t, 30*time.Second, "b dead-lettered", func() bool { return len(dls.all()) == 1 })
	fixed.Store("b", true)
	if err := e.Replay(context.Background(), dls.all()[0]); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, "the replay delivered to b", func() bool { return len(f.attempts("ev1/b")) == 2 })
	// a is not sent the event again: wait for a second event through both
	// to be sure the replay is done with.
	publishEvents(t, e, "ev2")
	testenv.Eventually(t, 30*time.Second, "ev2 delivered to both", func() bool { return f.settled("ev2/a", "ev2/b") })
	if got := f.attempts("ev1/a"); len(got) != 1 {
		t.Fatalf("a got ev1 %d times, want once", len(got))
	}
	if got := f.attempts("ev1/b"); !slices.Equal(got, []int{1, 1}) {
		t.Fatalf("b's attempts of ev1 = %v, want [1 1] (the replay starts again at 1)", got)
	}
}

// The fan-out of a sink message that is handled twice (a crash between
// publishing its pairs and acking it) queues each pair once on a driver
// that deduplicates.
func TestFanoutRepublishedMessageQueuesPairsOnce(t *testing.T) {
	q, err := queue.NewJetStream(context.Background(), queue.JetStreamOptions{DataDir: t.TempDir(), CloseGrace: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	closeQueue(t, q)
	f := newScriptedFanout(func(sdk.Event) ([]Target, error) {
		return []Target{{App: "app_1", ID: "a"}, {App: "app_1", ID: "b"}}, nil
	}, func(Target, sdk.Delivery, int) TargetResult {
		return TargetResult{Result: sdk.Result{Outcome: sdk.OK, StatusCode: 200}}
	})
	e := fanoutEngine(t, q, f, &deadLetters{}, nil)
	b, _ := json.Marshal(sdk.Event{ID: "ev1", Type: "order.paid"})
	// The same sink message twice, as a redelivery hands it out again.
	for range 2 {
		m := message.NewMessage("sink-msg-1", b)
		m.Metadata.Set(envelope.Pipeline, "p")
		if err := q.Publish(queue.SinkTopic("subs"), m); err != nil {
			t.Fatal(err)
		}
	}
	publishEvents(t, e, "ev2")
	testenv.Eventually(t, 30*time.Second, "ev2 delivered", func() bool { return f.settled("ev1/a", "ev1/b", "ev2/a", "ev2/b") })
	for _, key := range []string{"ev1/a", "ev1/b"} {
		if n := len(f.attempts(key)); n != 1 {
			t.Errorf("%s delivered %d times, want once", key, n)
		}
	}
}

// A fan-out sink replaced by a new version keeps its consumers; one that
// becomes a plain sink (or the other way round) gets new ones, and the
// events keep flowing.
func TestFanoutSinkReplaced(t *testing.T) {
	q := queue.NewMemory()
	closeQueue(t, q)
	ok := func(Target, sdk.Delivery, int) TargetResult {
		return TargetResult{Result: sdk.Result{Outcome: sdk.OK, StatusCode: 200}}
	}
	one := func(sdk.Event) ([]Target, error) { return []Target{{App: "a", ID: "s1"}}, nil }
	v1, v2 := newScriptedFanout(one, ok), newScriptedFanout(one, ok)
	e := fanoutEngine(t, q, v1, &deadLetters{}, nil)
	spec := func(f Fanout) Sink {
		return Sink{Name: "subs", Fanout: f, MaxInFlight: 16, Schedule: retry.Schedule{}}
	}
	publishEvents(t, e, "ev1")
	testenv.Eventually(t, 30*time.Second, "ev1 through v1", func() bool { return v1.settled("ev1/s1") })
	if err := e.SetSink(context.Background(), spec(v2)); err != nil {
		t.Fatal(err)
	}
	publishEvents(t, e, "ev2")
	testenv.Eventually(t, 30*time.Second, "ev2 through v2", func() bool { return v2.settled("ev2/s1") })
	plain := &collectSink{}
	if err := e.SetSink(context.Background(), Sink{Name: "subs", Sink: plain, MaxInFlight: 16}); err != nil {
		t.Fatal(err)
	}
	publishEvents(t, e, "ev3")
	testenv.Eventually(t, 30*time.Second, "ev3 through the plain sink", func() bool { return slices.Contains(plain.delivered(), "ev3") })
	if err := e.SetSink(context.Background(), Sink{Name: "subs", Fanout: v1, Batch: 4}); err == nil {
		t.Fatal("a batched fan-out sink was accepted")
	}
	if n := len(v1.attempts("ev2/s1")) + len(v2.attempts("ev3/s1")); n != 0 {
		t.Fatalf("%d deliveries went to a replaced version", n)
	}
}

// counterValue reads a counter.
func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

// The log lines of a pair name its application and subscription (an
// operator must tell apart the attempts of one event to several
// subscriptions); those of a plain sink's delivery do not.
func TestPairLogLinesNameTheSubscription(t *testing.T) {
	msg := message.NewMessage("m1", []byte(`{}`))
	d := &sinkDelivery{msg: msg, ev: sdk.Event{ID: "e1"}, pipeline: "p", attempt: 2}
	if got := fmt.Sprint(d.logArgs("s", "reason", "x")); got != "[sink s pipeline p event_id e1 attempt 2 reason x]" {
		t.Fatalf("plain delivery log args = %s", got)
	}
	msg.Metadata.Set(envelope.Application, "acme")
	msg.Metadata.Set(envelope.Subscription, "sub_1")
	if got := fmt.Sprint(d.logArgs("s", "reason", "x")); got != "[sink s pipeline p event_id e1 attempt 2 application acme subscription sub_1 reason x]" {
		t.Fatalf("pair log args = %s", got)
	}
}
