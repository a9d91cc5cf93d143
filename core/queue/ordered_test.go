package queue

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/hookbus/hookbus/internal/testenv"
)

// orderedQueues opens two queues on one broker, as two instances would:
// on the external NATS server two drivers (two sets of connections) in a
// namespace of their own; embedded, one driver twice (its subscribers
// spread over its consumer connections). ackWait is the queues' AckWait.
func orderedQueues(t *testing.T, external bool, ackWait time.Duration) (a, b *JetStream) {
	t.Helper()
	if !external {
		q, err := NewJetStream(context.Background(), JetStreamOptions{DataDir: t.TempDir(), AckWait: ackWait, CloseGrace: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { q.Close() })
		return q, q
	}
	testenv.NeedService(t, "127.0.0.1:4222")
	ns := testNamespace()
	t.Cleanup(func() {
		if err := dropJetStream(context.Background(), "nats://127.0.0.1:4222", ns); err != nil {
			t.Error(err)
		}
	})
	open := func() *JetStream {
		q, err := NewJetStream(context.Background(), JetStreamOptions{URL: "nats://127.0.0.1:4222", Prefix: JetStreamPrefix(ns), AckWait: ackWait, CloseGrace: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { q.Close() })
		return q
	}
	return open(), open()
}

// forBoth runs a test on the embedded server and on the external NATS one.
func forBoth(t *testing.T, f func(t *testing.T, external bool)) {
	for _, ext := range []bool{false, true} {
		name := "embedded"
		if ext {
			name = "nats"
		}
		t.Run(name, func(t *testing.T) { f(t, ext) })
	}
}

func publishSeq(t *testing.T, q *JetStream, topic string, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		if err := q.Publish(topic, message.NewMessage(strconv.Itoa(i), []byte(strconv.Itoa(i)))); err != nil {
			t.Fatal(err)
		}
	}
}

// TestOrderedSubscriptionAcrossSubscribers: two subscribers of one
// ordered group, on two connections (two drivers on NATS), that nack
// some messages (some with a delay) and ack the others, settle every
// message in publish order, never hold two at once, and the acks come in
// publish order.
func TestOrderedSubscriptionAcrossSubscribers(t *testing.T) {
	forBoth(t, func(t *testing.T, external bool) {
		qa, qb := orderedQueues(t, external, 30*time.Second)
		topic := partitionTopicForTest("ordered")
		const n = 150
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var (
			mu      sync.Mutex
			acked   []int
			holding atomic.Int32
			twice   atomic.Int32
		)
		done := make(chan struct{})
		run := func(q *JetStream, seed uint64) {
			sub, err := q.OrderedSubscriber("g")
			if err != nil {
				t.Error(err)
				return
			}
			defer sub.Close()
			msgs, err := sub.Subscribe(ctx, topic)
			if err != nil {
				t.Error(err)
				return
			}
			rnd := rand.New(rand.NewPCG(seed, seed))
			for m := range msgs {
				if holding.Add(1) > 1 {
					twice.Add(1)
				}
				time.Sleep(time.Duration(rnd.IntN(500)) * time.Microsecond)
				i, _ := strconv.Atoi(string(m.Payload))
				holding.Add(-1)
				switch r := rnd.IntN(10); {
				case r == 0:
					m.Nack()
				case r == 1:
					m.Metadata.Set(MetaNackDelay, "20ms")
					m.Nack()
				default:
					mu.Lock()
					acked = append(acked, i)
					if len(acked) == n {
						close(done)
					}
					mu.Unlock()
					m.Ack()
				}
			}
		}
		// Subscribe (and so create the consumers) before publishing.
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); run(qa, 1) }()
		go func() { defer wg.Done(); run(qb, 2) }()
		testenv.Eventually(t, 10*time.Second, "consumer created", func() bool {
			qa.mu.Lock()
			defer qa.mu.Unlock()
			_, ok := qa.groups[consumerName(qa.opts.Prefix, "g", topic)]
			return ok
		})
		publishSeq(t, qa, topic, 0, n)
		select {
		case <-done:
		case <-time.After(testenv.Timeout(60 * time.Second)):
			mu.Lock()
			t.Fatalf("acked %d of %d", len(acked), n)
		}
		cancel()
		wg.Wait()
		for i, v := range acked {
			if v != i {
				t.Fatalf("ack %d is message %d: %v", i, v, acked)
			}
		}
		if k := twice.Load(); k > 0 {
			t.Fatalf("%d times two messages of the ordered group were out at once", k)
		}
	})
}

// partitionTopicForTest is a partition topic of a sink named after the test.
func partitionTopicForTest(sink string) string { return SinkTopic(sink) + ".p0" }

// TestOrderedNackBlocksOnlyItsTopic: a message nacked with a delay holds
// up the messages behind it on its topic, not those of another topic of
// the same group.
func TestOrderedNackBlocksOnlyItsTopic(t *testing.T) {
	forBoth(t, func(t *testing.T, external bool) {
		q, _ := orderedQueues(t, external, 30*time.Second)
		blocked, free := SinkTopic("blk")+".p1", SinkTopic("blk")+".p2"
		sub, err := q.OrderedSubscriber("g")
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		bm, err := sub.Subscribe(ctx, blocked)
		if err != nil {
			t.Fatal(err)
		}
		fm, err := sub.Subscribe(ctx, free)
		if err != nil {
			t.Fatal(err)
		}
		publishSeq(t, q, blocked, 0, 3)
		publishSeq(t, q, free, 10, 5)
		first := receiveOne(t, bm)
		if first.UUID != "0" {
			t.Fatalf("first of the blocked topic: %s", first.UUID)
		}
		const hold = 2 * time.Second
		nackedAt := time.Now()
		first.Metadata.Set(MetaNackDelay, hold.String())
		first.Nack()
		// The other topic flows meanwhile.
		for i := 10; i < 15; i++ {
			m := receiveOne(t, fm)
			if m.UUID != strconv.Itoa(i) {
				t.Fatalf("free topic: got %s, want %d", m.UUID, i)
			}
			m.Ack()
		}
		if time.Since(nackedAt) >= hold {
			t.Skip("the machine was too slow to tell the free topic from the held one")
		}
		// The blocked topic gives the nacked message again, then the rest.
		for _, want := range []string{"0", "1", "2"} {
			m := receiveOne(t, bm)
			if m.UUID != want {
				t.Fatalf("blocked topic: got %s, want %s", m.UUID, want)
			}
			if want == "0" && time.Since(nackedAt) < hold-100*time.Millisecond {
				t.Fatalf("the nacked message came back after %s, before its delay of %s", time.Since(nackedAt), hold)
			}
			if want == "0" && Attempt(m) != 2 {
				t.Fatalf("attempt of the redelivery = %d", Attempt(m))
			}
			m.Ack()
		}
	})
}

func receiveOne(t *testing.T, ch <-chan *message.Message) *message.Message {
	t.Helper()
	select {
	case m, ok := <-ch:
		if !ok {
			t.Fatal("channel closed")
		}
		return m
	case <-time.After(testenv.Timeout(20 * time.Second)):
		t.Fatal("no message")
	}
	return nil
}

// TestOrderedRedeliversHeadFirst: a message whose subscriber closed
// without settling it (a stop) or was cut off from the server (a kill:
// its connections closed, nothing nacked) comes back first, to another
// subscriber, before any message behind it; with a kill, after AckWait.
func TestOrderedRedeliversHeadFirst(t *testing.T) {
	for _, kill := range []bool{false, true} {
		t.Run(fmt.Sprintf("kill=%v", kill), func(t *testing.T) {
			forBoth(t, func(t *testing.T, external bool) {
				if kill && !external {
					// Embedded, a kill takes the server with it: the
					// restart test in cmd/hookbus covers that.
					t.Skip("a kill of the embedded server is a process restart")
				}
				const ackWait = 2 * time.Second
				qa, qb := orderedQueues(t, external, ackWait)
				topic := partitionTopicForTest(fmt.Sprintf("head%v", kill))
				sa, _ := qa.OrderedSubscriber("g")
				ctxA, cancelA := context.WithCancel(context.Background())
				defer cancelA()
				ma, err := sa.Subscribe(ctxA, topic)
				if err != nil {
					t.Fatal(err)
				}
				publishSeq(t, qa, topic, 0, 4)
				held := receiveOne(t, ma)
				if held.UUID != "0" {
					t.Fatalf("first: %s", held.UUID)
				}
				cutAt := time.Now()
				if kill {
					for _, nc := range qa.consConns {
						nc.Close()
					}
				} else {
					_ = sa.Close()
				}
				sb, _ := qb.OrderedSubscriber("g")
				defer sb.Close()
				mb, err := sb.Subscribe(context.Background(), topic)
				if err != nil {
					t.Fatal(err)
				}
				for i := range 4 {
					m := receiveOne(t, mb)
					if m.UUID != strconv.Itoa(i) {
						t.Fatalf("after the cut: got %s, want %d", m.UUID, i)
					}
					if i == 0 {
						if kill && time.Since(cutAt) < ackWait-200*time.Millisecond {
							t.Fatalf("redelivered after %s, before AckWait", time.Since(cutAt))
						}
						if Deliveries(m) != 2 {
							t.Fatalf("deliveries of the redelivered head = %d, want 2 (one without an outcome)", Deliveries(m))
						}
					}
					m.Ack()
				}
				held.Ack() // too late: settles nothing
			})
		})
	}
}
