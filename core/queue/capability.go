package queue

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
)

// Optional capabilities. Like Watermill's message.SubscribeInitializer,
// each is a small interface of its own that a caller discovers by type
// assertion on a Queue (never by asserting a concrete driver), so a driver
// that lacks one simply does not implement it.
//
//	driver      Delayer  BacklogReporter  GroupLister  TopicRetirer
//	memory      -        yes              -            yes
//	embedded    yes      yes              yes          yes
//	nats        -        yes              yes          yes
//	redis       yes      yes              -            yes
//	postgres    yes      yes              -            yes
//
// HealthChecker (unavailable.go, for /readyz) is implemented by embedded
// and nats.
//
// The drivers without Delayer honour MetaNackDelay natively instead
// (Features.DelayedNack): every driver has one of the two ways to hold a
// retry back. The engine prefers a Delayer: it keeps waiting retries on
// disk, where JetStream's delayed nacks keep them in the server's memory.

// Delayer is implemented by drivers that hold messages back until a due
// time themselves, durably and without cycling them through a topic. The
// engine publishes retries with PublishAt when the driver has no delayed
// nacks.
type Delayer interface {
	// PublishAt stores msgs now (durably, as Publish does) and publishes
	// them to topic once due, no sooner and at most a moment later (the
	// drivers move due messages a few times a second). A due time in the
	// past publishes at the next move. A message may be published twice
	// after a crash, never lost.
	PublishAt(topic string, due time.Time, msgs ...*message.Message) error
}

// Orderer is implemented by drivers that can hand out a topic's messages
// one at a time, in the order they were published, across every
// subscriber of a group (also in other processes): the queue side of
// per-key ordering (sinkopts.Ordering). Today the JetStream drivers
// (embedded and nats).
type Orderer interface {
	// OrderedSubscriber returns a Subscriber of the named group whose
	// subscriptions hand out one message of a topic at a time, across all
	// subscribers of the group: the next message (in publish order) only
	// once the one before was acknowledged. A nacked message, with or
	// without MetaNackDelay, stays at the head and is redelivered before
	// any later one; so is one whose subscriber closed, crashed or was
	// killed before it settled it (after the driver's ack deadline). A
	// group must be read either ordered or not, by every subscriber.
	OrderedSubscriber(group string) (message.Subscriber, error)
}

// BacklogReporter is implemented by drivers that can tell their backlog;
// core/metrics exports it as hookbus_queue_pending and
// hookbus_queue_unacked.
type BacklogReporter interface {
	// Backlog reports, for every consumer group and topic this process
	// has subscribed or initialised, how many messages wait for the group
	// (Pending) and how many it holds unacknowledged (Unacked). It is
	// safe to call concurrently with traffic; the figures are a snapshot.
	Backlog(ctx context.Context) ([]Backlog, error)
}

// GroupLister is implemented by drivers whose consumer groups are objects
// on the broker that outlive the configuration that made them (JetStream's
// durable consumers). Under interest retention such a group keeps every
// message it has not acknowledged, so groups no pipeline or sink uses any
// more must be found and deleted.
type GroupLister interface {
	// StaleGroups lists the groups in this queue's namespace that no
	// subscription of this process uses. Call it once every subscription
	// is open: a group not yet subscribed is reported as stale.
	StaleGroups(ctx context.Context) ([]StaleGroup, error)
	// DropGroup deletes a group StaleGroups reported; the messages only
	// it held are discarded.
	DropGroup(ctx context.Context, g StaleGroup) error
}

// TopicRetirer is implemented by drivers that can empty a topic hookbus no
// longer uses and then remove it.
type TopicRetirer interface {
	// Retire hands every message group has not acknowledged on topic to
	// fn, one at a time, and acknowledges each once fn returns nil. When
	// nothing is left for the group it deletes the group and, if no other
	// group reads the topic, the topic (or whatever the driver keeps for
	// it), and returns how many messages fn took.
	//
	// An error from fn stops Retire at once: that message is nacked and
	// stays queued, with everything after it, for the next Retire, which
	// also gets the error's count of messages already handled again only
	// if their acks were lost (at-least-once). A topic or group that does
	// not exist has nothing to retire: (0, nil), and Retire creates
	// neither. Messages published to the topic while Retire runs may be
	// retired with the rest or not; nothing should publish to a retired
	// topic.
	Retire(ctx context.Context, group, topic string, fn func(*message.Message) error) (int, error)
}

// RetryGroup is the consumer group the engine read RetryTopic(sink) with
// while it pumped retries through retry topics.
func RetryGroup(sink string) string { return "retry-" + sink }

// ErrCannotRetire is returned by DrainRetryTopic for a Queue that does not
// implement TopicRetirer.
var ErrCannotRetire = errors.New("queue: the driver cannot drain and remove a topic")

// DrainRetryTopic moves what versions of hookbus that pumped retries
// through retry topics left on RetryTopic(sink): it hands every message to
// fn (which republishes it, typically to SinkTopic(sink) or with
// Delayer.PublishAt at its due time, and returns nil once that is durable),
// acknowledges it after fn succeeded, returns when the topic is empty, and
// then removes the retry topic where the driver can (on JetStream the
// retry stream too, once no sink's retry group is left on it). It returns
// how many messages were drained. Run it once at startup, before
// GroupLister.StaleGroups (which would report the old retry group as stale
// and delete it with its messages), and before the sinks' handlers start,
// so a drained retry is handled like any other message of the sink.
//
// fn gets each message as the driver delivers it, with the metadata the
// engine set when it queued the retry (MetaDueAt, MetaRetryAttempt), plus
// MetaAttempt and MetaDeliveries of this read, which fn should not carry
// over. A failing fn stops the drain with its error (see TopicRetirer);
// running it again resumes.
func DrainRetryTopic(ctx context.Context, q Queue, sink string, fn func(*message.Message) error) (int, error) {
	r, ok := q.(TopicRetirer)
	if !ok {
		return 0, ErrCannotRetire
	}
	n, err := r.Retire(ctx, RetryGroup(sink), RetryTopic(sink), fn)
	if err != nil {
		return n, fmt.Errorf("queue: drain retry topic of sink %q: %w", sink, err)
	}
	return n, nil
}

// groupLeft reports how many messages a group has not acknowledged on a
// topic (queued or in flight); exists is false when the topic or the group
// does not exist, and then nothing is created.
type groupLeft func(ctx context.Context) (left uint64, exists bool, err error)

// leftByBacklog is the groupLeft of drivers that read one group's backlog
// figures (figures: exists false when the topic or the group does not).
func leftByBacklog(figures func(ctx context.Context, group, topic string) (Backlog, bool, error), group, topic string) groupLeft {
	return func(ctx context.Context) (uint64, bool, error) {
		b, exists, err := figures(ctx, group, topic)
		return b.Pending + b.Unacked, exists, err
	}
}

// drainPoll is how often a drain checks whether its group is done.
const drainPoll = 50 * time.Millisecond

// drainGroup is Retire's first half for the drivers whose brokers count a
// group's unacknowledged messages: it reads group's messages on topic
// through an ordinary subscription of q (so they arrive as they would to a
// handler) and hands them to fn until left reports none. A message handed
// out counts as unacknowledged until its ack reaches the broker, so none
// is left out by stopping on zero.
func drainGroup(ctx context.Context, q Queue, group, topic string, left groupLeft, fn func(*message.Message) error) (n int, exists bool, err error) {
	k, exists, err := left(ctx)
	if err != nil || !exists || k == 0 {
		return 0, exists, err
	}
	sub, err := q.Subscriber(group, 1)
	if err != nil {
		return 0, true, err
	}
	defer sub.Close()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := sub.Subscribe(sctx, topic)
	if err != nil {
		return 0, true, err
	}
	poll := time.NewTicker(drainPoll)
	defer poll.Stop()
	for {
		select {
		case m, ok := <-ch:
			if !ok {
				if ctx.Err() != nil {
					return n, true, ctx.Err()
				}
				return n, true, errClosed
			}
			if err := fn(m); err != nil {
				m.Nack()
				return n, true, err
			}
			m.Ack()
			n++
		case <-poll.C:
			k, _, err := left(ctx)
			if err != nil {
				return n, true, err
			}
			if k == 0 {
				return n, true, nil
			}
		case <-ctx.Done():
			return n, true, ctx.Err()
		}
	}
}

// Interface guards.
var (
	_ Queue           = (*Memory)(nil)
	_ Queue           = (*JetStream)(nil)
	_ Queue           = (*Redis)(nil)
	_ Queue           = (*Postgres)(nil)
	_ BacklogReporter = (*Memory)(nil)
	_ BacklogReporter = (*JetStream)(nil)
	_ BacklogReporter = (*Redis)(nil)
	_ BacklogReporter = (*Postgres)(nil)
	_ GroupLister     = (*JetStream)(nil)
	_ Orderer         = (*JetStream)(nil)
	_ Delayer         = (*Redis)(nil)
	_ Delayer         = (*Postgres)(nil)
	_ TopicRetirer    = (*Memory)(nil)
	_ TopicRetirer    = (*JetStream)(nil)
	_ TopicRetirer    = (*Redis)(nil)
	_ TopicRetirer    = (*Postgres)(nil)
)
