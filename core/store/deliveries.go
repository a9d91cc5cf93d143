package store

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/hookbus/hookbus/core/attempt"
)

// deliveryCursor is the position a page of Deliveries ended at: its
// last delivery's ingest time and key (the order of the list).
type deliveryCursor struct {
	ReceivedAt int64  `json:"r"`
	EventID    string `json:"e"`
	Sink       string `json:"s"`
	Sub        string `json:"u"`
}

func encodeDeliveryCursor(d attempt.Delivery) string {
	b, _ := json.Marshal(deliveryCursor{nanos(d.ReceivedAt), d.EventID, d.Sink, d.Subscription}) // cannot fail
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeDeliveryCursor(c string) (*deliveryCursor, error) {
	if c == "" {
		return nil, nil
	}
	bad := fmt.Errorf("store: cursor: %w", attempt.ErrBadCursor)
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return nil, bad
	}
	var dc deliveryCursor
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&dc); err != nil || dc.EventID == "" || dc.Sink == "" {
		return nil, bad
	}
	for _, s := range []string{dc.EventID, dc.Sink, dc.Sub} {
		// PostgreSQL refuses invalid UTF-8 and NUL in a text parameter.
		if !utf8.ValidString(s) || strings.ContainsRune(s, 0) {
			return nil, bad
		}
	}
	return &dc, nil
}

// Deliveries returns a page of the deliveries q selects (see
// attempt.RecoverQuery: those of its subscription, application and/or
// sink whose event was received in [q.Since, q.Until), failed only unless
// q.All) that are not queued, oldest event first, and the cursor of the
// next page ("" after the last). events holds the records the page's
// deliveries name, one per event and sink, in the order first named.
//
// A delivery whose event is no longer on record (pruned, or never kept)
// cannot be sent again and is skipped: it is neither in the page nor
// counted in it.
func (s *Store) Deliveries(ctx context.Context, q attempt.RecoverQuery) ([]attempt.Delivery, []attempt.Event, string, error) {
	if q.Subscription == "" && q.Application == "" && q.Sink == "" {
		return nil, nil, "", errors.New("store: deliveries: one of subscription, application or sink is required")
	}
	until := q.Until
	if until.IsZero() {
		until = s.now()
	}
	if !q.Since.IsZero() && !q.Since.Before(until) {
		return nil, nil, "", fmt.Errorf("store: deliveries: since (%v) must be before until (%v)", q.Since, until)
	}
	after, err := decodeDeliveryCursor(q.Cursor)
	if err != nil {
		return nil, nil, "", err
	}
	where := []string{`(d.queued = 0 OR d.queued <= d.last_attempt OR d.queued < ?)`, `d.received_at >= ?`, `d.received_at < ?`}
	args := []any{s.now().Add(-MarkTTL).UnixNano(), q.Since.UnixNano(), until.UnixNano()}
	if q.Since.IsZero() {
		args[1] = int64(0)
	}
	for _, c := range []struct{ col, val string }{{"subscription", q.Subscription}, {"application", q.Application}, {"sink", q.Sink}} {
		if c.val != "" {
			// The partial indexes' condition (logschema.go) beside the value.
			where = append(where, `d.`+c.col+` = ?`, `d.`+c.col+` <> ''`)
			args = append(args, c.val)
		}
	}
	if !q.All {
		where = append(where, `d.last_outcome = ?`)
		args = append(args, string(attempt.Failed))
	}
	if after != nil {
		where = append(where, `(d.received_at, d.event_id, d.sink, d.subscription) > (?, ?, ?, ?)`)
		args = append(args, after.ReceivedAt, after.EventID, after.Sink, after.Sub)
	}
	limit := pageLimit(q.Limit)
	args = append(args, limit+1)
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT d.event_id, d.sink, d.subscription, d.application, d.event_type, d.received_at,
			d.attempts, d.last_outcome, d.last_attempt, d.queued,
			e.event_id, e.sink, e.pipeline, e.source, e.type, e.application, e.received_at, e.payload, e.metadata
		FROM hookbus_deliveries d JOIN hookbus_events e ON e.event_id = d.event_id AND e.sink = d.sink
		WHERE `+strings.Join(where, " AND ")+`
		ORDER BY d.received_at, d.event_id, d.sink, d.subscription LIMIT ?`), args...)
	if err != nil {
		return nil, nil, "", fmt.Errorf("store: deliveries: %w", err)
	}
	defer rows.Close()
	out := []attempt.Delivery{}
	var events []attempt.Event
	seen := map[attempt.DeliveryKey]bool{}
	next := ""
	for rows.Next() {
		if len(out) == limit {
			next = encodeDeliveryCursor(out[limit-1])
			break
		}
		var d attempt.Delivery
		var ev attempt.Event
		var received, last, queued, evReceived int64
		var outcome, payload, meta string
		if err := rows.Scan(&d.EventID, &d.Sink, &d.Subscription, &d.Application, &d.EventType, &received, &d.Attempts, &outcome, &last, &queued,
			&ev.ID, &ev.Sink, &ev.Pipeline, &ev.Source, &ev.Type, &ev.Application, &evReceived, &payload, &meta); err != nil {
			return nil, nil, "", fmt.Errorf("store: deliveries: %w", err)
		}
		d.ReceivedAt, d.LastAttempt, d.LastOutcome, d.Queued = fromNanos(received), fromNanos(last), attempt.Outcome(outcome), queued != 0 && queued > last && queued >= s.now().Add(-MarkTTL).UnixNano()
		out = append(out, d)
		if k := (attempt.DeliveryKey{EventID: ev.ID, Sink: ev.Sink}); !seen[k] {
			seen[k] = true
			ev.ReceivedAt, ev.Payload = fromNanos(evReceived), json.RawMessage(payload)
			if err := json.Unmarshal([]byte(meta), &ev.Metadata); err != nil {
				return nil, nil, "", fmt.Errorf("store: deliveries: event %s: metadata: %w", ev.ID, err)
			}
			events = append(events, ev)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, "", fmt.Errorf("store: deliveries: %w", err)
	}
	return out, events, next, nil
}

// MarkQueued marks the deliveries of keys queued and returns the keys it
// marked, in key order. Each key is one conditional UPDATE (… WHERE not
// queued, see Delivery.QueuedAt): of two callers marking one delivery at once, whether in one
// process or two, exactly one sees a row change and gets the key back. A
// key with no delivery yet (a resend to a subscription that never had the
// event) is inserted queued, with the Delivery's application, event type
// and ingest time (now when zero), and returned. The keys are written in
// order in one transaction, so two callers never wait on each other in a
// circle.
func (s *Store) MarkQueued(ctx context.Context, keys []attempt.Delivery) ([]attempt.DeliveryKey, error) {
	sorted := slices.Clone(keys)
	slices.SortFunc(sorted, func(a, b attempt.Delivery) int { return compareKeys(a.DeliveryKey, b.DeliveryKey) })
	sorted = slices.CompactFunc(sorted, func(a, b attempt.Delivery) bool { return a.DeliveryKey == b.DeliveryKey })
	for _, k := range sorted {
		if k.EventID == "" || k.Sink == "" {
			return nil, fmt.Errorf("store: mark queued: a key has an empty event_id or sink (%+v)", k.DeliveryKey)
		}
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("store: mark queued: %w", err)
	}
	defer func() { _ = tx.Rollback() }() // a no-op after Commit
	// queued holds the time of the mark (unix nanoseconds, never 0); the
	// mark counts while no attempt started at or after it.
	update, insert := s.q(`UPDATE hookbus_deliveries SET queued = ? WHERE event_id = ? AND sink = ? AND subscription = ? AND (queued = 0 OR queued <= last_attempt OR queued < ?)`),
		s.q(`INSERT INTO hookbus_deliveries (`+strings.Join(deliveryColumns, ", ")+`) VALUES (?, ?, ?, ?, ?, ?, 0, '', 0, 0, ?)
			ON CONFLICT (event_id, sink, subscription) DO NOTHING`)
	now := s.now()
	var marked []attempt.DeliveryKey
	for _, k := range sorted {
		at := k.QueuedAt
		if at.IsZero() {
			at = now
		}
		res, err := tx.ExecContext(ctx, update, max(1, at.UnixNano()), k.EventID, k.Sink, k.Subscription, now.Add(-MarkTTL).UnixNano())
		if err != nil {
			return nil, fmt.Errorf("store: mark queued: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return nil, fmt.Errorf("store: mark queued: %w", err)
		}
		if n == 0 {
			received := k.ReceivedAt
			if received.IsZero() {
				received = now
			}
			if res, err = tx.ExecContext(ctx, insert, k.EventID, k.Sink, k.Subscription, k.Application, text(k.EventType), received.UnixNano(), max(1, at.UnixNano())); err != nil {
				return nil, fmt.Errorf("store: mark queued: %w", err)
			}
			if n, err = res.RowsAffected(); err != nil {
				return nil, fmt.Errorf("store: mark queued: %w", err)
			}
		}
		if n == 1 {
			marked = append(marked, k.DeliveryKey)
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("store: mark queued: commit: %w", err)
	}
	return marked, nil
}

// MarkTTL is how long a resend's or recover's mark keeps a delivery out
// of recovers when no attempt of it is recorded: a redelivery that never
// makes an attempt (filtered on its way, or its attempt lost from the
// log) can be recovered again after it.
const MarkTTL = time.Hour

// DefaultPruneBatch is Prune's batch when asked for 0.
const DefaultPruneBatch = 1000

// Prune deletes, each in a statement of its own (so no lock is held
// longer than one small delete), up to batch of each of: the events on
// record received before eventsBefore, the deliveries received before it
// (the deliveries of those events), the attempts started before
// attemptsBefore and the figures of minutes and hours that began before
// it. It
// returns how many rows went; the caller calls again until it returns 0.
// (A zero time prunes nothing of its kind.)
//
// Each delete picks its rows by an indexed time range with LIMIT in a
// subquery, which both databases run as an index range scan; at the log's
// rates (a day's attempts are millions of rows at most) this keeps up
// without PostgreSQL partitions.
func (s *Store) Prune(ctx context.Context, eventsBefore, attemptsBefore time.Time, batch int) (int, error) {
	if batch <= 0 {
		batch = DefaultPruneBatch
	}
	total := 0
	for _, p := range []struct {
		what, table, key, time string
		before                 time.Time
		unit                   time.Duration
	}{
		{"events", "hookbus_events", "event_id, sink", "received_at", eventsBefore, 1},
		{"deliveries", "hookbus_deliveries", "event_id, sink, subscription", "received_at", eventsBefore, 1},
		{"attempts", "hookbus_attempts", "id", "started_at", attemptsBefore, 1},
		{"figures", "hookbus_attempt_stats", "kind, name, period, start", "start", attemptsBefore, time.Second},
	} {
		if p.before.IsZero() {
			continue
		}
		key := p.key
		if strings.Contains(key, ",") {
			key = "(" + key + ")"
		}
		res, err := s.db.ExecContext(ctx, s.q(`DELETE FROM `+p.table+` WHERE `+key+` IN (SELECT `+p.key+` FROM `+p.table+` WHERE `+p.time+` < ? LIMIT ?)`),
			p.before.UnixNano()/int64(p.unit), batch)
		if err != nil {
			return total, fmt.Errorf("store: prune %s: %w", p.what, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return total, fmt.Errorf("store: prune %s: %w", p.what, err)
		}
		total += int(n)
	}
	return total, nil
}
