package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

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
	b := newBatcher(sink, 64)
	const n = 40
	results := make([]sdk.Result, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			results[i] = b.deliver(context.Background(), sdk.Delivery{Event: sdk.Event{ID: fmt.Sprint("e", i), Type: "t"}})
		})
	}
	// While at most maxBatches calls are blocked, the rest queue up.
	deadline := time.Now().Add(10 * time.Second)
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
