package queue

import (
	"context"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"
)

// The universal Watermill Pub/Sub suite, with the features each driver
// honestly supports.

func TestMemoryUniversal(t *testing.T) {
	q := NewMemory()
	t.Cleanup(func() { q.Close() })
	tests.TestPubSub(t, tests.Features{
		ConsumerGroups: true,
		// Every Subscriber of the suite shares one Memory, so messages
		// outlive a closed subscriber as they would on a broker.
		Persistent:            true,
		RequireSingleInstance: true,
		ForceShort:            true,
	}, func(t *testing.T) (message.Publisher, message.Subscriber) {
		s, _ := q.Subscriber("default", 64)
		return noClosePub{q}, s
	}, func(t *testing.T, group string) (message.Publisher, message.Subscriber) {
		s, _ := q.Subscriber(group, 64)
		return noClosePub{q}, s
	})
}

func TestJetStreamUniversal(t *testing.T) {
	q, err := NewJetStream(context.Background(), JetStreamOptions{DataDir: t.TempDir(), CloseGrace: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	tests.TestPubSub(t, tests.Features{
		ConsumerGroups:        true,
		Persistent:            true,
		RequireSingleInstance: true,
		ForceShort:            true,
		GenerateTopicFunc: func(tctx tests.TestContext) string {
			return SinkTopic(string(tctx.TestID))
		},
	}, func(t *testing.T) (message.Publisher, message.Subscriber) {
		s, _ := q.Subscriber("default", 64)
		return noClosePub{q}, s
	}, func(t *testing.T, group string) (message.Publisher, message.Subscriber) {
		s, _ := q.Subscriber(group, 64)
		return noClosePub{q}, s
	})
}

// noClosePub keeps the shared queue open when a suite test closes its publisher.
type noClosePub struct{ message.Publisher }

func (noClosePub) Close() error { return nil }
