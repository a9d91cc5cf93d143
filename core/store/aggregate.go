package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/hookbus/hookbus/core/aggregate"
	"github.com/hookbus/hookbus/sdk"
)

// aggregateSchema is migration 9: the aggregate step's windows, their
// events and the members seen (the same statements on SQLite and
// PostgreSQL).
//
// A window is open (closing 0: it takes events; at most one per pipeline,
// sink and key, which the partial unique index enforces) or closing (it
// takes no more: full, overdue, closed early for max_keys, or claimed).
// A claimed window carries the lease of the instance closing it. Times
// are unix nanoseconds; end_at is fixed (non-zero) once the window is
// closing. Members seen remember which source messages were added, until
// expires_at, so a message redelivered after a crash is not added again,
// even to a later window.
func aggregateSchema() []string {
	return []string{
		`CREATE TABLE hookbus_agg_windows (
			id TEXT PRIMARY KEY,
			pipeline TEXT NOT NULL,
			sink TEXT NOT NULL,
			wkey TEXT NOT NULL,
			start_at BIGINT NOT NULL,
			due_at BIGINT NOT NULL,
			end_at BIGINT NOT NULL,
			count INTEGER NOT NULL,
			closing INTEGER NOT NULL,
			lease_owner TEXT NOT NULL,
			lease_until BIGINT NOT NULL,
			attempts INTEGER NOT NULL
		)`,
		`CREATE UNIQUE INDEX hookbus_agg_windows_open ON hookbus_agg_windows (pipeline, sink, wkey) WHERE closing = 0`,
		`CREATE INDEX hookbus_agg_windows_due ON hookbus_agg_windows (pipeline, due_at)`,
		`CREATE INDEX hookbus_agg_windows_oldest ON hookbus_agg_windows (pipeline, sink, closing, start_at)`,
		`CREATE TABLE hookbus_agg_events (
			window_id TEXT NOT NULL,
			seq INTEGER NOT NULL,
			source TEXT NOT NULL,
			received_at BIGINT NOT NULL,
			event TEXT NOT NULL,
			PRIMARY KEY (window_id, seq)
		)`,
		`CREATE TABLE hookbus_agg_seen (
			scope TEXT NOT NULL,
			member TEXT NOT NULL,
			expires_at BIGINT NOT NULL,
			PRIMARY KEY (scope, member)
		)`,
		`CREATE INDEX hookbus_agg_seen_expires ON hookbus_agg_seen (expires_at)`,
	}
}

var _ aggregate.Store = (*Store)(nil)

// AddToWindows adds each event to its window (see aggregate.Store), all in
// one transaction: the engine gathers the adds of concurrent source
// messages into one commit. The adds are applied in (pipeline, sink, key)
// order, so two instances' transactions lock the windows they share in
// the same order.
func (s *Store) AddToWindows(ctx context.Context, adds []aggregate.Add, dedupFor time.Duration) ([]aggregate.Added, error) {
	order := make([]int, len(adds))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		x, y := adds[a], adds[b]
		return strings.Compare(x.Pipeline+"\x00"+x.Sink+"\x00"+x.Key, y.Pipeline+"\x00"+y.Sink+"\x00"+y.Key)
	})
	var out []aggregate.Added
	err := s.retryTx(ctx, func(tx *sql.Tx) error {
		out = make([]aggregate.Added, len(adds))
		now := s.now()
		for _, i := range order {
			r, err := s.addToWindow(ctx, tx, adds[i], now, dedupFor)
			if err != nil {
				return err
			}
			out[i] = r
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: aggregate: add to windows: %w", err)
	}
	return out, nil
}

// addToWindow is one add inside tx.
func (s *Store) addToWindow(ctx context.Context, tx *sql.Tx, a aggregate.Add, now time.Time, dedupFor time.Duration) (aggregate.Added, error) {
	spec := a.Spec.WithDefaults()
	res, err := tx.ExecContext(ctx, s.q(`INSERT INTO hookbus_agg_seen (scope, member, expires_at) VALUES (?, ?, ?) ON CONFLICT (scope, member) DO NOTHING`),
		a.Pipeline+"/"+a.Sink, a.Member, now.Add(dedupFor).UnixNano())
	if err != nil {
		return aggregate.Added{}, err
	}
	if n, err := res.RowsAffected(); err != nil {
		return aggregate.Added{}, err
	} else if n == 0 {
		return aggregate.Added{Duplicate: true}, nil
	}
	var r aggregate.Added
	lock := ""
	if s.postgres {
		lock = " FOR UPDATE"
	}
	var id string
	var due int64
	err = tx.QueryRowContext(ctx, s.q(`SELECT id, due_at FROM hookbus_agg_windows WHERE pipeline = ? AND sink = ? AND wkey = ? AND closing = 0`+lock),
		a.Pipeline, a.Sink, a.Key).Scan(&id, &due)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return r, err
	case due <= now.UnixNano():
		// Overdue and not claimed yet: it keeps what it has and the
		// event opens the next window.
		if _, err := tx.ExecContext(ctx, s.q(`UPDATE hookbus_agg_windows SET closing = 1 WHERE id = ?`), id); err != nil {
			return r, err
		}
		id = ""
	}
	if id == "" {
		if id, err = s.openWindow(ctx, tx, a, spec, now, &r); err != nil {
			return r, err
		}
	}
	var count int
	if err := tx.QueryRowContext(ctx, s.q(`UPDATE hookbus_agg_windows SET count = count + 1 WHERE id = ? RETURNING count`), id).Scan(&count); err != nil {
		return r, err
	}
	ev, err := json.Marshal(a.Event)
	if err != nil {
		return r, err
	}
	if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO hookbus_agg_events (window_id, seq, source, received_at, event) VALUES (?, ?, ?, ?, ?)`),
		id, count, a.Source, a.ReceivedAt, string(ev)); err != nil {
		return r, err
	}
	if count >= spec.MaxEvents {
		if _, err := tx.ExecContext(ctx, s.q(`UPDATE hookbus_agg_windows SET closing = 1, due_at = ?, end_at = ? WHERE id = ?`),
			now.UnixNano(), now.UnixNano(), id); err != nil {
			return r, err
		}
		r.Full = true
	}
	return r, nil
}

// openWindow opens the window of a's key, starting now, and closes the
// oldest open window of the pipeline's sink early when that makes more
// than spec.MaxKeys.
func (s *Store) openWindow(ctx context.Context, tx *sql.Tx, a aggregate.Add, spec aggregate.Spec, now time.Time, r *aggregate.Added) (string, error) {
	id := aggregate.WindowID(a.Pipeline, a.Sink, a.Key, now)
	if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO hookbus_agg_windows (id, pipeline, sink, wkey, start_at, due_at, end_at, count, closing, lease_owner, lease_until, attempts)
		VALUES (?, ?, ?, ?, ?, ?, 0, 0, 0, '', 0, 0)`),
		id, a.Pipeline, a.Sink, a.Key, now.UnixNano(), now.Add(spec.Window).UnixNano()); err != nil {
		return "", err
	}
	var open int
	if err := tx.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM hookbus_agg_windows WHERE pipeline = ? AND sink = ? AND closing = 0`), a.Pipeline, a.Sink).Scan(&open); err != nil {
		return "", err
	}
	if open > spec.MaxKeys {
		// Over max_keys: the oldest open window closes now, with what it has.
		res, err := tx.ExecContext(ctx, s.q(`UPDATE hookbus_agg_windows SET closing = 1, due_at = ?, end_at = ?
			WHERE id IN (SELECT id FROM hookbus_agg_windows WHERE pipeline = ? AND sink = ? AND closing = 0 AND id <> ? ORDER BY start_at LIMIT ?)`),
			now.UnixNano(), now.UnixNano(), a.Pipeline, a.Sink, id, open-spec.MaxKeys)
		if err != nil {
			return "", err
		}
		if n, _ := res.RowsAffected(); n > 0 {
			r.Full = true
			r.Evicted += int(n)
		}
	}
	return id, nil
}

// ClaimWindows claims due windows of a pipeline (see aggregate.Store). On
// PostgreSQL the rows are picked FOR UPDATE SKIP LOCKED: instances
// claiming at once get different windows, and a window being added to is
// claimed once the add committed.
func (s *Store) ClaimWindows(ctx context.Context, pipeline, owner string, now time.Time, lease time.Duration, limit int) ([]aggregate.Window, error) {
	skip := ""
	if s.postgres {
		skip = " FOR UPDATE SKIP LOCKED"
	}
	var out []aggregate.Window
	err := s.retryTx(ctx, func(tx *sql.Tx) error {
		out = out[:0]
		rows, err := tx.QueryContext(ctx, s.q(`UPDATE hookbus_agg_windows SET closing = 1, lease_owner = ?, lease_until = ?,
				end_at = CASE WHEN end_at = 0 THEN due_at ELSE end_at END
			WHERE id IN (SELECT id FROM hookbus_agg_windows WHERE pipeline = ? AND due_at <= ? AND lease_until < ? ORDER BY due_at LIMIT ?`+skip+`)
			RETURNING id, pipeline, sink, wkey, start_at, end_at, count, attempts`),
			owner, now.Add(lease).UnixNano(), pipeline, now.UnixNano(), now.UnixNano(), limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var w aggregate.Window
			var start, end int64
			if err := rows.Scan(&w.ID, &w.Pipeline, &w.Sink, &w.Key, &start, &end, &w.Count, &w.Attempts); err != nil {
				return err
			}
			w.Start, w.End = time.Unix(0, start).UTC(), time.Unix(0, end).UTC()
			out = append(out, w)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("store: aggregate: claim windows: %w", err)
	}
	slices.SortFunc(out, func(a, b aggregate.Window) int { return a.End.Compare(b.End) })
	return out, nil
}

// WindowEvents returns a window's events in order (see aggregate.Store).
func (s *Store) WindowEvents(ctx context.Context, windowID string) ([]aggregate.Member, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT seq, source, received_at, event FROM hookbus_agg_events WHERE window_id = ? ORDER BY seq`), windowID)
	if err != nil {
		return nil, fmt.Errorf("store: aggregate: window events: %w", err)
	}
	defer rows.Close()
	var out []aggregate.Member
	for rows.Next() {
		var m aggregate.Member
		var ev string
		if err := rows.Scan(&m.Seq, &m.Source, &m.ReceivedAt, &ev); err != nil {
			return nil, fmt.Errorf("store: aggregate: window events: %w", err)
		}
		var e sdk.Event
		if err := json.Unmarshal([]byte(ev), &e); err != nil {
			return nil, fmt.Errorf("store: aggregate: window %s event %d: %w", windowID, m.Seq, err)
		}
		m.Event = e
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: aggregate: window events: %w", err)
	}
	return out, nil
}

// DeleteWindow removes a window and its events (see aggregate.Store).
func (s *Store) DeleteWindow(ctx context.Context, windowID string) error {
	err := s.retryTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM hookbus_agg_events WHERE window_id = ?`), windowID); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, s.q(`DELETE FROM hookbus_agg_windows WHERE id = ?`), windowID)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: aggregate: delete window: %w", err)
	}
	return nil
}

// ReleaseWindow hands a claimed window back (see aggregate.Store).
func (s *Store) ReleaseWindow(ctx context.Context, windowID, owner string, retryAt time.Time) error {
	_, err := s.db.ExecContext(ctx, s.q(`UPDATE hookbus_agg_windows SET lease_owner = '', lease_until = 0, due_at = ?, attempts = attempts + 1 WHERE id = ? AND lease_owner = ?`),
		retryAt.UnixNano(), windowID, owner)
	if err != nil {
		return fmt.Errorf("store: aggregate: release window: %w", err)
	}
	return nil
}

// NextDue returns when a pipeline's next window is due (see aggregate.Store).
func (s *Store) NextDue(ctx context.Context, pipeline string) (time.Time, bool, error) {
	var due sql.NullInt64
	if err := s.db.QueryRowContext(ctx, s.q(`SELECT MIN(CASE WHEN lease_until > due_at THEN lease_until ELSE due_at END) FROM hookbus_agg_windows WHERE pipeline = ?`), pipeline).Scan(&due); err != nil {
		return time.Time{}, false, fmt.Errorf("store: aggregate: next due: %w", err)
	}
	if !due.Valid {
		return time.Time{}, false, nil
	}
	return time.Unix(0, due.Int64), true, nil
}

// OpenWindows counts a pipeline's open windows (see aggregate.Store).
func (s *Store) OpenWindows(ctx context.Context, pipeline string) (int, error) {
	var n int
	if err := s.db.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM hookbus_agg_windows WHERE pipeline = ? AND closing = 0`), pipeline).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: aggregate: open windows: %w", err)
	}
	return n, nil
}

// PruneDedup forgets members seen that expired (see aggregate.Store).
func (s *Store) PruneDedup(ctx context.Context, now time.Time) error {
	if _, err := s.db.ExecContext(ctx, s.q(`DELETE FROM hookbus_agg_seen WHERE expires_at < ?`), now.UnixNano()); err != nil {
		return fmt.Errorf("store: aggregate: prune members seen: %w", err)
	}
	return nil
}

// retryTx runs f in a transaction, again (up to 5 times) when PostgreSQL
// aborted it for a conflict with another transaction (a deadlock, a
// serialization failure, or two instances opening the same key's window).
func (s *Store) retryTx(ctx context.Context, f func(tx *sql.Tx) error) error {
	var err error
	for range 5 {
		err = s.inTx(ctx, f)
		if !retryable(err) {
			return err
		}
	}
	return err
}

func (s *Store) inTx(ctx context.Context, f func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	if err := f(tx); err != nil {
		return err
	}
	return tx.Commit()
}

// retryable tells a PostgreSQL conflict worth running the transaction
// again for.
func retryable(err error) bool {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return false
	}
	switch pe.Code {
	case "40001", "40P01", "23505":
		return true
	}
	return false
}
