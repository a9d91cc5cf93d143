package queue

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
)

// Delayed messages on Redis wait in a sorted set scored by their due time,
// with their bodies in a hash. Every instance moves due ones to their
// topics a few times a second: a Lua script claims a batch atomically (so
// two instances never both take one), the instance publishes it and then
// forgets it. A claim lasts delayLease; one whose instance died before
// forgetting it becomes due again (published twice at worst, never lost).
const (
	delayMoveInterval = 200 * time.Millisecond
	delayBatch        = 256
	delayLease        = 30 * time.Second
	delayRounds       = 16
)

// claimDue moves up to ARGV[3] ids due by ARGV[1] from KEYS[1] (due) to
// KEYS[2] (claimed, scored by the lease end ARGV[2]) and returns them.
var claimDue = redis.NewScript(`
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do
  redis.call('ZADD', KEYS[2], ARGV[2], id)
  redis.call('ZREM', KEYS[1], id)
end
return ids
`)

// expireClaims moves up to ARGV[2] claims whose lease ended by ARGV[1] back
// to KEYS[1] (due now) and returns how many.
var expireClaims = redis.NewScript(`
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(ids) do
  redis.call('ZADD', KEYS[1], ARGV[1], id)
  redis.call('ZREM', KEYS[2], id)
end
return #ids
`)

type delayedMessage struct {
	Topic    string            `json:"t"`
	UUID     string            `json:"u"`
	Payload  []byte            `json:"p"`
	Metadata map[string]string `json:"m,omitempty"`
}

func (q *Redis) delayKeys() (due, claimed, bodies string) {
	ns := q.opts.Namespace
	return ns + ":delay:due", ns + ":delay:claimed", ns + ":delay:msg"
}

// PublishAt implements Delayer: the messages are stored now and published
// to topic once due.
func (q *Redis) PublishAt(topic string, due time.Time, msgs ...*message.Message) error {
	if err := q.remember(q.key(topic)); err != nil {
		return err
	}
	dueKey, _, bodies := q.delayKeys()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := q.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for _, m := range msgs {
			b, err := json.Marshal(delayedMessage{Topic: topic, UUID: m.UUID, Payload: m.Payload, Metadata: m.Metadata})
			if err != nil {
				return err
			}
			p.HSet(ctx, bodies, m.UUID, b)
			p.ZAdd(ctx, dueKey, redis.Z{Score: float64(due.UnixMilli()), Member: m.UUID})
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("queue: store delayed messages for %s: %w", topic, err)
	}
	return nil
}

// moveDue publishes the delayed messages that are due. It takes up to
// delayRounds batches a run, with its own deadline: a claimed batch must be
// published and forgotten in one go, or it is published again after its
// lease.
func (q *Redis) moveDue(context.Context) {
	ctx, cancel := context.WithTimeout(context.Background(), delayLease/3)
	defer cancel()
	dueKey, claimedKey, bodies := q.delayKeys()
	keys := []string{dueKey, claimedKey}
	now := time.Now()
	if n, err := expireClaims.Run(ctx, q.client, keys, now.UnixMilli(), delayBatch).Int(); err != nil {
		q.log.Warn("delayed messages: checking claims failed", "error", err)
	} else if n > 0 {
		q.log.Warn("delayed messages claimed by an instance that stopped are due again", "count", n)
	}
	for range delayRounds {
		ids, err := claimDue.Run(ctx, q.client, keys, now.UnixMilli(), now.Add(delayLease).UnixMilli(), delayBatch).StringSlice()
		if err != nil {
			q.log.Warn("delayed messages: claiming due ones failed", "error", err)
			return
		}
		if len(ids) == 0 {
			return
		}
		vals, err := q.client.HMGet(ctx, bodies, ids...).Result()
		if err != nil {
			// Claimed: they come back when the lease ends.
			q.log.Warn("delayed messages: reading due ones failed", "error", err)
			return
		}
		var done []string
		for i, v := range vals {
			s, ok := v.(string)
			var dm delayedMessage
			if !ok || json.Unmarshal([]byte(s), &dm) != nil {
				q.log.Error("delayed message has no readable body; dropping its id", "id", ids[i])
				done = append(done, ids[i])
				continue
			}
			m := message.NewMessage(dm.UUID, dm.Payload)
			if dm.Metadata != nil {
				m.Metadata = dm.Metadata
			}
			if err := q.Publish(dm.Topic, m); err != nil {
				q.log.Warn("delayed message: publish failed; it is due again when its claim ends", "id", ids[i], "error", err)
				continue
			}
			done = append(done, ids[i])
		}
		if len(done) > 0 {
			args := make([]any, len(done))
			for i, id := range done {
				args[i] = id
			}
			if _, err := q.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.ZRem(ctx, claimedKey, args...)
				p.HDel(ctx, bodies, done...)
				return nil
			}); err != nil {
				q.log.Warn("delayed messages: forgetting published ones failed; they may be published again", "error", err)
			}
		}
		if len(ids) < delayBatch {
			return
		}
	}
}

var _ Delayer = (*Redis)(nil)

// Delayed counts the messages waiting to be due (claimed ones included).
func (q *Redis) Delayed(ctx context.Context) (int64, error) {
	dueKey, claimedKey, _ := q.delayKeys()
	var due, claimed *redis.IntCmd
	_, err := q.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		due = p.ZCard(ctx, dueKey)
		claimed = p.ZCard(ctx, claimedKey)
		return nil
	})
	if err != nil {
		return 0, err
	}
	return due.Val() + claimed.Val(), nil
}
