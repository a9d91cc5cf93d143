package pipeline

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"strconv"
	"strings"
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

// sinkDelivery is one message of a sink's topic, decoded.
type sinkDelivery struct {
	msg      *message.Message
	ev       sdk.Event
	pipeline string
	attempt  int
	// topic is where the message came from, and where a copy for a retry
	// goes.
	topic string
	// batch is the webhook-id of the batch that carried the attempt (a
	// BatchingSink's), "" for a delivery of its own; follower is set for
	// every event of the batch but its first.
	batch    string
	follower bool
	// ordered: the message is of an ordered sink's partition, where a
	// retry waits in place (a nack with a delay), never as a copy, which
	// would go behind the events after it.
	ordered bool
}

// logArgs are the logger fields of a delivery. They are built only for
// what is logged: a successful delivery logs nothing at the default level.
// A fan-out sink's pair names its application and subscription too.
func (d *sinkDelivery) logArgs(sink string, more ...any) []any {
	args := []any{"sink", sink, "pipeline", d.pipeline, "event_id", d.ev.ID, "attempt", d.attempt}
	if sub := d.msg.Metadata.Get(envelope.Subscription); sub != "" {
		args = append(args, "application", d.msg.Metadata.Get(envelope.Application), "subscription", sub)
	}
	return append(args, more...)
}

// sinkHandler handles the messages of sink r's topic.
func (e *Engine) sinkHandler(r *sinkRunner) message.NoPublishHandlerFunc {
	return e.sinkHandlerFor(r, false)
}

// sinkHandlerFor handles the messages of sink r's topic or, ordered, of
// one of its partition topics (see partitionHandler).
func (e *Engine) sinkHandlerFor(r *sinkRunner, ordered bool) message.NoPublishHandlerFunc {
	return func(msg *message.Message) error {
		d, ok, err := e.admitDelivery(r.name, msg)
		if !ok {
			return err
		}
		d.ordered = ordered
		// The driver counted the circuit's hand-backs as deliveries.
		held := e.heldBack.count(msg.UUID)
		d.attempt = max(1, d.attempt-held)
		probe, ok := e.awaitCircuit(r, msg)
		if !ok {
			return e.holdBack(msg)
		}
		// A delivery in flight at shutdown is finished, not cut off: the
		// router waits for it (up to CloseTimeout) and the sink's own
		// timeout bounds it.
		ctx := e.deliveryContext(msg)
		// The sink version this delivery uses to the end, its outcome
		// included (a replaced sink's schedule does not apply to it).
		st := r.acquire()
		defer st.release()
		res, at, detail := e.deliver(ctx, r, st, d)
		if probe || !d.follower {
			// One verdict per request: a batch's first event speaks for it.
			e.judgeCircuit(r, probe, res)
		}
		if held > 0 && (res.Outcome != sdk.Retry || (e.delayer != nil && !d.ordered)) {
			// Settled, or retried as a copy that carries its attempt: a
			// redelivery of this message no longer follows.
			e.heldBack.forget(msg.UUID)
		}
		switch res.Outcome {
		case sdk.OK:
			e.recordAttempt(r.name, d, at, attempt.Delivered, res, detail)
			e.delivered(ctx, r, d, res)
			return nil
		case sdk.Permanent:
			e.recordAttempt(r.name, d, at, attempt.Failed, res, detail)
			e.log.Warn("permanent delivery failure", d.logArgs(r.name, "reason", res.Reason, "status", res.StatusCode)...)
			return e.giveUp(ctx, r.name, d, deadletter.KindPermanent, res.Reason, res)
		default:
			return e.deliveryFailed(r, st.spec.Schedule, d, res, func(more bool) {
				if held > 0 && !more {
					e.heldBack.forget(msg.UUID)
				}
				e.recordAttempt(r.name, d, at, failedOutcome(more), res, detail)
			})
		}
	}
}

// admitDelivery decodes a sink's message. A message that cannot be
// delivered (undecodable, or poison: delivered too often without an
// outcome) is dead-lettered instead: ok is false and err is the handler's
// result.
func (e *Engine) admitDelivery(sink string, msg *message.Message) (d *sinkDelivery, ok bool, err error) {
	d = &sinkDelivery{msg: msg, pipeline: msg.Metadata.Get(envelope.Pipeline), topic: queue.SinkTopic(sink)}
	if err := d.ev.UnmarshalJSON(msg.Payload); err != nil {
		return nil, false, e.deadLetter(msg, sdk.Event{ID: msg.UUID}, d.pipeline, sink, deadletter.KindInvalid, fmt.Sprintf("undecodable event: %v", err), 0)
	}
	if n := queue.Deliveries(msg); n > e.opts.MaxDeliveries {
		return nil, false, e.deadLetter(msg, d.ev, d.pipeline, sink, deadletter.KindPoison, fmt.Sprintf("poison: delivered %d times without an outcome", n-1), n-1)
	}
	// A retry published for later (PublishAt) starts at attempt 1 in the
	// queue's count: MetaRetryAttempt carries the attempts before it.
	d.attempt = queue.Attempt(msg)
	if a, ok := queue.MetaInt(msg, MetaRetryAttempt); ok && a > 0 {
		d.attempt = int(a) + d.attempt - 1
	}
	return d, true, nil
}

// deliver makes one delivery attempt to the sink version st, measured.
// With the delivery log on, a sink that tells the detail of its attempts
// (DetailedSink) is asked for it.
func (e *Engine) deliver(ctx context.Context, r *sinkRunner, st *sinkState, d *sinkDelivery) (sdk.Result, attemptTiming, *attempt.Detail) {
	r.inFlight.Inc()
	start := time.Now()
	dl := sdk.Delivery{Event: d.ev, Attempt: d.attempt, Pipeline: d.pipeline, Raw: d.msg.Payload}
	var res sdk.Result
	var detail *attempt.Detail
	switch {
	case st.batcher != nil && st.batcher.fixed:
		out := st.batcher.deliverOut(ctx, dl)
		res, detail, d.follower = out.res, out.detail, !out.lead
		if detail != nil && strings.HasPrefix(detail.WebhookID, batching.IDPrefix) {
			d.batch = detail.WebhookID
		}
	case st.detailed != nil && e.opts.Attempts != nil:
		res, detail = st.detailed.DeliverDetailed(ctx, dl)
	default:
		res = st.deliver(ctx, dl)
	}
	took := time.Since(start)
	r.inFlight.Dec()
	r.attemptTime.Observe(took.Seconds())
	e.m.Attempts.WithLabelValues(r.name, res.Outcome.String(), metrics.StatusClass(res.StatusCode)).Inc()
	return res, attemptTiming{start: start, duration: took}, detail
}

// delivered records a successful delivery.
func (e *Engine) delivered(ctx context.Context, r *sinkRunner, d *sinkDelivery, res sdk.Result) {
	e.m.Delivered.WithLabelValues(d.pipeline, r.name).Inc()
	if ns, err := strconv.ParseInt(d.msg.Metadata.Get(envelope.ReceivedAt), 10, 64); err == nil {
		r.endToEnd.Observe(time.Since(time.Unix(0, ns)).Seconds())
	}
	if e.log.Enabled(ctx, slog.LevelDebug) {
		e.log.Debug("delivered", d.logArgs(r.name, "status", res.StatusCode)...)
	}
}

// deliveryFailed schedules the next attempt of a delivery that may be
// retried, after the delay sched gives, or dead-letters it when
// the schedule is exhausted. record, when not nil, is told which (more:
// another attempt follows) before either happens.
func (e *Engine) deliveryFailed(r *sinkRunner, sched retry.Schedule, d *sinkDelivery, res sdk.Result, record func(more bool)) error {
	delay, ok := sched.Next(d.attempt, res.RetryAfter)
	if d.batch != "" {
		// The batch's events that failed together come back together.
		delay, ok = sched.NextFor(d.batch, d.attempt, res.RetryAfter)
	}
	if record != nil {
		record(ok)
	}
	if !ok {
		e.log.Warn("giving up after last attempt", d.logArgs(r.name, "reason", res.Reason)...)
		return e.giveUp(e.deliveryContext(d.msg), r.name, d, deadletter.KindExhausted, fmt.Sprintf("gave up after %d attempts: %s", d.attempt, res.Reason), res)
	}
	r.retries.Inc()
	if ok, held := r.failures.allow(time.Now()); ok {
		e.log.Info("delivery failed; retry scheduled", d.logArgs(r.name, "reason", res.Reason, "status", res.StatusCode, "retry_in", delay.Round(time.Millisecond),
			"failures_not_logged", held)...)
	} else if e.log.Enabled(context.Background(), slog.LevelDebug) {
		e.log.Debug("delivery failed; retry scheduled", d.logArgs(r.name, "reason", res.Reason, "status", res.StatusCode, "retry_in", delay.Round(time.Millisecond))...)
	}
	if d.ordered {
		return e.retryByNack(r.name, d, delay)
	}
	return e.retryDelivery(r.name, d, delay)
}

// retryByNack is the retry strategy of drivers with delayed nacks: the
// broker holds the message back itself.
func (e *Engine) retryByNack(_ string, d *sinkDelivery, delay time.Duration) error {
	return nackLater(d.msg, delay)
}

// retryByPublishAt is the retry strategy of drivers that take a copy due
// later (queue.Delayer): the copy carries the attempt it is for, and the
// message is acked.
func (e *Engine) retryByPublishAt(sink string, d *sinkDelivery, delay time.Duration) error {
	rm := requeueCopy(d.msg)
	rm.Metadata.Set(MetaRetryAttempt, strconv.Itoa(d.attempt+1))
	delete(rm.Metadata, queue.MetaDedupID)
	if err := e.delayer.PublishAt(d.topic, time.Now().Add(delay), rm); err != nil {
		e.logQueueError("queue publish of retry failed; will try again", err, d.logArgs(sink)...)
		return nackLater(d.msg, infraRetryDelay)
	}
	return nil
}

// requeueCopy is a new message with msg's payload and metadata, less the
// keys drop (the queue's own counts, which must start again for it).
func requeueCopy(msg *message.Message, drop ...string) *message.Message {
	rm := message.NewMessage(watermill.NewULID(), msg.Payload)
	rm.Metadata = maps.Clone(msg.Metadata)
	for _, k := range drop {
		delete(rm.Metadata, k)
	}
	return rm
}
