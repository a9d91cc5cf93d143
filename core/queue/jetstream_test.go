package queue

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/internal/testenv"
)

// TestJetStreamConsumerRecreated: when the durable consumer disappears
// under a running subscription (deleted by an operator, or a server that
// lost its state), the subscription recreates it and keeps delivering.
func TestJetStreamConsumerRecreated(t *testing.T) {
	q, err := NewJetStream(context.Background(), JetStreamOptions{DataDir: t.TempDir(), CloseGrace: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	topic := SinkTopic("recreate")
	sub, _ := q.Subscriber("g", 8)
	msgs, err := sub.Subscribe(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	receive := func(want string) {
		t.Helper()
		select {
		case m := <-msgs:
			if m.UUID != want {
				t.Fatalf("got %s, want %s", m.UUID, want)
			}
			m.Ack()
		case <-time.After(testenv.Timeout(10 * time.Second)):
			t.Fatalf("%s not received", want)
		}
	}
	if err := q.Publish(topic, message.NewMessage("before", []byte("x"))); err != nil {
		t.Fatal(err)
	}
	receive("before")

	ctx := context.Background()
	stream, _ := q.streamFor(topic)
	name := consumerName(q.opts.Prefix, "g", topic)
	if err := q.js.DeleteConsumer(ctx, stream, name); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(testenv.Timeout(10 * time.Second))
	for {
		if _, err := q.js.Consumer(ctx, stream, name); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("consumer was not recreated")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := q.Publish(topic, message.NewMessage("after", []byte("y"))); err != nil {
		t.Fatal(err)
	}
	receive("after")
	sub.Close()
}

// TestJetStreamRetryStreamRetired: a new queue creates no retry stream;
// one left by an older version is deleted once its last retry group is
// drained, while a group of another sink keeps it.
func TestJetStreamRetryStreamRetired(t *testing.T) {
	q, err := NewJetStream(context.Background(), JetStreamOptions{DataDir: t.TempDir(), CloseGrace: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	ctx := context.Background()
	if _, err := q.js.Stream(ctx, "HOOKBUS_RETRY"); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("a new queue has a retry stream: %v", err)
	}
	if _, err := q.js.CreateStream(ctx, jetstream.StreamConfig{Name: "HOOKBUS_RETRY", Subjects: []string{"hookbus.retry.>"}, Retention: jetstream.InterestPolicy}); err != nil {
		t.Fatal(err)
	}
	for _, sink := range []string{"a", "b"} {
		s, _ := q.Subscriber(RetryGroup(sink), 1)
		if err := s.(message.SubscribeInitializer).SubscribeInitialize(RetryTopic(sink)); err != nil {
			t.Fatal(err)
		}
		publishN(t, q, RetryTopic(sink), 2)
	}
	count := func(m *message.Message) error { return nil }
	if n, err := DrainRetryTopic(ctx, q, "a", count); n != 2 || err != nil {
		t.Fatalf("drain a: %d, %v", n, err)
	}
	if _, err := q.js.Stream(ctx, "HOOKBUS_RETRY"); err != nil {
		t.Fatalf("the retry stream went while sink b's retry group still had messages: %v", err)
	}
	if n, err := DrainRetryTopic(ctx, q, "b", count); n != 2 || err != nil {
		t.Fatalf("drain b: %d, %v", n, err)
	}
	if _, err := q.js.Stream(ctx, "HOOKBUS_RETRY"); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("the retry stream is left after its last group was drained: %v", err)
	}
	if stale, err := q.StaleGroups(ctx); err != nil || len(stale) != 0 {
		t.Fatalf("stale groups after the drain: %v, %v", stale, err)
	}
}
