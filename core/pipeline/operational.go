package pipeline

import (
	"context"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/hookbus/hookbus/core/deadletter"
	"github.com/hookbus/hookbus/core/envelope"
	"github.com/hookbus/hookbus/core/operational"
	"github.com/hookbus/hookbus/sdk"
)

// deliveryContext is the context a delivery of msg runs in: not cancelled
// at shutdown (a delivery in flight is finished, not cut off), and
// operational.Quiet for the events of the operational events' source, so
// that no operational event is made about their deliveries.
func (e *Engine) deliveryContext(msg *message.Message) context.Context {
	ctx := context.WithoutCancel(msg.Context())
	if e.operationalSource(msg) {
		ctx = operational.Quiet(ctx)
	}
	return ctx
}

// operationalSource tells whether msg carries an operational event.
func (e *Engine) operationalSource(msg *message.Message) bool {
	src := e.opts.Operational.Source()
	return src != "" && msg.Metadata.Get(envelope.Source) == src
}

// giveUp dead-letters delivery d of sink after its last attempt failed
// (kind exhausted or permanent; res is that attempt's result), first
// publishing its delivery.exhausted event. When that publish fails, the
// message is handed back to be tried again later, as when the dead
// letter's publish fails: the event's id is the same then, so it is
// queued once.
func (e *Engine) giveUp(ctx context.Context, sink string, d *sinkDelivery, kind deadletter.Kind, reason string, res sdk.Result) error {
	if ops := e.opts.Operational; ops.Enabled(ctx) && !e.operationalSource(d.msg) {
		m := d.msg.Metadata
		sub := m.Get(envelope.Subscription)
		subject := sink
		if sub != "" {
			subject = sub
		}
		id := operational.ID(operational.DeliveryExhausted, m.Get(envelope.Source), d.pipeline, sink, sub, d.ev.ID, m.Get(envelope.Redelivery))
		err := ops.Emit(ctx, operational.DeliveryExhausted, id, subject, operational.Data{
			EventID: d.ev.ID, EventType: d.ev.Type, Sink: sink, Pipeline: d.pipeline, Application: m.Get(envelope.Application), Subscription: sub,
			Attempts: d.attempt, LastStatus: res.StatusCode, LastReason: res.Reason, Kind: string(kind),
		})
		if err != nil {
			e.log.Error("operational event publish failed; the delivery is dead-lettered on the next try", d.logArgs(sink, "error", err)...)
			return nackLater(d.msg, infraRetryDelay)
		}
	}
	return e.deadLetter(d.msg, d.ev, d.pipeline, sink, kind, reason, d.attempt)
}
