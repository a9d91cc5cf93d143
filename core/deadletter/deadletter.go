// Package deadletter is hookbus' dead-letter domain: an event that could
// not be delivered to a sink, why (its Kind and reason), where dead letters
// are kept (Store) and how one is queued again (Replay).
//
// It is a leaf: it imports no engine package (pipeline, store, api, app,
// the queue drivers), so the engine, the store, the API and the CLI all
// depend on it and never on each other for dead letters.
package deadletter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/hookbus/hookbus/core/envelope"
	"github.com/hookbus/hookbus/sdk"
)

// Kind classifies why an event was dead-lettered. Its values are stored
// and shown by the API (the "kind" member) and label the
// hookbus_events_dead_lettered_total metric: they never change.
type Kind string

// The kinds of dead letter.
const (
	// KindScript: a filter or transform threw, returned a bad value or
	// timed out too often. Replay runs the pipeline's steps again.
	KindScript Kind = "script"
	// KindPermanent: the sink answered with a permanent failure (a 4xx
	// other than 408 and 429 for webhooks).
	KindPermanent Kind = "permanent"
	// KindExhausted: every attempt of the sink's retry schedule failed.
	KindExhausted Kind = "exhausted"
	// KindInvalid: the queued message was not an event hookbus can read.
	KindInvalid Kind = "invalid"
	// KindPanic: hookbus' own code (or a sink) panicked on the event.
	KindPanic Kind = "panic"
	// KindPoison: the message was delivered again and again without an
	// outcome (it crashed or hung its process each time).
	KindPoison Kind = "poison"
	// KindDiscarded: the event was queued for a subscription that was
	// deleted or disabled before it could be delivered; it is not sent
	// to a URL that no longer belongs to anyone. Not replayable.
	KindDiscarded Kind = "discarded"
)

// Kinds returns every kind of dead letter (the metrics create a series of
// each at zero).
func Kinds() []Kind {
	return []Kind{KindScript, KindPermanent, KindExhausted, KindInvalid, KindPanic, KindPoison, KindDiscarded}
}

// ReasonPoisonBeforeSteps starts the reason of a poison dead letter found
// before its pipeline's steps ran: Replay sends it through the steps again,
// where a poison message of a sink topic (already transformed) goes to its
// sink.
const ReasonPoisonBeforeSteps = "poison before the pipeline's steps"

// DeadLetter is an event that could not be delivered to a sink.
type DeadLetter struct {
	// ID is the dead-letter queue message's id, unique per dead letter.
	ID    string
	Event sdk.Event
	Sink  string
	// Pipeline is the pipeline that routed the event (empty when unknown).
	Pipeline string
	// Source is the source the event came in from (empty when unknown).
	Source string
	// Application and Subscription name the application and the
	// subscription the event was for (a delivery of the subscriptions
	// sink); empty for other sinks.
	Application  string
	Subscription string
	Reason       string
	Kind         Kind
	Attempts     int
	DeadAt       time.Time
}

// ErrNotFound is returned by a Store for an unknown dead-letter id.
var ErrNotFound = errors.New("not found")

// ErrNotReplayable is returned for dead letters Replay cannot queue.
var ErrNotReplayable = errors.New("dead letter cannot be replayed")

// Recorder keeps dead letters where they can be listed and replayed.
type Recorder interface {
	// RecordDeadLetter stores dl. Recording the same ID twice (a
	// redelivered dead-letter message) keeps one and is not an error.
	RecordDeadLetter(ctx context.Context, dl DeadLetter) error
}

// Store keeps dead letters until they are replayed.
type Store interface {
	Recorder
	// ListDeadLetters returns the dead letters f selects, oldest first
	// (by DeadAt, then ID).
	ListDeadLetters(ctx context.Context, f Filter) ([]DeadLetter, error)
	// GetDeadLetter returns one dead letter, or an error wrapping
	// ErrNotFound.
	GetDeadLetter(ctx context.Context, id string) (DeadLetter, error)
	// DeleteDeadLetter removes a dead letter (once replayed), or returns an
	// error wrapping ErrNotFound when there is none with that id.
	DeleteDeadLetter(ctx context.Context, id string) error
}

// DefaultLimit is how many dead letters a Filter without Limit selects.
const DefaultLimit = 100

// Filter selects dead letters.
type Filter struct {
	Sink string // empty = all sinks
	// Application and Subscription, when set, keep the dead letters of
	// that application and of that subscription.
	Application  string
	Subscription string
	Limit        int // at most this many; 0 = DefaultLimit
	// After continues a listing after the dead letter with this id.
	After string
}

// Publisher queues messages on a topic; a queue.Queue is one. Publish
// returns once the queue has durably stored every message.
type Publisher interface {
	Publish(topic string, msgs ...*message.Message) error
}

// Replay queues a dead letter again with a fresh attempt count. A dead
// letter of one subscription (Subscription set: a delivery of the
// subscriptions sink) goes back to that subscription only, on its sink's
// deliveries topic, whatever its kind (a subscription's filter runs there
// again); one that was discarded is not replayable. Otherwise a script
// error (or a poison message caught before its pipeline's steps) goes back
// through its pipeline's steps (for its sink only), since the scripts may
// have been fixed; any other goes straight to its sink. A dead letter that
// cannot be queued again gives an error wrapping ErrNotReplayable.
// The dead letter's id is the dedup key, so two replays of the same dead
// letter queue it once (on drivers that deduplicate).
func Replay(ctx context.Context, pub Publisher, dl DeadLetter) error {
	b, err := json.Marshal(dl.Event)
	if err != nil {
		return fmt.Errorf("dead letter %s: encode event: %w", dl.ID, err)
	}
	m := message.NewMessage(watermill.NewULID(), b)
	m.Metadata.Set(envelope.ReceivedAt, strconv.FormatInt(time.Now().UnixNano(), 10))
	m.Metadata.Set(envelope.Pipeline, dl.Pipeline)
	m.Metadata.Set(envelope.Sink, dl.Sink)
	m.Metadata.Set(envelope.Source, dl.Source)
	m.Metadata.Set(envelope.DedupID, "replay/"+dl.ID)
	m.Metadata.Set(envelope.Redelivery, "replay/"+dl.ID)
	m.SetContext(ctx)
	switch {
	case dl.Sink == "":
		return fmt.Errorf("%w: %s has no sink (kind %s)", ErrNotReplayable, dl.ID, dl.Kind)
	case dl.Kind == KindDiscarded:
		return fmt.Errorf("%w: %s was discarded: %s", ErrNotReplayable, dl.ID, dl.Reason)
	case dl.Subscription != "":
		m.Metadata.Set(envelope.Application, dl.Application)
		m.Metadata.Set(envelope.Subscription, dl.Subscription)
		return pub.Publish(envelope.DeliveriesTopic(dl.Sink), m)
	case dl.Kind == KindScript, dl.Kind == KindPoison && strings.HasPrefix(dl.Reason, ReasonPoisonBeforeSteps):
		if dl.Source == "" {
			return fmt.Errorf("%w: %s does not record its source", ErrNotReplayable, dl.ID)
		}
		m.Metadata.Set(envelope.ReplayPipeline, dl.Pipeline)
		m.Metadata.Set(envelope.ReplaySink, dl.Sink)
		return pub.Publish(envelope.SourceTopic(dl.Source), m)
	default:
		return pub.Publish(envelope.SinkTopic(dl.Sink), m)
	}
}

// Decode reads a message of the dead-letter topic (envelope.DeadLetterTopic).
// A missing or unreadable dead-at time reads as now.
func Decode(msg *message.Message) (DeadLetter, error) {
	var ev sdk.Event
	if err := ev.UnmarshalJSON(msg.Payload); err != nil {
		return DeadLetter{}, fmt.Errorf("dead letter %s: %w", msg.UUID, err)
	}
	attempts, _ := strconv.Atoi(msg.Metadata.Get(envelope.Attempts))
	at, err := time.Parse(time.RFC3339Nano, msg.Metadata.Get(envelope.DeadAt))
	if err != nil {
		at = time.Now().UTC()
	}
	return DeadLetter{
		ID: msg.UUID, Event: ev, Sink: msg.Metadata.Get(envelope.Sink), Pipeline: msg.Metadata.Get(envelope.Pipeline),
		Source: msg.Metadata.Get(envelope.Source), Application: msg.Metadata.Get(envelope.Application),
		Subscription: msg.Metadata.Get(envelope.Subscription), Reason: msg.Metadata.Get(envelope.Reason),
		Kind: Kind(msg.Metadata.Get(envelope.ReasonKind)), Attempts: attempts, DeadAt: at,
	}, nil
}
