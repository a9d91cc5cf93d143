package queue

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/ThreeDotsLabs/watermill/message"
)

// Backlog implements BacklogReporter for the groups this process
// subscribed or initialised. Pending counts the rows after the group's
// acknowledged position but the one in flight; Unacked is 1 while a
// consumer of the group (of any process) holds one: it keeps the group's
// position row locked until the ack. A consumer polling holds the lock
// for a moment too, which may show as one unacked message.
func (q *Postgres) Backlog(ctx context.Context) ([]Backlog, error) {
	return q.groups.backlog(ctx, q.groupBacklog)
}

// groupBacklog reads one group's figures; exists is false when the
// topic's tables or the group's position do not exist.
func (q *Postgres) groupBacklog(ctx context.Context, group, topic string) (b Backlog, exists bool, err error) {
	b = Backlog{Group: group, Topic: topic}
	st, err := sqlTopic(topic)
	if err != nil {
		return b, false, err
	}
	msgs, offs := q.schema.MessagesTable(st), q.offsets.MessagesOffsetsTable(st)
	if err := q.db.QueryRowContext(ctx, `SELECT to_regclass($1) IS NOT NULL AND to_regclass($2) IS NOT NULL`, msgs, offs).Scan(&exists); err != nil {
		return b, false, fmt.Errorf("queue: tables of %s: %w", topic, err)
	}
	if !exists {
		return b, false, nil
	}
	var txid string
	var acked int64
	err = q.db.QueryRowContext(ctx, `SELECT last_processed_transaction_id::text, coalesce(offset_acked, 0) FROM `+offs+` WHERE consumer_group = $1`,
		q.opts.Namespace+"."+group).Scan(&txid, &acked)
	if errors.Is(err, sql.ErrNoRows) {
		return b, false, nil
	}
	if err != nil {
		return b, false, fmt.Errorf("queue: position of group %s on %s: %w", group, topic, err)
	}
	// The order watermill-sql reads in: (transaction_id, offset).
	if err := q.db.QueryRowContext(ctx, `SELECT count(*) FROM `+msgs+`
		WHERE ("transaction_id" = $1::xid8 AND "offset" > $2) OR "transaction_id" > $1::xid8`, txid, acked).Scan(&b.Pending); err != nil {
		return b, true, fmt.Errorf("queue: backlog of group %s on %s: %w", group, topic, err)
	}
	if b.Pending > 0 {
		// FOR KEY SHARE conflicts with the consumer's FOR UPDATE only, and
		// SKIP LOCKED makes a held position read as no row.
		var one int
		err := q.db.QueryRowContext(ctx, `SELECT 1 FROM `+offs+` WHERE consumer_group = $1 FOR KEY SHARE SKIP LOCKED`, q.opts.Namespace+"."+group).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			b.Pending, b.Unacked = b.Pending-1, 1
		} else if err != nil {
			return b, true, fmt.Errorf("queue: backlog of group %s on %s: %w", group, topic, err)
		}
	}
	return b, true, nil
}

// Retire implements TopicRetirer: it drains the group, deletes its
// position and delivery count and, when no other group is left on the
// topic, drops the topic's tables.
func (q *Postgres) Retire(ctx context.Context, group, topic string, fn func(*message.Message) error) (int, error) {
	n, exists, err := drainGroup(ctx, q, group, topic, leftByBacklog(q.groupBacklog, group, topic), fn)
	if err != nil || !exists {
		return n, err
	}
	st, _ := sqlTopic(topic) // checked by groupBacklog
	g := q.opts.Namespace + "." + group
	offs := q.offsets.MessagesOffsetsTable(st)
	if _, err := q.db.ExecContext(ctx, `DELETE FROM `+offs+` WHERE consumer_group = $1`, g); err != nil {
		return n, fmt.Errorf("queue: delete group %s on %s: %w", group, topic, err)
	}
	if _, err := q.db.ExecContext(ctx, `DELETE FROM `+q.deliveriesTable()+` WHERE grp = $1 AND topic = $2`, g, st); err != nil {
		return n, fmt.Errorf("queue: delete delivery count of group %s on %s: %w", group, topic, err)
	}
	q.groups.forget(group, topic)
	return n, q.dropTopic(ctx, st)
}

// dropTopic drops a topic's tables unless a group still has a position
// in it.
func (q *Postgres) dropTopic(ctx context.Context, st string) error {
	tx, err := q.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("queue: drop tables of %s: %w", st, err)
	}
	defer tx.Rollback()
	offs := q.offsets.MessagesOffsetsTable(st)
	var others bool
	for _, stmt := range []string{`SELECT pg_advisory_xact_lock(hashtext('hookbus queue schema'))`, `LOCK TABLE ` + offs} {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("queue: drop tables of %s: %w", st, err)
		}
	}
	if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM `+offs+`)`).Scan(&others); err != nil {
		return fmt.Errorf("queue: drop tables of %s: %w", st, err)
	}
	if others {
		return nil
	}
	if _, err := tx.ExecContext(ctx, `DROP TABLE `+q.schema.MessagesTable(st)+`, `+offs); err != nil {
		return fmt.Errorf("queue: drop tables of %s: %w", st, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("queue: drop tables of %s: %w", st, err)
	}
	q.ready.Delete(st)
	q.mu.Lock()
	delete(q.topics, st)
	q.mu.Unlock()
	return nil
}
