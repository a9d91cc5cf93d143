// Package queue is the seam between hookbus and its message broker. Every
// driver (embedded NATS JetStream, external NATS, Redis Streams, PostgreSQL,
// in-memory) is a Watermill Publisher plus consumer-group Subscribers, so the
// rest of hookbus never knows which broker runs.
package queue

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/hookbus/hookbus/core/envelope"
)

// Metadata keys hookbus sets on messages.
const (
	// MetaAttempt is set by drivers on every delivered message: how many times
	// this message has been handed to a consumer of its group (1-based).
	MetaAttempt = "hookbus_attempt"
	// MetaDeliveries is set by drivers that can count them (Features.
	// CountsDeliveries): how many times in a row this message has been
	// handed to its group without reaching an outcome, this delivery
	// included (1-based). An explicit ack or nack is an outcome; a
	// delivery cut short by a crash, a kill or an expired ack deadline is
	// not. Handlers dead-letter a message above their limit as poison.
	MetaDeliveries = "hookbus_deliveries"
	// MetaNackDelay may be set by a handler before it nacks a message: the
	// driver redelivers the message no sooner than this Go duration.
	MetaNackDelay = "hookbus_nack_delay"
	// MetaDedupID, when set on a published message, is an idempotency key:
	// drivers that deduplicate drop a second message with the same key
	// within the dedup window.
	MetaDedupID = envelope.DedupID
)

// Queue is a message broker as hookbus uses it.
type Queue interface {
	// Publisher publishes messages; Publish returns only after the broker
	// has durably stored every message (for durable drivers).
	message.Publisher
	// Subscriber returns a Subscriber whose subscriptions belong to the
	// named consumer group: each group gets every message of a topic, and
	// within a group each message goes to one consumer (also across
	// processes for the shared drivers). maxInFlight bounds how many
	// messages of one subscription are unacknowledged at once.
	Subscriber(group string, maxInFlight int) (message.Subscriber, error)
	// Provision creates whatever the broker needs for the topics before
	// traffic flows. Drivers that need nothing return nil.
	Provision(ctx context.Context, topics []string) error
	// Features tells what the driver guarantees.
	Features() Features
}

// Features describes a driver.
type Features struct {
	// Durable: an acknowledged publish survives a crash of the process.
	Durable bool
	// DelayedNack: the driver honours MetaNackDelay natively, so a retry
	// waits inside the broker and never blocks other messages.
	DelayedNack bool
	// Dedup: the driver drops repeated MetaDedupID keys itself.
	Dedup bool
	// CountsDeliveries: the driver sets MetaDeliveries, so a message that
	// never reaches an outcome (it crashes its process every time) can be
	// told apart and dead-lettered as poison.
	CountsDeliveries bool
}

// Topic names. They use only characters every driver accepts; the
// envelope package owns them, so leaf packages (dead-letter replay) name
// the same topics without importing the drivers.
func SourceTopic(source string) string { return envelope.SourceTopic(source) }

// SinkTopic is the topic a sink consumes.
func SinkTopic(sink string) string { return envelope.SinkTopic(sink) }

// DeadLetterTopic receives every dead-lettered message.
const DeadLetterTopic = envelope.DeadLetterTopic

// RetryTopic held retries for drivers with neither DelayedNack nor
// PublishAt (and retries queued by versions before PublishAt). Every driver
// now has one of the two; DrainRetryTopic empties what is left.
func RetryTopic(sink string) string { return envelope.RetryTopic(sink) }

// Attempt reads MetaAttempt of a delivered message (1 when absent).
func Attempt(msg *message.Message) int {
	var n int
	if _, err := fmt.Sscan(msg.Metadata.Get(MetaAttempt), &n); err != nil || n < 1 {
		return 1
	}
	return n
}

// Deliveries reads MetaDeliveries of a delivered message (0 when the
// driver does not count).
func Deliveries(msg *message.Message) int {
	n, ok := MetaInt(msg, MetaDeliveries)
	if !ok || n < 0 {
		return 0
	}
	return int(n)
}

// MetaInt reads an integer metadata value; ok is false when it is absent
// or not a number. An absent key, the common case on the hot path, costs
// no parse (and no error allocation).
func MetaInt(msg *message.Message, key string) (n int64, ok bool) {
	v := msg.Metadata.Get(key)
	if v == "" {
		return 0, false
	}
	n, err := strconv.ParseInt(v, 10, 64)
	return n, err == nil
}

// NackDelay reads MetaNackDelay (0 when absent or invalid).
func NackDelay(msg *message.Message) time.Duration {
	d, err := time.ParseDuration(msg.Metadata.Get(MetaNackDelay))
	if err != nil || d < 0 {
		return 0
	}
	return d
}

// Backlog is one consumer group's position on one topic.
type Backlog struct {
	Group, Topic string
	// Pending counts messages not yet handed to the group.
	Pending uint64
	// Unacked counts messages handed out and not yet acknowledged,
	// including those waiting for a delayed retry.
	Unacked uint64
}

// sortBacklog orders figures by group, then topic, so reports are stable.
func sortBacklog(b []Backlog) {
	slices.SortFunc(b, func(x, y Backlog) int {
		if c := strings.Compare(x.Group, y.Group); c != 0 {
			return c
		}
		return strings.Compare(x.Topic, y.Topic)
	})
}

// every runs fn each interval, with timeout as its deadline, until done is
// closed; it marks wg done when it returns. Drivers use it for
// housekeeping such as trimming acknowledged messages and moving due ones.
func every(wg *sync.WaitGroup, done <-chan struct{}, interval, timeout time.Duration, fn func(context.Context)) {
	defer wg.Done()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			fn(ctx)
			cancel()
		}
	}
}

// knownGroups is the set of groups (and topics) a driver subscribed or
// initialised in this process: the ones its Backlog reports, for drivers
// that cannot list the groups of other processes cheaply. The zero value
// is ready to use.
type knownGroups struct {
	mu sync.Mutex
	m  map[Backlog]struct{}
}

// remember adds a group and topic.
func (g *knownGroups) remember(group, topic string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.m == nil {
		g.m = map[Backlog]struct{}{}
	}
	g.m[Backlog{Group: group, Topic: topic}] = struct{}{}
}

// forget removes a group and topic (the group was retired).
func (g *knownGroups) forget(group, topic string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.m, Backlog{Group: group, Topic: topic})
}

// backlog reads the figures of each group with one, sorted; a group one
// finds gone (exists false) is left out.
func (g *knownGroups) backlog(ctx context.Context, one func(ctx context.Context, group, topic string) (b Backlog, exists bool, err error)) ([]Backlog, error) {
	g.mu.Lock()
	groups := slices.Collect(maps.Keys(g.m))
	g.mu.Unlock()
	var out []Backlog
	for _, b := range groups {
		got, exists, err := one(ctx, b.Group, b.Topic)
		if err != nil {
			return out, err
		}
		if exists {
			out = append(out, got)
		}
	}
	sortBacklog(out)
	return out, nil
}
