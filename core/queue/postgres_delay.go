package queue

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
)

// Delayed messages on PostgreSQL wait in the table <namespace>_delayed,
// indexed by due time. Every instance moves due ones a few times a second:
// one transaction deletes a batch (FOR UPDATE SKIP LOCKED, so instances
// never take the same rows) and inserts it into the topics' tables, so a
// message is moved exactly once or not at all.
const (
	pgDelayMoveInterval = 250 * time.Millisecond
	// pgDelayMoveTimeout bounds one run, longer than an interval so a
	// batch's transaction is not cut short.
	pgDelayMoveTimeout = 10 * time.Second
)

func (q *Postgres) delayTable() string { return pgIdent(q.opts.Namespace + "_delayed") }

// ensureDelayed creates the delayed table and its index unless they exist.
func (q *Postgres) ensureDelayed(ctx context.Context) error {
	if q.delayReady.Load() {
		return nil
	}
	t, idx := q.delayTable(), pgIdent(q.opts.Namespace+"_delayed_due")
	if err := q.ensureSchema(ctx, "delayed table", []string{t, idx},
		`CREATE TABLE IF NOT EXISTS `+t+` (
				id TEXT PRIMARY KEY,
				topic TEXT NOT NULL,
				due_at TIMESTAMPTZ NOT NULL,
				payload BYTEA NOT NULL,
				metadata JSONB NOT NULL
			)`,
		`CREATE INDEX IF NOT EXISTS `+idx+` ON `+t+` (due_at)`,
	); err != nil {
		return err
	}
	q.delayReady.Store(true)
	return nil
}

// PublishAt implements Delayer: the messages are stored now and published
// to topic once due.
func (q *Postgres) PublishAt(topic string, due time.Time, msgs ...*message.Message) error {
	st, err := sqlTopic(topic)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := q.ensure(ctx, st); err != nil {
		return err
	}
	if err := q.ensureDelayed(ctx); err != nil {
		return err
	}
	tx, err := q.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("queue: store delayed messages for %s: %w", topic, err)
	}
	defer tx.Rollback()
	for _, m := range msgs {
		md, err := json.Marshal(m.Metadata)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO `+q.delayTable()+` (id, topic, due_at, payload, metadata) VALUES ($1, $2, $3, $4, $5)`,
			m.UUID, st, due, m.Payload, md); err != nil {
			return fmt.Errorf("queue: store delayed messages for %s: %w", topic, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("queue: store delayed messages for %s: %w", topic, err)
	}
	return nil
}

// moveDue publishes the delayed messages that are due, a batch per
// transaction.
func (q *Postgres) moveDue(ctx context.Context) {
	if err := q.ensureDelayed(ctx); err != nil {
		q.log.Warn("delayed messages", "error", err)
		return
	}
	for range 16 {
		select {
		case <-q.done:
			return
		default:
		}
		n, err := q.moveBatch(ctx, 256)
		if err != nil {
			q.log.Warn("delayed messages: moving due ones failed; they stay until the next try", "error", err)
			return
		}
		if n < 256 {
			return
		}
	}
}

// moveBatch moves up to limit due messages in one transaction. The topics'
// tables must exist before it takes row locks (creating them waits for a
// lock other instances may hold while they wait for this table), so a
// batch with a topic not yet set up here is rolled back, the topic set up,
// and the batch left for the next run.
func (q *Postgres) moveBatch(ctx context.Context, limit int) (int, error) {
	tx, err := q.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	t := q.delayTable()
	rows, err := tx.QueryContext(ctx, `DELETE FROM `+t+` WHERE id IN (
		SELECT id FROM `+t+` WHERE due_at <= now() ORDER BY due_at LIMIT $1 FOR UPDATE SKIP LOCKED
	) RETURNING id, topic, payload, metadata`, limit)
	if err != nil {
		return 0, err
	}
	byTopic := map[string][]*message.Message{}
	var order []string
	n := 0
	for rows.Next() {
		var id, topic string
		var payload, md []byte
		if err := rows.Scan(&id, &topic, &payload, &md); err != nil {
			rows.Close()
			return 0, err
		}
		m := message.NewMessage(id, payload)
		if err := json.Unmarshal(md, &m.Metadata); err != nil {
			rows.Close()
			return 0, fmt.Errorf("delayed message %s: metadata: %w", id, err)
		}
		if _, ok := byTopic[topic]; !ok {
			order = append(order, topic)
		}
		byTopic[topic] = append(byTopic[topic], m)
		n++
	}
	if err := rows.Close(); err != nil {
		return 0, err
	}
	if err := rows.Err(); err != nil {
		return 0, err
	}
	var missing []string
	for _, topic := range order {
		if _, ok := q.ready.Load(topic); !ok {
			missing = append(missing, topic)
		}
	}
	if len(missing) > 0 {
		if err := tx.Rollback(); err != nil {
			return 0, err
		}
		for _, topic := range missing {
			if err := q.ensure(ctx, topic); err != nil {
				return 0, err
			}
		}
		return limit, nil // run again: the batch is still due
	}
	for _, topic := range order {
		ins, err := q.schema.InsertQuery(topic, byTopic[topic])
		if err != nil {
			return 0, err
		}
		if _, err := tx.ExecContext(ctx, ins.Query, ins.Args...); err != nil {
			return 0, err
		}
	}
	return n, tx.Commit()
}

// Delayed counts the messages waiting to be due.
func (q *Postgres) Delayed(ctx context.Context) (int64, error) {
	if err := q.ensureDelayed(ctx); err != nil {
		return 0, err
	}
	var n int64
	err := q.db.QueryRowContext(ctx, `SELECT count(*) FROM `+q.delayTable()).Scan(&n)
	return n, err
}

var _ Delayer = (*Postgres)(nil)
