package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hookbus/hookbus/core/queue"
	"github.com/hookbus/hookbus/internal/testenv"
	"github.com/hookbus/hookbus/sdk"
)

// lateSerialSink learns its window only when ready, as a plugin sink that
// initialised late does, and records the most deliveries it had at once.
// Each call waits (up to hold) for another to overlap it, so a second
// delivery handed out while one is in progress is seen, not missed.
type lateSerialSink struct {
	maxInFlight int
	hold        time.Duration

	mu        sync.Mutex
	inFlight  int
	peak      int
	delivered int
	arrived   chan struct{} // closed and replaced when a call starts
}

func (s *lateSerialSink) Init(context.Context, json.RawMessage) (sdk.SinkInfo, error) {
	return sdk.SinkInfo{}, nil
}
func (s *lateSerialSink) Close(context.Context) error { return nil }

func (s *lateSerialSink) Deliver(_ context.Context, batch []sdk.Delivery) []sdk.Result {
	s.mu.Lock()
	s.inFlight += len(batch)
	s.peak = max(s.peak, s.inFlight)
	alone := s.inFlight == 1
	close(s.arrived)
	s.arrived = make(chan struct{})
	arrived := s.arrived
	s.mu.Unlock()
	if alone {
		select {
		case <-arrived:
		case <-time.After(s.hold):
		}
	}
	s.mu.Lock()
	s.inFlight -= len(batch)
	s.delivered += len(batch)
	s.mu.Unlock()
	out := make([]sdk.Result, len(batch))
	for i := range out {
		out[i] = sdk.Result{Outcome: sdk.OK}
	}
	return out
}

func (s *lateSerialSink) counts() (delivered, peak int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.delivered, s.peak
}

// A sink that becomes ready late and then tells max_in_flight 1 gets its
// deliveries one at a time: the engine reads the window after Ready, not
// the default it subscribed with before.
func TestLateSinkGetsTheWindowItToldWhenReady(t *testing.T) {
	for _, batch := range []int{0, 64} {
		t.Run(fmt.Sprint("batch=", batch), func(t *testing.T) {
			t.Parallel()
			q := queue.NewMemory()
			sink := &lateSerialSink{maxInFlight: 1, hold: 20 * time.Millisecond, arrived: make(chan struct{})}
			ready := make(chan struct{})
			e, err := New(Options{
				Queue:     q,
				Pipelines: []Pipeline{{Name: "p", From: []string{"src"}, To: []string{"out"}}},
				Sinks: map[string]Sink{"out": {Name: "out", Batch: batch, Ready: ready,
					Resolve: func() (sdk.Sink, int) { return sink, sink.maxInFlight }}},
				DeadLetters: &deadLetters{},
			})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			t.Cleanup(func() {
				cancel()
				_ = e.Close()
				_ = q.Close()
			})
			if err := e.Start(ctx); err != nil {
				t.Fatal(err)
			}
			const n = 20
			ids := make([]string, n)
			for i := range ids {
				ids[i] = fmt.Sprint("e", i)
			}
			// Queued while the sink is not ready, so all are there at once.
			publishEvents(t, e, ids...)
			close(ready)
			testenv.Eventually(t, 30*time.Second, "all events delivered", func() bool {
				d, _ := sink.counts()
				return d == n
			})
			if _, peak := sink.counts(); peak != 1 {
				t.Errorf("the sink had %d deliveries at once, want 1 (its max_in_flight)", peak)
			}
		})
	}
}
