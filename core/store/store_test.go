package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hookbus/hookbus/core/deadletter"
	"github.com/hookbus/hookbus/internal/testenv"
	"github.com/hookbus/hookbus/sdk"
)

const pgURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// testDB is an empty database for one test: where Open finds it, and a
// connection of the test's own to build an old schema by hand and to look
// inside.
type testDB struct {
	name             string // sqlite | postgres
	driver, dsn, dir string // Open's arguments
	raw              *sql.DB
	schema           string // PostgreSQL: the test's own schema
}

// open opens the store on db.
func (db testDB) open(t testing.TB) *Store {
	t.Helper()
	s, err := Open(context.Background(), db.driver, db.dsn, db.dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// postgresRunning tells whether the machine's PostgreSQL answers; in CI its
// absence fails the test. Tests then cover SQLite alone.
func postgresRunning(t testing.TB) bool {
	t.Helper()
	c, err := net.DialTimeout("tcp", "127.0.0.1:5432", 2*time.Second)
	if err != nil {
		if testenv.CI() {
			t.Fatalf("PostgreSQL is not running on 127.0.0.1:5432 (required in CI): %v", err)
		}
		t.Logf("PostgreSQL not running; testing sqlite only")
		return false
	}
	c.Close()
	return true
}

// freshDBs returns an empty SQLite database and, when PostgreSQL runs, an
// empty schema of its own in the shared test database (so the test runs
// beside others using that database), dropped at the end.
func freshDBs(t testing.TB) []testDB {
	t.Helper()
	dir := t.TempDir()
	raw, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "hookbus.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	dbs := []testDB{{name: "sqlite", driver: "sqlite", dir: dir, raw: raw}}
	if !postgresRunning(t) {
		return dbs
	}
	schema := fmt.Sprintf("hbstore_%d", time.Now().UnixNano())
	admin, err := sql.Open("pgx", pgURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	if _, err := admin.Exec(`CREATE SCHEMA ` + schema); err != nil {
		t.Fatal(err)
	}
	// Registered before the stores' cleanups, so it runs after them.
	t.Cleanup(func() {
		if _, err := admin.Exec(`DROP SCHEMA ` + schema + ` CASCADE`); err != nil {
			t.Logf("drop schema %s: %v", schema, err)
		}
	})
	dsn := pgURL + "&search_path=" + schema
	praw, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { praw.Close() })
	return append(dbs, testDB{name: "postgres", driver: "postgres", dsn: dsn, raw: praw, schema: schema})
}

func TestDeadLetters(t *testing.T) {
	ctx := context.Background()
	for _, db := range freshDBs(t) {
		t.Run(db.name, func(t *testing.T) {
			s := db.open(t)
			prefix := fmt.Sprintf("t%d-", time.Now().UnixNano())
			sink := prefix + "partner"
			for i := range 3 {
				dl := deadletter.DeadLetter{
					ID: fmt.Sprintf("%s%d", prefix, i), Sink: sink, Pipeline: "p", Source: "shop", Kind: deadletter.KindPermanent, Reason: "HTTP 400",
					Attempts: i + 1, DeadAt: time.Unix(1700000000+int64(i), 0).UTC(),
					Event: sdk.Event{ID: fmt.Sprintf("ev%d", i), Type: "order.paid", Data: []byte(`{"n":1}`)},
				}
				if err := s.RecordDeadLetter(ctx, dl); err != nil {
					t.Fatal(err)
				}
				// Recording the same dead letter again (a redelivered queue message) keeps one.
				if err := s.RecordDeadLetter(ctx, dl); err != nil {
					t.Fatal(err)
				}
			}
			list, err := s.ListDeadLetters(ctx, deadletter.Filter{Sink: sink})
			if err != nil {
				t.Fatal(err)
			}
			if len(list) != 3 || list[0].Event.ID != "ev0" || list[2].Attempts != 3 || string(list[1].Event.Data) != `{"n":1}` ||
				list[0].Kind != deadletter.KindPermanent || list[0].Source != "shop" {
				t.Fatalf("list = %+v", list)
			}
			got, err := s.GetDeadLetter(ctx, prefix+"1")
			if err != nil || got.Reason != "HTTP 400" || !got.DeadAt.Equal(time.Unix(1700000001, 0)) {
				t.Fatalf("get = %+v, %v", got, err)
			}
			if err := s.DeleteDeadLetter(ctx, prefix+"1"); err != nil {
				t.Fatal(err)
			}
			if _, err := s.GetDeadLetter(ctx, prefix+"1"); !errors.Is(err, deadletter.ErrNotFound) {
				t.Fatalf("after delete: %v", err)
			}
			if err := s.DeleteDeadLetter(ctx, prefix+"1"); !errors.Is(err, deadletter.ErrNotFound) {
				t.Fatalf("second delete: %v", err)
			}
			first, _ := s.ListDeadLetters(ctx, deadletter.Filter{Sink: sink, Limit: 1})
			if len(first) != 1 || first[0].ID != prefix+"0" {
				t.Fatalf("limit: %+v", first)
			}
			rest, _ := s.ListDeadLetters(ctx, deadletter.Filter{Sink: sink, After: first[0].ID})
			if len(rest) != 1 || rest[0].ID != prefix+"2" {
				t.Fatalf("after %s: %+v", first[0].ID, rest)
			}

			// A dead letter of a subscription keeps its application and
			// subscription, and lists filter by them.
			for i, owner := range [][2]string{{"app_a", "sub_a1"}, {"app_a", "sub_a2"}, {"app_b", "sub_b1"}} {
				if err := s.RecordDeadLetter(ctx, deadletter.DeadLetter{
					ID: fmt.Sprintf("%ssub%d", prefix, i), Sink: prefix + "subs", Pipeline: "p", Source: "shop", Kind: deadletter.KindExhausted,
					Application: owner[0], Subscription: owner[1], DeadAt: time.Unix(1700000100+int64(i), 0), Event: sdk.Event{ID: fmt.Sprintf("se%d", i)},
				}); err != nil {
					t.Fatal(err)
				}
			}
			if got, err := s.GetDeadLetter(ctx, prefix+"sub2"); err != nil || got.Application != "app_b" || got.Subscription != "sub_b1" {
				t.Fatalf("get a subscription's dead letter: %+v, %v", got, err)
			}
			if got, err := s.GetDeadLetter(ctx, prefix+"0"); err != nil || got.Application != "" || got.Subscription != "" {
				t.Fatalf("get a sink's dead letter: %+v, %v", got, err)
			}
			ids := func(f deadletter.Filter) string {
				t.Helper()
				list, err := s.ListDeadLetters(ctx, f)
				if err != nil {
					t.Fatal(err)
				}
				var out []string
				for _, dl := range list {
					out = append(out, strings.TrimPrefix(dl.ID, prefix))
				}
				return strings.Join(out, ",")
			}
			if got := ids(deadletter.Filter{Application: "app_a"}); got != "sub0,sub1" {
				t.Fatalf("application app_a: %s", got)
			}
			if got := ids(deadletter.Filter{Subscription: "sub_a2"}); got != "sub1" {
				t.Fatalf("subscription sub_a2: %s", got)
			}
			if got := ids(deadletter.Filter{Application: "app_a", Subscription: "sub_b1"}); got != "" {
				t.Fatalf("application app_a and subscription sub_b1: %s", got)
			}
			if got := ids(deadletter.Filter{Sink: prefix + "subs", Application: "app_a", After: prefix + "sub0"}); got != "sub1" {
				t.Fatalf("application app_a after sub0: %s", got)
			}
		})
	}
}

// versions returns the versions recorded in the migrations table, in order.
func versions(t *testing.T, db *sql.DB) []int {
	t.Helper()
	rows, err := db.Query(`SELECT version FROM ` + migrationsTable + ` ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []int
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// wantAllVersions fails unless every migration is recorded, once each.
func wantAllVersions(t *testing.T, db *sql.DB) {
	t.Helper()
	got := versions(t, db)
	if len(got) != len(migrations) {
		t.Fatalf("recorded versions %v, want 1..%d", got, SchemaVersion())
	}
	for i, v := range got {
		if v != i+1 {
			t.Fatalf("recorded versions %v, want 1..%d", got, SchemaVersion())
		}
	}
}

func TestMigrationsAreNumbered(t *testing.T) {
	for i, m := range migrations {
		if m.version != i+1 || m.name == "" || len(m.stmts) == 0 {
			t.Errorf("migrations[%d] = version %d %q with %d statements; want version %d, a name and statements", i, m.version, m.name, len(m.stmts), i+1)
		}
	}
}

func TestMigrateNewDatabase(t *testing.T) {
	for _, db := range freshDBs(t) {
		t.Run(db.name, func(t *testing.T) {
			db.open(t).Close()
			wantAllVersions(t, db.raw)
			// Opening again applies nothing and keeps the record as it is.
			db.open(t)
			wantAllVersions(t, db.raw)
		})
	}
}

// The schemas the store made before versioned migrations: the first
// release (no source column) and the one after it. Each is what that
// code ran, IF NOT EXISTS included.
var unversioned = map[string][]string{
	"without-source": {
		`CREATE TABLE IF NOT EXISTS dead_letters (id TEXT PRIMARY KEY, event_id TEXT NOT NULL, sink TEXT NOT NULL, pipeline TEXT NOT NULL,
			kind TEXT NOT NULL, reason TEXT NOT NULL, attempts INTEGER NOT NULL, event TEXT NOT NULL, dead_at BIGINT NOT NULL)`,
		`CREATE INDEX IF NOT EXISTS dead_letters_sink ON dead_letters (sink, dead_at)`,
		`INSERT INTO dead_letters (id, event_id, sink, pipeline, kind, reason, attempts, event, dead_at)
			VALUES ('old-1', 'ev1', 'partner', 'p', 'exhausted', 'gave up', 7, '{"id":"ev1","type":"order.paid","data":{"n":1}}', 1700000001000000000)`,
		`INSERT INTO dead_letters (id, event_id, sink, pipeline, kind, reason, attempts, event, dead_at)
			VALUES ('old-2', 'ev2', 'partner', 'p', 'script', 'boom', 0, '{"id":"ev2","type":"order.paid"}', 1700000002000000000)`,
	},
	"with-source": {
		`CREATE TABLE IF NOT EXISTS dead_letters (id TEXT PRIMARY KEY, event_id TEXT NOT NULL, sink TEXT NOT NULL, pipeline TEXT NOT NULL,
			source TEXT NOT NULL DEFAULT '', kind TEXT NOT NULL, reason TEXT NOT NULL, attempts INTEGER NOT NULL, event TEXT NOT NULL, dead_at BIGINT NOT NULL)`,
		`CREATE INDEX IF NOT EXISTS dead_letters_sink ON dead_letters (sink, dead_at)`,
		`INSERT INTO dead_letters (id, event_id, sink, pipeline, source, kind, reason, attempts, event, dead_at)
			VALUES ('old-1', 'ev1', 'partner', 'p', 'shop', 'exhausted', 'gave up', 7, '{"id":"ev1","type":"order.paid","data":{"n":1}}', 1700000001000000000)`,
		`INSERT INTO dead_letters (id, event_id, sink, pipeline, source, kind, reason, attempts, event, dead_at)
			VALUES ('old-2', 'ev2', 'partner', 'p', 'shop', 'script', 'boom', 0, '{"id":"ev2","type":"order.paid"}', 1700000002000000000)`,
	},
}

// A database made by hookbus before versioned migrations is adopted: its
// rows stay, it ends at the latest version, and it works.
func TestMigrateAdoptsUnversionedDatabase(t *testing.T) {
	ctx := context.Background()
	for _, old := range []string{"without-source", "with-source"} {
		t.Run(old, func(t *testing.T) {
			for _, db := range freshDBs(t) {
				t.Run(db.name, func(t *testing.T) {
					for _, st := range unversioned[old] {
						if _, err := db.raw.Exec(st); err != nil {
							t.Fatal(err)
						}
					}
					s := db.open(t)
					wantAllVersions(t, db.raw)
					list, err := s.ListDeadLetters(ctx, deadletter.Filter{})
					if err != nil {
						t.Fatal(err)
					}
					wantSource := ""
					if old == "with-source" {
						wantSource = "shop"
					}
					if len(list) != 2 || list[0].ID != "old-1" || list[1].ID != "old-2" || list[0].Attempts != 7 ||
						list[0].Kind != deadletter.KindExhausted || list[1].Kind != deadletter.KindScript ||
						string(list[0].Event.Data) != `{"n":1}` || list[0].Source != wantSource || list[1].Source != wantSource ||
						!list[1].DeadAt.Equal(time.Unix(1700000002, 0)) {
						t.Fatalf("rows after adoption: %+v", list)
					}
					// The new column is there and the old rows can be replaced by new ones.
					if err := s.RecordDeadLetter(ctx, deadletter.DeadLetter{ID: "new-1", Sink: "partner", Source: "shop", Kind: deadletter.KindPoison,
						DeadAt: time.Unix(1700000003, 0), Event: sdk.Event{ID: "ev3"}}); err != nil {
						t.Fatal(err)
					}
					if got, err := s.GetDeadLetter(ctx, "new-1"); err != nil || got.Source != "shop" {
						t.Fatalf("new dead letter: %+v, %v", got, err)
					}
					if err := s.DeleteDeadLetter(ctx, "old-1"); err != nil {
						t.Fatal(err)
					}
					s.Close()
					// Adopted once: opening again changes nothing.
					s = db.open(t)
					wantAllVersions(t, db.raw)
					if list, err := s.ListDeadLetters(ctx, deadletter.Filter{}); err != nil || len(list) != 2 || list[0].ID != "old-2" || list[1].ID != "new-1" {
						t.Fatalf("after reopening: %+v, %v", list, err)
					}
				})
			}
		})
	}
}

// A database migrated by a newer hookbus is refused, and left as it is.
func TestMigrateRefusesNewerSchema(t *testing.T) {
	for _, db := range freshDBs(t) {
		t.Run(db.name, func(t *testing.T) {
			db.open(t).Close()
			newer := SchemaVersion() + 1
			if _, err := db.raw.Exec(fmt.Sprintf(`INSERT INTO %s (version, name, applied_at) VALUES (%d, 'from the future', 0)`, migrationsTable, newer)); err != nil {
				t.Fatal(err)
			}
			s, err := Open(context.Background(), db.driver, db.dsn, db.dir)
			if err == nil {
				s.Close()
				t.Fatal("a database at a newer schema version was opened")
			}
			if !errors.Is(err, ErrSchemaTooNew) || !strings.Contains(err.Error(), fmt.Sprintf("version %d", newer)) {
				t.Fatalf("error = %v; want ErrSchemaTooNew naming version %d", err, newer)
			}
			if got := versions(t, db.raw); len(got) != newer || got[newer-1] != newer {
				t.Fatalf("versions after the refusal: %v", got)
			}
		})
	}
}

// A migration that fails is rolled back whole: none of its statements stay
// and its version is not recorded, so the next start tries it again.
func TestMigrationFailureRollsBack(t *testing.T) {
	saved := migrations
	t.Cleanup(func() { migrations = saved })
	migrations = append(append([]migration(nil), saved...), migration{
		version: len(saved) + 1, name: "half", stmts: []string{
			`CREATE TABLE half_done (id TEXT PRIMARY KEY)`,
			`INSERT INTO no_such_table (id) VALUES ('x')`,
		},
	})
	for _, db := range freshDBs(t) {
		t.Run(db.name, func(t *testing.T) {
			s, err := Open(context.Background(), db.driver, db.dsn, db.dir)
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded with a failing migration")
			}
			if !strings.Contains(err.Error(), "half") {
				t.Fatalf("error %v does not name the migration", err)
			}
			// The migrations before it were applied and recorded.
			if got := versions(t, db.raw); len(got) != len(saved) {
				t.Fatalf("versions = %v, want the %d before the failing one", got, len(saved))
			}
			tx, err := db.raw.Begin()
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback()
			st := &Store{postgres: db.name == "postgres"}
			if has, err := st.tableExists(context.Background(), tx, "half_done"); err != nil || has {
				t.Fatalf("table of the failed migration exists: %v, %v", has, err)
			}
		})
	}
}

// Processes opening one PostgreSQL store at once apply each migration
// once: they queue on the advisory lock. The test holds that lock, sees
// every Open wait for it, then lets them go.
func TestMigrateConcurrentPostgres(t *testing.T) {
	testenv.NeedService(t, "127.0.0.1:5432")
	var db testDB
	for _, d := range freshDBs(t) {
		if d.name == "postgres" {
			db = d
		}
	}
	ctx := context.Background()
	holder, err := db.raw.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Rollback()
	key := migrationLockKey(db.schema)
	if _, err := holder.Exec(`SELECT pg_advisory_xact_lock($1)`, key); err != nil {
		t.Fatal(err)
	}
	const n = 4
	errs := make(chan error, n)
	for range n {
		go func() {
			s, err := Open(ctx, db.driver, db.dsn, "")
			if err == nil {
				err = s.Close()
			}
			errs <- err
		}()
	}
	// pg_locks shows a bigint advisory key as classid (high half) and
	// objid (low half), objsubid 1.
	testenv.Eventually(t, 30*time.Second, fmt.Sprintf("%d Opens waiting for the migration lock", n), func() bool {
		var waiting int
		err := db.raw.QueryRow(`SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND objsubid = 1
			AND classid::bigint = $1 AND objid::bigint = $2`, uint64(key)>>32, uint64(key)&0xffffffff).Scan(&waiting)
		if err != nil {
			t.Fatal(err)
		}
		return waiting == n
	})
	if err := holder.Commit(); err != nil {
		t.Fatal(err)
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatalf("concurrent Open: %v", err)
		}
	}
	wantAllVersions(t, db.raw)
}
