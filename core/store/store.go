// Package store keeps hookbus' records that must be listed and queried:
// dead letters and the open platform's applications, subscriptions and
// application tokens, and the delivery log (attempts, events on record,
// deliveries and their figures). SQLite under data_dir is the default;
// PostgreSQL serves several instances.
//
// The store implements the Store interfaces of the domain packages
// (deadletter.Store, subscription.Store, attempt.Store); it imports those leaves and
// never the engine. Its schema is a numbered list of migrations
// (migrate.go).
package store

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // PostgreSQL driver "pgx"
	_ "modernc.org/sqlite"             // SQLite driver "sqlite"
)

// Store is a SQL store.
type Store struct {
	db       *sql.DB
	postgres bool
	// keys encrypt subscription secrets at rest (none: stored in clear).
	keys *keyring
	// changeLock is the PostgreSQL advisory lock every transaction that
	// records a subscription change holds (changeLockKey).
	changeLock int64
	// now is the clock (tests move it).
	now func() time.Time
}

// Option configures Open.
type Option func(*options)

type options struct {
	key     string
	oldKeys []string
}

// EncryptionKeys makes the store encrypt subscription secrets at rest with
// AES-256-GCM under current (store.encryption_key: the base64 of 32
// random bytes) and still decrypt what old keys encrypted
// (store.old_encryption_keys). With current empty, new secrets are stored
// in clear and old keys only decrypt. A key that is not the base64 of 32
// bytes fails Open with an error naming its config key (never its value).
func EncryptionKeys(current string, old ...string) Option {
	return func(o *options) { o.key, o.oldKeys = current, old }
}

// Open opens the store: driver "sqlite" (dsn empty = dataDir/hookbus.db) or
// "postgres", and migrates its schema to the version this build knows. A
// database migrated by a newer hookbus is refused (ErrSchemaTooNew).
func Open(ctx context.Context, driver, dsn, dataDir string, opts ...Option) (*Store, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	keys, err := newKeyring(o.key, o.oldKeys)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	s := &Store{keys: keys, now: time.Now}
	switch driver {
	case "", "sqlite":
		if dsn == "" {
			if err := os.MkdirAll(dataDir, 0o755); err != nil {
				return nil, fmt.Errorf("store: %w", err)
			}
			dsn = filepath.Join(dataDir, "hookbus.db")
		}
		// _txlock=immediate: a transaction takes the write lock when it
		// begins, so a migration that reads the version and then writes
		// waits for another writer (busy_timeout) instead of failing. Other
		// writers are other processes on the file (a CLI command beside the
		// server): 30 s lets one of them finish a batch on a loaded machine.
		s.db, err = sql.Open("sqlite", "file:"+dsn+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(30000)&_pragma=synchronous(NORMAL)&_txlock=immediate")
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
	if s.postgres {
		var schema string
		if err := s.db.QueryRowContext(ctx, `SELECT COALESCE(current_schema(), '')`).Scan(&schema); err != nil {
			s.db.Close()
			return nil, fmt.Errorf("store: current schema: %w", err)
		}
		s.changeLock = changeLockKey(schema)
	}
	return s, nil
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
