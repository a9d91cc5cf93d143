// Package operational makes hookbus' operational events: ordinary events
// about deliveries and subscriptions (a delivery given up, a subscription
// failing, disabled or delivering again) that hookbus publishes into the
// source named by `operational_events.source`, so that pipelines reading
// that source route them to any sink, with the durability of every other
// event.
//
// It is a leaf: the engine (delivery.exhausted) and the subscriptions
// sink (the others) make events through an Emitter, which core/app
// builds over the engine's Publish.
package operational

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/hookbus/hookbus/sdk"
)

// The operational event types. They are part of the contract: pipelines
// and receivers match on them.
const (
	// DeliveryExhausted: a delivery was dead-lettered because its last
	// attempt failed, either the last of its retry schedule (kind
	// "exhausted") or one that cannot succeed when tried again, such as
	// a 4xx other than 408 and 429 (kind "permanent").
	DeliveryExhausted = "delivery.exhausted"
	// DeliveryFailing: a subscription's FailingAfter-th failed attempt in
	// a row (once per run of failures).
	DeliveryFailing = "delivery.failing"
	// SubscriptionDisabled: the subscriptions sink disabled a subscription
	// (its endpoint answered 410, or failed for disable_after).
	SubscriptionDisabled = "subscription.disabled"
	// SubscriptionRecovered: the first delivered attempt of a subscription
	// after a run of failures that was reported as delivery.failing.
	SubscriptionRecovered = "subscription.recovered"
)

// DefaultFailingAfter is operational_events.failing_after when unset.
const DefaultFailingAfter = 5

// Data is the `data` member of an operational event. Members that do not
// fit an event's type are left out.
type Data struct {
	// EventID and EventType name the event whose delivery this is about
	// (for the subscription events: the event of the attempt that
	// triggered it).
	EventID   string `json:"event_id,omitempty"`
	EventType string `json:"event_type,omitempty"`
	Sink      string `json:"sink"`
	Pipeline  string `json:"pipeline,omitempty"`
	// Application and Subscription are set for the subscriptions sink.
	Application  string `json:"application,omitempty"`
	Subscription string `json:"subscription,omitempty"`
	// Attempts is, for delivery.exhausted, the attempts the delivery had;
	// for delivery.failing and subscription.recovered, the failed
	// attempts in a row (counted by this hookbus instance).
	Attempts int `json:"attempts,omitempty"`
	// LastStatus and LastReason describe the last failed attempt (status
	// 0: no response).
	LastStatus int    `json:"last_status,omitempty"`
	LastReason string `json:"last_reason,omitempty"`
	// Kind is, for delivery.exhausted, the dead letter's kind:
	// "exhausted" or "permanent".
	Kind string `json:"kind,omitempty"`
	// FailingSince is when the run of failures began.
	FailingSince time.Time `json:"failing_since,omitzero"`
	// DisabledReason is the subscription's disabled_reason.
	DisabledReason string `json:"disabled_reason,omitempty"`
}

// Publisher queues events of a source durably (the engine's Publish).
type Publisher interface {
	Publish(ctx context.Context, source string, events []sdk.Event) error
}

// PublisherFunc adapts a function to Publisher.
type PublisherFunc func(ctx context.Context, source string, events []sdk.Event) error

// Publish calls f.
func (f PublisherFunc) Publish(ctx context.Context, source string, events []sdk.Event) error {
	return f(ctx, source, events)
}

// Settings are the `operational_events` block as the Emitter uses it.
type Settings struct {
	// Source is the source the events are published into; "" makes none.
	Source string
	// FailingAfter is the number of failed attempts in a row that makes
	// delivery.failing (DefaultFailingAfter when not positive).
	FailingAfter int
}

// Emitter publishes operational events. The nil *Emitter, and one whose
// Settings name no source, emits nothing. It is safe for concurrent use;
// Configure may change its settings while it runs (a reload).
type Emitter struct {
	pub      Publisher
	log      *slog.Logger
	settings atomic.Pointer[Settings]
}

// NewEmitter returns an Emitter publishing through pub, with s.
func NewEmitter(pub Publisher, s Settings, log *slog.Logger) *Emitter {
	if log == nil {
		log = slog.Default()
	}
	e := &Emitter{pub: pub, log: log}
	e.Configure(s)
	return e
}

// Configure replaces the settings.
func (e *Emitter) Configure(s Settings) {
	if s.FailingAfter <= 0 {
		s.FailingAfter = DefaultFailingAfter
	}
	e.settings.Store(&s)
}

// Source is the source operational events go to ("" when off).
func (e *Emitter) Source() string {
	if e == nil {
		return ""
	}
	return e.settings.Load().Source
}

// FailingAfter is the failed attempts in a row that make delivery.failing.
func (e *Emitter) FailingAfter() int {
	if e == nil {
		return DefaultFailingAfter
	}
	return e.settings.Load().FailingAfter
}

// Enabled tells whether an event made in ctx would be published: the
// emitter has a source, and ctx is not a delivery of an operational
// event (see Quiet).
func (e *Emitter) Enabled(ctx context.Context) bool {
	return e.Source() != "" && !IsQuiet(ctx)
}

// Emit publishes one operational event of type typ, with the id id (see
// ID), the subject (a subscription or a sink) and data, and returns once
// the queue holds it. It does nothing, and returns nil, when not
// Enabled(ctx). An event published again with the same id within the
// queue's dedup window is queued once.
func (e *Emitter) Emit(ctx context.Context, typ, id, subject string, data Data) error {
	if !e.Enabled(ctx) {
		return nil
	}
	src := e.Source()
	b, err := json.Marshal(data)
	if err != nil {
		return fmt.Errorf("operational event %s: %w", typ, err)
	}
	ev := sdk.Event{ID: id, Type: typ, Source: src, Subject: subject, Time: time.Now().UTC(), Data: b}
	if data.Application != "" {
		// The event is about that application's deliveries: a
		// subscriptions sink gives it to that application's
		// subscriptions only, never to every one (broadcast).
		app, _ := json.Marshal(data.Application)
		ev.Extensions = map[string]json.RawMessage{"application": app}
	}
	if err := e.pub.Publish(ctx, src, []sdk.Event{ev}); err != nil {
		return fmt.Errorf("operational event %s %s: %w", typ, id, err)
	}
	e.log.Debug("operational event published", "type", typ, "id", id, "subject", subject, "source", src)
	return nil
}

// ID is the id of the operational event of type typ about what parts
// name: the same parts give the same id, so an event made again for the
// same thing (its trigger redelivered after a crash, or made by two
// instances) is deduplicated by the queue. It reads "op_" and 32 hex
// digits.
func ID(typ string, parts ...string) string {
	h := sha256.New()
	h.Write([]byte(typ))
	for _, p := range parts {
		h.Write([]byte{0})
		h.Write([]byte(p))
	}
	return "op_" + hex.EncodeToString(h.Sum(nil)[:16])
}

type quietKey struct{}

// Quiet marks ctx as the delivery of an operational event: no operational
// event is made about it (Enabled is false), so an operational event
// that cannot be delivered does not make another, and so on.
func Quiet(ctx context.Context) context.Context { return context.WithValue(ctx, quietKey{}, true) }

// IsQuiet tells whether ctx was marked by Quiet.
func IsQuiet(ctx context.Context) bool {
	q, _ := ctx.Value(quietKey{}).(bool)
	return q
}
