package pipeline

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/hookbus/hookbus/core/attempt"
	"github.com/hookbus/hookbus/core/batching"
	"github.com/hookbus/hookbus/core/deadletter"
	"github.com/hookbus/hookbus/core/envelope"
	"github.com/hookbus/hookbus/core/metrics"
	"github.com/hookbus/hookbus/core/queue"
	"github.com/hookbus/hookbus/core/retry"
	"github.com/hookbus/hookbus/sdk"
)

// Fanout is implemented by a sink whose events each go to many targets of
// its own: the subscriptions sink delivers an event to every callback URL
// registered for it. The engine gives such a sink two consumers. The
// first reads the sink's topic, asks Targets where each event goes, queues
// one message per target on the sink's deliveries topic
// (envelope.DeliveriesTopic) in one publish, and acks the event. The
// second delivers those messages through DeliverTarget: each (event,
// target) pair is a delivery of its own, with its own attempts, retries
// and dead letter, so one failing target never holds up the others.
type Fanout interface {
	// Targets appends to dst the targets ev goes to, each once. None
	// means the event is filtered (recorded as such, not an error). An
	// error dead-letters the event as invalid for the whole sink, with
	// the error as reason.
	Targets(ev sdk.Event, dst []Target) ([]Target, error)
	// DeliverTarget makes one attempt of d to t, or defers it, and says
	// what became of it. It is called concurrently, must honour ctx as
	// sdk.Sink.Deliver does, and must not retry on its own: the engine
	// keeps the pair's retries durable on the sink's schedule.
	DeliverTarget(ctx context.Context, t Target, d sdk.Delivery) TargetResult
}

// Target is one destination of a fan-out sink's event: a subscription
// and the application that owns it.
type Target struct {
	App string
	ID  string
}

// TargetResult is what DeliverTarget made of one pair.
type TargetResult struct {
	// Result is the attempt's outcome, as a sink's Deliver reports it.
	Result sdk.Result
	// Defer, when positive, hands the pair back to the queue to be tried
	// again after this wait without counting an attempt: its target
	// cannot take it now (its window is full, or its rate limit's next
	// slot is later). Result is not used.
	Defer time.Duration
	// DeferReason names why, for the deferrals metric ("max_in_flight",
	// "rate_limit").
	DeferReason string
	// Filtered: the target's own filter dropped the event; it is recorded
	// as filtered.
	Filtered bool
	// NotTried: no request was made (the target's endpoint is failing);
	// the attempt counts as a failed one with Result (a Retry) but is not
	// measured as one.
	NotTried bool
	// Kind, with a Permanent Result, is the dead letter's kind
	// (deadletter.KindPermanent when empty): KindScript for a target's
	// filter that threw, KindDiscarded for a target that no longer exists
	// or no longer takes deliveries.
	Kind deadletter.Kind
	// Detail, when not nil, tells more of the attempt (URL, headers, the
	// start of the response) for the delivery log; the engine redacts its
	// headers (see DetailedSink).
	Detail *attempt.Detail
	// Schedule, when not nil, is the target's own retry schedule: a
	// failed attempt is tried again after its delays, and the pair is
	// dead-lettered as exhausted once it has none left, in place of the
	// sink's schedule.
	Schedule *retry.Schedule
}

// tried tells whether a request was made (or refused on the way, as by
// the SSRF guard), so the attempt is measured.
func (tr TargetResult) tried() bool {
	return tr.Defer <= 0 && !tr.Filtered && !tr.NotTried && (tr.Kind == "" || tr.Kind == deadletter.KindPermanent)
}

// fanoutHandler handles the messages of a fan-out sink's topic: it queues
// one message per target on the deliveries topic, then the event is acked.
func (e *Engine) fanoutHandler(r *sinkRunner) message.NoPublishHandlerFunc {
	return func(msg *message.Message) error {
		pipeline := msg.Metadata.Get(envelope.Pipeline)
		var ev sdk.Event
		if err := ev.UnmarshalJSON(msg.Payload); err != nil {
			return e.deadLetter(msg, sdk.Event{ID: msg.UUID}, pipeline, r.name, deadletter.KindInvalid, fmt.Sprintf("undecodable event: %v", err), 0)
		}
		if n := queue.Deliveries(msg); n > e.opts.MaxDeliveries {
			return e.deadLetter(msg, ev, pipeline, r.name, deadletter.KindPoison, fmt.Sprintf("poison: delivered %d times without an outcome", n-1), n-1)
		}
		st := r.acquire()
		targets, err := st.spec.Fanout.Targets(ev, nil)
		st.release()
		if err != nil {
			return e.deadLetter(msg, ev, pipeline, r.name, deadletter.KindInvalid, err.Error(), 0)
		}
		if len(targets) == 0 {
			e.m.Filtered.WithLabelValues(pipeline, r.name).Inc()
			e.log.Debug("event matched no target", "pipeline", pipeline, "sink", r.name, "event_id", ev.ID)
			return nil
		}
		msgs := make([]*message.Message, len(targets))
		for i, t := range targets {
			pm := message.NewMessage(watermill.NewULID(), msg.Payload)
			for _, k := range []string{envelope.ReceivedAt, envelope.Source, envelope.Pipeline, envelope.Redelivery} {
				if v := msg.Metadata.Get(k); v != "" {
					pm.Metadata.Set(k, v)
				}
			}
			pm.Metadata.Set(envelope.Sink, r.name)
			pm.Metadata.Set(envelope.Application, t.App)
			pm.Metadata.Set(envelope.Subscription, t.ID)
			// The sink message's id, not the event's: it is the same when
			// the message is redelivered (a crash between this publish
			// and the ack), so deduplicating drivers queue each pair once,
			// while two events with one id (from two sources, or two
			// pipelines) stay two deliveries.
			pm.Metadata.Set(queue.MetaDedupID, "pair/"+msg.UUID+"/"+t.ID)
			msgs[i] = pm
		}
		if err := e.q.Publish(envelope.DeliveriesTopic(r.name), msgs...); err != nil {
			e.logQueueError("queue publish of deliveries failed; will retry", err, "pipeline", pipeline, "sink", r.name, "event_id", ev.ID, "targets", len(msgs))
			return nackLater(msg, infraRetryDelay)
		}
		return nil
	}
}

// pairHandler handles the messages of a fan-out sink's deliveries topic:
// one delivery of one event to one target.
func (e *Engine) pairHandler(r *sinkRunner) message.NoPublishHandlerFunc {
	return func(msg *message.Message) error {
		d, ok, err := e.admitDelivery(r.name, msg)
		if !ok {
			return err
		}
		d.topic = r.pairTopic
		t := Target{App: msg.Metadata.Get(envelope.Application), ID: msg.Metadata.Get(envelope.Subscription)}
		if t.ID == "" {
			return e.deadLetter(msg, d.ev, d.pipeline, r.name, deadletter.KindInvalid, "delivery names no subscription", d.attempt)
		}
		if e.delayer == nil {
			// The driver counted this pair's deferrals as deliveries.
			d.attempt = max(1, d.attempt-e.deferred.count(msg.UUID))
		}
		ctx := e.deliveryContext(msg)
		st := r.acquire()
		defer st.release()
		tr, at := e.deliverTarget(ctx, r, st, t, d)
		if tr.Detail != nil && strings.HasPrefix(tr.Detail.WebhookID, batching.IDPrefix) {
			d.batch = tr.Detail.WebhookID // the batch's pairs retry together
		}
		switch {
		case tr.Defer > 0:
			return e.deferPair(r, d, tr)
		case tr.Filtered:
			e.deferred.forget(msg.UUID)
			e.m.Filtered.WithLabelValues(d.pipeline, r.name).Inc()
			if e.log.Enabled(ctx, slog.LevelDebug) {
				e.log.Debug("event filtered by the subscription's filter", d.logArgs(r.name)...)
			}
			return nil
		}
		// Every other result is an attempt of the pair, logged: one not
		// tried because its endpoint is failing (NotTried) too, since it
		// counts on the schedule like one that was, and the last of them
		// is the delivery's outcome (a recover looks for the failed ones).
		// Those that made no request have a zero duration and no status.
		res := tr.Result
		switch res.Outcome {
		case sdk.OK:
			e.deferred.forget(msg.UUID)
			e.recordAttempt(r.name, d, at, attempt.Delivered, res, tr.Detail)
			e.delivered(ctx, r, d, res)
			return nil
		case sdk.Permanent:
			e.deferred.forget(msg.UUID)
			e.recordAttempt(r.name, d, at, attempt.Failed, res, tr.Detail)
			kind := tr.Kind
			if kind == "" {
				kind = deadletter.KindPermanent
			}
			if kind == deadletter.KindPermanent {
				return e.giveUp(ctx, r.name, d, kind, res.Reason, res)
			}
			return e.deadLetter(msg, d.ev, d.pipeline, r.name, kind, res.Reason, d.attempt)
		default:
			if tr.NotTried {
				r.notTried.Inc()
			}
			if res.Reason == "" {
				res.Reason = "failed"
			}
			sched := st.spec.Schedule
			if tr.Schedule != nil {
				sched = *tr.Schedule
			}
			return e.deliveryFailed(r, sched, d, res, func(more bool) {
				if !more {
					e.deferred.forget(msg.UUID) // dead-lettered as exhausted
				}
				e.recordAttempt(r.name, d, at, failedOutcome(more), res, tr.Detail)
			})
		}
	}
}

// deliverTarget hands one pair to the fan-out sink version st, measured
// when it made an attempt.
func (e *Engine) deliverTarget(ctx context.Context, r *sinkRunner, st *sinkState, t Target, d *sinkDelivery) (TargetResult, attemptTiming) {
	r.inFlight.Inc()
	start := time.Now()
	tr := st.spec.Fanout.DeliverTarget(ctx, t, sdk.Delivery{Event: d.ev, Attempt: d.attempt, Pipeline: d.pipeline, Raw: d.msg.Payload})
	r.inFlight.Dec()
	at := attemptTiming{start: start}
	if tr.tried() {
		at.duration = time.Since(start)
		r.attemptTime.Observe(at.duration.Seconds())
		e.m.Attempts.WithLabelValues(r.name, tr.Result.Outcome.String(), metrics.StatusClass(tr.Result.StatusCode)).Inc()
	}
	return tr, at
}

// deferPair hands a pair back to be tried after tr.Defer without counting
// an attempt: on drivers that hold messages for later, as a copy due then
// carrying the same attempt; on drivers with delayed nacks, as a nack
// with that delay, the deferral remembered so that the redelivery's count
// is corrected. Neither counts as a delivery without an outcome (poison).
func (e *Engine) deferPair(r *sinkRunner, d *sinkDelivery, tr TargetResult) error {
	reason := tr.DeferReason
	if reason == "" {
		reason = "busy"
	}
	e.m.Deferrals.WithLabelValues(r.name, reason).Inc()
	if e.delayer != nil {
		rm := requeueCopy(d.msg)
		rm.Metadata.Set(MetaRetryAttempt, strconv.Itoa(d.attempt))
		delete(rm.Metadata, queue.MetaDedupID)
		if err := e.delayer.PublishAt(d.topic, time.Now().Add(tr.Defer), rm); err != nil {
			e.logQueueError("queue publish of a deferred delivery failed; will try again", err, d.logArgs(r.name)...)
			return nackLater(d.msg, infraRetryDelay)
		}
		return nil
	}
	e.deferred.add(d.msg.UUID)
	return nackLater(d.msg, tr.Defer)
}

// deferralMemory is how long a nacked pair's deferrals are remembered
// after the last one: longer than any wait a pair spends in the queue
// between two deliveries on the default schedule (10h).
const deferralMemory = 48 * time.Hour

// deferrals counts, per message, the deferrals handed back by delayed
// nacks: the driver counts each as a delivery, and so as an attempt, and
// the engine takes them off again. The counts live in this process only,
// so a restart, or a redelivery to another instance of a group shared by
// several, counts the earlier deferrals as attempts. The zero value is
// ready to use.
type deferrals struct {
	mu    sync.Mutex
	m     map[string]deferral
	swept time.Time
}

type deferral struct {
	n       int
	touched time.Time
}

// add counts one more deferral of the message with id.
func (d *deferrals) add(id string) {
	now := time.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.m == nil {
		d.m = map[string]deferral{}
		d.swept = now
	}
	n := d.m[id].n
	d.m[id] = deferral{n: n + 1, touched: now}
	// Entries of pairs settled by another instance are never forgotten
	// otherwise.
	if now.Sub(d.swept) > time.Hour {
		for k, v := range d.m {
			if now.Sub(v.touched) > deferralMemory {
				delete(d.m, k)
			}
		}
		d.swept = now
	}
}

// count is how many deferrals of the message with id were nacked.
func (d *deferrals) count(id string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.m[id].n
}

// forget drops the count of a message that reached its outcome.
func (d *deferrals) forget(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.m, id)
}
