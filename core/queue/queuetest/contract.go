package queuetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/hookbus/hookbus/core/queue"
	"github.com/hookbus/hookbus/internal/testenv"
)

// contract holds hookbus's own tests of one driver.
type contract struct {
	open Factory
	f    Features
	run  string // makes topics unique to this Run
}

// sinkTopic and sourceTopic name a topic of this test alone.
func (c contract) sinkTopic(t *testing.T) string {
	return queue.SinkTopic(c.run + "-" + t.Name())
}

func (c contract) sourceTopic(t *testing.T) string {
	return queue.SourceTopic(c.run + "-" + t.Name())
}

// subscriber opens a subscriber of group that is closed when t ends.
func subscriber(t *testing.T, q queue.Queue, group string, maxInFlight int) message.Subscriber {
	t.Helper()
	s, err := q.Subscriber(group, maxInFlight)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// initialize makes the group keep every message published from now on,
// as the engine does before traffic flows.
func initialize(t *testing.T, s message.Subscriber, topic string) {
	t.Helper()
	si, ok := s.(message.SubscribeInitializer)
	if !ok {
		t.Fatal("the subscriber does not implement message.SubscribeInitializer")
	}
	if err := si.SubscribeInitialize(topic); err != nil {
		t.Fatal(err)
	}
}

// subscribe subscribes s to topic until t ends.
func subscribe(t *testing.T, s message.Subscriber, topic string) <-chan *message.Message {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ch, err := s.Subscribe(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

// publishN publishes n messages and returns their UUIDs.
func publishN(t *testing.T, q queue.Queue, topic string, n int) map[string]bool {
	t.Helper()
	ids := map[string]bool{}
	msgs := make([]*message.Message, n)
	for i := range msgs {
		msgs[i] = message.NewMessage(watermill.NewUUID(), fmt.Appendf(nil, `{"n":%d}`, i))
		ids[msgs[i].UUID] = true
	}
	if err := q.Publish(topic, msgs...); err != nil {
		t.Fatal(err)
	}
	return ids
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
		t.Fatalf("%s: nothing delivered within 20s", what)
	}
	return nil
}

// collect acks messages of ch until it has n distinct ones or d passes.
func collect(ch <-chan *message.Message, n int, d time.Duration) map[string]bool {
	got := map[string]bool{}
	timeout := time.After(testenv.Timeout(d))
	for len(got) < n {
		select {
		case m, ok := <-ch:
			if !ok {
				return got
			}
			got[m.UUID] = true
			m.Ack()
		case <-timeout:
			return got
		}
	}
	return got
}

// missing counts the ids of want that got lacks.
func missing[V any](want map[string]bool, got map[string]V) int {
	n := 0
	for id := range want {
		if _, ok := got[id]; !ok {
			n++
		}
	}
	return n
}

func (c contract) twoGroups(t *testing.T) {
	q := c.open(t)
	topic := c.sourceTopic(t)
	if err := q.Provision(context.Background(), []string{topic}); err != nil {
		t.Fatal(err)
	}
	subs := map[string]message.Subscriber{"a": subscriber(t, q, "a", 8), "b": subscriber(t, q, "b", 8)}
	for _, s := range subs {
		initialize(t, s, topic)
	}
	want := publishN(t, q, topic, 200)
	type result struct {
		group string
		ids   map[string]bool
	}
	res := make(chan result, len(subs))
	for name, s := range subs {
		ch := subscribe(t, s, topic)
		go func() { res <- result{name, collect(ch, len(want), 30*time.Second)} }()
	}
	for range subs {
		r := <-res
		if n := missing(want, r.ids); n > 0 {
			t.Errorf("group %s misses %d of %d messages", r.group, n, len(want))
		}
	}
}

func (c contract) redeliverAfterClose(t *testing.T) {
	q := c.open(t)
	topic := c.sinkTopic(t)
	s1, err := q.Subscriber("g", 4)
	if err != nil {
		t.Fatal(err)
	}
	initialize(t, s1, topic)
	ids := publishN(t, q, topic, 1)
	ch, err := s1.Subscribe(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	if m := receive(t, ch, "first delivery"); !ids[m.UUID] {
		t.Fatalf("unexpected message %s", m.UUID)
	} // and not acked
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}
	got := collect(subscribe(t, subscriber(t, q, "g", 4), topic), 1, 20*time.Second)
	if missing(ids, got) > 0 {
		t.Fatal("a message not acked by a closed subscriber was not redelivered to the group")
	}
}

func (c contract) settleAfterStop(t *testing.T) {
	q := c.open(t)
	topic := c.sinkTopic(t)
	s1 := subscriber(t, q, "g", 4)
	initialize(t, s1, topic)
	ids := publishN(t, q, topic, 1)
	ctx, stop := context.WithCancel(context.Background())
	ch, err := s1.Subscribe(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	m := receive(t, ch, "first delivery")
	if !ids[m.UUID] {
		t.Fatalf("unexpected message %s", m.UUID)
	}
	// The handler is stopped while it works, and finishes after.
	stop()
	m.Ack()
	for range ch { // closes once the outcome is recorded
	}
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}
	// A marker published after: the next subscriber of the group gets it,
	// and not the acked message before it.
	marker := publishN(t, q, topic, 1)
	m2 := receive(t, subscribe(t, subscriber(t, q, "g", 4), topic), "delivery to the next subscriber")
	m2.Ack()
	if !marker[m2.UUID] {
		t.Fatalf("got %s again after it was acked by a stopped subscription (want the marker)", m2.UUID)
	}
}

func (c contract) nackAttempt(t *testing.T) {
	q := c.open(t)
	topic := c.sinkTopic(t)
	s := subscriber(t, q, "g", 2)
	initialize(t, s, topic)
	ids := publishN(t, q, topic, 1)
	ch := subscribe(t, s, topic)
	counts := q.Features().CountsDeliveries
	for want := 1; want <= 3; want++ {
		m := receive(t, ch, fmt.Sprintf("delivery %d", want))
		if !ids[m.UUID] {
			t.Fatalf("unexpected message %s", m.UUID)
		}
		if got := queue.Attempt(m); got != want {
			t.Fatalf("delivery %d: attempt = %d", want, got)
		}
		if got := queue.Deliveries(m); counts && got != 1 {
			t.Fatalf("delivery %d after nacks: deliveries = %d, want 1 (a nack is an outcome)", want, got)
		}
		if want < 3 {
			m.Metadata.Set(queue.MetaNackDelay, "20ms")
			m.Nack()
		} else {
			m.Ack()
		}
	}
}

// deliveries: a message whose subscriber stops before an outcome (as a
// crashing process would) comes back with queue.Deliveries one higher each
// time; an explicit nack is an outcome that starts the count again.
func (c contract) deliveries(t *testing.T) {
	q := c.open(t)
	if !q.Features().CountsDeliveries {
		t.Skip("the driver does not count deliveries without an outcome (Features.CountsDeliveries)")
	}
	topic := c.sinkTopic(t)
	initialize(t, subscriber(t, q, "g", 1), topic)
	ids := publishN(t, q, topic, 1)
	for want := 1; want <= 3; want++ {
		s, err := q.Subscriber("g", 1)
		if err != nil {
			t.Fatal(err)
		}
		ch, err := s.Subscribe(context.Background(), topic)
		if err != nil {
			t.Fatal(err)
		}
		m := receive(t, ch, "delivery without outcome")
		if !ids[m.UUID] {
			t.Fatalf("unexpected message %s", m.UUID)
		}
		if got := queue.Deliveries(m); got != want {
			t.Fatalf("delivery %d without outcome: deliveries = %d", want, got)
		}
		// No ack, no nack: the subscriber goes away.
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	ch := subscribe(t, subscriber(t, q, "g", 1), topic)
	m := receive(t, ch, "fourth delivery")
	if got := queue.Deliveries(m); got != 4 {
		t.Fatalf("fourth delivery: deliveries = %d", got)
	}
	m.Metadata.Set(queue.MetaNackDelay, "10ms")
	m.Nack()
	m = receive(t, ch, "delivery after a nack")
	if got := queue.Deliveries(m); got != 1 {
		t.Fatalf("after an explicit nack: deliveries = %d, want 1", got)
	}
	m.Ack()
}

// nackDelay: every driver waits out MetaNackDelay before it redelivers.
// A driver with Features.DelayedNack waits inside the broker, so a
// subscription with one slot gets the next message meanwhile.
func (c contract) nackDelay(t *testing.T) {
	q := c.open(t)
	delayed := q.Features().DelayedNack
	topic := c.sinkTopic(t)
	s := subscriber(t, q, "g", 1)
	initialize(t, s, topic)
	ch := subscribe(t, s, topic)
	first := message.NewMessage("first-"+c.run, []byte(`{}`))
	if err := q.Publish(topic, first); err != nil {
		t.Fatal(err)
	}
	m := receive(t, ch, "first delivery")
	const delay = 800 * time.Millisecond
	m.Metadata.Set(queue.MetaNackDelay, delay.String())
	m.Nack()
	nacked := time.Now()
	if delayed {
		if err := q.Publish(topic, message.NewMessage("second-"+c.run, []byte(`{}`))); err != nil {
			t.Fatal(err)
		}
	}
	var again *message.Message
	for again == nil {
		m := receive(t, ch, "delivery after the nack")
		switch m.UUID {
		case first.UUID:
			again = m
			if waited := time.Since(nacked); waited < delay {
				t.Errorf("redelivered %v after a nack with a delay of %v", waited, delay)
			}
		default:
			if time.Since(nacked) >= delay {
				t.Errorf("the second message arrived only after the nacked one's delay: a delayed nack holds up the subscription")
			}
		}
		m.Ack()
	}
}

func (c contract) publishAt(t *testing.T) {
	q := c.open(t)
	d, ok := q.(queue.Delayer)
	if !ok {
		t.Skip("the driver has no queue.Delayer (it holds retries with delayed nacks)")
	}
	topic := c.sinkTopic(t)
	s := subscriber(t, q, "g", 4)
	initialize(t, s, topic)
	ch := subscribe(t, s, topic)
	const wait = 700 * time.Millisecond
	// A moment later than due: the drivers move due messages a few times
	// a second, and a busy machine delays that.
	slack := testenv.Timeout(3 * time.Second)
	due := time.Now().Add(wait)
	var sent []*message.Message
	for i := range 3 {
		m := message.NewMessage(fmt.Sprint(c.run, "-d", i), fmt.Appendf(nil, `{"n":%d}`, i))
		m.Metadata.Set("k", fmt.Sprint("v", i))
		sent = append(sent, m)
	}
	if err := d.PublishAt(topic, due, sent...); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for len(got) < len(sent) {
		m := receive(t, ch, "delayed message")
		if now := time.Now(); now.Before(due) {
			t.Errorf("%s arrived %v before it was due", m.UUID, due.Sub(now))
		} else if late := now.Sub(due); late > slack {
			t.Errorf("%s arrived %v after it was due", m.UUID, late)
		}
		got[m.UUID] = string(m.Payload) + " " + m.Metadata.Get("k")
		m.Ack()
	}
	for i, m := range sent {
		if want := fmt.Sprintf(`{"n":%d} v%d`, i, i); got[m.UUID] != want {
			t.Errorf("%s arrived as %q, want %q", m.UUID, got[m.UUID], want)
		}
	}
}

// dedup: of two messages with one MetaDedupID on a source topic only the
// first is delivered. A message published after both arrives after them
// (one subscription, one slot), so its arrival shows the duplicate is not
// coming.
func (c contract) dedup(t *testing.T) {
	q := c.open(t)
	if !q.Features().Dedup {
		t.Skip("the driver does not deduplicate (Features.Dedup)")
	}
	topic := c.sourceTopic(t)
	s := subscriber(t, q, "g", 1)
	initialize(t, s, topic)
	id := "producer-id-" + c.run
	for _, uuid := range []string{"a", "b"} {
		m := message.NewMessage(uuid+"-"+c.run, []byte(`{}`))
		m.Metadata.Set(queue.MetaDedupID, id)
		if err := q.Publish(topic, m); err != nil {
			t.Fatal(err)
		}
	}
	sentinel := message.NewMessage("sentinel-"+c.run, []byte(`{}`))
	if err := q.Publish(topic, sentinel); err != nil {
		t.Fatal(err)
	}
	ch := subscribe(t, s, topic)
	var got []string
	for len(got) == 0 || got[len(got)-1] != sentinel.UUID {
		m := receive(t, ch, "deduplicated messages")
		got = append(got, m.UUID)
		m.Ack()
	}
	if want := []string{"a-" + c.run, sentinel.UUID}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("delivered %v, want %v", got, want)
	}
}

// backlog: queued, then one held in flight, then all acknowledged.
func (c contract) backlog(t *testing.T) {
	q := c.open(t)
	br, ok := q.(queue.BacklogReporter)
	if !ok {
		t.Skip("the driver does not report its backlog (queue.BacklogReporter)")
	}
	topic := c.sinkTopic(t)
	s := subscriber(t, q, "g", 1)
	initialize(t, s, topic)
	const n = 5
	publishN(t, q, topic, n)
	figures := func() (queue.Backlog, bool) {
		bl, err := br.Backlog(context.Background())
		if err != nil {
			t.Errorf("backlog: %v", err)
			return queue.Backlog{}, false
		}
		for _, b := range bl {
			if b.Group == "g" && b.Topic == topic {
				return b, true
			}
		}
		return queue.Backlog{}, false
	}
	testenv.Eventually(t, 10*time.Second, fmt.Sprintf("%d messages pending", n), func() bool {
		b, ok := figures()
		return ok && b.Pending == n && b.Unacked == 0
	})
	ch := subscribe(t, s, topic)
	held := receive(t, ch, "first message")
	testenv.Eventually(t, 10*time.Second, "one message in flight, the rest queued", func() bool {
		b, ok := figures()
		return ok && b.Pending+b.Unacked == n && b.Pending < n
	})
	held.Ack()
	collect(ch, n-1, 20*time.Second)
	testenv.Eventually(t, 10*time.Second, "nothing left after every ack", func() bool {
		b, ok := figures()
		return ok && b.Pending == 0 && b.Unacked == 0
	})
}

func (c contract) provision(t *testing.T) {
	q := c.open(t)
	topics := []string{c.sinkTopic(t), c.sourceTopic(t), queue.DeadLetterTopic}
	for range 2 { // provisioning again must not fail
		if err := q.Provision(context.Background(), topics); err != nil {
			t.Fatal(err)
		}
	}
	for _, topic := range topics[:2] {
		s := subscriber(t, q, "g", 4)
		initialize(t, s, topic)
		want := publishN(t, q, topic, 3)
		if got := collect(subscribe(t, s, topic), 3, 20*time.Second); missing(want, got) > 0 {
			t.Fatalf("%s: got %d of 3 messages after Provision", topic, len(got))
		}
	}
}

var errRefused = errors.New("refused on purpose")

// drainRetryTopic: messages an older version left on a sink's retry topic
// are drained once each, a failing callback stops the drain without
// losing its message, and the retry group is gone afterwards.
func (c contract) drainRetryTopic(t *testing.T) {
	q := c.open(t)
	if _, ok := q.(queue.TopicRetirer); !ok {
		t.Skip("the driver cannot retire topics (queue.TopicRetirer)")
	}
	// A drain that never sees its group empty fails rather than hangs.
	ctx, cancel := context.WithTimeout(context.Background(), testenv.Timeout(30*time.Second))
	defer cancel()
	if n, err := queue.DrainRetryTopic(ctx, q, "never-"+c.run, nil); n != 0 || err != nil {
		t.Fatalf("draining a retry topic that never existed: %d, %v", n, err)
	}
	sink := "drain-" + c.run
	topic := queue.RetryTopic(sink)
	if c.f.PrepareRetryTopic != nil {
		c.f.PrepareRetryTopic(t, q)
	}
	// As the retry pump of an older version did before traffic flowed.
	initialize(t, subscriber(t, q, queue.RetryGroup(sink), 1), topic)
	want := publishN(t, q, topic, 5)

	handled := map[string]int{}
	calls := 0
	n, err := queue.DrainRetryTopic(ctx, q, sink, func(m *message.Message) error {
		if calls++; calls == 3 {
			return errRefused
		}
		handled[m.UUID]++
		return nil
	})
	if !errors.Is(err, errRefused) || n != 2 {
		t.Fatalf("drain with a callback failing at the third message: %d, %v; want 2 and the callback's error", n, err)
	}
	n, err = queue.DrainRetryTopic(ctx, q, sink, func(m *message.Message) error {
		handled[m.UUID]++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 || len(handled) != len(want) || missing(want, handled) > 0 {
		t.Fatalf("second drain took %d; handled %d distinct of %d", n, len(handled), len(want))
	}
	for id, k := range handled {
		if k != 1 {
			t.Errorf("%s handled %d times", id, k)
		}
	}
	if n, err := queue.DrainRetryTopic(ctx, q, sink, nil); n != 0 || err != nil {
		t.Fatalf("draining again: %d, %v", n, err)
	}
	if br, ok := q.(queue.BacklogReporter); ok {
		bl, err := br.Backlog(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range bl {
			if b.Topic == topic {
				t.Errorf("the retry group is still reported after the drain: %+v", b)
			}
		}
	}
}
