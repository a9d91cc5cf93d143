package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/hookbus/hookbus/core/deadletter"
	"github.com/hookbus/hookbus/core/envelope"
	"github.com/hookbus/hookbus/core/queue"
	"github.com/hookbus/hookbus/core/script"
	"github.com/hookbus/hookbus/sdk"
)

// pipelineEvent is one source message on its way through one version of
// a pipeline.
type pipelineEvent struct {
	p   Pipeline
	src string
	msg *message.Message
	ev  sdk.Event
	// onlySink, when set, is the one sink the message runs for (a dead
	// letter replayed into the pipeline, or a copy queued to try
	// timed-out steps again).
	onlySink string
	// ordered: the message came through an ordered subscription (the
	// pipeline sends to an ordered sink), where timed-out steps are tried
	// again in place.
	ordered bool
	// retryIn, set by stepsFailed on an ordered message, is the delay
	// after which the whole message runs again (its steps timed out).
	retryIn time.Duration
}

// sinks returns the sinks the event runs for.
func (pe *pipelineEvent) sinks() []string {
	if pe.onlySink == "" {
		return pe.p.To
	}
	var to []string
	for _, s := range pe.p.To {
		if s == pe.onlySink {
			to = append(to, s)
		}
	}
	return to
}

// sinkOutput is what the steps made of an event for one sink, to queue on
// the sink's topic.
type sinkOutput struct {
	sink string
	msgs []*message.Message
}

// errStepsInterrupted ends the handling of a message whose steps were
// interrupted (shutdown): the message is handed back whole.
var errStepsInterrupted = errors.New("steps interrupted")

// pipelineHandler handles the messages one source sends to pipeline pr
// (ordered: through an ordered subscription).
func (e *Engine) pipelineHandler(pr *pipeRunner, src string, ordered bool) message.NoPublishHandlerFunc {
	return func(msg *message.Message) error {
		// One version of the pipeline for the whole event.
		pe := &pipelineEvent{p: *pr.cur.Load(), src: src, msg: msg, ordered: ordered}
		onlySink, ours := replayTarget(msg, pe.p.Name)
		if !ours {
			return nil
		}
		pe.onlySink = onlySink
		// A copy queued to try timed-out steps again waits for its due
		// time; on drivers with delayed nacks it waits inside the broker.
		if wait := untilDue(msg); wait > 0 {
			return nackLater(msg, wait)
		}
		if err := pe.ev.UnmarshalJSON(msg.Payload); err != nil {
			// Cannot happen for events from our own ingest; dead-letter rather than loop.
			return e.deadLetter(msg, sdk.Event{ID: msg.UUID}, pe.p.Name, "", deadletter.KindInvalid, fmt.Sprintf("undecodable event: %v", err), 0)
		}
		// Checked before any work: a message that kills the process each
		// time it runs ends here instead of looping forever.
		if n := queue.Deliveries(msg); n > e.opts.MaxDeliveries {
			return e.poisonBeforeSteps(pe, n)
		}
		// Steps in flight at shutdown finish (scripts have their own
		// deadline) rather than fail as script errors.
		outs, err := e.runSinks(context.WithoutCancel(msg.Context()), pe)
		if errors.Is(err, errStepsInterrupted) {
			return nackLater(msg, infraRetryDelay)
		}
		if err != nil {
			return err
		}
		if pe.retryIn > 0 {
			// Nothing of this event is queued until its steps ran for
			// every sink: the event after it waits behind it.
			return nackLater(msg, pe.retryIn)
		}
		return e.publishOutputs(pe, outs)
	}
}

// replayTarget tells whether a message is for the pipeline named
// pipeline and, for a dead letter replayed into it, the one sink it runs
// for.
func replayTarget(msg *message.Message, pipeline string) (onlySink string, ours bool) {
	rp := msg.Metadata.Get(envelope.ReplayPipeline)
	if rp == "" {
		return "", true
	}
	if rp != pipeline {
		return "", false
	}
	return msg.Metadata.Get(envelope.ReplaySink), true
}

// untilDue is how long a message published with MetaDueAt has still to
// wait (0 when it has none or is due).
func untilDue(msg *message.Message) time.Duration {
	due, ok := queue.MetaInt(msg, MetaDueAt)
	if !ok {
		return 0
	}
	return max(time.Until(time.Unix(0, due)), 0)
}

// poisonBeforeSteps dead-letters a message delivered n times without an
// outcome, once for each sink it runs for.
func (e *Engine) poisonBeforeSteps(pe *pipelineEvent, n int) error {
	reason := fmt.Sprintf("%s: delivered %d times without an outcome", poisonInPipeline, n-1)
	for _, sinkName := range pe.sinks() {
		if err := e.deadLetter(pe.msg, pe.ev, pe.p.Name, sinkName, deadletter.KindPoison, reason, n-1); err != nil {
			return err
		}
	}
	return nil
}

// runSinks runs the steps for each sink the event goes to and returns
// what to queue, in the order of p.To. A sink whose steps failed or timed
// out has been dead-lettered or queued to run again instead.
func (e *Engine) runSinks(ctx context.Context, pe *pipelineEvent) ([]sinkOutput, error) {
	t64, _ := queue.MetaInt(pe.msg, MetaScriptTimeouts)
	timeouts := int(t64)
	if pe.ordered {
		// Tried again in place, the message carries no count: its
		// deliveries before this one stand for its timeouts (a delivery
		// cut short by a crash counts too).
		timeouts = max(timeouts, queue.Attempt(pe.msg)-1)
	}
	var outs []sinkOutput
	for _, sinkName := range pe.sinks() {
		sc := StepContext{Pipeline: pe.p.Name, Sink: sinkName, Attempt: 1}
		msgs, err := e.runForSink(ctx, pe.p, pe.src, pe.msg, pe.ev, sc)
		if errors.Is(err, errInWindow) {
			continue // in its window: the window's output goes to the sink
		}
		if errors.Is(err, errWindowStore) {
			e.log.Error("aggregate window store failed; the event will run again", "pipeline", pe.p.Name, "sink", sinkName, "event_id", pe.ev.ID, "error", err)
			return nil, errStepsInterrupted
		}
		if err != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
			e.log.Warn("steps interrupted; the event will run again", "pipeline", pe.p.Name, "event_id", pe.ev.ID, "error", err)
			return nil, errStepsInterrupted
		}
		if err != nil {
			if err := e.stepsFailed(pe, sinkName, timeouts, err); err != nil {
				return nil, err
			}
			if pe.retryIn > 0 {
				return nil, nil
			}
			continue
		}
		if len(msgs) == 0 {
			e.m.Filtered.WithLabelValues(pe.p.Name, sinkName).Inc()
			e.log.Debug("event filtered", "pipeline", pe.p.Name, "sink", sinkName, "event_id", pe.ev.ID)
			continue
		}
		outs = append(outs, sinkOutput{sink: sinkName, msgs: msgs})
	}
	return outs, nil
}

// stepsFailed handles the error of the steps for one sink: a timeout
// queues the event again for that sink while it has timeouts left; any
// other error, or the last timeout, dead-letters it.
func (e *Engine) stepsFailed(pe *pipelineEvent, sinkName string, timeouts int, err error) error {
	// A memory interrupt is not a verdict either: the heap watch sees the
	// whole process, so another call's allocations may have caused it.
	// Both count against max_timeouts.
	if errors.Is(err, script.ErrTimeout) || errors.Is(err, script.ErrMemory) {
		if timeouts+1 < e.opts.MaxScriptTimeouts {
			if pe.ordered {
				pe.retryIn = e.opts.ScriptTimeoutBackoff << timeouts
				e.log.Warn("script timed out or was interrupted for memory; the event will run again in place", "pipeline", pe.p.Name, "sink", sinkName, "event_id", pe.ev.ID, "timeouts", timeouts+1, "retry_in", pe.retryIn)
				return nil
			}
			return e.retryTimedOut(pe, sinkName, timeouts+1)
		}
		if errors.Is(err, script.ErrMemory) {
			err = fmt.Errorf("%w (interrupted %d times)", err, timeouts+1)
		} else {
			err = fmt.Errorf("%w (timed out %d times)", err, timeouts+1)
		}
	}
	kind := deadletter.KindScript
	var perr *panicError
	if errors.As(err, &perr) && !perr.inStep {
		kind = deadletter.KindPanic
	}
	return e.deadLetter(pe.msg, pe.ev, pe.p.Name, sinkName, kind, err.Error(), 0)
}

// publishOutputs queues each sink's messages on its topic, keeping order.
func (e *Engine) publishOutputs(pe *pipelineEvent, outs []sinkOutput) error {
	for _, o := range outs {
		if err := e.publishOrdered(o.sink, o.msgs); err != nil {
			e.logQueueError("queue publish failed; will retry", err, "pipeline", pe.p.Name, "sink", o.sink)
			return nackLater(pe.msg, infraRetryDelay)
		}
	}
	return nil
}

// poisonInPipeline starts the reason of a message found poison before its
// pipeline's steps ran (deadletter.Replay tells it by this prefix).
const poisonInPipeline = deadletter.ReasonPoisonBeforeSteps

// panicError is a panic recovered while an event ran through a pipeline
// for one sink. inStep tells whether a step (a script) panicked, rather
// than hookbus' own code around it.
type panicError struct {
	step   string
	value  any
	inStep bool
}

func (p *panicError) Error() string {
	if p.inStep {
		return fmt.Sprintf("step %s panicked: %v", p.step, p.value)
	}
	return fmt.Sprintf("internal error: panic: %v", p.value)
}

// runForSink runs the steps of p for one sink and returns the messages to
// queue on the sink's topic (none: filtered). A panic is returned as a
// *panicError, so the event is dead-lettered with its pipeline and sink
// (and can be replayed) instead of reaching the router's last-resort
// recovery, which knows neither.
func (e *Engine) runForSink(ctx context.Context, p Pipeline, src string, msg *message.Message, ev sdk.Event, sc StepContext) (out []*message.Message, err error) {
	defer func() {
		if v := recover(); v != nil {
			e.log.Error("pipeline panicked; dead-lettering the event", "pipeline", p.Name, "sink", sc.Sink, "event_id", ev.ID, "panic", v, "stack", string(debug.Stack()))
			out, err = nil, &panicError{value: v}
		}
	}()
	if agg, i := aggregateAt(p.Steps); agg != nil {
		return nil, e.addToWindows(ctx, p, agg, i, src, msg, ev, sc)
	}
	events, err := e.runSteps(ctx, p, ev, sc)
	if err != nil {
		return nil, err
	}
	for i, oev := range events {
		// Without steps the event is the payload as queued.
		b := msg.Payload
		if len(p.Steps) > 0 {
			if b, err = json.Marshal(oev); err != nil {
				return nil, fmt.Errorf("transform result: %w", err)
			}
		}
		om := message.NewMessage(watermill.NewULID(), b)
		om.Metadata.Set(envelope.ReceivedAt, msg.Metadata.Get(envelope.ReceivedAt))
		om.Metadata.Set(envelope.Source, src)
		om.Metadata.Set(envelope.Pipeline, p.Name)
		om.Metadata.Set(envelope.Sink, sc.Sink)
		// A redelivered source message republishes the same keys, so
		// deduplicating drivers do not queue it twice.
		om.Metadata.Set(queue.MetaDedupID, fmt.Sprintf("%s/%s/%s/%d", p.Name, sc.Sink, msg.UUID, i))
		out = append(out, om)
	}
	return out, nil
}

// retryTimedOut queues the event again for one sink of the pipeline, due
// after a backoff that doubles with each timeout, carrying the count. The
// copy goes to the source topic, marked for this pipeline and sink only,
// so the other sinks' results are not repeated.
func (e *Engine) retryTimedOut(pe *pipelineEvent, sink string, timeouts int) error {
	delay := e.opts.ScriptTimeoutBackoff << (timeouts - 1)
	rm := requeueCopy(pe.msg, queue.MetaAttempt, queue.MetaNackDelay, queue.MetaDeliveries, MetaDueAt)
	rm.Metadata.Set(envelope.ReplayPipeline, pe.p.Name)
	rm.Metadata.Set(envelope.ReplaySink, sink)
	rm.Metadata.Set(MetaScriptTimeouts, strconv.Itoa(timeouts))
	rm.Metadata.Set(queue.MetaDedupID, fmt.Sprintf("timeout/%s/%s/%s/%d", pe.p.Name, sink, pe.msg.UUID, timeouts))
	if err := e.publishDue(queue.SourceTopic(pe.src), time.Now().Add(delay), rm); err != nil {
		e.logQueueError("queue publish of a timed-out event failed; will retry", err, "pipeline", pe.p.Name, "sink", sink, "event_id", pe.ev.ID)
		return nackLater(pe.msg, infraRetryDelay)
	}
	e.log.Warn("script timed out or was interrupted for memory; the event will run again", "pipeline", pe.p.Name, "sink", sink, "event_id", pe.ev.ID, "timeouts", timeouts, "retry_in", delay)
	return nil
}

// publishDue queues rm on topic to be handled at due: held back by the
// driver until then when it can (a Delayer), else published now with
// MetaDueAt, which its handler waits out.
func (e *Engine) publishDue(topic string, due time.Time, rm *message.Message) error {
	if e.delayer != nil {
		return e.delayer.PublishAt(topic, due, rm)
	}
	rm.Metadata.Set(MetaDueAt, strconv.FormatInt(due.UnixNano(), 10))
	return e.q.Publish(topic, rm)
}

func (e *Engine) runSteps(ctx context.Context, p Pipeline, ev sdk.Event, sc StepContext) ([]sdk.Event, error) {
	cur := []sdk.Event{ev}
	for _, st := range p.Steps {
		var next []sdk.Event
		for _, in := range cur {
			start := time.Now()
			res, err := e.runStep(ctx, st, in, sc)
			e.m.ScriptTime.WithLabelValues(st.Name()).Observe(time.Since(start).Seconds())
			if err != nil {
				e.m.ScriptErrors.WithLabelValues(st.Name()).Inc()
				return nil, err
			}
			next = append(next, res...)
		}
		cur = next
		if len(cur) == 0 {
			return nil, nil
		}
	}
	return cur, nil
}

// runStep runs one step, turning its panic into a *panicError.
func (e *Engine) runStep(ctx context.Context, st Step, ev sdk.Event, sc StepContext) (res []sdk.Event, err error) {
	defer func() {
		if v := recover(); v != nil {
			e.log.Error("step panicked", "step", st.Name(), "pipeline", sc.Pipeline, "sink", sc.Sink, "event_id", ev.ID, "panic", v, "stack", string(debug.Stack()))
			res, err = nil, &panicError{step: st.Name(), value: v, inStep: true}
		}
	}()
	return st.Run(ctx, ev, sc)
}
