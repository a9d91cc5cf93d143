package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookbus/hookbus/internal/testenv"
	"github.com/hookbus/hookbus/sdk"
)

// gateSink answers each delivery with its event id as Reason, after the
// gate opens, and records the batch sizes it was called with.
type gateSink struct {
	mu    sync.Mutex
	sizes []int
	gate  chan struct{}
}

func (s *gateSink) Init(context.Context, json.RawMessage) (sdk.SinkInfo, error) {
	return sdk.SinkInfo{}, nil
}
func (s *gateSink) Close(context.Context) error { return nil }
func (s *gateSink) Deliver(_ context.Context, batch []sdk.Delivery) []sdk.Result {
	s.mu.Lock()
	s.sizes = append(s.sizes, len(batch))
	s.mu.Unlock()
	<-s.gate
	out := make([]sdk.Result, len(batch))
	for i, d := range batch {
		out[i] = sdk.Result{Outcome: sdk.OK, Reason: d.Event.ID}
	}
	return out
}

func (s *gateSink) calls() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int(nil), s.sizes...)
}

func TestBatcherMergesWhileBusyAndRoutesResults(t *testing.T) {
	sink := &gateSink{gate: make(chan struct{})}
	b := newBatcher(sink, 64, 0)
	const n = 40
	results := make([]sdk.Result, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			results[i] = b.deliver(context.Background(), sdk.Delivery{Event: sdk.Event{ID: fmt.Sprint("e", i), Type: "t"}})
		})
	}
	// While at most maxBatches calls are blocked, the rest queue up.
	deadline := time.Now().Add(testenv.Timeout(10 * time.Second))
	handedIn := func() int {
		n := len(b.reqs)
		for _, s := range sink.calls() {
			n += s
		}
		return n
	}
	// With every call slot busy, the batcher itself holds the next delivery.
	settled := func() bool {
		h := handedIn()
		return h == n || (h == n-1 && len(sink.calls()) == maxBatches)
	}
	for !settled() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if !settled() {
		t.Fatalf("%d of %d deliveries handed in", handedIn(), n)
	}
	if got := len(sink.calls()); got > maxBatches {
		t.Fatalf("%d calls running at once, want at most %d", got, maxBatches)
	}
	close(sink.gate)
	wg.Wait()
	b.close()
	total := 0
	for _, s := range sink.calls() {
		total += s
	}
	if total != n || len(sink.calls()) >= n {
		t.Fatalf("batch sizes %v: want %d deliveries with some merged", sink.calls(), n)
	}
	for i, r := range results {
		if r.Outcome != sdk.OK || r.Reason != fmt.Sprint("e", i) {
			t.Errorf("delivery %d got %+v", i, r)
		}
	}
	// After close, deliveries are refused as retries instead of hanging.
	if r := b.deliver(context.Background(), sdk.Delivery{}); r.Outcome != sdk.Retry {
		t.Errorf("after close: %+v", r)
	}
}

// flakySink answers Retry to everything while fail is set, OK otherwise,
// and records each call's size and how many calls were running at its start.
type flakySink struct {
	fail    atomic.Bool
	running atomic.Int32
	mu      sync.Mutex
	sizes   []int
	overlap []int32
}

func (s *flakySink) Init(context.Context, json.RawMessage) (sdk.SinkInfo, error) {
	return sdk.SinkInfo{}, nil
}
func (s *flakySink) Close(context.Context) error { return nil }
func (s *flakySink) Deliver(_ context.Context, batch []sdk.Delivery) []sdk.Result {
	n := s.running.Add(1)
	defer s.running.Add(-1)
	s.mu.Lock()
	s.sizes = append(s.sizes, len(batch))
	s.overlap = append(s.overlap, n)
	s.mu.Unlock()
	time.Sleep(time.Millisecond)
	out := make([]sdk.Result, len(batch))
	for i := range out {
		out[i] = sdk.Result{Outcome: sdk.OK}
		if s.fail.Load() {
			out[i] = sdk.Result{Outcome: sdk.Retry, Reason: "plugin crashed"}
		}
	}
	return out
}

func (s *flakySink) calls() ([]int, []int32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sizes, overlap := slices.Clone(s.sizes), slices.Clone(s.overlap)
	s.sizes, s.overlap = nil, nil
	return sizes, overlap
}

func TestBatcherShrinksToOneDeliveryWhileCallsFailAndGrowsBack(t *testing.T) {
	sink := &flakySink{}
	b := newBatcher(sink, 8, 0)
	defer b.close()
	burst := func(want sdk.Outcome) {
		var wg sync.WaitGroup
		for i := range 64 {
			wg.Go(func() {
				if r := b.deliver(context.Background(), sdk.Delivery{Event: sdk.Event{ID: fmt.Sprint(i)}}); r.Outcome != want {
					t.Errorf("delivery %d: %+v, want outcome %v", i, r, want)
				}
			})
		}
		wg.Wait()
	}
	sink.fail.Store(true)
	burst(sdk.Retry)
	sizes, overlap := sink.calls()
	// The window starts at 4 calls of 8 and halves with each failed call:
	// from the 8th call on, one delivery at a time.
	if len(sizes) < 16 {
		t.Fatalf("%d calls for 64 failing deliveries (sizes %v): the window did not shrink", len(sizes), sizes)
	}
	for i := 8; i < len(sizes); i++ {
		if sizes[i] != 1 || overlap[i] != 1 {
			t.Fatalf("call %d had %d deliveries with %d calls running (sizes %v, overlap %v), want 1 and 1", i, sizes[i], overlap[i], sizes, overlap)
		}
	}
	sink.fail.Store(false)
	burst(sdk.OK)
	sizes, _ = sink.calls()
	if len(sizes) >= 64 || slices.Max(sizes) <= 1 {
		t.Errorf("after recovery, call sizes %v: the window did not grow back", sizes)
	}
}

// peakSink blocks every call until gate opens and records the most
// deliveries it had in calls at once.
type peakSink struct {
	gate    chan struct{}
	inCalls atomic.Int32
	peak    atomic.Int32
	handed  atomic.Int32
}

func (s *peakSink) Init(context.Context, json.RawMessage) (sdk.SinkInfo, error) {
	return sdk.SinkInfo{}, nil
}
func (s *peakSink) Close(context.Context) error { return nil }
func (s *peakSink) Deliver(_ context.Context, batch []sdk.Delivery) []sdk.Result {
	n := s.inCalls.Add(int32(len(batch)))
	for p := s.peak.Load(); n > p && !s.peak.CompareAndSwap(p, n); p = s.peak.Load() {
	}
	s.handed.Add(int32(len(batch)))
	<-s.gate
	s.inCalls.Add(-int32(len(batch)))
	out := make([]sdk.Result, len(batch))
	for i := range out {
		out[i] = sdk.Result{Outcome: sdk.OK}
	}
	return out
}

// The batcher keeps at most its limit (the sink's max_in_flight) of
// deliveries in calls, however many wait.
func TestBatcherKeepsToTheSinksMaxInFlight(t *testing.T) {
	const limit, n = 3, 20
	sink := &peakSink{gate: make(chan struct{})}
	b := newBatcher(sink, 8, limit)
	defer b.close()
	var wg sync.WaitGroup
	var ok atomic.Int32
	for i := range n {
		wg.Go(func() {
			if r := b.deliver(context.Background(), sdk.Delivery{Event: sdk.Event{ID: fmt.Sprint(i)}}); r.Outcome == sdk.OK {
				ok.Add(1)
			}
		})
	}
	// Settled: every delivery is in a call or queued, but for the one the
	// loop holds while it waits for room.
	testenv.Eventually(t, 10*time.Second, "the deliveries handed in", func() bool {
		return int(sink.handed.Load())+len(b.reqs) >= n-1
	})
	if h := sink.handed.Load(); h != limit {
		t.Errorf("%d deliveries in calls while the sink is busy, want %d", h, limit)
	}
	close(sink.gate)
	wg.Wait()
	if ok.Load() != n {
		t.Errorf("%d of %d deliveries OK", ok.Load(), n)
	}
	if p := sink.peak.Load(); p > limit {
		t.Errorf("the sink had %d deliveries at once, want at most %d", p, limit)
	}
}
