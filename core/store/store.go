// Package store keeps hookbus' records that must be listed and queried:
// dead letters (and, later, delivery logs and subscriptions). SQLite under
// data_dir is the default; PostgreSQL serves several instances.
package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // PostgreSQL driver "pgx"
	_ "modernc.org/sqlite"             // SQLite driver "sqlite"

	"github.com/hookbus/hookbus/core/pipeline"
	"github.com/hookbus/hookbus/sdk"
)

// ErrNotFound is returned for an unknown record id.
var ErrNotFound = errors.New("not found")

// Store is a SQL store.
type Store struct {
	db       *sql.DB
	postgres bool
}

// Open opens the store: driver "sqlite" (dsn empty = dataDir/hookbus.db) or "postgres".
func Open(ctx context.Context, driver, dsn, dataDir string) (*Store, error) {
	s := &Store{}
	var err error
	switch driver {
	case "", "sqlite":
		if dsn == "" {
			if err := os.MkdirAll(dataDir, 0o755); err != nil {
				return nil, fmt.Errorf("store: %w", err)
			}
			dsn = filepath.Join(dataDir, "hookbus.db")
		}
		s.db, err = sql.Open("sqlite", "file:"+dsn+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)&_pragma=synchronous(NORMAL)")
		if err == nil {
			s.db.SetMaxOpenConns(1)
		}
	case "postgres":
		s.postgres = true
		s.db, err = sql.Open("pgx", dsn)
	default:
		return nil, fmt.Errorf("store: unknown driver %q", driver)
	}
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	if err := s.migrate(ctx); err != nil {
		s.db.Close()
		return nil, err
	}
	return s, nil
}

func (s *Store) migrate(ctx context.Context) error {
	_, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS dead_letters (
		id TEXT PRIMARY KEY,
		event_id TEXT NOT NULL,
		sink TEXT NOT NULL,
		pipeline TEXT NOT NULL,
		source TEXT NOT NULL DEFAULT '',
		kind TEXT NOT NULL,
		reason TEXT NOT NULL,
		attempts INTEGER NOT NULL,
		event TEXT NOT NULL,
		dead_at BIGINT NOT NULL
	)`)
	if err == nil {
		_, err = s.db.ExecContext(ctx, `CREATE INDEX IF NOT EXISTS dead_letters_sink ON dead_letters (sink, dead_at)`)
	}
	if err == nil {
		// Added after the first release of the table.
		if s.postgres {
			_, err = s.db.ExecContext(ctx, `ALTER TABLE dead_letters ADD COLUMN IF NOT EXISTS source TEXT NOT NULL DEFAULT ''`)
		} else if _, aerr := s.db.ExecContext(ctx, `ALTER TABLE dead_letters ADD COLUMN source TEXT NOT NULL DEFAULT ''`); aerr != nil && !strings.Contains(aerr.Error(), "duplicate column") {
			err = aerr
		}
	}
	if err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	return nil
}

// q rewrites ? placeholders for PostgreSQL.
func (s *Store) q(query string) string {
	if !s.postgres {
		return query
	}
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// RecordDeadLetter stores a dead letter; recording the same id twice keeps one.
func (s *Store) RecordDeadLetter(ctx context.Context, dl pipeline.DeadLetter) error {
	ev, err := json.Marshal(dl.Event)
	if err != nil {
		return err
	}
	_, err = s.db.ExecContext(ctx, s.q(`INSERT INTO dead_letters (id, event_id, sink, pipeline, source, kind, reason, attempts, event, dead_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`),
		dl.ID, dl.Event.ID, dl.Sink, dl.Pipeline, dl.Source, dl.Kind, dl.Reason, dl.Attempts, string(ev), dl.DeadAt.UnixNano())
	if err != nil {
		return fmt.Errorf("store: record dead letter: %w", err)
	}
	return nil
}

// DeadLetterFilter selects dead letters.
type DeadLetterFilter struct {
	Sink  string // empty = all sinks
	Limit int    // default 100
	// After continues a listing after the dead letter with this id.
	After string
}

// ListDeadLetters returns dead letters, oldest first.
func (s *Store) ListDeadLetters(ctx context.Context, f DeadLetterFilter) ([]pipeline.DeadLetter, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	query := `SELECT id, sink, pipeline, source, kind, reason, attempts, event, dead_at FROM dead_letters`
	var args []any
	var where []string
	if f.Sink != "" {
		where = append(where, `sink = ?`)
		args = append(args, f.Sink)
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
	var out []pipeline.DeadLetter
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

func scanDeadLetter(r scanner) (pipeline.DeadLetter, error) {
	var dl pipeline.DeadLetter
	var ev string
	var at int64
	if err := r.Scan(&dl.ID, &dl.Sink, &dl.Pipeline, &dl.Source, &dl.Kind, &dl.Reason, &dl.Attempts, &ev, &at); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return dl, ErrNotFound
		}
		return dl, fmt.Errorf("store: %w", err)
	}
	var e sdk.Event
	if err := json.Unmarshal([]byte(ev), &e); err != nil {
		return dl, fmt.Errorf("store: dead letter %s: %w", dl.ID, err)
	}
	dl.Event = e
	dl.DeadAt = time.Unix(0, at).UTC()
	return dl, nil
}

// GetDeadLetter returns one dead letter by id.
func (s *Store) GetDeadLetter(ctx context.Context, id string) (pipeline.DeadLetter, error) {
	row := s.db.QueryRowContext(ctx, s.q(`SELECT id, sink, pipeline, source, kind, reason, attempts, event, dead_at FROM dead_letters WHERE id = ?`), id)
	return scanDeadLetter(row)
}

// DeleteDeadLetter removes a dead letter (after a replay).
func (s *Store) DeleteDeadLetter(ctx context.Context, id string) error {
	res, err := s.db.ExecContext(ctx, s.q(`DELETE FROM dead_letters WHERE id = ?`), id)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}
