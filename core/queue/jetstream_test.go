package queue

import (
	"context"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

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
