package queue

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
)

// Memory is an in-process queue for tests and demos. It is NOT durable:
// everything queued is lost when the process stops. It supports consumer
// groups, many messages in flight per subscription and delayed nacks, so it
// behaves like the durable drivers in everything but persistence.
type Memory struct {
	opts   MemoryOptions
	mu     sync.Mutex
	topics map[string]*memTopic
	closed bool
	done   chan struct{}
	wg     sync.WaitGroup
}

type memTopic struct {
	groups map[string]*memGroup
	// backlog keeps messages published before any group subscribed.
	backlog []*memEnvelope
}

type memEnvelope struct {
	uuid       string
	payload    []byte
	metadata   message.Metadata
	deliveries int
	// unsettled counts deliveries since the last explicit ack or nack.
	unsettled int
}

type memGroup struct {
	mu      sync.Mutex
	pending []*memEnvelope
	// unacked counts messages taken from pending and not yet settled:
	// handed out, about to be, or waiting out a delayed nack.
	unacked int
	notify  chan struct{}
}

// MemoryOptions configure a Memory queue.
type MemoryOptions struct {
	// CloseGrace is how long a message handed out when its subscription
	// ends may still be acked or nacked before it goes back to its group
	// (default DefaultCloseGrace): a consumer stopped while it works (a
	// reload replacing it) finishes its messages, rather than seeing them
	// redelivered to its successor as well.
	CloseGrace time.Duration
}

// DefaultCloseGrace is the CloseGrace of drivers whose options leave it 0.
const DefaultCloseGrace = 30 * time.Second

// NewMemory returns an empty in-memory queue.
func NewMemory() *Memory { return NewMemoryWith(MemoryOptions{}) }

// NewMemoryWith returns an empty in-memory queue with opts.
func NewMemoryWith(opts MemoryOptions) *Memory {
	if opts.CloseGrace <= 0 {
		opts.CloseGrace = DefaultCloseGrace
	}
	return &Memory{opts: opts, topics: map[string]*memTopic{}, done: make(chan struct{})}
}

var errClosed = errors.New("queue closed")

// Features implements Queue.
func (m *Memory) Features() Features { return Features{DelayedNack: true, CountsDeliveries: true} }

// Provision implements Queue; the memory driver needs nothing.
func (m *Memory) Provision(context.Context, []string) error { return nil }

// Publish implements message.Publisher.
func (m *Memory) Publish(topic string, msgs ...*message.Message) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errClosed
	}
	t := m.topic(topic)
	for _, msg := range msgs {
		env := &memEnvelope{uuid: msg.UUID, payload: append([]byte(nil), msg.Payload...), metadata: copyMeta(msg.Metadata)}
		if len(t.groups) == 0 {
			t.backlog = append(t.backlog, env)
			continue
		}
		for _, g := range t.groups {
			c := *env
			c.metadata = copyMeta(env.metadata)
			g.push(&c)
		}
	}
	return nil
}

func (m *Memory) topic(name string) *memTopic {
	t, ok := m.topics[name]
	if !ok {
		t = &memTopic{groups: map[string]*memGroup{}}
		m.topics[name] = t
	}
	return t
}

func copyMeta(md message.Metadata) message.Metadata {
	c := make(message.Metadata, len(md))
	for k, v := range md {
		c[k] = v
	}
	return c
}

func (g *memGroup) push(env *memEnvelope) {
	g.mu.Lock()
	g.pending = append(g.pending, env)
	g.mu.Unlock()
	select {
	case g.notify <- struct{}{}:
	default:
	}
}

// pop takes the first pending message; it counts as unacked until it is
// settled or requeued.
func (g *memGroup) pop() *memEnvelope {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.pending) == 0 {
		return nil
	}
	env := g.pending[0]
	g.pending[0] = nil
	g.pending = g.pending[1:]
	g.unacked++
	if len(g.pending) > 0 {
		select {
		case g.notify <- struct{}{}:
		default:
		}
	}
	return env
}

// Subscriber implements Queue.
func (m *Memory) Subscriber(group string, maxInFlight int) (message.Subscriber, error) {
	if maxInFlight <= 0 {
		maxInFlight = 64
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &memSubscriber{q: m, group: group, maxInFlight: maxInFlight, ctx: ctx, cancel: cancel}, nil
}

// Close implements message.Publisher; it stops every subscription.
func (m *Memory) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	close(m.done)
	m.mu.Unlock()
	m.wg.Wait()
	return nil
}

type memSubscriber struct {
	q           *Memory
	group       string
	maxInFlight int
	ctx         context.Context // cancelled by Close
	cancel      context.CancelFunc
	wg          sync.WaitGroup
}

// SubscribeInitialize implements message.SubscribeInitializer: it creates
// the group, so it receives every message published from now on.
func (s *memSubscriber) SubscribeInitialize(topic string) error {
	m := s.q
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errClosed
	}
	m.group(m.topic(topic), s.group)
	return nil
}

// group returns the named group of t, creating it; the first group of a
// topic takes over the topic's backlog. Called with m.mu held.
func (m *Memory) group(t *memTopic, name string) *memGroup {
	g, ok := t.groups[name]
	if !ok {
		g = &memGroup{notify: make(chan struct{}, 1)}
		t.groups[name] = g
		if len(t.groups) == 1 {
			for _, env := range t.backlog {
				g.push(env)
			}
			t.backlog = nil
		}
	}
	return g
}

func (s *memSubscriber) Subscribe(parent context.Context, topic string) (<-chan *message.Message, error) {
	m := s.q
	ctx, cancel := context.WithCancel(parent)
	stop := context.AfterFunc(s.ctx, cancel)
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		stop()
		cancel()
		return nil, errClosed
	}
	g := m.group(m.topic(topic), s.group)
	m.wg.Add(1)
	s.wg.Add(1)
	m.mu.Unlock()

	out := make(chan *message.Message)
	go func() {
		defer m.wg.Done()
		defer s.wg.Done()
		defer stop()
		defer cancel()
		defer close(out)
		s.run(ctx, g, out)
	}()
	return out, nil
}

// run hands g's messages to out, at most maxInFlight unsettled at once,
// until ctx is done or the queue closes; it returns once every message it
// handed out is settled.
func (s *memSubscriber) run(ctx context.Context, g *memGroup, out chan<- *message.Message) {
	done := s.q.done
	var inflight sync.WaitGroup
	defer inflight.Wait()
	sem := make(chan struct{}, s.maxInFlight)
	for {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return
		case <-done:
			return
		}
		env := g.next(ctx, done)
		if env == nil {
			return
		}
		msg, cancel := env.delivery(ctx)
		select {
		case out <- msg:
		case <-ctx.Done():
			// Never handed out: not a delivery.
			cancel()
			env.deliveries--
			env.unsettled--
			g.requeue(env, true)
			return
		case <-done:
			cancel()
			return
		}
		inflight.Add(1)
		go func() {
			defer inflight.Done()
			defer cancel()
			defer func() { <-sem }()
			g.await(ctx, done, env, msg, s.q.opts.CloseGrace)
		}()
	}
}

// next takes the group's next message, waiting for one; nil when ctx is
// done or the queue closes first.
func (g *memGroup) next(ctx context.Context, done <-chan struct{}) *memEnvelope {
	for {
		if env := g.pop(); env != nil {
			return env
		}
		select {
		case <-g.notify:
		case <-ctx.Done():
			return nil
		case <-done:
			return nil
		}
	}
}

// delivery counts one delivery of env and returns it as a message whose
// context ends with ctx or the returned cancel.
func (env *memEnvelope) delivery(ctx context.Context) (*message.Message, context.CancelFunc) {
	env.deliveries++
	env.unsettled++
	msg := message.NewMessage(env.uuid, env.payload)
	msg.Metadata = copyMeta(env.metadata)
	msg.Metadata.Set(MetaAttempt, strconv.Itoa(env.deliveries))
	msg.Metadata.Set(MetaDeliveries, strconv.Itoa(env.unsettled))
	msgCtx, cancel := context.WithCancel(ctx)
	msg.SetContext(msgCtx)
	return msg, cancel
}

// await settles a message handed out: an ack forgets it, a nack queues it
// again (after MetaNackDelay, at the back), and a subscription that ends
// first gives it back at the front.
//
// A message still being handled when the subscription ends keeps its
// outcome for grace: a consumer stopped while it works (a reload replacing
// it) finishes its messages rather than see them redelivered to its
// successor as well.
func (g *memGroup) await(ctx context.Context, done <-chan struct{}, env *memEnvelope, msg *message.Message, grace time.Duration) {
	nacked := func() {
		env.unsettled = 0
		if d := NackDelay(msg); d > 0 {
			time.AfterFunc(d, func() { g.requeue(env, false) })
		} else {
			g.requeue(env, true)
		}
	}
	select {
	case <-msg.Acked():
		g.settled()
	case <-msg.Nacked():
		nacked()
	case <-ctx.Done():
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-msg.Acked():
			g.settled()
		case <-msg.Nacked():
			nacked()
		case <-t.C:
			g.requeue(env, true)
		case <-done:
			g.settled()
		}
	case <-done:
		g.settled()
	}
}

// settled forgets one unsettled message.
func (g *memGroup) settled() {
	g.mu.Lock()
	g.unacked--
	g.mu.Unlock()
}

// requeue puts an unsettled message back into pending, at the front or
// the back.
func (g *memGroup) requeue(env *memEnvelope, front bool) {
	g.mu.Lock()
	if front {
		g.pending = append([]*memEnvelope{env}, g.pending...)
	} else {
		g.pending = append(g.pending, env)
	}
	g.unacked--
	g.mu.Unlock()
	select {
	case g.notify <- struct{}{}:
	default:
	}
}

// Close ends every subscription of this subscriber; unacknowledged
// messages go back to their group.
func (s *memSubscriber) Close() error {
	s.cancel()
	s.wg.Wait()
	return nil
}

// Backlog implements BacklogReporter for every group of every topic.
func (m *Memory) Backlog(context.Context) ([]Backlog, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Backlog
	for name, t := range m.topics {
		for gname, g := range t.groups {
			g.mu.Lock()
			out = append(out, Backlog{Group: gname, Topic: name, Pending: uint64(len(g.pending)), Unacked: uint64(g.unacked)})
			g.mu.Unlock()
		}
	}
	sortBacklog(out)
	return out, nil
}

// Retire implements TopicRetirer.
func (m *Memory) Retire(ctx context.Context, group, topic string, fn func(*message.Message) error) (int, error) {
	left := func(context.Context) (uint64, bool, error) {
		m.mu.Lock()
		defer m.mu.Unlock()
		t, ok := m.topics[topic]
		if !ok {
			return 0, false, nil
		}
		g, ok := t.groups[group]
		if !ok {
			return 0, false, nil
		}
		g.mu.Lock()
		defer g.mu.Unlock()
		return uint64(len(g.pending) + g.unacked), true, nil
	}
	n, exists, err := drainGroup(ctx, m, group, topic, left, fn)
	if err != nil || !exists {
		return n, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if t, ok := m.topics[topic]; ok {
		delete(t.groups, group)
		if len(t.groups) == 0 && len(t.backlog) == 0 {
			delete(m.topics, topic)
		}
	}
	return n, nil
}
