package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hookbus/hookbus/core/deadletter"
	"github.com/hookbus/hookbus/sdk"
)

// RecordDeadLetter stores a dead letter; recording the same id twice keeps one.
func (s *Store) RecordDeadLetter(ctx context.Context, dl deadletter.DeadLetter) error {
	ev, err := json.Marshal(dl.Event)
	if err != nil {
		return fmt.Errorf("store: record dead letter %s: %w", dl.ID, err)
	}
	_, err = s.db.ExecContext(ctx, s.q(`INSERT INTO dead_letters (id, event_id, sink, pipeline, source, application, subscription, kind, reason, attempts, event, dead_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`),
		dl.ID, dl.Event.ID, dl.Sink, dl.Pipeline, dl.Source, dl.Application, dl.Subscription, string(dl.Kind), dl.Reason, dl.Attempts, string(ev), dl.DeadAt.UnixNano())
	if err != nil {
		return fmt.Errorf("store: record dead letter: %w", err)
	}
	return nil
}

// ListDeadLetters returns dead letters, oldest first.
func (s *Store) ListDeadLetters(ctx context.Context, f deadletter.Filter) ([]deadletter.DeadLetter, error) {
	if f.Limit <= 0 {
		f.Limit = deadletter.DefaultLimit
	}
	query := `SELECT ` + deadLetterColumns + ` FROM dead_letters`
	var args []any
	var where []string
	if f.Sink != "" {
		where = append(where, `sink = ?`)
		args = append(args, f.Sink)
	}
	if f.Application != "" {
		where = append(where, `application = ?`)
		args = append(args, f.Application)
	}
	if f.Subscription != "" {
		where = append(where, `subscription = ?`)
		args = append(args, f.Subscription)
	}
	if f.After != "" {
		where = append(where, `(dead_at, id) > (SELECT dead_at, id FROM dead_letters WHERE id = ?)`)
		args = append(args, f.After)
	}
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, " AND ")
	}
	query += ` ORDER BY dead_at, id LIMIT ?`
	args = append(args, f.Limit)
	rows, err := s.db.QueryContext(ctx, s.q(query), args...)
	if err != nil {
		return nil, fmt.Errorf("store: list dead letters: %w", err)
	}
	defer rows.Close()
	var out []deadletter.DeadLetter
	for rows.Next() {
		dl, err := scanDeadLetter(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, dl)
	}
	return out, rows.Err()
}

type scanner interface{ Scan(...any) error }

// deadLetterColumns are the columns scanDeadLetter reads, in its order.
const deadLetterColumns = `id, sink, pipeline, source, application, subscription, kind, reason, attempts, event, dead_at`

func scanDeadLetter(r scanner) (deadletter.DeadLetter, error) {
	var dl deadletter.DeadLetter
	var kind, ev string
	var at int64
	if err := r.Scan(&dl.ID, &dl.Sink, &dl.Pipeline, &dl.Source, &dl.Application, &dl.Subscription, &kind, &dl.Reason, &dl.Attempts, &ev, &at); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return dl, deadletter.ErrNotFound
		}
		return dl, fmt.Errorf("store: %w", err)
	}
	var e sdk.Event
	if err := json.Unmarshal([]byte(ev), &e); err != nil {
		return dl, fmt.Errorf("store: dead letter %s: %w", dl.ID, err)
	}
	dl.Kind = deadletter.Kind(kind)
	dl.Event = e
	dl.DeadAt = time.Unix(0, at).UTC()
	return dl, nil
}

// GetDeadLetter returns one dead letter by id (deadletter.ErrNotFound
// when there is none).
func (s *Store) GetDeadLetter(ctx context.Context, id string) (deadletter.DeadLetter, error) {
	row := s.db.QueryRowContext(ctx, s.q(`SELECT `+deadLetterColumns+` FROM dead_letters WHERE id = ?`), id)
	return scanDeadLetter(row)
}

// DeleteDeadLetter removes a dead letter (after a replay);
// deadletter.ErrNotFound when there is none with that id.
func (s *Store) DeleteDeadLetter(ctx context.Context, id string) error {
	res, err := s.db.ExecContext(ctx, s.q(`DELETE FROM dead_letters WHERE id = ?`), id)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return deadletter.ErrNotFound
	}
	return nil
}

var _ deadletter.Store = (*Store)(nil)
