package pipeline

import (
	"context"
	"fmt"
	"sync"

	"github.com/hookbus/hookbus/sdk"
)

// batcher merges concurrent single deliveries to one sink into batches, for
// sinks where a call has a fixed cost (out-of-process plugins). It adds no
// wait of its own: a delivery goes out at once while fewer than
// maxBatches calls are running, and deliveries that arrive while all are
// busy are sent together when one finishes. Low load gives batches of one;
// high load, bigger batches.
type batcher struct {
	sink       sdk.Sink
	maxSize    int
	reqs       chan *batchReq
	sem        chan struct{}
	wg         sync.WaitGroup
	closeOnce  sync.Once
	loopExited chan struct{}
	mu         sync.RWMutex // held shared while handing in, exclusively to close
	closed     bool
}

type batchReq struct {
	d    sdk.Delivery
	done chan sdk.Result
}

const maxBatches = 4

func newBatcher(s sdk.Sink, maxSize int) *batcher {
	b := &batcher{sink: s, maxSize: maxSize, reqs: make(chan *batchReq, maxSize*maxBatches), sem: make(chan struct{}, maxBatches), loopExited: make(chan struct{})}
	go b.loop()
	return b
}

// deliver hands one delivery to the next batch and waits for its result.
func (b *batcher) deliver(ctx context.Context, d sdk.Delivery) sdk.Result {
	r := &batchReq{d: d, done: make(chan sdk.Result, 1)}
	b.mu.RLock()
	if b.closed {
		b.mu.RUnlock()
		return sdk.Result{Outcome: sdk.Retry, Reason: "delivery interrupted: shutting down"}
	}
	select {
	case b.reqs <- r:
	case <-ctx.Done():
		b.mu.RUnlock()
		return sdk.Result{Outcome: sdk.Retry, Reason: "delivery interrupted: " + ctx.Err().Error()}
	}
	b.mu.RUnlock()
	return <-r.done
}

func (b *batcher) loop() {
	defer close(b.loopExited)
	for first := range b.reqs {
		b.sem <- struct{}{}
		batch := []*batchReq{first}
	fill:
		for len(batch) < b.maxSize {
			select {
			case r, ok := <-b.reqs:
				if !ok {
					break fill
				}
				batch = append(batch, r)
			default:
				break fill
			}
		}
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			defer func() { <-b.sem }()
			ds := make([]sdk.Delivery, len(batch))
			for i, r := range batch {
				ds[i] = r.d
			}
			res := b.sink.Deliver(context.Background(), ds)
			for i, r := range batch {
				if len(res) != len(batch) {
					r.done <- sdk.Result{Outcome: sdk.Retry, Reason: fmt.Sprintf("sink returned %d results for %d deliveries", len(res), len(batch))}
					continue
				}
				r.done <- res[i]
			}
		}()
	}
}

// close stops the batcher after the last delivery was handed in.
func (b *batcher) close() {
	b.closeOnce.Do(func() {
		b.mu.Lock()
		b.closed = true
		close(b.reqs)
		b.mu.Unlock()
		<-b.loopExited
		b.wg.Wait()
	})
}
