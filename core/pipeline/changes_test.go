package pipeline

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/hookbus/hookbus/core/queue"
	"github.com/hookbus/hookbus/internal/testenv"
	"github.com/hookbus/hookbus/sdk"
)

// hookedQueue lets a test step into the subscriptions of one consumer
// group: onSubscribe runs before each Subscribe of the group's
// subscribers, and an error it returns fails that Subscribe.
type hookedQueue struct {
	queue.Queue
	group       string
	onSubscribe func() error
}

func (q *hookedQueue) Subscriber(group string, maxInFlight int) (message.Subscriber, error) {
	sub, err := q.Queue.Subscriber(group, maxInFlight)
	if err != nil || group != q.group {
		return sub, err
	}
	return &hookedSub{Subscriber: sub, q: q}, nil
}

type hookedSub struct {
	message.Subscriber
	q *hookedQueue
}

func (s *hookedSub) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	if err := s.q.onSubscribe(); err != nil {
		return nil, err
	}
	return s.Subscriber.Subscribe(ctx, topic)
}

func (s *hookedSub) SubscribeInitialize(topic string) error { return initialize(s.Subscriber, topic) }

// closeWithin closes e and fails the test when Close errs (a handler the
// router never ran makes it wait out CloseTimeout and fail).
func closeWithin(t *testing.T, e *Engine) {
	t.Helper()
	if err := e.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
}

// Pipelines and sinks replaced and removed before Start do not panic, and
// what runs after Start is what was set last.
func TestChangesBeforeStart(t *testing.T) {
	q := queue.NewMemory()
	t.Cleanup(func() { _ = q.Close() })
	oldSink, newSink := &collectSink{}, &collectSink{}
	e, err := New(Options{Queue: q, DeadLetters: &deadLetters{}, CloseTimeout: testenv.Timeout(5 * time.Second),
		Pipelines: []Pipeline{{Name: "p", From: []string{"old"}, To: []string{"out"}}, {Name: "gone", From: []string{"old"}, To: []string{"side"}}},
		Sinks:     map[string]Sink{"out": {Name: "out", Sink: oldSink}, "side": {Name: "side", Sink: &collectSink{}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// A new window replaces the consumer; a new source drops the old one.
	if err := e.SetSink(ctx, Sink{Name: "out", Sink: newSink, MaxInFlight: 3}); err != nil {
		t.Fatal(err)
	}
	if err := e.SetPipeline(ctx, Pipeline{Name: "p", From: []string{"src"}, To: []string{"out"}}); err != nil {
		t.Fatal(err)
	}
	e.RemovePipeline("gone")
	if err := e.RemoveSink("side"); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	if err := e.Start(rctx); err != nil {
		t.Fatal(err)
	}
	publishEvents(t, e, "a", "b")
	testenv.Eventually(t, 30*time.Second, "both events delivered to the new sink", func() bool { return len(newSink.delivered()) == 2 })
	if got := oldSink.delivered(); len(got) != 0 {
		t.Errorf("the replaced sink got %v", got)
	}
	closeWithin(t, e)
}

// A late sink's wait for Ready, ended by Close before Start, does not
// hang a later removal or replacement.
func TestLateSinkChangedAfterCloseBeforeStart(t *testing.T) {
	q := queue.NewMemory()
	t.Cleanup(func() { _ = q.Close() })
	e, err := New(Options{Queue: q, CloseTimeout: testenv.Timeout(5 * time.Second),
		Sinks: map[string]Sink{"late": {Name: "late", Ready: make(chan struct{})}, "other": {Name: "other", Ready: make(chan struct{})}}})
	if err != nil {
		t.Fatal(err)
	}
	closeWithin(t, e)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := e.RemoveSink("late"); err != nil {
			t.Errorf("remove: %v", err)
		}
		if err := e.SetSink(context.Background(), Sink{Name: "other", Sink: &collectSink{}}); !errors.Is(err, errEngineClosed) {
			t.Errorf("set after close: %v, want errEngineClosed", err)
		}
	}()
	testenv.Eventually(t, 30*time.Second, "RemoveSink and SetSink of late sinks after Close", func() bool { return isClosed(done) })
}

// A sink swapped in place after Close is refused, rather than installed
// with a batcher nothing will stop.
func TestSetSinkAfterCloseRefused(t *testing.T) {
	q := queue.NewMemory()
	t.Cleanup(func() { _ = q.Close() })
	e, ctx := runEngine(t, Options{Queue: q, Sinks: map[string]Sink{"out": {Name: "out", Sink: &collectSink{}, Batch: 4}}})
	closeWithin(t, e)
	if err := e.SetSink(ctx, Sink{Name: "out", Sink: &collectSink{}, Batch: 4}); !errors.Is(err, errEngineClosed) {
		t.Errorf("SetSink after Close: %v, want errEngineClosed", err)
	}
}

// A late sink replaced by a ready one just as it becomes ready: the
// replacement gets the events, whichever of the two goes first.
func TestLateSinkReplacedAsItBecomesReady(t *testing.T) {
	for range 20 {
		q := queue.NewMemory()
		ready := make(chan struct{})
		e, err := New(Options{Queue: q, DeadLetters: &deadLetters{},
			Pipelines: []Pipeline{{Name: "p", From: []string{"src"}, To: []string{"out"}}},
			Sinks: map[string]Sink{"out": {Name: "out", Ready: ready,
				Resolve: func() (sdk.Sink, int) { return &collectSink{}, 0 }}}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		if err := e.Start(ctx); err != nil {
			t.Fatal(err)
		}
		sink := &collectSink{}
		close(ready)
		if err := e.SetSink(ctx, Sink{Name: "out", Sink: sink}); err != nil {
			t.Fatal(err)
		}
		publishEvents(t, e, "a")
		testenv.Eventually(t, 30*time.Second, "the event delivered to the replacement", func() bool { return len(sink.delivered()) == 1 })
		closeWithin(t, e)
		cancel()
		_ = q.Close()
	}
}

// blockedIn tells whether a goroutine whose stack has fn waits for a lock.
func blockedIn(fn string) bool {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	for _, g := range strings.Split(string(buf), "\n\n") {
		header, _, _ := strings.Cut(g, "\n")
		if strings.Contains(g, fn) && strings.Contains(header, "Lock") {
			return true
		}
	}
	return false
}

// A sink set while Start is starting the router's handlers runs: it is
// not added after the router started its handlers and then left unstarted.
func TestSinkSetDuringStartRuns(t *testing.T) {
	gate, entered := make(chan struct{}), make(chan struct{})
	var once sync.Once
	q := &hookedQueue{Queue: queue.NewMemory(), group: "sink-a", onSubscribe: func() error {
		once.Do(func() { close(entered) })
		<-gate
		return nil
	}}
	t.Cleanup(func() { _ = q.Queue.(*queue.Memory).Close() })
	e, err := New(Options{Queue: q, DeadLetters: &deadLetters{}, CloseTimeout: testenv.Timeout(5 * time.Second),
		Sinks: map[string]Sink{"a": {Name: "a", Sink: &collectSink{}}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	started := make(chan error, 1)
	go func() { started <- e.Start(ctx) }()
	testenv.Eventually(t, 30*time.Second, "the router subscribing sink a", func() bool { return isClosed(entered) })
	b := &collectSink{}
	set := make(chan error, 1)
	go func() { set <- e.SetSink(ctx, Sink{Name: "b", Sink: b}) }()
	testenv.Eventually(t, 30*time.Second, "SetSink waiting for a lock", func() bool { return blockedIn("(*Engine).SetSink") })
	close(gate)
	if err := <-started; err != nil {
		t.Fatal(err)
	}
	if err := <-set; err != nil {
		t.Fatal(err)
	}
	// Straight to b's topic: a change now would start b's handler with
	// its own.
	if err := q.Publish(queue.SinkTopic("b"), message.NewMessage(watermill.NewULID(), []byte(`{"id":"x","type":"t","data":{}}`))); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, "the event delivered to sink b", func() bool { return len(b.delivered()) == 1 })
	closeWithin(t, e)
}

// A pipeline whose consumer failed to subscribe leaves no handler behind
// in the router: later changes still work and Close does not wait out
// its timeout for a handler that never ran.
func TestFailedSubscribeLeavesNoHandler(t *testing.T) {
	q := &hookedQueue{Queue: queue.NewMemory(), group: "pipeline-bad", onSubscribe: func() error { return errors.New("broker said no") }}
	t.Cleanup(func() { _ = q.Queue.(*queue.Memory).Close() })
	sink := &collectSink{}
	e, ctx := runEngine(t, Options{Queue: q, DeadLetters: &deadLetters{}, CloseTimeout: testenv.Timeout(5 * time.Second),
		Sinks: map[string]Sink{"out": {Name: "out", Sink: sink}}})
	if err := e.SetPipeline(ctx, Pipeline{Name: "bad", From: []string{"other"}, To: []string{"out"}}); err == nil {
		t.Fatal("SetPipeline with a failing subscription succeeded")
	}
	for _, name := range []string{"p1", "p2", "p3"} {
		if err := e.SetPipeline(ctx, Pipeline{Name: name, From: []string{"src-" + name}, To: []string{"out"}}); err != nil {
			t.Fatalf("SetPipeline %s after a failed one: %v", name, err)
		}
	}
	if err := e.Publish(ctx, "src-p3", []sdk.Event{{ID: "x", Type: "t", Data: []byte(`{}`)}}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, "the event delivered", func() bool { return len(sink.delivered()) == 1 })
	closeWithin(t, e)
}
