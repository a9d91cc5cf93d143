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

	"github.com/hookbus/hookbus/core/attempt"
	"github.com/hookbus/hookbus/core/metrics"
	"github.com/hookbus/hookbus/core/queue"
	"github.com/hookbus/hookbus/core/retry"
	"github.com/hookbus/hookbus/internal/testenv"
	"github.com/hookbus/hookbus/sdk"
)

// recordSink records each delivery: event id, attempt and pipeline.
type recordSink struct {
	mu sync.Mutex
	ds []sdk.Delivery
}

func (s *recordSink) Init(context.Context, json.RawMessage) (sdk.SinkInfo, error) {
	return sdk.SinkInfo{}, nil
}

func (s *recordSink) Deliver(_ context.Context, batch []sdk.Delivery) []sdk.Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	res := make([]sdk.Result, len(batch))
	for i, d := range batch {
		s.ds = append(s.ds, d)
		res[i] = sdk.Result{Outcome: sdk.OK}
	}
	return res
}

func (s *recordSink) Close(context.Context) error { return nil }

func (s *recordSink) got() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, d := range s.ds {
		out = append(out, fmt.Sprintf("%s@%d/%s", d.Event.ID, d.Attempt, d.Pipeline))
	}
	return out
}

func record(id, sink string) attempt.Event {
	return attempt.Event{ID: id, Sink: sink, Pipeline: "p", Source: "src", Type: "order.paid", ReceivedAt: time.Now().Add(-time.Hour),
		Payload: json.RawMessage(fmt.Sprintf(`{"id":%q,"type":"order.paid","data":{"n":1}}`, id))}
}

// Redeliver queues an event on record again: to a plain sink as a new
// message (attempt 1), to one subscription of a fan-out sink as a pair
// of its own (attempt 1, the same event id, whatever the sink's targets
// are now), to a fan-out sink as a whole (fanned out again). A redelivery
// published twice with one id is queued once; an unknown sink or a
// subscription of a plain sink fails the call before anything is queued.
func TestRedeliver(t *testing.T) {
	q, err := queue.NewJetStream(context.Background(), queue.JetStreamOptions{DataDir: t.TempDir(), CloseGrace: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	closeQueue(t, q)
	out := &recordSink{}
	f := newScriptedFanout(func(ev sdk.Event) ([]Target, error) {
		return []Target{{App: "app_1", ID: "sub_now"}}, nil
	}, func(Target, sdk.Delivery, int) TargetResult {
		return TargetResult{Result: sdk.Result{Outcome: sdk.OK, StatusCode: 200}}
	})
	e, _ := runEngine(t, Options{
		Queue: q, Metrics: metrics.New(), DeadLetters: &deadLetters{}, CloseTimeout: time.Second,
		Pipelines: []Pipeline{{Name: "p", From: []string{"src"}, To: []string{"out", "subs"}}},
		Sinks: map[string]Sink{
			"out":  {Name: "out", Sink: out, Schedule: retry.Schedule{}},
			"subs": {Name: "subs", Fanout: f, MaxInFlight: 16, Schedule: retry.Schedule{Delays: []time.Duration{10 * time.Millisecond}}},
		},
	})
	ctx := context.Background()

	// Checked before anything is published.
	err = e.Redeliver(ctx, []Redelivery{{Event: record("never", "out"), ID: "r0"}, {Event: record("ev1", "nope"), ID: "r1"}})
	if !errors.Is(err, ErrUnknownSink) {
		t.Fatalf("unknown sink: err = %v, want ErrUnknownSink", err)
	}
	err = e.Redeliver(ctx, []Redelivery{{Event: record("ev1", "out"), Subscription: "sub_1", Application: "app_1", ID: "r2"}})
	if !errors.Is(err, ErrNotFanout) {
		t.Fatalf("subscription of a plain sink: err = %v, want ErrNotFanout", err)
	}
	if err := e.Redeliver(ctx, []Redelivery{{Event: record("ev1", "out")}}); err == nil {
		t.Fatal("a redelivery without id was taken")
	}

	rds := []Redelivery{
		{Event: record("ev1", "out"), ID: "resend/1/ev1"},
		{Event: record("ev2", "subs"), Application: "app_1", Subscription: "sub_old", ID: "resend/1/ev2"},
		{Event: record("ev3", "subs"), ID: "resend/1/ev3"},
	}
	for range 2 { // the second call is deduplicated
		if err := e.Redeliver(ctx, rds); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, 30*time.Second, "the three redeliveries delivered", func() bool {
		return len(out.got()) >= 1 && f.settled("ev2/sub_old", "ev3/sub_now")
	})
	// A marker behind them: once it is delivered, nothing else is coming.
	if err := e.Redeliver(ctx, []Redelivery{{Event: record("marker", "out"), ID: "resend/2/marker"}}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, "the marker delivered", func() bool { return slices.Contains(out.got(), "marker@1/p") })
	if got, want := out.got(), []string{"ev1@1/p", "marker@1/p"}; !slices.Equal(got, want) {
		t.Errorf("plain sink got %v, want %v (never the redelivery of the failed call, each once)", got, want)
	}
	if got := f.attempts("ev2/sub_old"); !slices.Equal(got, []int{1}) {
		t.Errorf("pair to the named subscription: attempts %v, want [1]", got)
	}
	if got := f.attempts("ev2/sub_now"); len(got) != 0 {
		t.Errorf("a pair redelivery was fanned out again: %v", got)
	}
	if got := f.attempts("ev3/sub_now"); !slices.Equal(got, []int{1}) {
		t.Errorf("sink redelivery fanned out: attempts %v, want [1]", got)
	}
}
