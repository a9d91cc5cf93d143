package queue

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
)

// Backlog implements BacklogReporter for the groups this process
// subscribed or initialised: Pending is the group's lag (entries not yet
// read by it), Unacked its pending entries list (read and not
// acknowledged, also by consumers of other processes).
func (q *Redis) Backlog(ctx context.Context) ([]Backlog, error) {
	return q.groups.backlog(ctx, q.groupBacklog)
}

// groupBacklog reads one group's figures; exists is false when the stream
// or the group does not exist.
func (q *Redis) groupBacklog(ctx context.Context, group, topic string) (b Backlog, exists bool, err error) {
	b = Backlog{Group: group, Topic: topic}
	key := q.key(topic)
	groups, err := q.client.XInfoGroups(ctx, key).Result()
	if err != nil {
		if strings.Contains(err.Error(), "no such key") {
			return b, false, nil
		}
		return b, false, fmt.Errorf("queue: groups of %s: %w", key, err)
	}
	i := slices.IndexFunc(groups, func(g redis.XInfoGroup) bool { return g.Name == q.group(group) })
	if i < 0 {
		return b, false, nil
	}
	g := groups[i]
	b.Unacked = uint64(max(g.Pending, 0))
	switch {
	case g.Lag >= 0:
		b.Pending = uint64(g.Lag)
	default:
		// Redis cannot tell the lag (entries were deleted in between):
		// count what follows the group's last delivered entry.
		n, err := q.client.XRangeN(ctx, key, "("+g.LastDeliveredID, "+", 10000).Result()
		if err != nil {
			return b, true, fmt.Errorf("queue: entries of %s: %w", key, err)
		}
		b.Pending = uint64(len(n))
	}
	return b, true, nil
}

// Retire implements TopicRetirer: it drains the group, destroys it and,
// when no other group is left on the stream, deletes the stream.
func (q *Redis) Retire(ctx context.Context, group, topic string, fn func(*message.Message) error) (int, error) {
	n, exists, err := drainGroup(ctx, q, group, topic, leftByBacklog(q.groupBacklog, group, topic), fn)
	if err != nil || !exists {
		return n, err
	}
	key := q.key(topic)
	if err := q.client.XGroupDestroy(ctx, key, q.group(group)).Err(); err != nil {
		return n, fmt.Errorf("queue: destroy group %s on %s: %w", q.group(group), key, err)
	}
	q.groups.forget(group, topic)
	groups, err := q.client.XInfoGroups(ctx, key).Result()
	if err != nil {
		return n, fmt.Errorf("queue: groups of %s: %w", key, err)
	}
	if len(groups) > 0 {
		return n, nil
	}
	if err := q.client.Del(ctx, key).Err(); err != nil {
		return n, fmt.Errorf("queue: delete %s: %w", key, err)
	}
	q.mu.Lock()
	delete(q.topics, key)
	q.mu.Unlock()
	return n, nil
}
