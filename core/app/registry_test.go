package app

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hookbus/hookbus/core/registry"
	"github.com/hookbus/hookbus/core/retry"
	"github.com/hookbus/hookbus/core/sinkopts"
	"github.com/hookbus/hookbus/core/spec"
	"github.com/hookbus/hookbus/internal/testenv"
	"github.com/hookbus/hookbus/sdk"
)

// bareSink is a built-in sink type that knows nothing about retries: it
// takes no keys of its own and answers Retry to every delivery, recording
// when each attempt came.
type bareSink struct {
	settings sinkopts.Settings
	mu       sync.Mutex
	attempts []time.Time
	inited   json.RawMessage
}

type bareConfig struct{}

var (
	bareMu    sync.Mutex
	bareSinks []*bareSink
)

func init() {
	registry.RegisterSink(registry.Sink{Name: "test-bare", Spec: spec.For[bareConfig](), New: func(s sinkopts.Settings) sdk.Sink {
		b := &bareSink{settings: s}
		bareMu.Lock()
		bareSinks = append(bareSinks, b)
		bareMu.Unlock()
		return b
	}})
}

func (b *bareSink) Init(_ context.Context, raw json.RawMessage) (sdk.SinkInfo, error) {
	b.inited = raw
	// Its spec refuses every key: a shared key passed through would fail here.
	if _, err := spec.For[bareConfig]().Decode(raw); err != nil {
		return sdk.SinkInfo{}, err
	}
	return sdk.SinkInfo{}, nil
}

func (b *bareSink) Deliver(_ context.Context, batch []sdk.Delivery) []sdk.Result {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]sdk.Result, len(batch))
	for i := range batch {
		b.attempts = append(b.attempts, time.Now())
		out[i] = sdk.Result{Outcome: sdk.Retry, Reason: "not today"}
	}
	return out
}

func (b *bareSink) Close(context.Context) error { return nil }

func (b *bareSink) times() []time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]time.Time(nil), b.attempts...)
}

func lastBareSink(t *testing.T) *bareSink {
	t.Helper()
	bareMu.Lock()
	defer bareMu.Unlock()
	if len(bareSinks) == 0 {
		t.Fatal("the registered constructor was not called")
	}
	return bareSinks[len(bareSinks)-1]
}

// A sink type registered with no retry handling of its own gets the
// default schedule from hookbus: a failed first attempt is retried after
// about 5s (±20%), not dead-lettered, and the type never sees the shared
// keys.
func TestRegisteredSinkGetsDefaultSchedule(t *testing.T) {
	cfg := loadConfig(t, `version: 1
data_dir: DIR
server: {listen: "127.0.0.1:0"}
queue: {driver: memory}
sources: {in: {type: http}}
sinks:
  bare: {type: test-bare, config: {max_in_flight: 3}}
pipelines:
  p: {from: [in], to: [bare]}
`)
	a := startApp(t, cfg)
	b := lastBareSink(t)
	if string(b.inited) != "{}" {
		t.Fatalf("the sink type got %s, want {} (the shared keys are hookbus's)", b.inited)
	}
	if got := b.settings.Schedule(); fmt.Sprint(got.Delays) != fmt.Sprint(retry.DefaultDelays) || b.settings.Window(0) != 3 {
		t.Fatalf("constructor got schedule %v and window %d, want the default schedule and 3", got.Delays, b.settings.Window(0))
	}
	if code, body := post(t, a, "in", "application/json", `{"type": "t"}`); code != 202 {
		t.Fatalf("ingest: %d %v", code, body)
	}
	testenv.Eventually(t, 30*time.Second, "a second attempt", func() bool { return len(b.times()) >= 2 })
	at := b.times()
	if gap, first := at[1].Sub(at[0]), retry.DefaultDelays[0]; gap < first*8/10 {
		t.Fatalf("second attempt %s after the first, want the default first delay %s (-20%%)", gap, first)
	}
	var dl struct {
		DeadLetters []json.RawMessage `json:"dead_letters"`
	}
	getJSON(t, a, "/v1/dead-letters", &dl)
	if len(dl.DeadLetters) != 0 {
		t.Fatalf("dead letters after a retryable failure: %s", dl.DeadLetters)
	}
}

// A block's retry.schedule applies to a registered type too.
func TestRegisteredSinkScheduleFromBlock(t *testing.T) {
	cfg := loadConfig(t, `version: 1
data_dir: DIR
server: {listen: "127.0.0.1:0"}
queue: {driver: memory}
sources: {in: {type: http}}
sinks:
  bare: {type: test-bare, config: {retry: {schedule: [10ms, 10ms]}}}
pipelines:
  p: {from: [in], to: [bare]}
`)
	a := startApp(t, cfg)
	b := lastBareSink(t)
	if code, body := post(t, a, "in", "application/json", `{"type": "t"}`); code != 202 {
		t.Fatalf("ingest: %d %v", code, body)
	}
	testenv.Eventually(t, 30*time.Second, "three attempts", func() bool { return len(b.times()) >= 3 })
}

// The composition root's registry holds the built-in types and the queue
// drivers, registered by their own packages.
func TestDefaultRegistry(t *testing.T) {
	t.Parallel()
	if _, err := registry.Default.Sink("webhook"); err != nil {
		t.Error(err)
	}
	if !registry.Default.IsIngest("http") {
		t.Error("http is not an ingest source type")
	}
	if got := fmt.Sprint(registry.Default.QueueDriverNames()); got != "[embedded nats redis postgres kafka memory]" {
		t.Errorf("queue drivers = %s", got)
	}
	if _, err := registry.Default.QueueDriver("kafka"); err == nil || err.Error() != "kafka is not supported yet; use embedded, nats, redis or postgres" {
		t.Errorf("kafka: %v", err)
	}
}
