package queue

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
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

// slowNacks is the nack-record bucket with a Get that waits for release:
// the server round trip of a redelivered message's lookup, made slow. Its
// Put makes this process forget the nacks it wrote, as if another
// instance had written the record, so that redeliveries read the bucket.
type slowNacks struct {
	jetstream.KeyValue
	q        *JetStream
	entered  chan struct{} // closed at the first Get
	once     sync.Once
	release  chan struct{}
	returned atomic.Bool // a Get returned
}

func (k *slowNacks) Put(ctx context.Context, key string, value []byte) (uint64, error) {
	k.q.ownNacks.mu.Lock()
	k.q.ownNacks.m = nil
	k.q.ownNacks.mu.Unlock()
	return k.KeyValue.Put(ctx, key, value)
}

func (k *slowNacks) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	k.once.Do(func() { close(k.entered) })
	defer k.returned.Store(true)
	select {
	case <-k.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return k.KeyValue.Get(ctx, key)
}

// TestJetStreamRedeliveryLookupHoldsUpNoOtherMessage: the lookup of a
// redelivered message's nack record (a round trip to the server) runs
// beside the consume loop, so the messages behind it are handed out
// meanwhile; the redelivered one follows, its count corrected, once the
// lookup answers.
func TestJetStreamRedeliveryLookupHoldsUpNoOtherMessage(t *testing.T) {
	q, err := NewJetStream(context.Background(), JetStreamOptions{DataDir: t.TempDir(), CloseGrace: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	slow := &slowNacks{KeyValue: q.nacks, q: q, entered: make(chan struct{}), release: make(chan struct{})}
	q.nacks = slow
	topic := SinkTopic("lookup")
	sub, _ := q.Subscriber("g", 8)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	msgs, err := sub.Subscribe(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	receive := func(want string) *message.Message {
		t.Helper()
		select {
		case m := <-msgs:
			if m.UUID != want {
				t.Fatalf("got %s, want %s", m.UUID, want)
			}
			return m
		case <-time.After(testenv.Timeout(10 * time.Second)):
			t.Fatalf("%s not received", want)
		}
		return nil
	}
	if err := q.Publish(topic, message.NewMessage("first", []byte("x"))); err != nil {
		t.Fatal(err)
	}
	receive("first").Nack() // redelivered at once, its lookup then waits
	select {
	case <-slow.entered:
	case <-time.After(testenv.Timeout(10 * time.Second)):
		t.Fatal("the redelivery's nack record was never looked up")
	}
	if err := q.Publish(topic, message.NewMessage("second", []byte("y"))); err != nil {
		t.Fatal(err)
	}
	receive("second").Ack()
	if slow.returned.Load() {
		t.Fatal("the message behind the redelivery waited for its lookup")
	}
	close(slow.release)
	m := receive("first")
	if got := m.Metadata.Get(MetaDeliveries); got != "1" {
		t.Errorf("redelivery after an explicit nack: %s = %q, want 1", MetaDeliveries, got)
	}
	m.Ack()
	sub.Close()
}

// countingNacks counts the reads of the nack-record bucket.
type countingNacks struct {
	jetstream.KeyValue
	gets atomic.Int64
}

func (k *countingNacks) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	k.gets.Add(1)
	return k.KeyValue.Get(ctx, key)
}

// TestJetStreamOwnNackNeedsNoLookup: the redelivery that follows this
// process's own nack takes the record it wrote, without reading the
// bucket, and counts as one delivery without an outcome; the bucket still
// has the record for a redelivery elsewhere.
func TestJetStreamOwnNackNeedsNoLookup(t *testing.T) {
	q, err := NewJetStream(context.Background(), JetStreamOptions{DataDir: t.TempDir(), CloseGrace: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	kv := &countingNacks{KeyValue: q.nacks}
	q.nacks = kv
	topic := SinkTopic("ownnack")
	sub, _ := q.Subscriber("g", 8)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	msgs, err := sub.Subscribe(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Publish(topic, message.NewMessage("m", []byte("x"))); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		select {
		case m := <-msgs:
			if got := m.Metadata.Get(MetaDeliveries); got != "1" {
				t.Errorf("delivery %d: %s = %q, want 1", i+1, MetaDeliveries, got)
			}
			if got := m.Metadata.Get(MetaAttempt); got != strconv.Itoa(i+1) {
				t.Errorf("delivery %d: %s = %q", i+1, MetaAttempt, got)
			}
			if i < 2 {
				m.Nack()
			} else {
				m.Ack()
			}
		case <-time.After(testenv.Timeout(10 * time.Second)):
			t.Fatalf("delivery %d not received", i+1)
		}
	}
	if n := kv.gets.Load(); n != 0 {
		t.Errorf("%d reads of the nack bucket, want none", n)
	}
	// The topic's first message: stream sequence 1.
	e, err := kv.KeyValue.Get(ctx, nackKeyPrefix(consumerName(q.opts.Prefix, "g", topic))+"1")
	if err != nil || string(e.Value()) != "2" {
		t.Errorf("the bucket's record: %v, %v; want the second delivery's nack", e, err)
	}
	sub.Close()
}

// TestOwnNacksTakeOnlyTheNextDelivery: a remembered nack answers only for
// the delivery right after it; any other (another instance had the
// message in between) reads the bucket, and the entry is gone either way.
func TestOwnNacksTakeOnlyTheNextDelivery(t *testing.T) {
	var o ownNacks
	o.put("c", 7, 3)
	if at, ok := o.take("c", 7, 4); !ok || at != 3 {
		t.Errorf("next delivery: %d, %v", at, ok)
	}
	if _, ok := o.take("c", 7, 4); ok {
		t.Error("taken twice")
	}
	o.put("c", 7, 3)
	if _, ok := o.take("c", 7, 6); ok {
		t.Error("a later delivery took an older nack")
	}
	if _, ok := o.take("other", 7, 4); ok {
		t.Error("another consumer's message")
	}
	o.put("c", 8, 1)
	o.m[ownNackKey{"c", 8}] = ownNack{at: 1, written: time.Now().Add(-ownNackMemory - time.Minute)}
	o.swept = time.Now().Add(-2 * time.Hour)
	o.put("c", 9, 1)
	if _, ok := o.m[ownNackKey{"c", 8}]; ok || len(o.m) != 1 {
		t.Errorf("entries after the sweep: %v", o.m)
	}
}
