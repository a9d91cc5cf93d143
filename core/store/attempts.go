package store

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/hookbus/hookbus/core/attempt"
	"github.com/hookbus/hookbus/core/batching"
	"github.com/hookbus/hookbus/core/subscription"
)

// maxParams bounds the parameters of one multi-row statement (SQLite
// allows 32766, PostgreSQL 65535).
const maxParams = 16000

// insertRows inserts rows of cols into table in as few statements as the
// parameter limit allows, each ending in suffix (an ON CONFLICT clause and
// maybe RETURNING). With returned set, the first column every statement
// returns is handed to it.
func (s *Store) insertRows(ctx context.Context, tx *sql.Tx, table string, cols []string, rows [][]any, suffix string, returned func(string)) error {
	one := "(" + strings.TrimSuffix(strings.Repeat("?, ", len(cols)), ", ") + ")"
	per := max(1, maxParams/len(cols))
	for start := 0; start < len(rows); start += per {
		chunk := rows[start:min(start+per, len(rows))]
		var b strings.Builder
		b.WriteString(`INSERT INTO ` + table + ` (` + strings.Join(cols, ", ") + `) VALUES `)
		args := make([]any, 0, len(chunk)*len(cols))
		for i, r := range chunk {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(one)
			args = append(args, r...)
		}
		b.WriteString(suffix)
		if returned == nil {
			if _, err := tx.ExecContext(ctx, s.q(b.String()), args...); err != nil {
				return fmt.Errorf("insert into %s: %w", table, err)
			}
			continue
		}
		res, err := tx.QueryContext(ctx, s.q(b.String()), args...)
		if err != nil {
			return fmt.Errorf("insert into %s: %w", table, err)
		}
		for res.Next() {
			var v string
			if err := res.Scan(&v); err != nil {
				res.Close()
				return fmt.Errorf("insert into %s: %w", table, err)
			}
			returned(v)
		}
		if err := res.Close(); err != nil {
			return fmt.Errorf("insert into %s: %w", table, err)
		}
		if err := res.Err(); err != nil {
			return fmt.Errorf("insert into %s: %w", table, err)
		}
	}
	return nil
}

// attemptColumns are the columns of hookbus_attempts in the order
// attemptRow writes them and scanAttempt reads them.
var attemptColumns = []string{"id", "event_id", "event_type", "sink", "pipeline", "source", "application", "subscription",
	"number", "started_at", "duration", "received_at", "outcome", "status", "error", "url", "webhook_id",
	"request_headers", "response_headers", "response_body"}

var attemptColumnList = strings.Join(attemptColumns, ", ")

func headersJSON(h http.Header) (string, error) {
	if h == nil {
		return "", nil
	}
	b, err := json.Marshal(h)
	return string(b), err
}

func attemptRow(a *attempt.Attempt) ([]any, error) {
	req, err := headersJSON(a.RequestHeaders)
	if err != nil {
		return nil, fmt.Errorf("attempt %s: request headers: %w", a.ID, err)
	}
	resp, err := headersJSON(a.ResponseHeaders)
	if err != nil {
		return nil, fmt.Errorf("attempt %s: response headers: %w", a.ID, err)
	}
	body := a.ResponseBody
	if len(body) > attempt.MaxResponseBody {
		body = body[:attempt.MaxResponseBody]
	}
	if body == nil {
		body = []byte{} // the column is NOT NULL
	}
	return []any{a.ID, a.EventID, text(a.EventType), a.Sink, text(a.Pipeline), text(a.Source), a.Application, a.Subscription,
		a.Number, nanos(a.StartedAt), int64(a.Duration), nanos(a.ReceivedAt), string(a.Outcome), a.StatusCode,
		text(attempt.Truncate(a.Error, attempt.MaxErrorText)), text(a.URL), text(a.WebhookID), req, resp, body}, nil
}

// text makes s storable in a text column of both databases: valid UTF-8
// and no NUL (which PostgreSQL refuses, failing the whole batch). Error
// texts and event types come from sinks and sources hookbus does not
// control.
func text(s string) string {
	if strings.IndexByte(s, 0) >= 0 {
		s = strings.ReplaceAll(s, "\x00", "")
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

func scanAttempt(r scanner) (attempt.Attempt, error) {
	var a attempt.Attempt
	var started, dur, received int64
	var outcome, req, resp string
	var body []byte
	if err := r.Scan(&a.ID, &a.EventID, &a.EventType, &a.Sink, &a.Pipeline, &a.Source, &a.Application, &a.Subscription,
		&a.Number, &started, &dur, &received, &outcome, &a.StatusCode, &a.Error, &a.URL, &a.WebhookID, &req, &resp, &body); err != nil {
		return a, err
	}
	a.StartedAt, a.Duration, a.ReceivedAt, a.Outcome = fromNanos(started), time.Duration(dur), fromNanos(received), attempt.Outcome(outcome)
	for _, h := range []struct {
		text string
		to   *http.Header
	}{{req, &a.RequestHeaders}, {resp, &a.ResponseHeaders}} {
		if h.text == "" {
			continue
		}
		if err := json.Unmarshal([]byte(h.text), h.to); err != nil {
			return a, fmt.Errorf("attempt %s: headers: %w", a.ID, err)
		}
	}
	if len(body) > 0 {
		a.ResponseBody = body
	}
	return a, nil
}

// WriteAttempts records entries in one transaction (see attempt.Store):
// the attempts not yet on record (multi-row INSERT … ON CONFLICT DO
// NOTHING RETURNING id, so only those actually inserted go on), the events
// on record not yet kept for their sink, the state of their deliveries and
// the per-minute figures of their sink and subscription (stats.go). An
// entry that fails attempt.Entry.Validate fails the batch with an error
// naming it and its field; nothing is written.
//
// A delivery's state is that of its latest attempt by start time, then
// number: attempts of one delivery may reach the store in any order (from
// several instances, or a Writer that tried a batch again), and a resend
// begins again at attempt 1. Any attempt recorded clears Queued.
func (s *Store) WriteAttempts(ctx context.Context, entries []attempt.Entry) error {
	if len(entries) == 0 {
		return nil
	}
	rows := make([][]any, 0, len(entries))
	byID := make(map[string]*attempt.Attempt, len(entries))
	for i := range entries {
		e := &entries[i]
		if err := e.Validate(); err != nil {
			return fmt.Errorf("store: write attempts: entry %d: %w", i, err)
		}
		if _, dup := byID[e.Attempt.ID]; dup {
			continue
		}
		byID[e.Attempt.ID] = &e.Attempt
		row, err := attemptRow(&e.Attempt)
		if err != nil {
			return fmt.Errorf("store: write attempts: %w", err)
		}
		rows = append(rows, row)
	}
	slices.SortFunc(rows, func(a, b []any) int { return cmp.Compare(a[0].(string), b[0].(string)) })
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: write attempts: %w", err)
	}
	defer func() { _ = tx.Rollback() }() // a no-op after Commit

	var inserted []*attempt.Attempt
	if err := s.insertRows(ctx, tx, "hookbus_attempts", attemptColumns, rows, ` ON CONFLICT (id) DO NOTHING RETURNING id`, func(id string) {
		if a := byID[id]; a != nil {
			inserted = append(inserted, a)
		}
	}); err != nil {
		return fmt.Errorf("store: write attempts: %w", err)
	}
	if err := s.writeEvents(ctx, tx, entries); err != nil {
		return fmt.Errorf("store: write attempts: %w", err)
	}
	if err := s.writeDeliveries(ctx, tx, entries, inserted); err != nil {
		return fmt.Errorf("store: write attempts: %w", err)
	}
	if err := s.writeRollups(ctx, tx, rollups(inserted)); err != nil {
		return fmt.Errorf("store: write attempts: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: write attempts: commit: %w", err)
	}
	return nil
}

var eventColumns = []string{"event_id", "sink", "pipeline", "source", "type", "application", "received_at", "payload", "metadata"}

// writeEvents keeps the events of entries on record, the first of each
// event and sink (one already on record stays as it is).
func (s *Store) writeEvents(ctx context.Context, tx *sql.Tx, entries []attempt.Entry) error {
	seen := map[attempt.DeliveryKey]bool{}
	var rows [][]any
	for i := range entries {
		ev := entries[i].Event
		if ev == nil {
			continue
		}
		id, sink := eventKey(&entries[i])
		k := attempt.DeliveryKey{EventID: id, Sink: sink}
		if seen[k] {
			continue
		}
		seen[k] = true
		meta, err := json.Marshal(ev.Metadata)
		if err != nil {
			return fmt.Errorf("event %s: metadata: %w", id, err)
		}
		payload := string(ev.Payload)
		if payload == "" {
			payload = "null"
		}
		rows = append(rows, []any{id, sink, text(ev.Pipeline), text(ev.Source), text(ev.Type), ev.Application, nanos(ev.ReceivedAt), payload, string(meta)})
	}
	slices.SortFunc(rows, func(a, b []any) int {
		return cmp.Or(cmp.Compare(a[0].(string), b[0].(string)), cmp.Compare(a[1].(string), b[1].(string)))
	})
	return s.insertRows(ctx, tx, "hookbus_events", eventColumns, rows, ` ON CONFLICT (event_id, sink) DO NOTHING`, nil)
}

// eventKey is the event id and sink an entry's event is kept under: its
// own, or its attempt's when empty.
func eventKey(e *attempt.Entry) (string, string) {
	return cmp.Or(e.Event.ID, e.Attempt.EventID), cmp.Or(e.Event.Sink, e.Attempt.Sink)
}

var deliveryColumns = []string{"event_id", "sink", "subscription", "application", "event_type", "received_at",
	"attempts", "last_outcome", "last_number", "last_attempt", "queued"}

// writeDeliveries adds the attempts inserted to the state of their
// deliveries: one upsert row per delivery, holding the batch's count and
// latest attempt; the stored state changes to it if it is later.
func (s *Store) writeDeliveries(ctx context.Context, tx *sql.Tx, entries []attempt.Entry, inserted []*attempt.Attempt) error {
	if len(inserted) == 0 {
		return nil
	}
	received := map[string]int64{} // event id → ingest time, from the events in the batch
	for i := range entries {
		if ev := entries[i].Event; ev != nil && !ev.ReceivedAt.IsZero() {
			id, _ := eventKey(&entries[i])
			received[id] = nanos(ev.ReceivedAt)
		}
	}
	type state struct {
		d    attempt.Delivery
		last *attempt.Attempt
	}
	byKey := map[attempt.DeliveryKey]*state{}
	var order []attempt.DeliveryKey
	for _, a := range inserted {
		k := attempt.DeliveryKey{EventID: a.EventID, Sink: a.Sink, Subscription: a.Subscription}
		st := byKey[k]
		if st == nil {
			st = &state{last: a}
			byKey[k] = st
			order = append(order, k)
		}
		st.d.Attempts++
		st.d.Application = cmp.Or(st.d.Application, a.Application)
		st.d.EventType = cmp.Or(st.d.EventType, a.EventType)
		if a.StartedAt.After(st.last.StartedAt) || a.StartedAt.Equal(st.last.StartedAt) && a.Number > st.last.Number {
			st.last = a
		}
	}
	// In key order, like every multi-row write here: see writeRollups.
	slices.SortFunc(order, compareKeys)
	rows := make([][]any, 0, len(order))
	for _, k := range order {
		st := byKey[k]
		recv := nanos(st.last.ReceivedAt)
		if recv == 0 {
			recv = received[k.EventID]
		}
		if recv == 0 {
			// Unknown ingest time: the attempt's start stands in, so the
			// delivery still falls in recover's and OldestWaiting's ranges.
			recv = nanos(st.last.StartedAt)
		}
		rows = append(rows, []any{k.EventID, k.Sink, k.Subscription, st.d.Application, text(st.d.EventType), recv,
			st.d.Attempts, string(st.last.Outcome), st.last.Number, nanos(st.last.StartedAt), 0})
	}
	const d = `hookbus_deliveries`
	later := `(excluded.last_attempt, excluded.last_number) > (` + d + `.last_attempt, ` + d + `.last_number)`
	suffix := ` ON CONFLICT (event_id, sink, subscription) DO UPDATE SET
		attempts = ` + d + `.attempts + excluded.attempts,
		queued = CASE WHEN excluded.last_attempt >= ` + d + `.queued THEN 0 ELSE ` + d + `.queued END,
		application = CASE WHEN ` + d + `.application = '' THEN excluded.application ELSE ` + d + `.application END,
		event_type = CASE WHEN ` + d + `.event_type = '' THEN excluded.event_type ELSE ` + d + `.event_type END,
		received_at = CASE WHEN ` + d + `.received_at = 0 THEN excluded.received_at ELSE ` + d + `.received_at END,
		last_outcome = CASE WHEN ` + later + ` THEN excluded.last_outcome ELSE ` + d + `.last_outcome END,
		last_number = CASE WHEN ` + later + ` THEN excluded.last_number ELSE ` + d + `.last_number END,
		last_attempt = CASE WHEN ` + later + ` THEN excluded.last_attempt ELSE ` + d + `.last_attempt END`
	return s.insertRows(ctx, tx, d, deliveryColumns, rows, suffix, nil)
}

// ListAttempts returns a page of the attempts f selects, newest first (by
// id), and the cursor of the next page ("" after the last). A page holds
// at most f.Limit (DefaultPageLimit when 0, never more than MaxPageLimit);
// a cursor this store did not make is attempt.ErrBadCursor, an outcome
// that is none of the three an error naming the field.
func (s *Store) ListAttempts(ctx context.Context, f attempt.Filter) ([]attempt.Attempt, string, error) {
	if f.Outcome != "" && !f.Outcome.Valid() {
		return nil, "", fmt.Errorf("store: list attempts: outcome %q is not one of delivered, retry, failed", f.Outcome)
	}
	if f.Status < 0 || f.Status > 999 {
		return nil, "", fmt.Errorf("store: list attempts: status %d is not an HTTP status", f.Status)
	}
	before, err := decodeAttemptCursor(f.Cursor)
	if err != nil {
		return nil, "", err
	}
	var where []string
	var args []any
	for _, c := range []struct {
		col string
		val any
		set bool
	}{
		{"application", f.Application, f.Application != ""},
		{"subscription", f.Subscription, f.Subscription != ""},
		{"sink", f.Sink, f.Sink != ""},
		{"event_id", f.EventID, f.EventID != ""},
		{"event_type", f.EventType, f.EventType != ""},
		{"webhook_id", f.WebhookID, f.WebhookID != ""},
		{"outcome", string(f.Outcome), f.Outcome != ""},
		{"status", f.Status, f.Status != 0},
	} {
		if c.set {
			where = append(where, c.col+` = ?`)
			args = append(args, c.val)
		}
	}
	// The conditions of the partial indexes (logschema.go), which the
	// planner cannot infer from a bound parameter.
	if f.Application != "" {
		where = append(where, `application <> ''`)
	}
	if f.Subscription != "" {
		where = append(where, `subscription <> ''`)
	}
	if strings.HasPrefix(f.WebhookID, batching.IDPrefix) {
		where = append(where, `webhook_id LIKE 'batch_%'`)
	}
	if f.Outcome == attempt.Retry || f.Outcome == attempt.Failed {
		where = append(where, `outcome <> 'delivered'`)
	}
	if !f.Since.IsZero() {
		where = append(where, `started_at >= ?`)
		args = append(args, f.Since.UnixNano())
	}
	if !f.Until.IsZero() {
		where = append(where, `started_at < ?`)
		args = append(args, f.Until.UnixNano())
	}
	if f.SubscriptionsOnly {
		where = append(where, `subscription <> ''`)
	}
	if before != "" {
		where = append(where, `id < ?`)
		args = append(args, before)
	}
	query := `SELECT ` + attemptColumnList + ` FROM hookbus_attempts`
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, " AND ")
	}
	limit := pageLimit(f.Limit)
	query += ` ORDER BY id DESC LIMIT ?`
	args = append(args, limit+1)
	rows, err := s.db.QueryContext(ctx, s.q(query), args...)
	if err != nil {
		return nil, "", fmt.Errorf("store: list attempts: %w", err)
	}
	out, next, err := scanPage(rows, limit, scanAttempt, func(a attempt.Attempt) string { return a.ID })
	if err != nil {
		return nil, "", fmt.Errorf("store: list attempts: %w", err)
	}
	return out, next, nil
}

// decodeAttemptCursor reads a cursor of ListAttempts (encodeCursor of the
// last id of a page).
func decodeAttemptCursor(c string) (string, error) {
	if c == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || !subscription.CouldBeID(string(b)) {
		return "", fmt.Errorf("store: cursor: %w", attempt.ErrBadCursor)
	}
	return string(b), nil
}

// GetAttempt returns one attempt, or attempt.ErrNotFound.
func (s *Store) GetAttempt(ctx context.Context, id string) (attempt.Attempt, error) {
	a, err := scanAttempt(s.db.QueryRowContext(ctx, s.q(`SELECT `+attemptColumnList+` FROM hookbus_attempts WHERE id = ?`), id))
	if errors.Is(err, sql.ErrNoRows) {
		return a, fmt.Errorf("store: attempt %q: %w", id, attempt.ErrNotFound)
	}
	if err != nil {
		return a, fmt.Errorf("store: attempt %q: %w", id, err)
	}
	return a, nil
}

const eventColumnList = `event_id, sink, pipeline, source, type, application, received_at, payload, metadata`

func scanEvent(r scanner) (attempt.Event, error) {
	var ev attempt.Event
	var received int64
	var payload, meta string
	if err := r.Scan(&ev.ID, &ev.Sink, &ev.Pipeline, &ev.Source, &ev.Type, &ev.Application, &received, &payload, &meta); err != nil {
		return ev, err
	}
	ev.ReceivedAt, ev.Payload = fromNanos(received), json.RawMessage(payload)
	if err := json.Unmarshal([]byte(meta), &ev.Metadata); err != nil {
		return ev, fmt.Errorf("event %s: metadata: %w", ev.ID, err)
	}
	return ev, nil
}

// GetEvent returns the records of event id, one per sink it reached (by
// sink), or attempt.ErrNotFound when none is on record.
func (s *Store) GetEvent(ctx context.Context, id string) ([]attempt.Event, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT `+eventColumnList+` FROM hookbus_events WHERE event_id = ? ORDER BY sink`), id)
	if err != nil {
		return nil, fmt.Errorf("store: event %q: %w", id, err)
	}
	defer rows.Close()
	var out []attempt.Event
	for rows.Next() {
		ev, err := scanEvent(rows)
		if err != nil {
			return nil, fmt.Errorf("store: event %q: %w", id, err)
		}
		out = append(out, ev)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: event %q: %w", id, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("store: event %q: %w", id, attempt.ErrNotFound)
	}
	return out, nil
}

// compareKeys orders delivery keys.
func compareKeys(a, b attempt.DeliveryKey) int {
	return cmp.Or(cmp.Compare(a.EventID, b.EventID), cmp.Compare(a.Sink, b.Sink), cmp.Compare(a.Subscription, b.Subscription))
}

var _ attempt.Store = (*Store)(nil)
