package pipeline

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/hookbus/hookbus/core/attempt"
	"github.com/hookbus/hookbus/core/batching"
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
//
// A sink that batches by design (BatchingSink: a webhook with `batch`)
// gets a timed batcher instead (newTimedBatcher): a batch also closes at
// maxBytes, and its first delivery waits up to maxWait for others, so
// that low load still makes full batches; its window does not shrink on
// failures, so a failing batch is retried as the same batch.
type batcher struct {
	sink    sdk.Sink
	maxSize int
	limit   int
	reqs    chan *batchReq
	wg      sync.WaitGroup
	calls   *workers.Pool

	// maxCalls bounds the calls running at once (maxBatches unless the
	// sink's window is smaller).
	maxCalls int
	// maxBytes (0: no bound) and maxWait are the timed batcher's; fixed
	// tells it not to adapt its window to failures.
	maxBytes int
	maxWait  time.Duration
	fixed    bool
	// detailed is the sink's DeliverBatchDetailed, when it has one.
	detailed DetailedBatchSink
	// targets, when set, sends the batches in place of sink (a
	// TargetBatcher's).
	targets func(ctx context.Context, ds []sdk.Delivery) []TargetResult

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
	at   time.Time // when it was handed in
	done chan batchOut
}

// batchOut is what became of one delivery of a batch: its result, the
// detail of the call that carried it (when the sink tells it), and
// whether it was the batch's first (lead), which speaks for the batch
// where one verdict per call is wanted (the sink's circuit).
type batchOut struct {
	res    sdk.Result
	detail *attempt.Detail
	lead   bool
	// target is the pair's result, from a TargetBatcher's send.
	target *TargetResult
	// interrupted: the delivery was not sent (the batcher closed).
	interrupted bool
}

// BatchingSink is implemented by a sink that delivers several events in
// one request by design (a webhook sink with `batch`): when its policy is
// on, the engine gathers the sink's deliveries into Deliver calls by it
// (batch.max_events, max_bytes and max_wait), each call one request whose
// outcome is every delivery's result. Each event keeps its own attempts
// and retry schedule; the events of a batch that failed get one delay, so
// they come back together and are batched again as they were.
type BatchingSink interface {
	BatchPolicy() batching.Policy
}

// DetailedBatchSink is implemented by a batching sink that can tell the
// detail of the request that carried each delivery (the URL, the
// headers, the batch's webhook-id, the start of the response body), for
// the delivery log: every event a request carried gets an attempt with
// that detail. It follows the contract of sdk.Sink.Deliver; details has
// one entry per delivery, nil where there is none.
type DetailedBatchSink interface {
	DeliverBatchDetailed(ctx context.Context, ds []sdk.Delivery) (results []sdk.Result, details []*attempt.Detail)
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
		sink: s, maxSize: maxSize, limit: limit, reqs: make(chan *batchReq, maxSize*maxBatches), maxCalls: maxBatches,
		ctx: ctx, cancel: cancel, calls: workers.New(), closing: make(chan struct{}), loopExited: make(chan struct{}),
	}
	go b.loop()
	return b
}

// newTimedBatcher batches deliveries to s by policy p (see BatchingSink),
// with up to window batches in calls at once, at most maxBatches.
func newTimedBatcher(s sdk.Sink, p batching.Policy, window int) *batcher {
	ctx, cancel := context.WithCancel(context.Background())
	calls := timedCalls(window)
	b := &batcher{
		sink: s, maxSize: p.MaxEvents, limit: calls * p.MaxEvents, reqs: make(chan *batchReq, p.MaxEvents*(calls+1)), maxCalls: calls,
		maxBytes: p.MaxBytes, maxWait: p.MaxWait, fixed: true,
		ctx: ctx, cancel: cancel, calls: workers.New(), closing: make(chan struct{}), loopExited: make(chan struct{}),
	}
	b.detailed, _ = s.(DetailedBatchSink)
	go b.loop()
	return b
}

// timedCalls is how many batches a batching sink with this window has in
// calls at once: the window (its max_in_flight), at most maxBatches.
func timedCalls(window int) int {
	if window <= 0 || window > maxBatches {
		return maxBatches
	}
	return window
}

func interruptedResult(why string) sdk.Result {
	return sdk.Result{Outcome: sdk.Retry, Reason: "delivery interrupted: " + why}
}

// deliver hands one delivery to the next batch and waits for its result.
func (b *batcher) deliver(ctx context.Context, d sdk.Delivery) sdk.Result {
	return b.deliverOut(ctx, d).res
}

// deliverOut is deliver with the detail of the call that carried d.
func (b *batcher) deliverOut(ctx context.Context, d sdk.Delivery) batchOut {
	r := &batchReq{d: d, at: time.Now(), done: make(chan batchOut, 1)}
	b.mu.RLock()
	if b.closed {
		b.mu.RUnlock()
		return batchOut{res: interruptedResult("shutting down"), lead: true, interrupted: true}
	}
	select {
	case b.reqs <- r:
		b.mu.RUnlock()
	case <-b.closing:
		b.mu.RUnlock()
		return batchOut{res: interruptedResult("shutting down"), lead: true, interrupted: true}
	case <-ctx.Done():
		b.mu.RUnlock()
		return batchOut{res: interruptedResult(ctx.Err().Error()), lead: true, interrupted: true}
	}
	return <-r.done
}

// answer tells r its result alone.
func (r *batchReq) answer(res sdk.Result) {
	r.done <- batchOut{res: res, lead: true, interrupted: true}
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
	finished := make(chan callDone, b.maxCalls)
	account := func(d callDone) {
		running--
		inFlight -= d.n
		switch {
		case b.fixed:
		case d.answered:
			window = min(maxWindow, window*2)
		default:
			window = max(1, window/2)
		}
	}
	// carry is the delivery that did not fit the last batch (max_bytes):
	// the first of the next.
	var carry *batchReq
	for {
		first := carry
		carry = nil
		if first == nil {
			select {
			case first = <-b.reqs:
			case d := <-finished:
				account(d)
				continue
			case <-b.closing:
				b.shut()
				return
			}
		}
		for running == b.maxCalls || inFlight >= window {
			select {
			case d := <-finished:
				account(d)
			case <-b.closing:
				first.answer(interruptedResult("shutting down"))
				b.shut()
				return
			}
		}
		var batch []*batchReq
		if b.fixed {
			var closing bool
			batch, carry, closing = b.gather(first, min(b.maxSize, window-inFlight))
			if closing {
				for _, r := range batch {
					r.answer(interruptedResult("shutting down"))
				}
				if carry != nil {
					carry.answer(interruptedResult("shutting down"))
				}
				b.shut()
				return
			}
		} else {
			batch = b.fill(first, min(b.maxSize, window-inFlight))
		}
		running++
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

// gather is fill for a timed batcher: it adds to first the deliveries
// that arrive until the batch holds size, the next one would take it over
// maxBytes (that one is returned as carry, for the next batch), or
// maxWait has passed since first was handed in. closing tells that the
// batcher is being closed: nothing is to be sent.
func (b *batcher) gather(first *batchReq, size int) (batch []*batchReq, carry *batchReq, closing bool) {
	batch = []*batchReq{first}
	bytes := len(first.d.Raw)
	var timeout <-chan time.Time
	if wait := b.maxWait - time.Since(first.at); wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		timeout = t.C
	}
	for len(batch) < size {
		var r *batchReq
		select {
		case r = <-b.reqs:
		default:
			if timeout == nil {
				return batch, nil, false
			}
			select {
			case r = <-b.reqs:
			case <-timeout:
				return batch, nil, false
			case <-b.closing:
				return batch, nil, true
			}
		}
		// The items, their commas and the array's brackets: the body
		// the sink makes (before compression).
		if b.maxBytes > 0 && bytes+len(r.d.Raw)+len(batch)+2 > b.maxBytes {
			return batch, r, false
		}
		bytes += len(r.d.Raw)
		batch = append(batch, r)
	}
	return batch, nil, false
}

// call delivers batch in one Deliver call and answers each delivery.
func (b *batcher) call(batch []*batchReq) callDone {
	ds := make([]sdk.Delivery, len(batch))
	for i, r := range batch {
		ds[i] = r.d
	}
	var res []sdk.Result
	var details []*attempt.Detail
	var targets []TargetResult
	switch {
	case b.targets != nil:
		targets = b.targets(b.ctx, ds)
		res = make([]sdk.Result, len(targets))
		for i := range targets {
			res[i] = targets[i].Result
		}
	case b.detailed != nil:
		res, details = b.detailed.DeliverBatchDetailed(b.ctx, ds)
	default:
		res = b.sink.Deliver(b.ctx, ds)
	}
	answered := false
	for i, r := range batch {
		out := batchOut{lead: i == 0}
		if i < len(targets) && len(targets) == len(batch) {
			out.target = &targets[i]
		}
		if len(res) != len(batch) {
			out.res = sdk.Result{Outcome: sdk.Retry, Reason: fmt.Sprintf("sink returned %d results for %d deliveries", len(res), len(batch))}
			r.done <- out
			continue
		}
		out.res = res[i]
		if i < len(details) {
			out.detail = details[i]
		}
		answered = answered || res[i].Outcome != sdk.Retry
		r.done <- out
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
			r.answer(interruptedResult("shutting down"))
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

// TargetBatcher gathers the pairs of one target of a fan-out sink (a
// subscription with `batch`) into batches by a batching policy, with the
// timed batcher a BatchingSink gets: a Fanout's DeliverTarget hands each
// pair to Deliver, which returns the pair's result once the batch that
// carried it was sent. The pairs waiting in a batch stay unacknowledged
// in the queue until then.
type TargetBatcher struct{ b *batcher }

// NewTargetBatcher gathers by p, with up to calls batches (at most
// maxBatches) being sent at once. send makes one attempt of a batch (or
// defers it) and returns one TargetResult per delivery, in order; it runs
// on the batcher's own context, cancelled by Close.
func NewTargetBatcher(p batching.Policy, calls int, send func(ctx context.Context, ds []sdk.Delivery) []TargetResult) *TargetBatcher {
	ctx, cancel := context.WithCancel(context.Background())
	calls = timedCalls(calls)
	b := &batcher{
		maxSize: p.MaxEvents, limit: calls * p.MaxEvents, reqs: make(chan *batchReq, p.MaxEvents), maxCalls: calls,
		maxBytes: p.MaxBytes, maxWait: p.MaxWait, fixed: true, targets: send,
		ctx: ctx, cancel: cancel, calls: workers.New(), closing: make(chan struct{}), loopExited: make(chan struct{}),
	}
	go b.loop()
	return &TargetBatcher{b: b}
}

// Deliver hands d to the next batch and returns what became of it. A
// delivery the batcher did not send (it closed first: a changed policy,
// shutdown) is deferred, handed back without an attempt.
func (t *TargetBatcher) Deliver(ctx context.Context, d sdk.Delivery) TargetResult {
	out := t.b.deliverOut(ctx, d)
	switch {
	case out.target != nil:
		return *out.target
	case out.interrupted:
		return TargetResult{Defer: minBatchDefer, DeferReason: "batch_closed"}
	}
	return TargetResult{Result: out.res}
}

// minBatchDefer is how long a pair its batcher did not send waits before
// it is tried again.
const minBatchDefer = 50 * time.Millisecond

// Close answers the deliveries waiting in a batch with Retry and waits
// (up to closeGrace, then cancels) for the batches being sent.
func (t *TargetBatcher) Close() { t.b.close() }
