package subscriptions

import (
	"context"
	"time"

	"github.com/hookbus/hookbus/core/batching"
	"github.com/hookbus/hookbus/core/pipeline"
	"github.com/hookbus/hookbus/plugins/webhook"
	"github.com/hookbus/hookbus/sdk"
)

// A subscription with `batch` gets its pairs gathered into batches by the
// engine's timed batcher (pipeline.TargetBatcher), one per subscription:
// each batch is one request, so one admission (window, rate limit,
// circuit), one attempt of the webhook and one verdict on the endpoint,
// and every pair it carried gets that request's result. Pairs waiting
// in a batch hold places of the sink's window (max_in_flight), so that a
// subscription's batches cannot take them all: a subscription holds at
// most batchShare of the window in its batches; more pairs are deferred.

// batchShare is the share of the sink's window one subscription's
// batches may hold.
const batchShare = 4

// batchDefer is how long a pair waits when its subscription's batches
// hold their share of the window.
const batchDefer = 100 * time.Millisecond

// batchCap is how many pairs one subscription's batches may hold at once.
func (s *Sink) batchCap() int {
	return max(1, s.shared.Window(DefaultMaxInFlight)/batchShare)
}

// deliverBatched hands d to the batcher of sub's state, or defers it when
// the subscription's batches hold their share of the window.
func (s *Sink) deliverBatched(ctx context.Context, st *subState, p batching.Policy, d sdk.Delivery) pipeline.TargetResult {
	tb, ok := st.holdBatch(s, p, s.batchCap())
	if !ok {
		return pipeline.TargetResult{Defer: batchDefer, DeferReason: "batch_full"}
	}
	defer st.releaseBatch()
	return tb.Deliver(ctx, d)
}

// holdBatch counts one more pair in st's batches, when there is room
// (below capacity), and returns the batcher for policy p, made (or made
// again, for a changed policy) on first use.
func (st *subState) holdBatch(s *Sink, p batching.Policy, capacity int) (*pipeline.TargetBatcher, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.batchHeld >= capacity {
		return nil, false
	}
	if st.batcher == nil || st.batchPolicy != p {
		if old := st.batcher; old != nil {
			// Its waiting pairs are handed back unattempted; its calls
			// may run for a request's timeout.
			go old.Close()
		}
		st.batchPolicy = p
		st.batcher = pipeline.NewTargetBatcher(p, st.maxInFlight, func(ctx context.Context, ds []sdk.Delivery) []pipeline.TargetResult {
			return s.sendBatch(ctx, st, ds)
		})
	}
	st.batchHeld++
	return st.batcher, true
}

// releaseBatch counts a pair out of st's batches.
func (st *subState) releaseBatch() {
	st.mu.Lock()
	st.batchHeld--
	st.mu.Unlock()
}

// sendBatch makes one attempt of a batch of the subscription's pairs, or
// defers it, and says what became of each pair.
func (s *Sink) sendBatch(ctx context.Context, st *subState, ds []sdk.Delivery) []pipeline.TargetResult {
	out := make([]pipeline.TargetResult, len(ds))
	all := func(tr pipeline.TargetResult) []pipeline.TargetResult {
		for i := range out {
			out[i] = tr
		}
		return out
	}
	ids := make([]string, len(ds))
	for i, d := range ds {
		ids[i] = d.Event.ID
	}
	now := time.Now()
	adm := st.admit(now, batching.ID(ids))
	switch {
	case adm.defer_ > 0:
		return all(pipeline.TargetResult{Defer: adm.defer_, DeferReason: adm.reason})
	case adm.notTried != "":
		res := sdk.Result{Outcome: sdk.Retry, Reason: adm.notTried}
		s.afterFailure(ctx, st, now, trigger{ds[0], res})
		return all(pipeline.TargetResult{NotTried: true, Result: res})
	}
	waitFor(ctx, adm.wait)
	hook, err := st.webhook(now, s)
	if err != nil {
		st.done(adm.started, time.Now(), 0, outcomeNone)
		return all(pipeline.TargetResult{Result: sdk.Result{Outcome: sdk.Permanent, Reason: err.Error()}})
	}
	as := hook.DeliverBatch(ctx, ds)
	end := time.Now()
	// The endpoint's verdict is the first request's (a batch is one
	// request unless its events' encoded size made it two).
	lead, first := as[0], 0
	for i, a := range as {
		if a.URL != "" {
			lead, first = a, i
			break
		}
	}
	st.done(adm.started, end, lead.Latency, judge(lead))
	switch {
	case lead.Result.Outcome == sdk.OK:
		s.afterSuccess(ctx, st, ds[first])
	case lead.Result.StatusCode == 410 && lead.Result.Outcome == sdk.Permanent:
		s.disable(ctx, st, "410 Gone", "gone", trigger{ds[first], lead.Result})
	default:
		s.afterFailure(ctx, st, end, trigger{ds[first], lead.Result})
	}
	var prev *webhook.Attempt
	for i := range as {
		out[i] = pipeline.TargetResult{Result: as[i].Result}
		switch {
		case as[i].URL == "":
		case prev != nil && prev.WebhookID == as[i].WebhookID:
			out[i].Detail = out[i-1].Detail
		default:
			prev, out[i].Detail = &as[i], as[i].Detail()
		}
	}
	return out
}
