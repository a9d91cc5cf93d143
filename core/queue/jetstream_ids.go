package queue

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	_ "modernc.org/sqlite" // SQLite driver "sqlite"
)

// producerIDs remembers the producer ids accepted within the dedup window
// (the MetaDedupID keys of ingest messages), across restarts.
type producerIDs interface {
	// seen reports, per id, whether it was remembered within the window.
	// An id that cannot be looked up counts as unseen: accepted again
	// (at-least-once) rather than dropped.
	seen(ctx context.Context, ids []string) []bool
	// remember records ids as accepted now.
	remember(ctx context.Context, ids []string) error
	close() error
}

// kvIDs keeps producer ids in a JetStream key-value bucket, one key per id:
// the store of the external nats driver, where several hookbus instances
// share one namespace. Each key costs the NATS server an entry in its
// in-memory subject index for the window.
type kvIDs struct {
	js     jetstream.JetStream
	kv     jetstream.KeyValue
	prefix string // the bucket's subject prefix, "$KV.<bucket>."
}

func (k *kvIDs) seen(ctx context.Context, ids []string) []bool {
	seen := make([]bool, len(ids))
	// Each lookup is a round trip: the ids of a batch are looked up side
	// by side, not one after another.
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i, id := range ids {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if _, err := k.kv.Get(ctx, idKey(id)); err == nil {
				seen[i] = true
			}
		})
	}
	wg.Wait()
	return seen
}

func (k *kvIDs) remember(_ context.Context, ids []string) error {
	futures := make([]jetstream.PubAckFuture, 0, len(ids))
	for _, id := range ids {
		f, err := k.js.PublishAsync(k.prefix+idKey(id), nil)
		if err != nil {
			return err
		}
		futures = append(futures, f)
	}
	return waitAcks(futures)
}

func (k *kvIDs) close() error { return nil }

// sqliteIDs keeps producer ids on disk, in an SQLite file beside the
// embedded server's store: the store of the embedded driver, which one
// process owns (the data_dir lock). A million ids cost about 60 MB of disk
// and no memory beyond SQLite's page cache, where a key-value bucket would
// hold an index entry per id in the server's memory.
//
// The file is written without fsync (synchronous=OFF): an id is recorded
// only after its event is durably queued, so losing the last records in a
// power cut means a producer's retry may be accepted twice, never that an
// event is lost; a killed process loses nothing (the writes are in the
// operating system's hands when a transaction returns).
type sqliteIDs struct {
	db     *sql.DB
	window time.Duration
	log    *slog.Logger
	// legacy is the key-value bucket of versions that kept producer ids
	// there, still consulted until its last id expired.
	legacy jetstream.KeyValue
	stop   chan struct{}
	done   chan struct{}
}

// sqliteIDsFile is the file of one namespace's producer ids under the
// embedded store directory.
func sqliteIDsFile(storeDir, prefix string) string {
	return filepath.Join(storeDir, strings.ToLower(prefix)+"-producer-ids.db")
}

func openSQLiteIDs(path string, window time.Duration, log *slog.Logger) (*sqliteIDs, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("queue: producer ids: %w", err)
	}
	// A small page cache per connection: lookups of recent ids hit it, and
	// the operating system caches the rest of the file.
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=synchronous(OFF)&_pragma=busy_timeout(10000)&_pragma=cache_size(-2048)&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("queue: producer ids: %w", err)
	}
	db.SetMaxOpenConns(4)
	const schema = `CREATE TABLE IF NOT EXISTS producer_ids (key BLOB PRIMARY KEY, at INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS producer_ids_at ON producer_ids (at);`
	if _, err := db.Exec(schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("queue: producer ids %s: %w", path, err)
	}
	s := &sqliteIDs{db: db, window: window, log: log, stop: make(chan struct{}), done: make(chan struct{})}
	go s.expireLoop()
	return s, nil
}

// idBlob is the stored key of a producer id: 16 bytes of its SHA-256.
func idBlob(id string) []byte {
	sum := sha256.Sum256([]byte(id))
	return sum[:16]
}

// idLookupChunk bounds the ids of one lookup query.
const idLookupChunk = 500

func (s *sqliteIDs) seen(ctx context.Context, ids []string) []bool {
	seen := make([]bool, len(ids))
	index := make(map[string][]int, len(ids))
	since := time.Now().Add(-s.window).UnixNano()
	for lo := 0; lo < len(ids); lo += idLookupChunk {
		chunk := ids[lo:min(lo+idLookupChunk, len(ids))]
		args := make([]any, 0, len(chunk)+1)
		args = append(args, since)
		for i, id := range chunk {
			b := idBlob(id)
			index[string(b)] = append(index[string(b)], lo+i)
			args = append(args, b)
		}
		q := "SELECT key FROM producer_ids WHERE at >= ? AND key IN (?" + strings.Repeat(",?", len(chunk)-1) + ")"
		rows, err := s.db.QueryContext(ctx, q, args...)
		if err != nil {
			s.log.Warn("queue: looking producer ids up failed; their events are accepted again", "error", err)
			continue
		}
		for rows.Next() {
			var key []byte
			if rows.Scan(&key) == nil {
				for _, i := range index[string(key)] {
					seen[i] = true
				}
			}
		}
		if err := rows.Err(); err != nil {
			s.log.Warn("queue: looking producer ids up failed; their events are accepted again", "error", err)
		}
		rows.Close()
	}
	if s.legacy != nil {
		s.seenLegacy(ctx, ids, seen)
	}
	return seen
}

// seenLegacy looks the ids not found up in the key-value bucket of older
// versions.
func (s *sqliteIDs) seenLegacy(ctx context.Context, ids []string, seen []bool) {
	var missing []string
	var at []int
	for i, id := range ids {
		if !seen[i] {
			missing, at = append(missing, id), append(at, i)
		}
	}
	if len(missing) == 0 {
		return
	}
	old := (&kvIDs{kv: s.legacy}).seen(ctx, missing)
	for j, ok := range old {
		if ok {
			seen[at[j]] = true
		}
	}
}

func (s *sqliteIDs) remember(ctx context.Context, ids []string) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	st, err := tx.PrepareContext(ctx, "INSERT INTO producer_ids (key, at) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET at = excluded.at")
	if err != nil {
		return err
	}
	defer st.Close()
	now := time.Now().UnixNano()
	for _, id := range ids {
		if _, err := st.ExecContext(ctx, idBlob(id), now); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// idExpireEvery is how often ids older than the window are deleted.
const idExpireEvery = time.Minute

func (s *sqliteIDs) expireLoop() {
	defer close(s.done)
	t := time.NewTicker(idExpireEvery)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			if err := s.expire(context.Background(), time.Now()); err != nil {
				s.log.Warn("queue: deleting expired producer ids failed", "error", err)
			}
			s.dropLegacyWhenEmpty()
		}
	}
}

// expire deletes the ids remembered before now less the window, a slice
// at a time so that ingest is not held up behind one long transaction.
func (s *sqliteIDs) expire(ctx context.Context, now time.Time) error {
	before := now.Add(-s.window).UnixNano()
	for {
		res, err := s.db.ExecContext(ctx, "DELETE FROM producer_ids WHERE key IN (SELECT key FROM producer_ids WHERE at < ? LIMIT 5000)", before)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n < 5000 {
			return err
		}
		select {
		case <-s.stop:
			return nil
		default:
		}
	}
}

// dropLegacyWhenEmpty stops consulting the older versions' bucket once
// its ids have all expired.
func (s *sqliteIDs) dropLegacyWhenEmpty() {
	if s.legacy == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := s.legacy.Status(ctx)
	if err != nil || st.Values() > 0 {
		return
	}
	s.legacy = nil
}

func (s *sqliteIDs) close() error {
	close(s.stop)
	<-s.done
	return s.db.Close()
}

// openIDs opens the producer-id store: the SQLite file on the embedded
// server (consulting an older version's bucket while it holds ids), the
// key-value bucket on an external one.
func (q *JetStream) openIDs(ctx context.Context) error {
	bucket := q.opts.Prefix + "_IDS"
	if q.ns != nil {
		s, err := openSQLiteIDs(sqliteIDsFile(q.storeDir(), q.opts.Prefix), q.opts.DedupWindow, q.log)
		if err != nil {
			return err
		}
		kv, err := q.js.KeyValue(ctx, bucket)
		switch {
		case err == nil:
			if st, err := kv.Status(ctx); err == nil && st.Values() > 0 {
				s.legacy = kv
			}
		case !errors.Is(err, jetstream.ErrBucketNotFound):
			s.close()
			return fmt.Errorf("queue: id bucket: %w", err)
		}
		q.ids = s
		return nil
	}
	kv, err := q.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:  bucket,
		TTL:     q.opts.DedupWindow,
		Storage: jetstream.FileStorage,
		History: 1,
	})
	if err != nil {
		return fmt.Errorf("queue: create id bucket: %w", err)
	}
	q.ids = &kvIDs{js: q.js, kv: kv, prefix: "$KV." + bucket + "."}
	return nil
}

// idClaims serialises the publishes of one producer id within this
// process: between the lookup of an id and its record, no other publish
// of the same id may look it up, or both would be accepted. (Across
// processes on a shared server, the ingest stream's own duplicate window
// covers that moment.)
type idClaims struct {
	mu   sync.Mutex
	held map[string]chan struct{}
}

// claim takes every id of ids, waiting while another publish holds any
// of them, and returns the function that releases them. It takes all or
// none, so two batches sharing ids cannot wait for each other.
func (c *idClaims) claim(ids []string) (release func()) {
	done := make(chan struct{})
	for {
		c.mu.Lock()
		var busy chan struct{}
		for _, id := range ids {
			if ch, ok := c.held[id]; ok {
				busy = ch
				break
			}
		}
		if busy == nil {
			if c.held == nil {
				c.held = map[string]chan struct{}{}
			}
			for _, id := range ids {
				c.held[id] = done
			}
			c.mu.Unlock()
			return func() {
				c.mu.Lock()
				for _, id := range ids {
					delete(c.held, id)
				}
				c.mu.Unlock()
				close(done)
			}
		}
		c.mu.Unlock()
		<-busy
	}
}
