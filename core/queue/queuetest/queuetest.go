// Package queuetest is the contract every hookbus queue driver passes:
// Watermill's universal Pub/Sub suite (github.com/ThreeDotsLabs/watermill/
// pubsub/tests) plus what hookbus itself relies on. A driver's test calls
// Run with a factory that opens the driver:
//
//	func TestMemoryContract(t *testing.T) {
//		queuetest.Run(t, func(t *testing.T) queue.Queue {
//			q := queue.NewMemory()
//			t.Cleanup(func() { q.Close() })
//			return q
//		}, queuetest.Features{SingleInstance: true})
//	}
//
// hookbus's contract, one subtest each:
//   - TwoGroups: two consumer groups on one topic each get every message.
//   - RedeliverAfterClose: a message unacknowledged when its subscriber
//     closes goes to the next subscriber of the group.
//   - SettleAfterStop: a message being handled when its subscription's
//     context ends (a router handler stopped, as a reload does) may still
//     be acked, and is then not redelivered; the subscription's channel
//     closes only after that. Drivers take this from their CloseGrace
//     option, so factories should set a short one.
//   - NackAttempt: each nack redelivers with queue.Attempt one higher (and,
//     where Features.CountsDeliveries, queue.Deliveries back at 1).
//   - Deliveries (Features.CountsDeliveries): deliveries without an outcome
//     raise queue.Deliveries; an explicit nack starts it again.
//   - NackDelay: a nack with MetaNackDelay comes back no sooner; where
//     Features.DelayedNack, the wait does not hold up the next message.
//   - PublishAt (queue.Delayer): held back until due and not much longer.
//   - Dedup (Features.Dedup): a repeated MetaDedupID on a source topic is
//     dropped.
//   - Backlog (queue.BacklogReporter): the figures follow what is queued,
//     in flight and acknowledged.
//   - Provision: provisioning topics (twice) leaves them usable.
//   - DrainRetryTopic (queue.TopicRetirer): every message left on a retry
//     topic is handed over once, a failing callback stops the drain
//     without losing its message, and the group is gone afterwards.
//
// A subtest whose capability the driver honestly lacks is skipped with the
// reason. Today: memory and nats have no Delayer (they hold retries with
// delayed nacks); Redis and PostgreSQL have no DelayedNack (they hold
// retries with PublishAt); embedded has both (the engine uses PublishAt);
// only JetStream (embedded and nats) has Dedup.
//
// Every test uses topics of its own, so a driver whose instances share a
// namespace (or one shared instance, Features.SingleInstance) runs them
// side by side; use Namespace for a namespace of the test run on a shared
// server.
package queuetest

import (
	"crypto/rand"
	"encoding/hex"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"

	"github.com/hookbus/hookbus/core/queue"
)

// Factory opens the driver under test. Every call within one Run must
// open a queue on the same broker and namespace (a second process of one
// deployment); the factory closes it when t ends (t.Cleanup).
type Factory func(t *testing.T) queue.Queue

// Features is what the suite cannot ask the driver: what it guarantees
// beyond queue.Features and which capability interfaces it implements.
type Features struct {
	// SingleInstance: the factory is called once per Run and every test
	// shares that queue (the memory queue lives in one process; the
	// embedded server holds its data directory).
	SingleInstance bool
	// GuaranteedOrder and GuaranteedOrderWithSingleSubscriber are the
	// universal suite's flags of the same names.
	GuaranteedOrder                     bool
	GuaranteedOrderWithSingleSubscriber bool
	// UniversalMaxInFlight is the maxInFlight of the universal suite's
	// subscribers (default 64); 1 keeps the order of drivers that read
	// with several readers.
	UniversalMaxInFlight int
	// PrepareRetryTopic, when set, makes what an older version of hookbus
	// had made for retry topics before the drain test publishes to one
	// (JetStream no longer creates its retry stream).
	PrepareRetryTopic func(t *testing.T, q queue.Queue)
}

// Namespace returns a namespace unique to this test run (letters and
// digits, valid for every driver), so runs can share a server.
func Namespace() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "t" + hex.EncodeToString(b)
}

// Run runs the universal suite and hookbus's contract on the driver.
func Run(t *testing.T, newQueue Factory, f Features) {
	t.Helper()
	open := newQueue
	if f.SingleInstance {
		q := newQueue(t)
		open = func(*testing.T) queue.Queue { return q }
	}
	run := suffix()
	t.Run("Universal", func(t *testing.T) { universal(t, open, f, run) })
	c := contract{open: open, f: f, run: run}
	for _, tc := range []struct {
		name string
		fn   func(*testing.T)
	}{
		{"TwoGroups", c.twoGroups},
		{"RedeliverAfterClose", c.redeliverAfterClose},
		{"SettleAfterStop", c.settleAfterStop},
		{"NackAttempt", c.nackAttempt},
		{"Deliveries", c.deliveries},
		{"NackDelay", c.nackDelay},
		{"PublishAt", c.publishAt},
		{"Dedup", c.dedup},
		{"Backlog", c.backlog},
		{"Provision", c.provision},
		{"DrainRetryTopic", c.drainRetryTopic},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t)
		})
	}
}

func suffix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// universal runs Watermill's suite in short mode, as a busy CI machine
// can afford, on topics of the sink kind (every driver maps them).
func universal(t *testing.T, open Factory, f Features, run string) {
	window := f.UniversalMaxInFlight
	if window <= 0 {
		window = 64
	}
	pair := func(t *testing.T, group string) (message.Publisher, message.Subscriber) {
		q := open(t)
		s, err := q.Subscriber(group, window)
		if err != nil {
			t.Fatal(err)
		}
		return noClosePub{q}, s
	}
	tests.TestPubSub(t, tests.Features{
		ConsumerGroups: true,
		// Every subscriber reads from the broker (or, single instance,
		// from the one shared queue), so messages outlive a closed
		// subscriber.
		Persistent:                          true,
		RequireSingleInstance:               f.SingleInstance,
		GuaranteedOrder:                     f.GuaranteedOrder,
		GuaranteedOrderWithSingleSubscriber: f.GuaranteedOrderWithSingleSubscriber,
		ForceShort:                          true,
		GenerateTopicFunc: func(tctx tests.TestContext) string {
			return queue.SinkTopic(run + "-" + string(tctx.TestID))
		},
	}, func(t *testing.T) (message.Publisher, message.Subscriber) {
		return pair(t, "default")
	}, pair)
}

// noClosePub keeps the queue open when a suite test closes its publisher:
// the factory's cleanup closes it, after the test's subscribers.
type noClosePub struct{ message.Publisher }

func (noClosePub) Close() error { return nil }
