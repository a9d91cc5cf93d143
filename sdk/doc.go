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
//
// # Sinks: the config block, retry and batches
//
// A sink's `config` block may hold three keys that belong to hookbus, not
// to the sink: retry (the retry schedule, retry.schedule), max_in_flight
// and max_retry_after. hookbus takes them out of the block before anything
// of the plugin sees it: the ConfigSchema, ValidateConfig and Init get the
// rest, so a plugin never declares or reads them (and cannot use those
// names for keys of its own). Deliver must not retry: answer Retry and
// hookbus tries the delivery again on that schedule, durably.
//
// hookbus hands a plugin sink batches: it merges the deliveries waiting
// for the sink into Deliver calls of up to 64 deliveries, with at most 4
// calls running at once, and never more than the sink's window of
// deliveries in calls at once (so the window is effective up to 256). The
// window is max_in_flight when the block sets it, else SinkInfo.MaxInFlight
// (Init's answer), else 64. MaxInFlight 1 means one delivery at a time: a
// single call with a single delivery. Under low load batches hold one
// delivery; a batch is not waited for. A call whose deliveries all come
// back Retry (or that the plugin did not answer) halves the window, down
// to one; an answered call doubles it back.
//
// # Config schemas
//
// Manifest.ConfigSchema is a JSON Schema of the `config` block (without
// the keys above). hookbus reads JSON Schema draft 2020-12, or the draft
// its "$schema" names (draft-04, -06, -07, 2019-09); "format" is an
// annotation, not checked. A schema that does not compile (not JSON, or
// not valid against its draft's meta-schema) makes hookbus validate fail
// every config of the plugin. hookbus validate checks the block against
// the schema and then calls ValidateConfig; make ValidateConfig check what Init checks
// (Init can call it), so that what validate accepts, run accepts.
//
// # Testing
//
// sdk/plugintest is the conformance suite: RunSink and RunSource run it on
// the Go value, RunSinkBinary and RunSourceBinary on the binary started
// as hookbus starts it, built by plugintest.Build. Run it with -race
// (go test -race ./...): Deliver is called concurrently.
//
// # Debugging
//
// Start the plugin yourself with HOOKBUS_PLUGIN_DEBUG=1 (DebugEnv), for
// example as "HOOKBUS_PLUGIN_DEBUG=1 dlv debug ./cmd/acme": Serve then
// prints an address such as unix:/tmp/plugin123 and waits for hookbus,
// which attaches to it when plugins.<name>.reattach holds that address
// (HOOKBUS_PLUGINS__<NAME>__REATTACH=unix:/tmp/plugin123 hookbus run).
// The plugin's logs then go to its own terminal.
//
// # Compatibility
//
// Version is this SDK's semantic version; its major version is the plugin
// protocol's (ProtocolVersion, 1). Within protocol version 1, hookbus and
// this SDK only add to the protocol: new messages, fields, RPCs and enum
// values may appear; no field is removed, renumbered or given another
// type or meaning, no limit (MaxBatchEvents, MaxEventBytes) is lowered,
// and no new RPC is needed for a plugin to keep working. A plugin built
// with any sdk 1.x therefore runs on every hookbus that speaks protocol 1.
// A plugin must ignore fields it does not know (protobuf does) and treat
// a Nack whose error code it does not know, without rejections, as not
// queued. An incompatible change would be protocol version 2, negotiated
// in the handshake; a hookbus that no longer starts version 1 plugins
// would be a major release. Within sdk 1.x, the Go API of sdk,
// sdk/remote and sdk/plugintest stays source compatible, except that
// plugintest may add checks of what these docs already require.
// sdk/PROTOCOL.md describes the protocol for plugins in other languages.
package sdk
