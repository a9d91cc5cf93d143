// Package sdk is what a hookbus plugin author imports: the Event envelope,
// the Source and Sink interfaces and (in sub-packages) the plugin protocol
// and a conformance test kit. It never imports hookbus' core.
//
// # Logging
//
// A plugin logs to its standard error. Logger returns a *slog.Logger that
// writes JSON lines in the form hookbus reads (hclog's: "@timestamp" with
// six fractional digits, "@level", "@message"), and each line shows up in
// hookbus' log at its level with plugin=<plugin>/<source or sink> and the
// line's other attributes. The standard log package (routed by Serve) and
// plain writes to os.Stderr or os.Stdout arrive at info, a panic at error.
// Logger works before and after Serve. hookbus' log level decides what is
// kept: at the default, info, debug lines are dropped.
//
// # Sources: what Emit answers
//
// Emitter.Emit queues a batch whole or not at all:
//
//   - nil: every event is durably queued; commit your offsets.
//   - an error wrapping ErrRejected (a *RejectedError): hookbus refused the
//     batch because of its events and queued nothing of it, the valid ones
//     included. Each Rejection names the event (its index in the batch and
//     its id) and the field, or the limit, at fault; hookbus logs them at
//     warn. The same events would be refused again: drop or fix them, emit
//     RejectedError.Remaining(batch), and commit. CheckBatch finds the same
//     problems before Emit.
//   - any other error (wrapping ErrNotQueued, the context's error, a broken
//     connection): a transient failure; offer the batch again later.
//
// # Limits
//
// A plugin source gets the limits of HTTP ingest: at most MaxBatchEvents
// (1,000) events per Emit and MaxEventBytes (1 MiB) per event, measured as
// its JSON envelope. A batch over either is rejected (ErrRejected) with a
// Rejection naming the limit: index -1 for too many events (split the
// batch), the event's index for one too large (drop it). An event must
// have a Type, and no number in its data or extensions may be beyond a
// float64 (Event.CheckNumbers).
//
// # Event ids
//
// A source's event ids are idempotency keys: on the queue drivers that
// deduplicate (embedded and nats), an id hookbus accepted within
// queue.dedup_window (default 24h, also across restarts) is acked again
// but not queued twice. A source may leave ids empty; hookbus then assigns
// a ULID, which it never deduplicates. See Source.
package sdk
