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
// two instances never both take one) with a lease, the instance publishes
// it within the lease and then forgets it, but only while the claim is
// still its own. What it could not publish goes back at once; a claim left
// by an instance that died is due again when its lease ends (so a message
// may be published twice, never lost). Leases use the Redis server's clock.
const (
	delayMoveInterval = 200 * time.Millisecond
	delayBatch        = 256
	delayLease        = 30 * time.Second
	delayRounds       = 16
	// delayMargin is the part of a lease kept free: publishing stops when
	// less is left.
	delayMargin = 5 * time.Second
)

// claimDue moves up to ARGV[2] ids due by the server's clock from KEYS[1]
// (due) to KEYS[2] (claimed, scored by the lease end: now + ARGV[1] ms) and
// returns the lease end followed by the ids.
var claimDue = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = now + tonumber(ARGV[1])
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(ids) do
  redis.call('ZADD', KEYS[2], lease, id)
  redis.call('ZREM', KEYS[1], id)
end
table.insert(ids, 1, tostring(lease))
return ids
`)

// expireClaims moves up to ARGV[1] claims whose lease ended by the
// server's clock from KEYS[2] back to KEYS[1] (due now), returning how many.
var expireClaims = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, id in ipairs(ids) do
  redis.call('ZADD', KEYS[1], now, id)
  redis.call('ZREM', KEYS[2], id)
end
return #ids
`)

// settleClaims ends this instance's claims (lease end ARGV[1]) on the ids
// ARGV[3..]: ARGV[2] "done" forgets them and their bodies (KEYS[3]),
// "back" makes them due again now. A claim that is no longer ours (its
// lease ended and another instance took it) is left alone.
var settleClaims = redis.NewScript(`
local n = 0
for i = 3, #ARGV do
  local id = ARGV[i]
  if redis.call('ZSCORE', KEYS[2], id) == ARGV[1] then
    redis.call('ZREM', KEYS[2], id)
    if ARGV[2] == 'done' then
      redis.call('HDEL', KEYS[3], id)
    else
      local t = redis.call('TIME')
      redis.call('ZADD', KEYS[1], tonumber(t[1]) * 1000, id)
    end
    n = n + 1
  end
end
return n
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

// moveDue publishes the delayed messages that are due, up to delayRounds
// batches a run, and stops early when the queue closes. ctx runs for a
// lease, not for one move interval: a claimed batch must be published and
// settled in one go.
func (q *Redis) moveDue(ctx context.Context) {
	dueKey, claimedKey, bodies := q.delayKeys()
	keys := []string{dueKey, claimedKey, bodies}
	if n, err := expireClaims.Run(ctx, q.client, keys[:2], delayBatch).Int(); err != nil {
		q.log.Warn("delayed messages: checking claims failed", "error", err)
	} else if n > 0 {
		q.log.Warn("delayed messages claimed by an instance that stopped are due again", "count", n)
	}
	for range delayRounds {
		select {
		case <-q.done:
			return
		default:
		}
		res, err := claimDue.Run(ctx, q.client, keys[:2], delayLease.Milliseconds(), delayBatch).StringSlice()
		if err != nil || len(res) == 0 {
			q.log.Warn("delayed messages: claiming due ones failed", "error", err)
			return
		}
		lease, ids := res[0], res[1:]
		if len(ids) == 0 {
			return
		}
		n := q.publishClaimed(ctx, keys, lease, ids)
		if n < len(ids) || len(ids) < delayBatch {
			return
		}
	}
}

// publishClaimed publishes one claimed batch within its lease and settles
// the claims; it returns how many were published.
func (q *Redis) publishClaimed(ctx context.Context, keys []string, lease string, ids []string) int {
	// Publishing must end well within the lease, which the server's clock
	// started just now.
	pctx, cancel := context.WithTimeout(ctx, delayLease-delayMargin)
	defer cancel()
	vals, err := q.client.HMGet(pctx, keys[2], ids...).Result()
	if err != nil {
		q.log.Warn("delayed messages: reading due ones failed", "error", err)
		q.settle(ctx, keys, lease, "back", ids)
		return 0
	}
	var done, back []string
	for i, v := range vals {
		if pctx.Err() != nil {
			back = append(back, ids[i])
			continue
		}
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
		m.SetContext(pctx)
		// Through the publisher itself: the queue may be closing, and what
		// is claimed must still go out.
		if err := q.pub.Publish(q.key(dm.Topic), m); err != nil {
			q.log.Warn("delayed message: publish failed; it is due again at once", "id", ids[i], "error", err)
			back = append(back, ids[i])
			continue
		}
		_ = q.remember(q.key(dm.Topic))
		done = append(done, ids[i])
	}
	q.settle(ctx, keys, lease, "done", done)
	q.settle(ctx, keys, lease, "back", back)
	return len(done)
}

func (q *Redis) settle(ctx context.Context, keys []string, lease, how string, ids []string) {
	if len(ids) == 0 {
		return
	}
	args := make([]any, 0, len(ids)+2)
	args = append(args, lease, how)
	for _, id := range ids {
		args = append(args, id)
	}
	if err := settleClaims.Run(ctx, q.client, keys, args...).Err(); err != nil {
		q.log.Warn("delayed messages: settling claims failed; they are due again when the lease ends", "error", err)
	}
}

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
