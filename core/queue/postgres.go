package queue

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v3/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
)

// PostgresOptions configure the PostgreSQL driver.
type PostgresOptions struct {
	// URL of the database, e.g.
	// postgres://postgres@127.0.0.1:5432/test?sslmode=disable.
	URL string
	// Namespace prefixes every table and consumer group (default
	// "hookbus"), so several deployments or tests can share one database.
	Namespace string
	Logger    *slog.Logger
	// AckDeadline is how long a delivered message may stay unacknowledged
	// before it is taken back and redelivered (default 30s).
	AckDeadline time.Duration
	// PollInterval is how often an idle subscription queries for new
	// messages (default 250ms): the added latency per queue hop.
	PollInterval time.Duration
	// PruneInterval is how often rows every consumer group has acknowledged
	// are deleted (default 1m, negative disables pruning).
	PruneInterval time.Duration
	// CloseGrace is how long a message handed out when its subscription
	// ends may still be acked or nacked (default DefaultCloseGrace); after
	// it, the message is redelivered.
	CloseGrace time.Duration
}

// Postgres is the PostgreSQL driver (watermill-sql). A topic is the table
// "<namespace>_msg_<topic>" (one row per message), its consumer groups'
// positions live in "<namespace>_off_<topic>", and a hookbus consumer group
// is the group "<namespace>.<group>".
//
// Guarantees and limits:
//   - Publish returns after the INSERT committed: durable with the
//     server's default synchronous_commit=on.
//   - Within a group, messages are processed strictly in order, one at a
//     time, across all processes: a consumer holds its group's position
//     row locked while its message is in flight. maxInFlight is ignored.
//   - A message is visible to consumers only once every older transaction
//     in the database has finished, and an in-flight message keeps its
//     transaction open: a handler that runs long (up to AckDeadline)
//     delays new messages of every topic. Keep handlers short.
//   - A nack redelivers to the same consumer after MetaNackDelay (or at
//     once), blocking the group meanwhile; a crash or AckDeadline redelivers.
//     For waits that must not block the group, PublishAt keeps messages in
//     a table until due (see postgres_delay.go).
//   - MetaAttempt counts redeliveries after nacks within a subscription.
//   - Rows are deleted once every group of the topic acknowledged them; a
//     group that never consumes again keeps the table growing: delete its
//     row from the _off_ table.
//   - No deduplication.
type Postgres struct {
	opts    PostgresOptions
	db      *sql.DB
	pub     *wsql.Publisher
	schema  pgSchema
	offsets wsql.DefaultPostgreSQLOffsetsAdapter
	log     *slog.Logger
	wlog    watermill.LoggerAdapter
	ready   sync.Map // topic -> struct{}: tables exist
	// delayReady: the delayed table exists.
	delayReady atomic.Bool

	mu     sync.Mutex
	topics map[string]struct{}
	groups knownGroups // groups and (sql) topics subscribed, for Backlog
	subs   map[*pgSubscriber]struct{}
	closed bool
	done   chan struct{}
	wg     sync.WaitGroup
}

// NewPostgres opens the database and checks it answers. Tables are created
// per topic on first use.
func NewPostgres(ctx context.Context, o PostgresOptions) (*Postgres, error) {
	ns, err := checkNamespace(o.Namespace)
	if err != nil {
		return nil, err
	}
	o.Namespace = ns
	if o.URL == "" {
		return nil, errors.New("queue.url: required for the postgres driver (postgres://user@host:5432/db)")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.AckDeadline <= 0 {
		o.AckDeadline = 30 * time.Second
	}
	if o.PollInterval <= 0 {
		o.PollInterval = 250 * time.Millisecond
	}
	if o.PruneInterval == 0 {
		o.PruneInterval = time.Minute
	}
	if o.CloseGrace <= 0 {
		o.CloseGrace = DefaultCloseGrace
	}
	db, err := sql.Open("pgx", o.URL)
	if err != nil {
		return nil, fmt.Errorf("queue.url: %w", err)
	}
	db.SetMaxIdleConns(16)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("queue: connect to postgres: %w", err)
	}
	q := &Postgres{
		opts:   o,
		db:     db,
		log:    o.Logger.With("queue", "postgres"),
		topics: map[string]struct{}{},
		subs:   map[*pgSubscriber]struct{}{},
		done:   make(chan struct{}),
	}
	q.wlog = driverLogger(q.log)
	q.schema = pgSchema{wsql.DefaultPostgreSQLSchema{
		GenerateMessagesTableName: func(topic string) string { return pgIdent(ns + "_msg_" + topic) },
		GeneratePayloadType:       func(string) string { return "BYTEA" },
		// One message per transaction: the transaction (and its lock) only
		// lasts as long as one handler, and a crash redelivers one message.
		SubscribeBatchSize: 1,
	}}
	q.offsets = wsql.DefaultPostgreSQLOffsetsAdapter{
		GenerateMessagesOffsetsTableName: func(topic string) string { return pgIdent(ns + "_off_" + topic) },
	}
	q.pub, err = wsql.NewPublisher(db, wsql.PublisherConfig{SchemaAdapter: q.schema}, q.wlog)
	if err != nil {
		db.Close()
		return nil, err
	}
	if err := q.ensureDeliveries(ctx); err != nil {
		db.Close()
		return nil, err
	}
	if o.PruneInterval > 0 {
		q.wg.Add(1)
		go every(&q.wg, q.done, o.PruneInterval, o.PruneInterval, q.prune)
	}
	q.wg.Add(1)
	go every(&q.wg, q.done, pgDelayMoveInterval, pgDelayMoveTimeout, q.moveDue)
	return q, nil
}

// pgSchema is watermill's PostgreSQL schema with a message id column that
// takes ids of any length (hookbus ids are producer-chosen).
type pgSchema struct{ wsql.DefaultPostgreSQLSchema }

// SchemaInitializingQueries implements wsql.SchemaAdapter.
func (s pgSchema) SchemaInitializingQueries(topic string) []wsql.Query {
	return []wsql.Query{{Query: `CREATE TABLE IF NOT EXISTS ` + s.MessagesTable(topic) + ` (
		"offset" BIGSERIAL,
		"uuid" TEXT NOT NULL,
		"created_at" TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
		"payload" BYTEA DEFAULT NULL,
		"metadata" JSON DEFAULT NULL,
		"transaction_id" xid8 NOT NULL,
		PRIMARY KEY ("transaction_id", "offset")
	)`}}
}

// pgIdent quotes a table name; names over PostgreSQL's 63-byte limit are
// shortened with a hash instead of being silently truncated into collisions.
func pgIdent(name string) string {
	if len(name) > 63 {
		sum := sha256.Sum256([]byte(name))
		name = name[:50] + "_" + hex.EncodeToString(sum[:6])
	}
	return `"` + name + `"`
}

var pgTopicRe = regexp.MustCompile(`^[A-Za-z0-9$:._-]+$`)

// sqlTopic maps a hookbus topic to the characters watermill-sql accepts:
// topicSafe escapes with '~', which becomes '$' (never in hookbus topics).
func sqlTopic(topic string) (string, error) {
	t := strings.ReplaceAll(topic, "~", "$")
	if !pgTopicRe.MatchString(t) {
		return "", fmt.Errorf("queue: topic %q: use letters, digits and . _ - ~ :", topic)
	}
	return t, nil
}

// ensure creates the topic's tables once per process. An advisory lock
// serializes creation, since concurrent CREATE TABLE IF NOT EXISTS from
// several instances can fail.
func (q *Postgres) ensure(ctx context.Context, topic string) error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return errClosed
	}
	q.topics[topic] = struct{}{}
	q.mu.Unlock()
	if _, ok := q.ready.Load(topic); ok {
		return nil
	}
	tx, err := q.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("queue: create tables for %s: %w", topic, err)
	}
	defer tx.Rollback()
	queries := append(q.schema.SchemaInitializingQueries(topic), q.offsets.SchemaInitializingQueries(topic)...)
	queries = append([]wsql.Query{{Query: `SELECT pg_advisory_xact_lock(hashtext('hookbus queue schema'))`}}, queries...)
	for _, qq := range queries {
		if _, err := tx.ExecContext(ctx, qq.Query, qq.Args...); err != nil {
			return fmt.Errorf("queue: create tables for %s: %w", topic, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("queue: create tables for %s: %w", topic, err)
	}
	q.ready.Store(topic, struct{}{})
	return nil
}

// Features implements Queue.
func (q *Postgres) Features() Features { return Features{Durable: true, CountsDeliveries: true} }

// The table <namespace>_delivery_counts holds, per group and topic, the
// message being delivered and its deliveries since the last explicit nack:
// the driver redelivers a message after a crash or AckDeadline without
// saying so. A group delivers one message at a time and, after a crash, the
// same one again first, so one row per group and topic is enough: a new
// message replaces it, and nothing is written on ack or nack.
func (q *Postgres) deliveriesTable() string { return pgIdent(q.opts.Namespace + "_delivery_counts") }

func (q *Postgres) ensureDeliveries(ctx context.Context) error {
	t := q.deliveriesTable()
	return q.ensureSchema(ctx, "delivery counts table", []string{t}, `CREATE TABLE IF NOT EXISTS `+t+` (
			grp TEXT NOT NULL,
			topic TEXT NOT NULL,
			uuid TEXT NOT NULL,
			n INTEGER NOT NULL,
			PRIMARY KEY (grp, topic)
		)`)
}

// ensureSchema runs the DDL statements unless every relation named in
// rels exists already. Checking first matters: CREATE INDEX IF NOT EXISTS
// waits for writers of the table even when the index is there. The DDL
// runs in one transaction under the queue's schema lock, so instances
// starting together do not race.
func (q *Postgres) ensureSchema(ctx context.Context, what string, rels []string, ddl ...string) error {
	cond := make([]string, len(rels))
	args := make([]any, len(rels))
	for i, r := range rels {
		cond[i] = fmt.Sprintf("to_regclass($%d) IS NOT NULL", i+1)
		args[i] = r
	}
	var exists bool
	if err := q.db.QueryRowContext(ctx, `SELECT `+strings.Join(cond, " AND "), args...).Scan(&exists); err != nil {
		return fmt.Errorf("queue: check %s: %w", what, err)
	}
	if exists {
		return nil
	}
	tx, err := q.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("queue: create %s: %w", what, err)
	}
	defer tx.Rollback()
	for _, stmt := range append([]string{`SELECT pg_advisory_xact_lock(hashtext('hookbus queue schema'))`}, ddl...) {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("queue: create %s: %w", what, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("queue: create %s: %w", what, err)
	}
	return nil
}

// pgCounter counts deliveries of one subscription in the delivery counts
// table; sql is its one statement.
type pgCounter struct {
	q            *Postgres
	group, topic string
	sql          string
}

func newPGCounter(q *Postgres, group, topic string) pgCounter {
	t := q.deliveriesTable()
	return pgCounter{q: q, group: group, topic: topic, sql: `INSERT INTO ` + t + ` (grp, topic, uuid, n) VALUES ($1, $2, $3, 1)
		ON CONFLICT (grp, topic) DO UPDATE SET uuid = EXCLUDED.uuid,
			n = CASE WHEN ` + t + `.uuid = EXCLUDED.uuid AND NOT $4 THEN ` + t + `.n + 1 ELSE 1 END
		RETURNING n`}
}

func (c pgCounter) deliver(uuid string, afterNack bool) int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var n int
	if err := c.q.db.QueryRowContext(ctx, c.sql, c.group, c.topic, uuid, afterNack).Scan(&n); err != nil {
		c.q.log.Warn("queue: counting a delivery failed", "topic", c.topic, "group", c.group, "err", err)
		return 1
	}
	return n
}

// Provision implements Queue: it creates the topics' tables.
func (q *Postgres) Provision(ctx context.Context, topics []string) error {
	for _, t := range topics {
		st, err := sqlTopic(t)
		if err != nil {
			return err
		}
		if err := q.ensure(ctx, st); err != nil {
			return err
		}
	}
	return nil
}

// Publish implements message.Publisher: one INSERT of all messages,
// committed before it returns.
func (q *Postgres) Publish(topic string, msgs ...*message.Message) error {
	st, err := sqlTopic(topic)
	if err != nil {
		return err
	}
	if err := q.ensure(context.Background(), st); err != nil {
		return err
	}
	if err := q.pub.Publish(st, msgs...); err != nil {
		return fmt.Errorf("queue: publish to %s: %w", topic, err)
	}
	return nil
}

// Subscriber implements Queue. maxInFlight is ignored: a group processes
// one message at a time, in order.
func (q *Postgres) Subscriber(group string, maxInFlight int) (message.Subscriber, error) {
	if group == "" {
		return nil, errors.New("queue: consumer group name is empty")
	}
	g := q.opts.Namespace + "." + group
	if len(g) > 255 {
		return nil, fmt.Errorf("queue: consumer group %q: longer than 255 bytes", group)
	}
	inner, err := wsql.NewSubscriber(q.db, wsql.SubscriberConfig{
		ConsumerGroup:  g,
		AckDeadline:    &q.opts.AckDeadline,
		PollInterval:   q.opts.PollInterval,
		ResendInterval: 50 * time.Millisecond, // MetaNackDelay is honoured by relay
		RetryInterval:  time.Second,
		SchemaAdapter:  q.schema,
		OffsetsAdapter: q.offsets,
	}, q.wlog.With(watermill.LogFields{"group": g}))
	if err != nil {
		return nil, err
	}
	s := &pgSubscriber{q: q, name: group, group: g, inner: inner}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		s.cancel()
		return nil, errClosed
	}
	q.subs[s] = struct{}{}
	return s, nil
}

// Close stops every subscription (their in-flight messages are redelivered
// later) and closes the database pool.
func (q *Postgres) Close() error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return nil
	}
	q.closed = true
	close(q.done)
	subs := make([]*pgSubscriber, 0, len(q.subs))
	for s := range q.subs {
		subs = append(subs, s)
	}
	q.mu.Unlock()
	for _, s := range subs {
		s.Close()
	}
	q.wg.Wait()
	q.pub.Close()
	return q.db.Close()
}

type pgSubscriber struct {
	q         *Postgres
	name      string // the hookbus group
	group     string // the watermill-sql group: namespace and name
	inner     *wsql.Subscriber
	ctx       context.Context // cancelled by Close
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// SubscribeInitialize implements message.SubscribeInitializer: it creates
// the topic's tables and the group's position at the start of the table,
// so the group gets every message the table holds from now on.
func (s *pgSubscriber) SubscribeInitialize(topic string) error {
	st, err := sqlTopic(topic)
	if err != nil {
		return err
	}
	if err := s.q.ensure(s.ctx, st); err != nil {
		return err
	}
	s.q.groups.remember(s.name, topic)
	for _, qq := range s.q.offsets.BeforeSubscribingQueries(st, s.group) {
		if _, err := s.q.db.ExecContext(s.ctx, qq.Query, qq.Args...); err != nil {
			return fmt.Errorf("queue: create group %s on %s: %w", s.group, topic, err)
		}
	}
	return nil
}

// Subscribe implements message.Subscriber. The channel is closed when ctx
// is cancelled or the subscriber is closed.
func (s *pgSubscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	st, err := sqlTopic(topic)
	if err != nil {
		return nil, err
	}
	if err := s.q.ensure(ctx, st); err != nil {
		return nil, err
	}
	s.q.groups.remember(s.name, topic)
	subCtx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(s.ctx, cancel)
	innerCtx, innerCancel := context.WithCancel(context.WithoutCancel(ctx))
	in, err := s.inner.Subscribe(innerCtx, st)
	if err != nil {
		stop()
		cancel()
		innerCancel()
		if errors.Is(err, wsql.ErrSubscriberClosed) {
			return nil, errClosed
		}
		return nil, fmt.Errorf("queue: subscribe %s to %s: %w", s.group, topic, err)
	}
	out := make(chan *message.Message)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		relay(subCtx, in, out, newPGCounter(s.q, s.group, st), s.q.opts.CloseGrace)
		stop()
		cancel()
		close(out)
		time.Sleep(ackGrace)
		innerCancel()
		for range in { // the driver takes back what it had not handed over
		}
	}()
	return out, nil
}

// Close ends every subscription of this subscriber.
func (s *pgSubscriber) Close() error {
	s.closeOnce.Do(func() {
		s.cancel()
		s.wg.Wait()
		s.inner.Close()
		s.q.mu.Lock()
		delete(s.q.subs, s)
		s.q.mu.Unlock()
	})
	return nil
}

// prune deletes, from every topic this process used, the rows that every
// consumer group has acknowledged. Tables without groups keep everything.
func (q *Postgres) prune(ctx context.Context) {
	q.mu.Lock()
	topics := make([]string, 0, len(q.topics))
	for t := range q.topics {
		topics = append(topics, t)
	}
	q.mu.Unlock()
	for _, t := range topics {
		if _, ok := q.ready.Load(t); !ok {
			continue
		}
		// Messages are ordered by (transaction_id, offset); the slowest
		// group's acknowledged position bounds what all have consumed.
		_, err := q.db.ExecContext(ctx, `DELETE FROM `+q.schema.MessagesTable(t)+`
			WHERE ("transaction_id", "offset") <= (
				SELECT last_processed_transaction_id, offset_acked FROM `+q.offsets.MessagesOffsetsTable(t)+`
				ORDER BY last_processed_transaction_id, offset_acked LIMIT 1)`)
		if err != nil && ctx.Err() == nil {
			q.log.Warn("prune acknowledged messages", "topic", t, "err", err)
		}
	}
}
