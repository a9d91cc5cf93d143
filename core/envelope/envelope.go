// Package envelope names what hookbus puts around an event on the queue:
// the topics it travels on and the metadata keys it carries. It is a leaf
// (standard library only), so the engine, the queue drivers and the
// domain packages (dead letters) agree on the wire format without
// importing each other.
//
// The keys are part of the queued data: messages written by one version
// are read by the next, so a key's value never changes.
package envelope

import (
	"fmt"
	"strings"
)

// Metadata keys on queued messages.
const (
	// ReceivedAt is when the event was ingested, in unix nanoseconds.
	ReceivedAt = "hookbus_received_at"
	// Pipeline is the pipeline that routed the event.
	Pipeline = "hookbus_pipeline"
	// Sink is the sink the message is for.
	Sink = "hookbus_sink"
	// Source is the source the event came in from.
	Source = "hookbus_source"
	// Reason is why a dead-lettered event could not be delivered.
	Reason = "hookbus_reason"
	// ReasonKind classifies Reason (a deadletter.Kind).
	ReasonKind = "hookbus_reason_kind"
	// Attempts is how many delivery attempts a dead-lettered event had.
	Attempts = "hookbus_attempts"
	// DeadAt is when an event was dead-lettered (RFC 3339, nanoseconds).
	DeadAt = "hookbus_dead_at"
	// ReplayPipeline and ReplaySink mark an event queued on its source
	// topic again (a replayed dead letter, a timed-out step tried again)
	// for one pipeline and one of its sinks only.
	ReplayPipeline = "hookbus_replay_pipeline"
	ReplaySink     = "hookbus_replay_sink"
	// DedupID, when set on a published message, is an idempotency key:
	// queue drivers that deduplicate drop a second message with the same
	// key within their dedup window.
	DedupID = "hookbus_dedup_id"
	// Application and Subscription name the application and the
	// subscription a message of the subscriptions sink is delivered to
	// (one message per event and subscription).
	Application  = "hookbus_application"
	Subscription = "hookbus_subscription"
	// Redelivery names the redelivery (a resend, a recover, a replay)
	// that queued a delivery again; it stays on the delivery's retries.
	// Absent on a delivery's first run. Operational events about a
	// delivery tell one run from the next by it.
	Redelivery = "hookbus_redelivery"
)

// SourceTopic is the topic a source's events are queued on.
func SourceTopic(source string) string { return "hookbus.in." + topicSafe(source) }

// SinkTopic is the topic a sink consumes.
func SinkTopic(sink string) string { return "hookbus.out." + topicSafe(sink) }

// DeliveriesTopic is the second topic of a sink that fans each event out
// to targets of its own (the subscriptions sink): one message per event
// and target, each delivered, retried and dead-lettered on its own. It
// shares SinkTopic's prefix, so every driver keeps it where it keeps the
// sink topics; a sink name cannot contain '.', so it is no sink's topic.
func DeliveriesTopic(sink string) string { return SinkTopic(sink) + ".deliveries" }

// Partitions is how many partition topics an ordered sink has (see
// PartitionTopic). It is fixed: the partition of a key must not change
// while events of that key are queued. 64 is the default max_in_flight,
// so an ordered sink with many keys can have as many deliveries in flight
// as an unordered one, while a key whose event keeps failing holds up
// only 1/64 of the keys.
const Partitions = 64

// PartitionTopic is partition n of an ordered sink: the events of one
// ordering key all go to one of these topics (see Partition), each read
// one message at a time. It shares SinkTopic's prefix, so every driver
// keeps it where it keeps the sink topics, and a sink name cannot contain
// '.', so it is no sink's topic (and no sink's DeliveriesTopic).
func PartitionTopic(sink string, n int) string { return fmt.Sprintf("%s.p%d", SinkTopic(sink), n) }

// PartitionOf tells whether topic is a partition topic, and of which sink
// topic (SinkTopic of the sink) and partition.
func PartitionOf(topic string) (sinkTopic string, n int, ok bool) {
	i := strings.LastIndex(topic, ".p")
	if i < 0 || !strings.HasPrefix(topic, "hookbus.out.") || strings.Count(topic, ".") != 3 {
		return "", 0, false
	}
	if _, err := fmt.Sscanf(topic[i+2:], "%d", &n); err != nil || n < 0 || n >= Partitions || fmt.Sprint(n) != topic[i+2:] {
		return "", 0, false
	}
	return topic[:i], n, true
}

// Partition is the partition of an ordering key: FNV-1a of the key,
// modulo Partitions. Stable across versions and instances.
func Partition(key string) int {
	h := uint32(2166136261)
	for i := 0; i < len(key); i++ {
		h ^= uint32(key[i])
		h *= 16777619
	}
	return int(h % Partitions)
}

// DeadLetterTopic receives every dead-lettered message.
const DeadLetterTopic = "hookbus.dead.all"

// RetryTopic holds retries for drivers with neither delayed nacks nor
// PublishAt (and retries queued by versions before PublishAt).
func RetryTopic(sink string) string { return "hookbus.retry." + topicSafe(sink) }

// topicSafe escapes a name to the characters every driver accepts in a
// topic: letters, digits, '-' and '_'; anything else becomes ~<hex>.
func topicSafe(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		default:
			fmt.Fprintf(&b, "~%x", r)
		}
	}
	return b.String()
}
