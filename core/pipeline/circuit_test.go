package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/hookbus/hookbus/core/attempt"
	"github.com/hookbus/hookbus/core/circuit"
	"github.com/hookbus/hookbus/core/metrics"
	"github.com/hookbus/hookbus/core/retry"
	"github.com/hookbus/hookbus/internal/testenv"
	"github.com/hookbus/hookbus/plugins/webhook"
	"github.com/hookbus/hookbus/sdk"
)

// receiver is a webhook endpoint on loopback that answers 503 while down
// and 200 otherwise, and keeps every request it got.
type receiver struct {
	srv  *httptest.Server
	down atomic.Bool

	mu    sync.Mutex
	times []time.Time      // when each request arrived
	ok    map[string]int   // webhook-id -> 200s answered
	all   map[string][]int // webhook-id -> statuses answered
}

func newReceiver(t *testing.T, down bool) *receiver {
	rc := &receiver{ok: map[string]int{}, all: map[string][]int{}}
	rc.down.Store(down)
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("webhook-id")
		status := http.StatusOK
		if rc.down.Load() {
			status = http.StatusServiceUnavailable
		}
		rc.mu.Lock()
		rc.times = append(rc.times, time.Now())
		rc.all[id] = append(rc.all[id], status)
		if status == http.StatusOK {
			rc.ok[id]++
		}
		rc.mu.Unlock()
		w.WriteHeader(status)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

// requests returns when each request arrived.
func (rc *receiver) requests() []time.Time {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.times)
}

// delivered tells how many distinct events got a 200, and how many 200s
// there were in all.
func (rc *receiver) delivered() (distinct, total int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, n := range rc.ok {
		total += n
	}
	return len(rc.ok), total
}

func (rc *receiver) sink(t *testing.T) sdk.Sink {
	hook, err := webhook.New(webhook.Config{URL: rc.srv.URL, Secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", AllowPrivateNetworks: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = hook.Close(context.Background()) })
	return hook
}

func gaugeValue(t *testing.T, g prometheus.Gauge) float64 {
	var pb dto.Metric
	if err := g.Write(&pb); err != nil {
		t.Fatal(err)
	}
	return pb.GetGauge().GetValue()
}

func publishN(t *testing.T, e *Engine, prefix string, n int) {
	t.Helper()
	evs := make([]sdk.Event, n)
	for i := range evs {
		evs[i] = sdk.Event{ID: fmt.Sprintf("%s-%03d", prefix, i), Type: "order.paid", Data: json.RawMessage(`{"n":1}`)}
	}
	if err := e.Publish(context.Background(), "src", evs); err != nil {
		t.Fatal(err)
	}
}

// A sink whose endpoint answers 503 opens its circuit after
// circuit.failures attempts: no request reaches the endpoint while it is
// open; one probe goes after each cooldown (doubling); the healthy sink
// beside it delivers meanwhile; once the endpoint recovers, the probe
// closes the circuit and every queued event is delivered, none lost or
// dead-lettered, and the attempts on record are exactly the requests the
// endpoint got (none for the deliveries the circuit held), numbered 1, 2,
// ... for each event.
func TestSinkCircuitHoldsDeliveriesOfADeadEndpoint(t *testing.T) {
	for _, drv := range testDrivers[:2] {
		t.Run(drv.name, func(t *testing.T) {
			q := drv.open(t)
			closeQueue(t, q)
			dead, healthy := newReceiver(t, true), newReceiver(t, false)
			m := metrics.New()
			log, dls := &attemptLog{}, &deadLetters{}
			const n, failures = 20, 3
			cooldown := 200 * time.Millisecond
			schedule := retry.Schedule{Delays: slices.Repeat([]time.Duration{10 * time.Millisecond}, 15)}
			e, err := New(Options{
				Queue: q, Attempts: log, DeadLetters: dls, Metrics: m, CloseTimeout: time.Second,
				Pipelines: []Pipeline{{Name: "p", From: []string{"src"}, To: []string{"dead", "ok"}}},
				Sinks: map[string]Sink{
					// One delivery at a time: the requests of the dead
					// endpoint can be counted exactly.
					"dead": {Name: "dead", Sink: dead.sink(t), MaxInFlight: 1, Schedule: schedule,
						Circuit: circuit.Settings{Failures: failures, Cooldown: cooldown, MaxCooldown: 2 * cooldown}},
					"ok": {Name: "ok", Sink: healthy.sink(t), MaxInFlight: 8, Schedule: schedule,
						Circuit: circuit.Settings{Failures: failures, Cooldown: cooldown, MaxCooldown: 2 * cooldown}},
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			// Held deliveries are handed back (and come back) many times
			// per cooldown.
			e.circuitHold = 20 * time.Millisecond
			ctx, cancel := context.WithCancel(context.Background())
			t.Cleanup(cancel)
			if err := e.Start(ctx); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = e.Close() })
			open := func() float64 { return gaugeValue(t, m.CircuitOpen.WithLabelValues("dead")) }
			publishN(t, e, "ev", n)

			testenv.Eventually(t, 30*time.Second, "the dead sink's circuit open", func() bool { return open() == 1 })
			if got := len(dead.requests()); got != failures {
				t.Fatalf("%d requests reached the dead endpoint before its circuit opened, want %d", got, failures)
			}
			testenv.Eventually(t, 30*time.Second, "the healthy sink delivers every event while the other's circuit is open", func() bool {
				d, _ := healthy.delivered()
				return d == n
			})
			// Two probes, each after its cooldown (the second twice as
			// long): nothing else reaches the endpoint.
			testenv.Eventually(t, 30*time.Second, "two probes", func() bool { return len(dead.requests()) >= failures+2 })
			reqs := dead.requests()
			if len(reqs) != failures+2 {
				t.Fatalf("%d requests reached the dead endpoint, want %d (%d failures, 2 probes)", len(reqs), failures+2, failures)
			}
			if gap := reqs[failures].Sub(reqs[failures-1]); gap < cooldown {
				t.Errorf("first probe %v after the last failure, want at least the cooldown %v", gap, cooldown)
			}
			if gap := reqs[failures+1].Sub(reqs[failures]); gap < 2*cooldown {
				t.Errorf("second probe %v after the first, want at least the doubled cooldown %v", gap, 2*cooldown)
			}
			if open() != 1 {
				t.Fatal("the circuit closed after failed probes")
			}

			dead.down.Store(false)
			testenv.Eventually(t, 60*time.Second, "every event delivered to the recovered endpoint", func() bool {
				d, _ := dead.delivered()
				return d == n
			})
			testenv.Eventually(t, 10*time.Second, "the circuit closed", func() bool { return open() == 0 })
			if _, total := dead.delivered(); total != n {
				t.Errorf("%d deliveries of %d events to the recovered endpoint", total, n)
			}
			if _, total := healthy.delivered(); total != n {
				t.Errorf("%d deliveries of %d events to the healthy endpoint", total, n)
			}
			if got := dls.all(); len(got) != 0 {
				t.Fatalf("%d dead letters, first %+v", len(got), got[0])
			}
			// The attempts on record are the requests made.
			testenv.Eventually(t, 10*time.Second, "every attempt recorded", func() bool {
				return log.count() == len(dead.requests())+n
			})
			dead.mu.Lock()
			statuses := map[string][]int{}
			for id, s := range dead.all {
				statuses[id] = slices.Clone(s)
			}
			dead.mu.Unlock()
			for i := range n {
				id := fmt.Sprintf("ev-%03d", i)
				var got []attempt.Attempt
				for _, en := range log.of(id, "") {
					if en.Attempt.Sink == "dead" {
						got = append(got, en.Attempt)
					}
				}
				if len(got) != len(statuses[id]) {
					t.Fatalf("%s: %d attempts recorded, %d requests made", id, len(got), len(statuses[id]))
				}
				for j, a := range got {
					if a.Number != j+1 || a.StatusCode != statuses[id][j] {
						t.Errorf("%s attempt %d: number %d status %d, want number %d status %d", id, j+1, a.Number, a.StatusCode, j+1, statuses[id][j])
					}
				}
				if last := got[len(got)-1]; last.Outcome != attempt.Delivered {
					t.Errorf("%s: last attempt %s, want delivered", id, last.Outcome)
				}
			}
		})
	}
}

// With the circuit off, every delivery is attempted (the behaviour before
// circuits): the dead endpoint gets every event's attempts.
func TestSinkCircuitOff(t *testing.T) {
	q := newTestMemory(t)
	dead := newReceiver(t, true)
	e, _ := runEngine(t, Options{
		Queue: q, DeadLetters: &deadLetters{}, CloseTimeout: time.Second,
		Pipelines: []Pipeline{{Name: "p", From: []string{"src"}, To: []string{"dead"}}},
		Sinks: map[string]Sink{"dead": {Name: "dead", Sink: dead.sink(t), MaxInFlight: 1,
			Schedule: retry.Schedule{Delays: []time.Duration{time.Millisecond}}}},
	})
	publishN(t, e, "ev", 10)
	testenv.Eventually(t, 30*time.Second, "two attempts of every event", func() bool { return len(dead.requests()) == 20 })
}

// A restart while the circuit is open loses nothing: the held deliveries
// go back to the queue, and the next process (whose circuit starts
// closed) delivers them once the endpoint is back.
func TestSinkCircuitRestartLosesNothing(t *testing.T) {
	q := testDrivers[1].open(t) // embedded
	closeQueue(t, q)
	dead := newReceiver(t, true)
	dls := &deadLetters{}
	const n = 30
	start := func() (*Engine, *metrics.Metrics) {
		m := metrics.New()
		e, err := New(Options{
			Queue: q, DeadLetters: dls, Metrics: m, CloseTimeout: time.Second,
			Pipelines: []Pipeline{{Name: "p", From: []string{"src"}, To: []string{"dead"}}},
			Sinks: map[string]Sink{"dead": {Name: "dead", Sink: dead.sink(t), MaxInFlight: 4,
				Schedule: retry.Schedule{Delays: slices.Repeat([]time.Duration{10 * time.Millisecond}, 30)},
				Circuit:  circuit.Settings{Failures: 2, Cooldown: time.Hour, MaxCooldown: time.Hour}}},
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		return e, m
	}
	e, m := start()
	publishN(t, e, "ev", n)
	testenv.Eventually(t, 30*time.Second, "the circuit open", func() bool {
		return gaugeValue(t, m.CircuitOpen.WithLabelValues("dead")) == 1
	})
	// The attempts let go before it opened have ended.
	testenv.Eventually(t, 30*time.Second, "no attempt in flight", func() bool {
		return gaugeValue(t, m.InFlight.WithLabelValues("dead")) == 0
	})
	before := len(dead.requests())
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if got := len(dead.requests()); got != before {
		t.Fatalf("%d requests while the circuit was open", got-before)
	}
	dead.down.Store(false)
	e, _ = start()
	t.Cleanup(func() { _ = e.Close() })
	testenv.Eventually(t, 60*time.Second, "every event delivered after the restart", func() bool {
		d, _ := dead.delivered()
		return d == n
	})
	if got := dls.all(); len(got) != 0 {
		t.Fatalf("%d dead letters, first %+v", len(got), got[0])
	}
}
