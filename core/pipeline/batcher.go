package pipeline

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/hookbus/hookbus/internal/workers"
	"github.com/hookbus/hookbus/sdk"
)

// batcher merges concurrent single deliveries to one sink into batches, for
// sinks where a call has a fixed cost (out-of-process plugins). It adds no
// wait of its own: a delivery goes out at once while fewer than
// maxBatches calls are running (and the window below has room), and
// deliveries that arrive while all are busy are sent together when one
// finishes. Low load gives batches of one; high load, bigger batches.
// At most limit deliveries are in calls at once (the sink's max_in_flight:
// a sink that declares 1 gets one delivery at a time, never two calls).
type batcher struct {
	sink    sdk.Sink
	maxSize int
	limit   int
	reqs    chan *batchReq
	wg      sync.WaitGroup
	calls   *workers.Pool

	// ctx is handed to Deliver; close cancels it if calls outlast the grace.
	ctx    context.Context
	cancel context.CancelFunc

	closing    chan struct{} // closed by close: stop taking deliveries
	closeOnce  sync.Once
	loopExited chan struct{}
	mu         sync.RWMutex // held shared while handing in, exclusively to shut
	closed     bool
}

type batchReq struct {
	d    sdk.Delivery
	done chan sdk.Result
}

// maxBatches bounds the Deliver calls one sink has running at once.
const maxBatches = 4

// closeGrace bounds how long close waits for running calls.
const closeGrace = 10 * time.Second

// newBatcher batches deliveries to s in calls of up to maxSize, with at
// most limit deliveries in calls at once (no bound of its own when limit
// is 0).
func newBatcher(s sdk.Sink, maxSize, limit int) *batcher {
	ctx, cancel := context.WithCancel(context.Background())
	if limit <= 0 || limit > maxSize*maxBatches {
		limit = maxSize * maxBatches
	}
	b := &batcher{
		sink: s, maxSize: maxSize, limit: limit, reqs: make(chan *batchReq, maxSize*maxBatches),
		ctx: ctx, cancel: cancel, calls: workers.New(), closing: make(chan struct{}), loopExited: make(chan struct{}),
	}
	go b.loop()
	return b
}

func interruptedResult(why string) sdk.Result {
	return sdk.Result{Outcome: sdk.Retry, Reason: "delivery interrupted: " + why}
}

// deliver hands one delivery to the next batch and waits for its result.
func (b *batcher) deliver(ctx context.Context, d sdk.Delivery) sdk.Result {
	r := &batchReq{d: d, done: make(chan sdk.Result, 1)}
	b.mu.RLock()
	if b.closed {
		b.mu.RUnlock()
		return interruptedResult("shutting down")
	}
	select {
	case b.reqs <- r:
		b.mu.RUnlock()
	case <-b.closing:
		b.mu.RUnlock()
		return interruptedResult("shutting down")
	case <-ctx.Done():
		b.mu.RUnlock()
		return interruptedResult(ctx.Err().Error())
	}
	return <-r.done
}

// callDone reports a finished Deliver call to the loop.
type callDone struct {
	n        int  // deliveries in the call
	answered bool // at least one delivery came back other than Retry
}

// The loop keeps at most window deliveries in calls at once. A call whose
// deliveries all come back Retry (the plugin crashed or hung, or the
// receiver refuses everything) halves the window, down to one delivery; a
// call with an answer doubles it back. So a plugin that crashes every few
// events still makes progress one delivery at a time instead of losing
// every batch it is sent, and a healthy sink keeps full batches.
func (b *batcher) loop() {
	defer close(b.loopExited)
	maxWindow := b.limit
	window, inFlight, running := maxWindow, 0, 0
	finished := make(chan callDone, maxBatches)
	account := func(d callDone) {
		running--
		inFlight -= d.n
		if d.answered {
			window = min(maxWindow, window*2)
		} else {
			window = max(1, window/2)
		}
	}
	for {
		var first *batchReq
		select {
		case first = <-b.reqs:
		case d := <-finished:
			account(d)
			continue
		case <-b.closing:
			b.shut()
			return
		}
		for running == maxBatches || inFlight >= window {
			select {
			case d := <-finished:
				account(d)
			case <-b.closing:
				first.done <- interruptedResult("shutting down")
				b.shut()
				return
			}
		}
		running++
		batch := b.fill(first, min(b.maxSize, window-inFlight))
		inFlight += len(batch)
		b.wg.Add(1)
		b.calls.Go(func() {
			defer b.wg.Done()
			finished <- b.call(batch)
		})
	}
}

// fill adds to first the deliveries queued now, up to size in all.
func (b *batcher) fill(first *batchReq, size int) []*batchReq {
	batch := []*batchReq{first}
	for len(batch) < size {
		select {
		case r := <-b.reqs:
			batch = append(batch, r)
		default:
			return batch
		}
	}
	return batch
}

// call delivers batch in one Deliver call and answers each delivery.
func (b *batcher) call(batch []*batchReq) callDone {
	ds := make([]sdk.Delivery, len(batch))
	for i, r := range batch {
		ds[i] = r.d
	}
	res := b.sink.Deliver(b.ctx, ds)
	answered := false
	for i, r := range batch {
		if len(res) != len(batch) {
			r.done <- sdk.Result{Outcome: sdk.Retry, Reason: fmt.Sprintf("sink returned %d results for %d deliveries", len(res), len(batch))}
			continue
		}
		answered = answered || res[i].Outcome != sdk.Retry
		r.done <- res[i]
	}
	return callDone{n: len(batch), answered: answered}
}

// shut stops taking deliveries and answers the queued ones with Retry.
// Senders hold the read lock only until b.closing is closed, so the write
// lock is had at once.
func (b *batcher) shut() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	for {
		select {
		case r := <-b.reqs:
			r.done <- interruptedResult("shutting down")
		default:
			return
		}
	}
}

// close stops the batcher: queued deliveries are answered Retry, running
// calls get closeGrace to finish and are then cancelled.
func (b *batcher) close() {
	b.closeOnce.Do(func() {
		close(b.closing)
		<-b.loopExited
		done := make(chan struct{})
		go func() { b.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(closeGrace):
			b.cancel()
			<-done
		}
		b.cancel()
	})
}
