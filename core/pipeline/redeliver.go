package pipeline

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/hookbus/hookbus/core/attempt"
	"github.com/hookbus/hookbus/core/envelope"
	"github.com/hookbus/hookbus/core/queue"
	"github.com/hookbus/hookbus/sdk"
)

// ErrUnknownSink is Redeliver's error for a sink that is not configured.
var ErrUnknownSink = errors.New("unknown sink")

// ErrNotFanout is Redeliver's error for a delivery to a subscription of
// a sink that does not fan out (only the subscriptions sink has
// subscriptions).
var ErrNotFanout = errors.New("not a fan-out sink")

// Redelivery is one delivery queued again from an event on record.
type Redelivery struct {
	// Event is the event on record: its payload, and the metadata its
	// sink's message carried (ingest time, source, pipeline; the record's
	// fields stand in for keys its Metadata lacks).
	Event attempt.Event
	// Sink is the sink it goes to ("": Event.Sink).
	Sink string
	// Subscription, with Application its owner, makes it a new delivery
	// of its own to that one subscription of the fan-out sink Sink, as
	// the sink's fan-out would have queued it: attempt 1, the same event
	// id (so the same webhook-id). Empty: a message on Sink's topic,
	// delivered as a new event would be (a fan-out sink fans it out to
	// its matching subscriptions again).
	Application, Subscription string
	// ID names the redelivery: the message's queue dedup id (a driver
	// that deduplicates drops a second message with it within its dedup
	// window, so a redelivery published twice, as by a request that is
	// tried again, is queued once) and its envelope.Redelivery. Required.
	ID string
}

// Redeliver queues rs: each a new message on its sink's topic or, for a
// subscription, on the fan-out sink's deliveries topic. It checks every
// redelivery before it publishes any: an unknown sink, a subscription of
// a sink that does not fan out, a missing ID or a payload that is no
// event fail the call with an error naming it (ErrUnknownSink,
// ErrNotFanout). It returns once the queue confirmed every message.
func (e *Engine) Redeliver(ctx context.Context, rs []Redelivery) error {
	byTopic := map[string][]*message.Message{}
	for i, rd := range rs {
		topic, msg, err := e.redeliveryMessage(rd)
		if err != nil {
			return fmt.Errorf("redelivery %d: %w", i, err)
		}
		msg.SetContext(ctx)
		byTopic[topic] = append(byTopic[topic], msg)
	}
	for _, topic := range slices.Sorted(maps.Keys(byTopic)) {
		if err := e.q.Publish(topic, byTopic[topic]...); err != nil {
			return fmt.Errorf("queue redeliveries: %w", err)
		}
	}
	return nil
}

// redeliveryMessage checks rd and builds its message.
func (e *Engine) redeliveryMessage(rd Redelivery) (topic string, msg *message.Message, err error) {
	sink := rd.Sink
	if sink == "" {
		sink = rd.Event.Sink
	}
	if rd.ID == "" {
		return "", nil, fmt.Errorf("event %q: the redelivery has no id", rd.Event.ID)
	}
	e.mu.Lock()
	r := e.sinks[sink]
	e.mu.Unlock()
	switch {
	case r == nil:
		return "", nil, fmt.Errorf("event %q: %w %q", rd.Event.ID, ErrUnknownSink, sink)
	case rd.Subscription != "" && !r.fanout:
		return "", nil, fmt.Errorf("event %q: subscription %q: sink %q is %w: it has no subscriptions", rd.Event.ID, rd.Subscription, sink, ErrNotFanout)
	}
	var ev sdk.Event
	if err := ev.UnmarshalJSON(rd.Event.Payload); err != nil {
		return "", nil, fmt.Errorf("event %q: the payload on record is no event: %w", rd.Event.ID, err)
	}
	msg = message.NewMessage(watermill.NewULID(), message.Payload(rd.Event.Payload))
	meta := func(key, fallback string) {
		if v := rd.Event.Metadata[key]; v != "" {
			msg.Metadata.Set(key, v)
		} else if fallback != "" {
			msg.Metadata.Set(key, fallback)
		}
	}
	received := ""
	if !rd.Event.ReceivedAt.IsZero() {
		received = strconv.FormatInt(rd.Event.ReceivedAt.UnixNano(), 10)
	}
	meta(envelope.ReceivedAt, received)
	meta(envelope.Source, rd.Event.Source)
	meta(envelope.Pipeline, rd.Event.Pipeline)
	msg.Metadata.Set(envelope.Sink, sink)
	msg.Metadata.Set(envelope.Redelivery, rd.ID)
	msg.Metadata.Set(queue.MetaDedupID, rd.ID)
	if rd.Subscription == "" {
		return queue.SinkTopic(sink), msg, nil
	}
	// As fanoutHandler makes a pair: no MetaRetryAttempt, so the pair
	// handler counts this as attempt 1 of a delivery of its own.
	msg.Metadata.Set(envelope.Application, rd.Application)
	msg.Metadata.Set(envelope.Subscription, rd.Subscription)
	return envelope.DeliveriesTopic(sink), msg, nil
}
