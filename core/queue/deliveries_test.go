package queue

import (
	"context"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/hookbus/hookbus/internal/testenv"
)

// receive waits for the next message of ch.
func receive(t *testing.T, ch <-chan *message.Message, what string) *message.Message {
	t.Helper()
	select {
	case m, ok := <-ch:
		if !ok {
			t.Fatalf("%s: subscription closed", what)
		}
		return m
	case <-time.After(testenv.Timeout(20 * time.Second)):
		t.Fatalf("%s: nothing delivered", what)
	}
	return nil
}

// testDeliveriesCount checks MetaDeliveries: a message whose subscriber
// stops before an outcome (as a crashing process would) comes back with
// the count one higher each time, and an explicit nack (a retry the
// handler asked for) is an outcome that starts the count again.
func testDeliveriesCount(t *testing.T, q Queue) {
	if !q.Features().CountsDeliveries {
		t.Fatal("driver does not report CountsDeliveries")
	}
	topic := SinkTopic("deliveries")
	s0, _ := q.Subscriber("g", 1)
	if err := s0.(message.SubscribeInitializer).SubscribeInitialize(topic); err != nil {
		t.Fatal(err)
	}
	ids := publishN(t, q, topic, 1)
	for want := 1; want <= 3; want++ {
		s, _ := q.Subscriber("g", 1)
		ch, err := s.Subscribe(context.Background(), topic)
		if err != nil {
			t.Fatal(err)
		}
		m := receive(t, ch, "delivery without outcome")
		if !ids[m.UUID] {
			t.Fatalf("unexpected message %s", m.UUID)
		}
		if got := Deliveries(m); got != want {
			t.Fatalf("delivery %d without outcome: %s = %d", want, MetaDeliveries, got)
		}
		// No ack, no nack: the subscriber goes away.
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	s, _ := q.Subscriber("g", 1)
	defer s.Close()
	ch, err := s.Subscribe(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	m := receive(t, ch, "fourth delivery")
	if got := Deliveries(m); got != 4 {
		t.Fatalf("fourth delivery: %s = %d", MetaDeliveries, got)
	}
	m.Metadata.Set(MetaNackDelay, "10ms")
	m.Nack()
	m = receive(t, ch, "delivery after a nack")
	if got := Deliveries(m); got != 1 {
		t.Fatalf("after an explicit nack: %s = %d, want 1", MetaDeliveries, got)
	}
	m.Ack()
}

func TestMemoryDeliveriesCount(t *testing.T) {
	q := NewMemory()
	t.Cleanup(func() { q.Close() })
	testDeliveriesCount(t, q)
}

func TestJetStreamDeliveriesCount(t *testing.T) {
	q, err := NewJetStream(context.Background(), JetStreamOptions{DataDir: t.TempDir(), CloseGrace: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	testDeliveriesCount(t, q)
}

func TestNATSDeliveriesCount(t *testing.T) {
	testenv.NeedService(t, "127.0.0.1:4222")
	ns := testNamespace()
	q, err := NewJetStream(context.Background(), JetStreamOptions{URL: "nats://127.0.0.1:4222", Prefix: JetStreamPrefix(ns), CloseGrace: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		q.Close()
		if err := dropJetStream(context.Background(), "nats://127.0.0.1:4222", ns); err != nil {
			t.Error(err)
		}
	})
	testDeliveriesCount(t, q)
}

func TestRedisDeliveriesCount(t *testing.T) {
	testDeliveriesCount(t, newTestRedis(t))
}

func TestPostgresDeliveriesCount(t *testing.T) {
	testDeliveriesCount(t, newTestPostgres(t))
}
