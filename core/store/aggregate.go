package store

import (
	"cmp"
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
// messages into one commit. The members seen and the events are written
// in multi-row statements, the open windows of the batch's keys read in
// one; what remains per key is its window's count. Keys are taken in
// (pipeline, sink, key) order, so two instances' transactions lock the
// windows they share in the same order.
func (s *Store) AddToWindows(ctx context.Context, adds []aggregate.Add, dedupFor time.Duration) ([]aggregate.Added, error) {
	order := make([]int, len(adds))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		x, y := adds[a], adds[b]
		return cmp.Or(strings.Compare(x.Pipeline, y.Pipeline), strings.Compare(x.Sink, y.Sink), strings.Compare(x.Key, y.Key))
	})
	var out []aggregate.Added
	err := s.retryTx(ctx, func(tx *sql.Tx) error {
		out = make([]aggregate.Added, len(adds))
		return s.addBatch(ctx, tx, adds, order, s.now(), dedupFor, out)
	})
	if err != nil {
		return nil, fmt.Errorf("store: aggregate: add to windows: %w", err)
	}
	return out, nil
}

// windowKey names a window's (pipeline, sink, key).
type windowKey struct{ pipeline, sink, key string }

// openRow is an open window as addBatch reads it.
type openRow struct {
	id    string
	due   int64
	count int
}

// addBatch is AddToWindows inside tx; order sorts adds by window key.
func (s *Store) addBatch(ctx context.Context, tx *sql.Tx, adds []aggregate.Add, order []int, now time.Time, dedupFor time.Duration, out []aggregate.Added) error {
	fresh, err := s.markSeen(ctx, tx, adds, now, dedupFor)
	if err != nil {
		return err
	}
	// The fresh adds, grouped by window key (consecutive in order).
	var groups [][]int
	var last windowKey
	for _, i := range order {
		if !fresh[i] {
			out[i].Duplicate = true
			continue
		}
		k := windowKey{adds[i].Pipeline, adds[i].Sink, adds[i].Key}
		if len(groups) == 0 || k != last {
			groups = append(groups, nil)
			last = k
		}
		groups[len(groups)-1] = append(groups[len(groups)-1], i)
	}
	if len(groups) == 0 {
		return nil
	}
	open, err := s.openWindows(ctx, tx, adds, groups)
	if err != nil {
		return err
	}
	b := &batchAdd{s: s, tx: tx, now: now, open: open, openCount: map[[2]string]int{}}
	var rows [][]any
	// The events added per window, counted into the windows at the end.
	added := map[string]int{}
	var addedOrder []string
	for _, g := range groups {
		a := adds[g[0]]
		spec := a.Spec.WithDefaults()
		k := windowKey{a.Pipeline, a.Sink, a.Key}
		w, ok := open[k]
		if ok && w.due <= now.UnixNano() {
			// Overdue and not claimed yet: it keeps what it has and the
			// events open the next window.
			if err := b.closing(k, w.id, false); err != nil {
				return err
			}
			ok = false
		}
		start := now
		for rest := g; len(rest) > 0; {
			if !ok {
				if w, err = b.openWindow(ctx, k, spec, start, &out[rest[0]]); err != nil {
					return err
				}
				// A second window of the key in one batch starts later.
				start = start.Add(time.Nanosecond)
				ok = true
			}
			take := min(max(spec.MaxEvents-w.count, 0), len(rest))
			if take > 0 {
				if _, ok := added[w.id]; !ok {
					addedOrder = append(addedOrder, w.id)
				}
				added[w.id] += take
				for j, i := range rest[:take] {
					ev, err := json.Marshal(adds[i].Event)
					if err != nil {
						return err
					}
					rows = append(rows, []any{w.id, w.count + j + 1, adds[i].Source, adds[i].ReceivedAt, string(ev)})
				}
				w.count += take
				rest = rest[take:]
			}
			if w.count >= spec.MaxEvents {
				if err := b.closing(k, w.id, true); err != nil {
					return err
				}
				out[g[0]].Full = true
				ok = false
			}
		}
		delete(open, k)
	}
	if err := s.addCounts(ctx, tx, addedOrder, added); err != nil {
		return err
	}
	return s.insertRows(ctx, tx, "hookbus_agg_events", []string{"window_id", "seq", "source", "received_at", "event"}, rows, "", nil)
}

// addCounts adds added[id] to the count of each window of ids, a few
// hundred windows per statement.
func (s *Store) addCounts(ctx context.Context, tx *sql.Tx, ids []string, added map[string]int) error {
	const per = 400
	for start := 0; start < len(ids); start += per {
		chunk := ids[start:min(start+per, len(ids))]
		var b strings.Builder
		args := make([]any, 0, 3*len(chunk))
		b.WriteString(`UPDATE hookbus_agg_windows SET count = count + CASE id`)
		for _, id := range chunk {
			b.WriteString(` WHEN ? THEN CAST(? AS INTEGER)`)
			args = append(args, id, added[id])
		}
		b.WriteString(` ELSE 0 END WHERE id IN (` + strings.TrimSuffix(strings.Repeat("?, ", len(chunk)), ", ") + `)`)
		for _, id := range chunk {
			args = append(args, id)
		}
		if _, err := tx.ExecContext(ctx, s.q(b.String()), args...); err != nil {
			return fmt.Errorf("count the windows' events: %w", err)
		}
	}
	return nil
}

// markSeen remembers the adds' members and tells which are new (not
// added before, nor earlier in adds).
func (s *Store) markSeen(ctx context.Context, tx *sql.Tx, adds []aggregate.Add, now time.Time, dedupFor time.Duration) ([]bool, error) {
	name := func(a aggregate.Add) string { return a.Pipeline + "/" + a.Sink + "|" + a.Member }
	expires := now.Add(dedupFor).UnixNano()
	rows := make([][]any, 0, len(adds))
	first := map[string]int{}
	for i, a := range adds {
		if _, dup := first[name(a)]; dup {
			continue
		}
		first[name(a)] = i
		rows = append(rows, []any{a.Pipeline + "/" + a.Sink, a.Member, expires})
	}
	fresh := make([]bool, len(adds))
	err := s.insertRows(ctx, tx, "hookbus_agg_seen", []string{"scope", "member", "expires_at"}, rows,
		` ON CONFLICT (scope, member) DO NOTHING RETURNING scope || '|' || member`, func(v string) {
			if i, ok := first[v]; ok {
				fresh[i] = true
			}
		})
	return fresh, err
}

// openWindows reads the open windows of the groups' keys, locked on
// PostgreSQL (FOR UPDATE) until the transaction ends.
func (s *Store) openWindows(ctx context.Context, tx *sql.Tx, adds []aggregate.Add, groups [][]int) (map[windowKey]openRow, error) {
	lock := ""
	if s.postgres {
		lock = " FOR UPDATE"
	}
	open := map[windowKey]openRow{}
	const per = 500
	for start := 0; start < len(groups); {
		a := adds[groups[start][0]]
		args := []any{a.Pipeline, a.Sink}
		end := start
		for end < len(groups) && end-start < per {
			b := adds[groups[end][0]]
			if b.Pipeline != a.Pipeline || b.Sink != a.Sink {
				break
			}
			args = append(args, b.Key)
			end++
		}
		q := `SELECT id, wkey, due_at, count FROM hookbus_agg_windows WHERE pipeline = ? AND sink = ? AND closing = 0 AND wkey IN (` +
			strings.TrimSuffix(strings.Repeat("?, ", end-start), ", ") + `) ORDER BY wkey` + lock
		rows, err := tx.QueryContext(ctx, s.q(q), args...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var r openRow
			var key string
			if err := rows.Scan(&r.id, &key, &r.due, &r.count); err != nil {
				rows.Close()
				return nil, err
			}
			open[windowKey{a.Pipeline, a.Sink, key}] = r
		}
		if err := rows.Close(); err != nil {
			return nil, err
		}
		if err := rows.Err(); err != nil {
			return nil, err
		}
		start = end
	}
	return open, nil
}

// batchAdd is what addBatch keeps while it opens and closes windows.
type batchAdd struct {
	s   *Store
	tx  *sql.Tx
	now time.Time
	// open are the batch's keys' open windows not handled yet (an
	// eviction takes its window out).
	open map[windowKey]openRow
	// openCount counts a (pipeline, sink)'s open windows once read.
	openCount map[[2]string]int
}

// closing marks k's open window id as taking no more events; early: it
// closes now (full), rather than at its time.
func (b *batchAdd) closing(k windowKey, id string, early bool) error {
	ps := [2]string{k.pipeline, k.sink}
	if n, ok := b.openCount[ps]; ok {
		b.openCount[ps] = n - 1
	}
	if !early {
		_, err := b.tx.ExecContext(context.Background(), b.s.q(`UPDATE hookbus_agg_windows SET closing = 1 WHERE id = ?`), id)
		return err
	}
	_, err := b.tx.ExecContext(context.Background(), b.s.q(`UPDATE hookbus_agg_windows SET closing = 1, due_at = ?, end_at = ? WHERE id = ?`), b.now.UnixNano(), b.now.UnixNano(), id)
	return err
}

// openWindow opens k's window, starting at start, and closes the oldest
// open windows of k's (pipeline, sink) early while there are more than
// spec.MaxKeys.
func (b *batchAdd) openWindow(ctx context.Context, k windowKey, spec aggregate.Spec, start time.Time, r *aggregate.Added) (openRow, error) {
	s, tx := b.s, b.tx
	w := openRow{id: aggregate.WindowID(k.pipeline, k.sink, k.key, start), due: start.Add(spec.Window).UnixNano()}
	if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO hookbus_agg_windows (id, pipeline, sink, wkey, start_at, due_at, end_at, count, closing, lease_owner, lease_until, attempts)
		VALUES (?, ?, ?, ?, ?, ?, 0, 0, 0, '', 0, 0)`),
		w.id, k.pipeline, k.sink, k.key, start.UnixNano(), w.due); err != nil {
		return w, err
	}
	ps := [2]string{k.pipeline, k.sink}
	n, known := b.openCount[ps]
	if !known {
		if err := tx.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM hookbus_agg_windows WHERE pipeline = ? AND sink = ? AND closing = 0`), k.pipeline, k.sink).Scan(&n); err != nil {
			return w, err
		}
	} else {
		n++
	}
	if n > spec.MaxKeys {
		// Over max_keys: the oldest open windows close now, with what they have.
		rows, err := tx.QueryContext(ctx, s.q(`UPDATE hookbus_agg_windows SET closing = 1, due_at = ?, end_at = ?
			WHERE id IN (SELECT id FROM hookbus_agg_windows WHERE pipeline = ? AND sink = ? AND closing = 0 AND id <> ? ORDER BY start_at LIMIT ?)
			RETURNING wkey`),
			b.now.UnixNano(), b.now.UnixNano(), k.pipeline, k.sink, w.id, n-spec.MaxKeys)
		if err != nil {
			return w, err
		}
		for rows.Next() {
			var key string
			if err := rows.Scan(&key); err != nil {
				rows.Close()
				return w, err
			}
			delete(b.open, windowKey{k.pipeline, k.sink, key})
			r.Full = true
			r.Evicted++
			n--
		}
		if err := rows.Close(); err != nil {
			return w, err
		}
	}
	b.openCount[ps] = n
	return w, nil
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
