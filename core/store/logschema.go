package store

import "strings"

// logSchema is migration 5, the delivery log, with ids typed as the
// database compares them byte by byte (id) and the response body's binary
// type (blob). Times are unix nanoseconds, durations nanoseconds, headers
// JSON; a delivery's queued is the time of its resend or recover mark
// (0: none).
//
//   - hookbus_attempts: every attempt; indexes for the filters a list
//     usually starts from (application, subscription, sink, event, and
//     the attempts that did not deliver), each ending in id so a filtered
//     list reads newest first straight from it, and one by started_at for
//     the time range and for pruning. Event type and status filter within
//     those. The indexes are partial where most rows would not be looked
//     up by them (no application or subscription; delivered attempts),
//     which keeps the log's cost per attempt down; queries name the
//     index's condition so the planner takes it.
//   - hookbus_events: the events on record, one per event and sink.
//   - hookbus_deliveries: the state of each delivery (subscription ”
//     when the sink has none), upserted with every batch of attempts:
//     indexes by subscription, application and sink then the order
//     Deliveries lists in (ingest time, key) for recover, by last outcome for the oldest waiting event, by ingest
//     time for pruning.
//   - hookbus_attempt_stats: figures per scope (kind 'sink',
//     'subscription' or 'application', and its name), per minute and per hour (period 60
//     or 3600 seconds, from start, unix seconds), added to in the
//     transaction that writes the attempts (stats.go).
func logSchema(id, blob string) []string {
	return []string{
		`CREATE TABLE hookbus_attempts (
			id ` + id + ` PRIMARY KEY,
			event_id ` + id + ` NOT NULL,
			event_type TEXT NOT NULL,
			sink TEXT NOT NULL,
			pipeline TEXT NOT NULL,
			source TEXT NOT NULL,
			application TEXT NOT NULL,
			subscription TEXT NOT NULL,
			number INTEGER NOT NULL,
			started_at BIGINT NOT NULL,
			duration BIGINT NOT NULL,
			received_at BIGINT NOT NULL,
			outcome TEXT NOT NULL,
			status INTEGER NOT NULL,
			error TEXT NOT NULL,
			url TEXT NOT NULL,
			webhook_id TEXT NOT NULL,
			request_headers TEXT NOT NULL,
			response_headers TEXT NOT NULL,
			response_body ` + blob + ` NOT NULL
		)`,
		`CREATE INDEX hookbus_attempts_application ON hookbus_attempts (application, id) WHERE application <> ''`,
		`CREATE INDEX hookbus_attempts_subscription ON hookbus_attempts (subscription, id) WHERE subscription <> ''`,
		`CREATE INDEX hookbus_attempts_sink ON hookbus_attempts (sink, id)`,
		`CREATE INDEX hookbus_attempts_event ON hookbus_attempts (event_id, id)`,
		`CREATE INDEX hookbus_attempts_failing ON hookbus_attempts (outcome, id) WHERE outcome <> 'delivered'`,
		`CREATE INDEX hookbus_attempts_started ON hookbus_attempts (started_at)`,
		`CREATE TABLE hookbus_events (
			event_id ` + id + ` NOT NULL,
			sink ` + id + ` NOT NULL,
			pipeline TEXT NOT NULL,
			source TEXT NOT NULL,
			type TEXT NOT NULL,
			application TEXT NOT NULL,
			received_at BIGINT NOT NULL,
			payload TEXT NOT NULL,
			metadata TEXT NOT NULL,
			PRIMARY KEY (event_id, sink)
		)`,
		`CREATE INDEX hookbus_events_received ON hookbus_events (received_at)`,
		`CREATE TABLE hookbus_deliveries (
			event_id ` + id + ` NOT NULL,
			sink ` + id + ` NOT NULL,
			subscription ` + id + ` NOT NULL,
			application TEXT NOT NULL,
			event_type TEXT NOT NULL,
			received_at BIGINT NOT NULL,
			attempts INTEGER NOT NULL,
			last_outcome TEXT NOT NULL,
			last_number INTEGER NOT NULL,
			last_attempt BIGINT NOT NULL,
			queued BIGINT NOT NULL,
			PRIMARY KEY (event_id, sink, subscription)
		)`,
		`CREATE INDEX hookbus_deliveries_subscription ON hookbus_deliveries (subscription, received_at, event_id, sink) WHERE subscription <> ''`,
		`CREATE INDEX hookbus_deliveries_application ON hookbus_deliveries (application, received_at, event_id, sink, subscription) WHERE application <> ''`,
		`CREATE INDEX hookbus_deliveries_sink ON hookbus_deliveries (sink, received_at, event_id, subscription)`,
		`CREATE INDEX hookbus_deliveries_waiting_sink ON hookbus_deliveries (sink, received_at) WHERE last_outcome = 'retry'`,
		`CREATE INDEX hookbus_deliveries_waiting_subscription ON hookbus_deliveries (subscription, received_at) WHERE last_outcome = 'retry'`,
		`CREATE INDEX hookbus_deliveries_received ON hookbus_deliveries (received_at)`,
		`CREATE TABLE hookbus_attempt_stats (
			kind TEXT NOT NULL,
			name ` + id + ` NOT NULL,
			period INTEGER NOT NULL,
			start BIGINT NOT NULL,
			` + strings.Join(statColumnDefs(), ",\n\t\t\t") + `,
			PRIMARY KEY (kind, name, period, start)
		)`,
		`CREATE INDEX hookbus_attempt_stats_start ON hookbus_attempt_stats (start)`,
	}
}

// statColumnDefs are the figure columns of hookbus_attempt_stats.
func statColumnDefs() []string {
	cols := statColumns()
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = c + ` BIGINT NOT NULL`
	}
	return out
}
