package sdk

import (
	"context"
	"encoding/json"
	"time"
)

// Outcome is what a sink made of one delivery.
type Outcome int

const (
	// OK means the event was delivered; hookbus records it and never sends it again.
	OK Outcome = iota
	// Retry means a transient failure; hookbus retries the event later on the
	// sink's schedule, no sooner than Result.RetryAfter when that is set.
	Retry
	// Permanent means the event can never be delivered; hookbus dead-letters
	// it with Result.Reason and does not retry.
	Permanent
)

func (o Outcome) String() string {
	switch o {
	case OK:
		return "ok"
	case Retry:
		return "retry"
	case Permanent:
		return "permanent"
	}
	return "unknown"
}

// Delivery is one event handed to a sink.
type Delivery struct {
	Event Event
	// Attempt counts from 1; it holds across restarts of hookbus.
	Attempt int
	// Pipeline is the pipeline that routed the event to this sink.
	Pipeline string
	// Raw, when set, is Event encoded as JSON, exactly as hookbus holds it.
	// A sink that sends the event as JSON may send Raw instead of encoding
	// Event again; a sink that changes Event must ignore Raw. Read only.
	Raw []byte
}

// Result is a sink's answer for one Delivery.
type Result struct {
	Outcome Outcome
	// RetryAfter, with Outcome Retry, is the earliest time to try again
	// (e.g. from an HTTP Retry-After header). Zero means "use the schedule".
	RetryAfter time.Duration
	// Reason explains a Retry or Permanent outcome; it is logged and kept
	// with a dead letter.
	Reason string
	// StatusCode is the protocol status of the attempt, when there is one
	// (an HTTP status for webhooks), for logs and metrics.
	StatusCode int
}

// SinkInfo is what a sink tells hookbus after Init.
type SinkInfo struct {
	// MaxInFlight bounds how many deliveries hookbus hands the sink at once,
	// counting every delivery of every Deliver call running: 1 means one
	// call with one delivery at a time. A max_in_flight key in the sink's
	// config block overrides it; zero means hookbus picks (64). A plugin
	// sink gets calls of up to 64 deliveries, at most 4 at once, so values
	// above 256 change nothing; see "Sinks" in the package doc.
	MaxInFlight int
}

// Sink delivers events somewhere.
type Sink interface {
	// Init configures the sink with its `config` block as JSON, without
	// the keys hookbus keeps for itself (retry, max_in_flight,
	// max_retry_after). An error rejects the configuration; its message is
	// shown to the user.
	Init(ctx context.Context, config json.RawMessage) (SinkInfo, error)
	// Deliver tries every delivery of the batch and returns exactly one
	// Result per Delivery, in the same order. It must be safe to call
	// concurrently. It must not retry on its own: hookbus owns the retry
	// schedule and keeps it durable. Deliver must honour ctx: when ctx is
	// done, unfinished deliveries are reported as Retry.
	Deliver(ctx context.Context, batch []Delivery) []Result
	// Close releases the sink's resources. No Deliver call runs during or after Close.
	Close(ctx context.Context) error
}

// Emitter is how a Source hands events to hookbus.
type Emitter interface {
	// Emit queues a batch of events, all or nothing. It returns nil only
	// once every event of the batch is durably queued: that is the moment a
	// source may commit its own offsets. On error nothing of the batch was
	// queued, and the error says what to do:
	//
	//   - errors.Is(err, ErrRejected): hookbus refused the batch for its
	//     events (an event without a type, one over MaxEventBytes as JSON,
	//     more than MaxBatchEvents events, a number scripts cannot read).
	//     The *RejectedError names each event (its index and id) and field.
	//     Offering the same batch again gets the same answer: drop or fix
	//     those events and emit the rest (RejectedError.Remaining), then
	//     commit. hookbus logs every rejection at warn. The valid events of
	//     a rejected batch are not queued: a batch is queued whole or not at
	//     all, so offsets stay simple to commit.
	//   - otherwise (ErrNotQueued, a cancelled ctx, a broken connection): a
	//     transient failure; offer the batch again later.
	Emit(ctx context.Context, events []Event) error
}

// Source produces events.
//
// Event ids: an id a source gives an event is its idempotency key. On the
// queue drivers that deduplicate (embedded and nats), an event whose id
// hookbus accepted within queue.dedup_window (default 24h, also across
// restarts) is acked again but not queued twice, so a source that offers a
// batch again after a crash or an unanswered Emit delivers each event once.
// Derive ids from what the event is (an offset, the upstream's own id), not
// from when it was read. A source may leave ids empty: hookbus then assigns
// a fresh ULID to each event, which is never deduplicated, so an event
// offered again is delivered again. The redis, postgres and memory drivers
// do not deduplicate at all; there, sinks see a re-offered event twice
// either way and can deduplicate on its id.
type Source interface {
	// Init configures the source with its `config` block as JSON.
	Init(ctx context.Context, config json.RawMessage) error
	// Run produces events through emit until ctx is done, then returns nil.
	// A returned error means the source failed; hookbus restarts it.
	Run(ctx context.Context, emit Emitter) error
	// Close releases the source's resources after Run returned.
	Close(ctx context.Context) error
}

// Manifest describes a plugin.
type Manifest struct {
	Name string `json:"name"`
	// Kinds lists what the plugin serves: "source", "sink" or both.
	Kinds []string `json:"kinds"`
	// ConfigSchema is a JSON Schema of the plugin's `config` block
	// (without the keys hookbus reserves in a sink's block: retry,
	// max_in_flight, max_retry_after). Draft 2020-12 unless its "$schema"
	// names draft-04, -06, -07 or 2019-09; see "Config schemas" in the
	// package doc.
	ConfigSchema json.RawMessage `json:"config_schema,omitempty"`
	Version      string          `json:"version,omitempty"`
}

// Describer is implemented by sources and sinks that publish a Manifest, so
// hookbus can check their configuration before starting them.
type Describer interface {
	Describe() Manifest
}

// ConfigValidator is implemented by sources and sinks that can check a
// configuration without acquiring resources. hookbus validate calls it.
type ConfigValidator interface {
	ValidateConfig(config json.RawMessage) error
}

// ConfigError is one problem with a plugin's or component's `config` block.
// Return several joined with errors.Join; hookbus prefixes Field with the
// block's key path (e.g. "sinks.partner.config.url") when it reports them.
type ConfigError struct {
	// Field is the dotted path inside the config block, "" for the block itself.
	Field   string
	Message string
}

func (e *ConfigError) Error() string {
	if e.Field == "" {
		return e.Message
	}
	return e.Field + ": " + e.Message
}
