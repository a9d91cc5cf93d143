package queue

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
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
	return waitAcksFor(futures, externalAckTimeout)
}

func (k *kvIDs) close() error { return nil }

// sqliteIDs keeps producer ids on disk, in an SQLite file beside the
// embedded server's store: the store of the embedded driver, which one
// process owns (the data_dir lock). A million ids cost about 40 MB of disk
// and no memory beyond SQLite's page cache, where a key-value bucket would
// hold an index entry per id in the server's memory.
//
// Ids are written to generations, a table each, started one window apart;
// a generation is dropped a window after the next one started, so an id is
// remembered for at least the window (at most two) and expiry costs a DROP
// TABLE instead of an index on the time of every id.
//
// The file is written without fsync (synchronous=OFF): an id is recorded
// only after its event is durably queued, so losing the last records in a
// power cut means a producer's retry may be accepted twice, never that an
// event is lost; a killed process loses nothing (the writes are in the
// operating system's hands when a statement returns).
type sqliteIDs struct {
	db     *sql.DB
	window time.Duration
	log    *slog.Logger
	mu     sync.RWMutex
	gens   []idGen // oldest first; the last is written
	// legacy is the key-value bucket of versions that kept producer ids
	// there, still consulted until its last id expired.
	legacy jetstream.KeyValue
	ops    chan *idOp // to the combiner
	// lookups and records are the combiner's prepared statements.
	lookups, records stmtCache
	stop             chan struct{}
	done             chan struct{} // the expiry loop ended
	cdone            chan struct{} // the combiner ended
}

// idGen is one generation of ids: its table and when it started.
type idGen struct {
	n       int64
	started time.Time
}

func (g idGen) table() string { return "producer_ids_" + strconv.FormatInt(g.n, 10) }

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
	s := &sqliteIDs{db: db, window: window, log: log, ops: make(chan *idOp, 256), stop: make(chan struct{}), done: make(chan struct{}), cdone: make(chan struct{})}
	if err := s.load(); err != nil {
		db.Close()
		return nil, fmt.Errorf("queue: producer ids %s: %w", path, err)
	}
	if err := s.rotate(context.Background(), time.Now()); err != nil {
		db.Close()
		return nil, fmt.Errorf("queue: producer ids %s: %w", path, err)
	}
	go s.expireLoop()
	go s.combine()
	return s, nil
}

// load reads the generations.
func (s *sqliteIDs) load() error {
	if _, err := s.db.Exec("CREATE TABLE IF NOT EXISTS producer_id_gens (n INTEGER PRIMARY KEY, started INTEGER NOT NULL)"); err != nil {
		return err
	}
	rows, err := s.db.Query("SELECT n, started FROM producer_id_gens ORDER BY n")
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var g idGen
		var ns int64
		if err := rows.Scan(&g.n, &ns); err != nil {
			return err
		}
		g.started = time.Unix(0, ns)
		s.gens = append(s.gens, g)
	}
	return rows.Err()
}

// rotate starts a generation when the last one is a window old (or there
// is none) and drops those whose ids all are older than the window.
func (s *sqliteIDs) rotate(ctx context.Context, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.gens) == 0 || now.Sub(s.gens[len(s.gens)-1].started) >= s.window {
		g := idGen{started: now}
		if len(s.gens) > 0 {
			g.n = s.gens[len(s.gens)-1].n + 1
		}
		if _, err := s.db.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS "+g.table()+" (key BLOB PRIMARY KEY) WITHOUT ROWID"); err != nil {
			return err
		}
		if _, err := s.db.ExecContext(ctx, "INSERT OR REPLACE INTO producer_id_gens (n, started) VALUES (?, ?)", g.n, now.UnixNano()); err != nil {
			return err
		}
		s.gens = append(s.gens, g)
	}
	// Generation i took ids until generation i+1 started.
	for len(s.gens) > 1 && now.Sub(s.gens[1].started) >= s.window {
		old := s.gens[0]
		if _, err := s.db.ExecContext(ctx, "DROP TABLE IF EXISTS "+old.table()); err != nil {
			return err
		}
		if _, err := s.db.ExecContext(ctx, "DELETE FROM producer_id_gens WHERE n = ?", old.n); err != nil {
			return err
		}
		s.gens = s.gens[1:]
	}
	return nil
}

// idBlob is the stored key of a producer id: 16 bytes of its SHA-256.
func idBlob(id string) []byte {
	sum := sha256.Sum256([]byte(id))
	return sum[:16]
}

// idChunk bounds the ids of one statement.
const idChunk = 500

func (s *sqliteIDs) seen(ctx context.Context, ids []string) []bool {
	op := &idOp{ids: ids}
	if err := s.submit(op); err != nil {
		s.log.Warn("queue: looking producer ids up failed; their events are accepted again", "error", err)
		op.seen = make([]bool, len(ids))
	}
	if s.legacyBucket() != nil {
		s.seenLegacy(ctx, ids, op.seen)
	}
	return op.seen
}

// lookup reads which of ids the generations hold, a statement per chunk.
// The ids go in as one JSON array of hex keys, so the statement's text
// depends only on the generations and is prepared once (see stmtCache):
// parsing a statement of a varying number of parameters cost more than
// running it.
func (s *sqliteIDs) lookup(ctx context.Context, ids []string) []bool {
	seen := make([]bool, len(ids))
	index := make(map[string][]int, len(ids))
	s.mu.RLock()
	gens := slices.Clone(s.gens)
	s.mu.RUnlock()
	var q strings.Builder
	for i, g := range gens {
		if i > 0 {
			q.WriteString(" UNION ALL ")
		}
		q.WriteString("SELECT key FROM " + g.table() + " WHERE key IN (SELECT unhex(value) FROM json_each(?1))")
	}
	for lo := 0; lo < len(ids); lo += idChunk {
		chunk := ids[lo:min(lo+idChunk, len(ids))]
		keys := keyArray(chunk, func(i int, b []byte) { index[string(b)] = append(index[string(b)], lo+i) })
		stmt, err := s.lookups.get(ctx, s.db, q.String())
		if err != nil {
			s.log.Warn("queue: looking producer ids up failed; their events are accepted again", "error", err)
			continue
		}
		rows, err := stmt.QueryContext(ctx, keys)
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
	return seen
}

// keyArray is the JSON array of the hex keys of ids; each is passed to
// each, when not nil, with its index.
func keyArray(ids []string, each func(i int, key []byte)) string {
	b := make([]byte, 0, len(ids)*35+2)
	b = append(b, '[')
	for i, id := range ids {
		key := idBlob(id)
		if each != nil {
			each(i, key)
		}
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = hex.AppendEncode(b, key)
		b = append(b, '"')
	}
	return string(append(b, ']'))
}

// stmtCache holds the one prepared statement of a kind (lookups, records)
// for the generations of the moment: a new text (a generation started or
// dropped) closes the old statement and prepares the new one. Only the
// combiner uses it.
type stmtCache struct {
	text string
	stmt *sql.Stmt
}

func (c *stmtCache) get(ctx context.Context, db *sql.DB, text string) (*sql.Stmt, error) {
	if c.stmt != nil && c.text == text {
		return c.stmt, nil
	}
	c.close()
	stmt, err := db.PrepareContext(ctx, text)
	if err != nil {
		return nil, err
	}
	c.text, c.stmt = text, stmt
	return stmt, nil
}

func (c *stmtCache) close() {
	if c.stmt != nil {
		_ = c.stmt.Close()
		c.stmt, c.text = nil, ""
	}
}

func (s *sqliteIDs) legacyBucket() jetstream.KeyValue {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.legacy
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
	old := (&kvIDs{kv: s.legacyBucket()}).seen(ctx, missing)
	for j, ok := range old {
		if ok {
			seen[at[j]] = true
		}
	}
}

func (s *sqliteIDs) remember(_ context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	op := &idOp{ids: ids, write: true}
	if err := s.submit(op); err != nil {
		return err
	}
	return op.err
}

// idOp is one lookup or record waiting for the combiner.
type idOp struct {
	ids   []string
	write bool
	seen  []bool // a lookup's answer
	err   error  // a record's outcome
	done  chan struct{}
}

var errIDsClosed = errors.New("queue: the producer-id store is closed")

// submit hands op to the combiner and waits for its outcome.
func (s *sqliteIDs) submit(op *idOp) error {
	op.done = make(chan struct{})
	select {
	case s.ops <- op:
	case <-s.cdone:
		return errIDsClosed
	}
	select {
	case <-op.done:
		return nil
	case <-s.cdone:
		return errIDsClosed
	}
}

// combine runs the lookups and records of concurrent publishes together:
// a statement costs SQLite about as much for one id as for fifty, and
// ingest with one event per request sends many small batches at once.
// (Two publishes never hold one id at once, see idClaims, so a lookup and
// a record combined are of different ids.)
func (s *sqliteIDs) combine() {
	defer close(s.cdone)
	defer s.records.close()
	defer s.lookups.close()
	ctx := context.Background()
	for {
		var first *idOp
		select {
		case first = <-s.ops:
		case <-s.stop:
			return
		}
		var reads, writes []*idOp
		n := 0
		add := func(op *idOp) {
			if op.write {
				writes = append(writes, op)
			} else {
				reads = append(reads, op)
			}
			n += len(op.ids)
		}
		add(first)
	more:
		for n < idChunk {
			select {
			case op := <-s.ops:
				add(op)
			default:
				break more
			}
		}
		if len(reads) > 0 {
			var ids []string
			for _, op := range reads {
				ids = append(ids, op.ids...)
			}
			seen := s.lookup(ctx, ids)
			for _, op := range reads {
				op.seen, seen = seen[:len(op.ids):len(op.ids)], seen[len(op.ids):]
				close(op.done)
			}
		}
		if len(writes) > 0 {
			var ids []string
			for _, op := range writes {
				ids = append(ids, op.ids...)
			}
			err := s.insert(ctx, ids)
			for _, op := range writes {
				op.err = err
				close(op.done)
			}
		}
	}
}

// insert writes ids into the current generation, a statement per chunk
// (the ids as one JSON array of hex keys, as in lookup).
func (s *sqliteIDs) insert(ctx context.Context, ids []string) error {
	s.mu.RLock()
	table := s.gens[len(s.gens)-1].table()
	s.mu.RUnlock()
	stmt, err := s.records.get(ctx, s.db, "INSERT OR IGNORE INTO "+table+" (key) SELECT unhex(value) FROM json_each(?)")
	if err != nil {
		return err
	}
	for lo := 0; lo < len(ids); lo += idChunk {
		chunk := ids[lo:min(lo+idChunk, len(ids))]
		keys := keyArray(chunk, nil)
		if _, err := stmt.ExecContext(ctx, keys); err != nil {
			return err
		}
	}
	return nil
}

// idExpireEvery is how often generations are started and dropped.
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
			if err := s.rotate(context.Background(), time.Now()); err != nil {
				s.log.Warn("queue: rotating producer-id generations failed", "error", err)
			}
			s.dropLegacyWhenEmpty()
		}
	}
}

// dropLegacyWhenEmpty stops consulting the older versions' bucket once
// its ids have all expired.
func (s *sqliteIDs) dropLegacyWhenEmpty() {
	kv := s.legacyBucket()
	if kv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := kv.Status(ctx)
	if err != nil || st.Values() > 0 {
		return
	}
	s.mu.Lock()
	s.legacy = nil
	s.mu.Unlock()
}

func (s *sqliteIDs) close() error {
	close(s.stop)
	<-s.done
	<-s.cdone
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
	var kv jetstream.KeyValue
	err := q.whileStarting(ctx, "bucket "+bucket, func(ctx context.Context) error {
		var err error
		kv, err = q.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:   bucket,
			TTL:      q.opts.DedupWindow,
			Storage:  jetstream.FileStorage,
			History:  1,
			Replicas: q.replicas(),
		})
		return err
	})
	if err != nil {
		return fmt.Errorf("queue: create id bucket: %w", q.replicaError("bucket "+bucket, err))
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
