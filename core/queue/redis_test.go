package queue

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"

	"github.com/hookbus/hookbus/internal/testenv"
)

const testRedisURL = "redis://127.0.0.1:6379/0"

// testNamespace is unique per test run, so parallel runs share a server.
func testNamespace() string { return "t" + randomHex(6) }

// newTestRedis opens a Redis queue with fast claims in a new namespace and
// deletes the namespace's keys when the test ends.
func newTestRedis(t *testing.T) *Redis {
	t.Helper()
	testenv.NeedService(t, "127.0.0.1:6379")
	ns := testNamespace()
	cleanRedis(t, ns) // registered first: runs after q.Close
	q, err := NewRedis(context.Background(), RedisOptions{
		URL: testRedisURL, Namespace: ns,
		ClaimIdle: 2 * time.Second, ClaimInterval: 300 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

// cleanRedis drops what namespace ns left on the server, after the test.
func cleanRedis(t *testing.T, ns string) {
	t.Cleanup(func() {
		if err := DropNamespace(context.Background(), "redis", testRedisURL, ns); err != nil {
			t.Error(err)
		}
	})
}

// A message taken by a consumer that dies (no refresh, no release) goes to
// a live consumer of the group once it has been idle for ClaimIdle.
func TestRedisClaimFromDeadConsumer(t *testing.T) {
	t.Parallel()
	q := newTestRedis(t)
	topic := SourceTopic("claim")
	s, _ := q.Subscriber("g", 4)
	if err := s.(message.SubscribeInitializer).SubscribeInitialize(topic); err != nil {
		t.Fatal(err)
	}
	msg := message.NewMessage(watermill.NewUUID(), []byte("x"))
	if err := q.Publish(topic, msg); err != nil {
		t.Fatal(err)
	}
	// The "dead" consumer reads the message and never acknowledges it.
	ctx := context.Background()
	xs, err := q.client.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group: q.group("g"), Consumer: "dead", Streams: []string{q.key(topic), ">"}, Count: 1,
	}).Result()
	if err != nil || len(xs) != 1 || len(xs[0].Messages) != 1 {
		t.Fatalf("dead consumer read: %v %v", xs, err)
	}
	ch, err := s.Subscribe(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	select {
	case got := <-ch:
		if got.UUID != msg.UUID {
			t.Fatalf("got %s, want %s", got.UUID, msg.UUID)
		}
		got.Ack()
	case <-time.After(testenv.Timeout(15 * time.Second)):
		t.Fatal("message of the dead consumer was not claimed")
	}
}

// Entries every group acknowledged are trimmed; a group that is behind
// keeps them.
func TestRedisTrim(t *testing.T) {
	t.Parallel()
	q := newTestRedis(t)
	topic := SinkTopic("trim")
	ctx := context.Background()
	if err := q.Provision(ctx, []string{topic}); err != nil {
		t.Fatal(err)
	}
	a, _ := q.Subscriber("a", 4)
	b, _ := q.Subscriber("b", 4)
	for _, s := range []message.Subscriber{a, b} {
		if err := s.(message.SubscribeInitializer).SubscribeInitialize(topic); err != nil {
			t.Fatal(err)
		}
	}
	publishN(t, q, topic, 10)
	xlen := func() int64 { return q.client.XLen(ctx, q.key(topic)).Val() }
	consumeAll(t, a, topic, 10)
	q.trim(ctx)
	if n := xlen(); n != 10 {
		t.Fatalf("group b has not consumed yet, stream has %d entries, want 10", n)
	}
	consumeAll(t, b, topic, 10)
	testenv.Eventually(t, 10*time.Second, "stream trimmed to 0 entries", func() bool {
		q.trim(ctx)
		return xlen() == 0
	})
}

func TestRedisOptionsErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    RedisOptions
		want string
	}{
		{"no url", RedisOptions{}, "queue.url"},
		{"bad url", RedisOptions{URL: "http://x"}, "queue.url"},
		{"bad namespace", RedisOptions{URL: testRedisURL, Namespace: "a b"}, "queue.namespace"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewRedis(context.Background(), tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

// Helpers of the drivers' own tests.

func publishN(t *testing.T, q Queue, topic string, n int) map[string]bool {
	t.Helper()
	ids := map[string]bool{}
	msgs := make([]*message.Message, n)
	for i := range msgs {
		msgs[i] = message.NewMessage(watermill.NewUUID(), []byte(fmt.Sprintf(`{"n":%d}`, i)))
		ids[msgs[i].UUID] = true
	}
	if err := q.Publish(topic, msgs...); err != nil {
		t.Fatal(err)
	}
	return ids
}

// consumeAll subscribes s to topic, acks n distinct messages and returns
// their ids.
func consumeAll(t *testing.T, s message.Subscriber, topic string, n int) map[string]bool {
	t.Helper()
	// The subscription stays open until the test ends: the drivers write
	// an ack asynchronously, and ending the subscription right after the
	// last Ack could race that write (the message is then redelivered,
	// which at-least-once allows but the tests that count acks do not).
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ch, err := s.Subscribe(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	timeout := time.After(testenv.Timeout(30 * time.Second))
	for len(got) < n {
		select {
		case m, ok := <-ch:
			if !ok {
				t.Fatalf("channel closed after %d of %d messages", len(got), n)
			}
			if m.Metadata.Get(MetaAttempt) == "" {
				t.Fatalf("message %s has no %s metadata", m.UUID, MetaAttempt)
			}
			got[m.UUID] = true
			m.Ack()
		case <-timeout:
			t.Fatalf("got %d of %d messages", len(got), n)
		}
	}
	return got
}

// A live consumer keeps a message it is still handling, past ClaimIdle:
// another consumer of the group does not take it over.
func TestRedisSlowHandlerKeepsMessage(t *testing.T) {
	t.Parallel()
	q1 := newTestRedis(t)
	q2, err := NewRedis(context.Background(), RedisOptions{
		URL: testRedisURL, Namespace: q1.opts.Namespace,
		ClaimIdle: q1.opts.ClaimIdle, ClaimInterval: q1.opts.ClaimInterval,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer q2.Close()
	topic := SinkTopic("slow")
	s1, _ := q1.Subscriber("g", 1)
	s2, _ := q2.Subscriber("g", 1)
	defer s1.Close()
	defer s2.Close()
	if err := s1.(message.SubscribeInitializer).SubscribeInitialize(topic); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ch1, err := s1.Subscribe(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	publishN(t, q1, topic, 1)
	var held *message.Message
	select {
	case held = <-ch1:
	case <-time.After(testenv.Timeout(15 * time.Second)):
		t.Fatal("no delivery")
	}
	ch2, err := s2.Subscribe(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	// Hold the message for twice ClaimIdle while both consumers poll for
	// idle messages every ClaimInterval: no one may claim it, not even the
	// holder itself (which would deliver it a second time).
	select {
	case m := <-ch2:
		t.Fatalf("message %s taken over from a live consumer", m.UUID)
	case <-time.After(2 * q1.opts.ClaimIdle):
	}
	held.Ack()
	select {
	case m := <-ch1:
		t.Fatalf("message %s delivered again to its holder", m.UUID)
	case m := <-ch2:
		t.Fatalf("message %s delivered again", m.UUID)
	case <-time.After(3 * q1.opts.ClaimInterval):
	}
}

// TestRedisPublishAt checks delayed messages (testPublishAt), and that one
// whose claim was left by a stopped instance is published once its lease
// ends.
func TestRedisPublishAt(t *testing.T) {
	q := newTestRedis(t)
	const topic = "hookbus.out.delayed"
	ch := testPublishAt(t, q, q, topic)
	ctx := context.Background()
	_, claimed, bodies := q.delayKeys()
	b, _ := json.Marshal(delayedMessage{Topic: topic, UUID: "orphan", Payload: []byte(`{}`)})
	if err := q.client.HSet(ctx, bodies, "orphan", b).Err(); err != nil {
		t.Fatal(err)
	}
	if err := q.client.ZAdd(ctx, claimed, redis.Z{Score: float64(time.Now().Add(-time.Second).UnixMilli()), Member: "orphan"}).Err(); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-ch:
		if m.UUID != "orphan" {
			t.Errorf("got %s, want the orphaned claim", m.UUID)
		}
		m.Ack()
	case <-time.After(testenv.Timeout(10 * time.Second)):
		t.Fatal("an expired claim was not published")
	}
	testenv.Eventually(t, 5*time.Second, "delay keys emptied", func() bool {
		n, _ := q.client.Exists(ctx, claimed, bodies).Result()
		return n == 0
	})
}

// testPublishAt publishes three messages due in 700 ms: none may arrive
// before, all must arrive after, with payload and metadata. It returns the
// subscription for more checks.
func testPublishAt(t *testing.T, q Queue, d Delayer, topic string) <-chan *message.Message {
	t.Helper()
	sub, err := q.Subscriber("g", 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Close() })
	if err := sub.(message.SubscribeInitializer).SubscribeInitialize(topic); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ch, err := sub.Subscribe(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	due := time.Now().Add(700 * time.Millisecond)
	var sent []*message.Message
	for i := range 3 {
		m := message.NewMessage(fmt.Sprint("d", i), []byte(fmt.Sprint(`{"n":`, i, `}`)))
		m.Metadata.Set("k", fmt.Sprint("v", i))
		sent = append(sent, m)
	}
	if err := d.PublishAt(topic, due, sent...); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	timeout := time.After(testenv.Timeout(10 * time.Second))
	for len(got) < 3 {
		select {
		case m := <-ch:
			if time.Now().Before(due) {
				t.Errorf("%s arrived %s before it was due", m.UUID, time.Until(due))
			}
			got[m.UUID] = string(m.Payload) + " " + m.Metadata.Get("k")
			m.Ack()
		case <-timeout:
			t.Fatalf("got %v of 3 delayed messages", got)
		}
	}
	for i := range 3 {
		if want := fmt.Sprint(`{"n":`, i, `} v`, i); got[fmt.Sprint("d", i)] != want {
			t.Errorf("d%d arrived as %q, want %q", i, got[fmt.Sprint("d", i)], want)
		}
	}
	return ch
}

// TestRedisCloseLeavesNoClaims closes the queue while its mover works
// through thousands of due messages: every claim is published or handed
// back, none waits out its lease.
func TestRedisCloseLeavesNoClaims(t *testing.T) {
	q := newTestRedis(t)
	ctx := context.Background()
	const topic, n = "hookbus.out.closing", 3000
	var msgs []*message.Message
	for i := range n {
		msgs = append(msgs, message.NewMessage(fmt.Sprint("m", i), []byte(`{}`)))
	}
	if err := q.PublishAt(topic, time.Now().Add(-time.Second), msgs...); err != nil {
		t.Fatal(err)
	}
	due, claimed, _ := q.delayKeys()
	testenv.Eventually(t, 10*time.Second, "the mover claims a batch", func() bool { return q.client.ZCard(ctx, claimed).Val() > 0 })
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer c.Close()
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	if left := c.ZCard(ctx, claimed).Val(); left != 0 {
		t.Errorf("%d claims left after Close", left)
	}
	if published, waiting := c.XLen(ctx, q.key(topic)).Val(), c.ZCard(ctx, due).Val(); published+waiting != n {
		t.Errorf("published %d + waiting %d, want %d", published, waiting, n)
	}
}

// TestRedisSettleOnlyOwnClaims: a mover whose lease ended and whose
// messages another instance claimed again must not forget them.
func TestRedisSettleOnlyOwnClaims(t *testing.T) {
	q := newTestRedis(t)
	ctx := context.Background()
	due, claimed, bodies := q.delayKeys()
	keys := []string{due, claimed, bodies}
	q.client.HSet(ctx, bodies, "x", "{}")
	q.client.ZAdd(ctx, claimed, redis.Z{Score: 2000000000000, Member: "x"}) // another instance's lease
	q.settle(ctx, keys, "1000000000000", "done", []string{"x"})
	if q.client.ZScore(ctx, claimed, "x").Val() != 2000000000000 || q.client.HExists(ctx, bodies, "x").Val() != true {
		t.Fatal("settled another instance's claim")
	}
	q.settle(ctx, keys, "2000000000000", "done", []string{"x"})
	if q.client.Exists(ctx, claimed, bodies).Val() != 0 {
		t.Fatal("own claim not settled")
	}
}

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

// TestRedisRetireDeletesStream: a drained retry topic leaves no key.
func TestRedisRetireDeletesStream(t *testing.T) {
	t.Parallel()
	q := newTestRedis(t)
	ctx := context.Background()
	s, _ := q.Subscriber(RetryGroup("x"), 1)
	if err := s.(message.SubscribeInitializer).SubscribeInitialize(RetryTopic("x")); err != nil {
		t.Fatal(err)
	}
	publishN(t, q, RetryTopic("x"), 3)
	if n, err := DrainRetryTopic(ctx, q, "x", func(*message.Message) error { return nil }); n != 3 || err != nil {
		t.Fatalf("drain: %d, %v", n, err)
	}
	if n := q.client.Exists(ctx, q.key(RetryTopic("x"))).Val(); n != 0 {
		t.Fatal("the retry stream is left after the drain")
	}
}
