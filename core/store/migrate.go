package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"time"
)

// migration is one numbered change of the schema. Migrations are applied
// in order, each in its own transaction together with its row in
// migrationsTable, so a database is always at exactly one version. A
// released migration never changes: a change to the schema is a new
// migration at the end of the list.
type migration struct {
	version int
	name    string
	// stmts run in order on both SQLite and PostgreSQL; postgres, when
	// set, replaces them on PostgreSQL.
	stmts, postgres []string
}

// migrations is the schema, oldest first; versions are 1, 2, 3, ...
var migrations = []migration{
	{version: 1, name: "dead letters", stmts: []string{
		`CREATE TABLE dead_letters (
			id TEXT PRIMARY KEY,
			event_id TEXT NOT NULL,
			sink TEXT NOT NULL,
			pipeline TEXT NOT NULL,
			kind TEXT NOT NULL,
			reason TEXT NOT NULL,
			attempts INTEGER NOT NULL,
			event TEXT NOT NULL,
			dead_at BIGINT NOT NULL
		)`,
		`CREATE INDEX dead_letters_sink ON dead_letters (sink, dead_at)`,
	}},
	{version: 2, name: "dead letters: source", stmts: []string{
		`ALTER TABLE dead_letters ADD COLUMN source TEXT NOT NULL DEFAULT ''`,
	}},
	{version: 3, name: "dead letters: application and subscription", stmts: []string{
		`ALTER TABLE dead_letters ADD COLUMN application TEXT NOT NULL DEFAULT ''`,
		`ALTER TABLE dead_letters ADD COLUMN subscription TEXT NOT NULL DEFAULT ''`,
		`CREATE INDEX dead_letters_application ON dead_letters (application, dead_at)`,
		`CREATE INDEX dead_letters_subscription ON dead_letters (subscription, dead_at)`,
	}},
	{version: 4, name: "applications, subscriptions, application tokens, subscription change feed",
		stmts:    platformSchema(`seq INTEGER PRIMARY KEY AUTOINCREMENT`, `TEXT`),
		postgres: platformSchema(`seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY`, `TEXT COLLATE "C"`)},
	{version: 5, name: "delivery log: attempts, events on record, deliveries, per-minute figures",
		stmts:    logSchema(`TEXT`, `BLOB`),
		postgres: logSchema(`TEXT COLLATE "C"`, `BYTEA`)},
	// expires_at is unix nanoseconds, NULL for a token that never
	// expires; kind is "" (an ordinary token made before kinds), "api"
	// or "portal".
	{version: 6, name: "application tokens: kind and expiry", stmts: []string{
		`ALTER TABLE hookbus_app_tokens ADD COLUMN kind TEXT NOT NULL DEFAULT ''`,
		`ALTER TABLE hookbus_app_tokens ADD COLUMN expires_at BIGINT`,
	}},
	{version: 7, name: "subscriptions: delivery options (timeout, retry schedule, status policy)", stmts: []string{
		`ALTER TABLE hookbus_subscriptions ADD COLUMN delivery_options TEXT NOT NULL DEFAULT '{}'`,
	}},
	// format is a subscription's delivery format (core/deliveryformat);
	// "" is the default, the json envelope.
	{version: 8, name: "subscriptions: delivery format", stmts: []string{
		`ALTER TABLE hookbus_subscriptions ADD COLUMN format TEXT NOT NULL DEFAULT ''`,
	}},
	{version: 9, name: "aggregate windows, their events, members seen",
		stmts: aggregateSchema(), postgres: aggregateSchema()},
	// The attempts of batched deliveries by their batch's webhook-id, for
	// the webhook_id filter (a batch's events); only batches' ids, so the
	// index stays small and costs single deliveries nothing.
	{version: 10, name: "delivery log: attempts by batch webhook-id", stmts: []string{
		`CREATE INDEX hookbus_attempts_batch ON hookbus_attempts (webhook_id, id) WHERE webhook_id LIKE 'batch_%'`,
	}},
}

// platformSchema is migration 4 with the change feed's sequence column
// as the database spells it: SQLite's AUTOINCREMENT (without it a row id
// may be used again once the newest rows were pruned) or a PostgreSQL
// identity; and ids, which lists page through in order, compared byte by
// byte on both (PostgreSQL's "C" collation), so a list has one order
// whatever the database's locale.
//
// The tables are named hookbus_* since "applications" and "subscriptions"
// are likely names in a database hookbus shares with its users' own
// tables. Times are unix nanoseconds (UTC; 0 = none), maps and lists
// JSON. A subscription's event types are also rows of
// hookbus_subscription_event_types, so a list by event type is an index
// lookup; its secrets are a JSON list whose values are encrypted at rest
// when an encryption key is set (crypt.go).
func platformSchema(seq, id string) []string {
	return []string{
		`CREATE TABLE hookbus_applications (
			id ` + id + ` PRIMARY KEY,
			name TEXT NOT NULL,
			metadata TEXT NOT NULL,
			created_at BIGINT NOT NULL,
			updated_at BIGINT NOT NULL
		)`,
		`CREATE TABLE hookbus_subscriptions (
			id ` + id + ` PRIMARY KEY,
			app TEXT NOT NULL,
			url TEXT NOT NULL,
			event_types TEXT NOT NULL,
			description TEXT NOT NULL,
			secrets TEXT NOT NULL,
			headers TEXT NOT NULL,
			rate_limit DOUBLE PRECISION NOT NULL,
			max_in_flight INTEGER NOT NULL,
			filter_script TEXT NOT NULL,
			disabled INTEGER NOT NULL,
			disabled_reason TEXT NOT NULL,
			metadata TEXT NOT NULL,
			failing_since BIGINT NOT NULL,
			created_at BIGINT NOT NULL,
			updated_at BIGINT NOT NULL
		)`,
		`CREATE INDEX hookbus_subscriptions_app ON hookbus_subscriptions (app, id)`,
		`CREATE INDEX hookbus_subscriptions_app_disabled ON hookbus_subscriptions (app, disabled, id)`,
		`CREATE TABLE hookbus_subscription_event_types (
			subscription TEXT NOT NULL,
			app TEXT NOT NULL,
			pattern TEXT NOT NULL,
			PRIMARY KEY (subscription, pattern)
		)`,
		`CREATE INDEX hookbus_subscription_event_types_app ON hookbus_subscription_event_types (app, pattern, subscription)`,
		`CREATE TABLE hookbus_app_tokens (
			id ` + id + ` PRIMARY KEY,
			app TEXT NOT NULL,
			hash TEXT NOT NULL,
			name TEXT NOT NULL,
			created_at BIGINT NOT NULL,
			last_used BIGINT NOT NULL
		)`,
		`CREATE UNIQUE INDEX hookbus_app_tokens_hash ON hookbus_app_tokens (hash)`,
		`CREATE INDEX hookbus_app_tokens_app ON hookbus_app_tokens (app, id)`,
		`CREATE TABLE hookbus_subscription_changes (
			` + seq + `,
			kind TEXT NOT NULL,
			app TEXT NOT NULL,
			subscription TEXT NOT NULL,
			at BIGINT NOT NULL
		)`,
		`CREATE INDEX hookbus_subscription_changes_at ON hookbus_subscription_changes (at)`,
		// The newest sequence number pruned from the feed: a reader
		// asking for changes after an older one gets ErrFeedGap.
		`CREATE TABLE hookbus_subscription_changes_pruned (
			id INTEGER PRIMARY KEY,
			seq BIGINT NOT NULL
		)`,
		`INSERT INTO hookbus_subscription_changes_pruned (id, seq) VALUES (1, 0)`,
	}
}

// migrationsTable records the applied migrations. Named for hookbus, so it
// does not meet another tool's schema_migrations in a shared database.
const migrationsTable = "hookbus_schema_migrations"

// SchemaVersion is the schema version this build migrates a store to.
func SchemaVersion() int { return migrations[len(migrations)-1].version }

// ErrSchemaTooNew is returned by Open for a database migrated by a newer
// hookbus than this one: its schema may hold what this build would lose.
var ErrSchemaTooNew = errors.New("store schema is newer than this hookbus")

// migrate applies the migrations the database lacks, one transaction each.
func (s *Store) migrate(ctx context.Context) error {
	for {
		applied, err := s.migrateNext(ctx)
		if err != nil {
			return fmt.Errorf("store: migrate: %w", err)
		}
		if !applied {
			return nil
		}
	}
}

// migrateNext applies, in one transaction, the first migration the
// database lacks; false when it lacks none. On PostgreSQL the transaction
// holds an advisory lock first, so hookbus processes opening the same
// database at once apply each migration once: the second waits, then sees
// the version the first recorded. (SQLite transactions begin IMMEDIATE:
// one writer at a time.)
func (s *Store) migrateNext(ctx context.Context) (bool, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer func() { _ = tx.Rollback() }() // a no-op after Commit

	if s.postgres {
		var schema string
		if err := tx.QueryRowContext(ctx, `SELECT COALESCE(current_schema(), '')`).Scan(&schema); err != nil {
			return false, fmt.Errorf("current schema: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, migrationLockKey(schema)); err != nil {
			return false, fmt.Errorf("lock %s: %w", migrationsTable, err)
		}
	}
	v, err := s.version(ctx, tx)
	if err != nil {
		return false, err
	}
	latest := SchemaVersion()
	if v > latest {
		return false, fmt.Errorf("%w: the database is at version %d, this hookbus knows versions up to %d; run the hookbus that migrated it (or a newer one), or point store.dsn at another database",
			ErrSchemaTooNew, v, latest)
	}
	if v == latest {
		// Commit what version may have written: the migrations table of
		// a new database, the adoption of an unversioned one.
		return false, tx.Commit()
	}
	m := migrations[v]
	stmts := m.stmts
	if s.postgres && m.postgres != nil {
		stmts = m.postgres
	}
	for _, st := range stmts {
		if _, err := tx.ExecContext(ctx, st); err != nil {
			return false, fmt.Errorf("version %d (%s): %w", m.version, m.name, err)
		}
	}
	if err := s.recordVersion(ctx, tx, m); err != nil {
		return false, err
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("version %d (%s): commit: %w", m.version, m.name, err)
	}
	return true, nil
}

// migrationLockKey is the PostgreSQL advisory lock key for migrating the
// store in schema, so stores in different schemas of one database migrate
// independently.
func migrationLockKey(schema string) int64 {
	h := fnv.New64a()
	h.Write([]byte("hookbus store migrations\x00" + schema))
	return int64(h.Sum64())
}

// version reads the schema version inside tx, creating migrationsTable on
// first use. A database made before versioned migrations (dead_letters
// but no migrationsTable) is adopted: the migrations its tables already
// show are recorded as applied, so nothing is created twice and no row is
// lost.
func (s *Store) version(ctx context.Context, tx *sql.Tx) (int, error) {
	exists, err := s.tableExists(ctx, tx, migrationsTable)
	if err != nil {
		return 0, err
	}
	if !exists {
		if _, err := tx.ExecContext(ctx, `CREATE TABLE `+migrationsTable+` (
			version INTEGER PRIMARY KEY,
			name TEXT NOT NULL,
			applied_at BIGINT NOT NULL
		)`); err != nil {
			return 0, fmt.Errorf("create %s: %w", migrationsTable, err)
		}
		if err := s.adopt(ctx, tx); err != nil {
			return 0, fmt.Errorf("adopt the existing schema: %w", err)
		}
	}
	var v int
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM `+migrationsTable).Scan(&v); err != nil {
		return 0, fmt.Errorf("read %s: %w", migrationsTable, err)
	}
	return v, nil
}

// adopt records the migrations an unversioned database already has: the
// dead_letters table of the first release is version 1, its source column
// version 2.
func (s *Store) adopt(ctx context.Context, tx *sql.Tx) error {
	has, err := s.tableExists(ctx, tx, "dead_letters")
	if err != nil || !has {
		return err
	}
	// Before versioning the index was created in a statement of its own
	// after the table; a process stopped between the two left the table
	// without it.
	if _, err := tx.ExecContext(ctx, `CREATE INDEX IF NOT EXISTS dead_letters_sink ON dead_letters (sink, dead_at)`); err != nil {
		return err
	}
	v := 1
	if has, err = s.columnExists(ctx, tx, "dead_letters", "source"); err != nil {
		return err
	} else if has {
		v = 2
	}
	for _, m := range migrations[:v] {
		if err := s.recordVersion(ctx, tx, m); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) recordVersion(ctx context.Context, tx *sql.Tx, m migration) error {
	if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO `+migrationsTable+` (version, name, applied_at) VALUES (?, ?, ?)`),
		m.version, m.name, time.Now().UnixNano()); err != nil {
		return fmt.Errorf("record version %d: %w", m.version, err)
	}
	return nil
}

// tableExists tells whether table exists in the schema unqualified names
// are created in (PostgreSQL: current_schema()).
func (s *Store) tableExists(ctx context.Context, tx *sql.Tx, table string) (bool, error) {
	query := `SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?`
	if s.postgres {
		query = `SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = $1`
	}
	var n int
	if err := tx.QueryRowContext(ctx, query, table).Scan(&n); err != nil {
		return false, fmt.Errorf("look up table %s: %w", table, err)
	}
	return n > 0, nil
}

// columnExists tells whether table (see tableExists) has column.
func (s *Store) columnExists(ctx context.Context, tx *sql.Tx, table, column string) (bool, error) {
	query := `SELECT COUNT(*) FROM pragma_table_info(?) WHERE name = ?`
	if s.postgres {
		query = `SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1 AND column_name = $2`
	}
	var n int
	if err := tx.QueryRowContext(ctx, query, table, column).Scan(&n); err != nil {
		return false, fmt.Errorf("look up column %s.%s: %w", table, column, err)
	}
	return n > 0, nil
}
