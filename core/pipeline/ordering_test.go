package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookbus/hookbus/core/envelope"
	"github.com/hookbus/hookbus/core/queue"
	"github.com/hookbus/hookbus/core/retry"
	"github.com/hookbus/hookbus/core/script"
	"github.com/hookbus/hookbus/internal/testenv"
	"github.com/hookbus/hookbus/sdk"
)

// keyedSink records, per key (the event's subject), the sequence numbers
// (data.seq) it accepted, in the order it accepted them. fail decides
// each attempt's outcome; it sleeps up to maxSleep first.
type keyedSink struct {
	mu       sync.Mutex
	got      map[string][]int
	attempts map[string]int // by event id
	rnd      *rand.Rand
	fail     func(d sdk.Delivery, rnd *rand.Rand) bool
	maxSleep time.Duration
	active   atomic.Int32
	peak     atomic.Int32
}

func newKeyedSink(fail func(sdk.Delivery, *rand.Rand) bool, maxSleep time.Duration) *keyedSink {
	return &keyedSink{got: map[string][]int{}, attempts: map[string]int{}, rnd: rand.New(rand.NewPCG(7, 7)), fail: fail, maxSleep: maxSleep}
}

func (s *keyedSink) Init(context.Context, json.RawMessage) (sdk.SinkInfo, error) {
	return sdk.SinkInfo{}, nil
}

func (s *keyedSink) Close(context.Context) error { return nil }

func (s *keyedSink) Deliver(_ context.Context, batch []sdk.Delivery) []sdk.Result {
	n := s.active.Add(1)
	defer s.active.Add(-1)
	for {
		p := s.peak.Load()
		if n <= p || s.peak.CompareAndSwap(p, n) {
			break
		}
	}
	res := make([]sdk.Result, len(batch))
	for i, d := range batch {
		s.mu.Lock()
		sleep := time.Duration(0)
		if s.maxSleep > 0 {
			sleep = time.Duration(s.rnd.Int64N(int64(s.maxSleep)))
		}
		failed := s.fail(d, s.rnd)
		s.attempts[d.Event.ID]++
		s.mu.Unlock()
		time.Sleep(sleep)
		if failed {
			res[i] = sdk.Result{Outcome: sdk.Retry, Reason: "flaky"}
			continue
		}
		var data struct{ Seq int }
		_ = json.Unmarshal(d.Event.Data, &data)
		s.mu.Lock()
		s.got[d.Event.Subject] = append(s.got[d.Event.Subject], data.Seq)
		s.mu.Unlock()
		res[i] = sdk.Result{Outcome: sdk.OK}
	}
	return res
}

// count is how many deliveries the sink accepted for key.
func (s *keyedSink) count(key string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.got[key])
}

// distinct is how many distinct events of key the sink accepted.
func (s *keyedSink) distinct(key string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[int]bool{}
	for _, v := range s.got[key] {
		seen[v] = true
	}
	return len(seen)
}

// checkOrder fails the test unless every key's deliveries are 0..n-1 in
// order, a repeat only right after itself.
func checkOrder(t *testing.T, got map[string][]int, keys []string, n int) {
	t.Helper()
	for _, k := range keys {
		seq := got[k]
		next := 0
		for i, v := range seq {
			switch {
			case v == next:
				next++
			case i > 0 && v == seq[i-1]:
				// an immediate repeat: at-least-once
			default:
				t.Fatalf("key %s: delivery %d is event %d, expected %d (or a repeat of %d): %v", k, i, v, next, next-1, seq)
			}
		}
		if next != n {
			t.Fatalf("key %s: %d of %d events delivered: %v", k, next, n, seq)
		}
	}
}

func openEmbedded(t *testing.T) queue.Queue {
	t.Helper()
	q, err := queue.NewEmbeddedJetStream(context.Background(), queue.JetStreamOptions{DataDir: t.TempDir(), CloseGrace: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

// startOrdered runs pipeline "p" from "src" through steps to the sink "out" on q.
func startOrdered(t *testing.T, q queue.Queue, s Sink, opts Options, steps ...Step) *Engine {
	t.Helper()
	opts.Queue = q
	s.Name = "out"
	opts.Sinks = map[string]Sink{"out": s}
	opts.Pipelines = []Pipeline{{Name: "p", From: []string{"src"}, Steps: steps, To: []string{"out"}}}
	if opts.DeadLetters == nil {
		opts.DeadLetters = &deadLetters{}
	}
	e, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = e.Close()
	})
	return e
}

func keyedEvent(key string, seq int) sdk.Event {
	return sdk.Event{ID: fmt.Sprintf("%s-%d", key, seq), Type: "order.paid", Subject: key, Data: json.RawMessage(fmt.Sprintf(`{"seq":%d}`, seq))}
}

// fastRetries is a schedule that never runs out in a test and waits little.
var fastRetries = retry.Schedule{Delays: repeat(5*time.Millisecond, 1000)}

func repeat(d time.Duration, n int) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = d
	}
	return out
}

// TestOrderedSinkKeepsPerKeyOrder: keyed events through a receiver that
// fails and sleeps at random, and steps that time out now and then, arrive
// in per-key order, each once or repeated right after itself; events
// without the key are all delivered too; the partitions together keep to
// the sink's max_in_flight. On the embedded driver, whose retries are
// otherwise copies due later (a Delayer), so an ordered sink's own retry
// path is the one under test.
func TestOrderedSinkKeepsPerKeyOrder(t *testing.T) {
	q := openEmbedded(t)
	sink := newKeyedSink(func(_ sdk.Delivery, rnd *rand.Rand) bool { return rnd.IntN(3) == 0 }, 2*time.Millisecond)
	var stepMu sync.Mutex
	stepRuns := map[string]int{}
	// Every seventh event times out on its first run.
	step := stepFunc{name: "maybe-timeout", run: func(_ context.Context, ev sdk.Event, _ StepContext) ([]sdk.Event, error) {
		stepMu.Lock()
		stepRuns[ev.ID]++
		first := stepRuns[ev.ID] == 1
		stepMu.Unlock()
		var data struct{ Seq int }
		_ = json.Unmarshal(ev.Data, &data)
		if first && data.Seq%7 == 3 {
			return nil, fmt.Errorf("transform: %w", script.ErrTimeout)
		}
		return []sdk.Event{ev}, nil
	}}
	const maxInFlight = 6
	e := startOrdered(t, q, Sink{Sink: sink, MaxInFlight: maxInFlight, Schedule: fastRetries, Ordering: []string{"subject"}},
		Options{ScriptTimeoutBackoff: 10 * time.Millisecond}, step)
	const keys, perKey = 12, 25
	var names []string
	for k := range keys {
		names = append(names, "key-"+strconv.Itoa(k))
	}
	// Interleaved, each key's events in order; unkeyed ones between.
	for i := range perKey {
		var evs []sdk.Event
		for _, k := range names {
			evs = append(evs, keyedEvent(k, i))
		}
		evs = append(evs, sdk.Event{ID: fmt.Sprintf("nokey-%d", i), Type: "x", Data: json.RawMessage(fmt.Sprintf(`{"seq":%d}`, i))})
		if err := e.Publish(context.Background(), "src", evs); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, 120*time.Second, "every event delivered", func() bool {
		for _, k := range append([]string{""}, names...) {
			if sink.distinct(k) < perKey {
				return false
			}
		}
		return true
	})
	sink.mu.Lock()
	got := sink.got
	sink.mu.Unlock()
	checkOrder(t, got, names, perKey)
	if p := sink.peak.Load(); p > maxInFlight*2 {
		// The unordered consumer has a window of its own: at most
		// max_in_flight partition deliveries plus max_in_flight others.
		t.Fatalf("peak deliveries in flight %d, over twice max_in_flight", p)
	}
	stepMu.Lock()
	retried := 0
	for _, n := range stepRuns {
		if n > 1 {
			retried++
		}
	}
	stepMu.Unlock()
	if retried == 0 {
		t.Fatal("no step was tried again")
	}
}

// TestOrderedPartitionsKeepToMaxInFlight: with many keys and a slow sink,
// the partitions' deliveries in flight never exceed max_in_flight.
func TestOrderedPartitionsKeepToMaxInFlight(t *testing.T) {
	q := openEmbedded(t)
	sink := newKeyedSink(func(sdk.Delivery, *rand.Rand) bool { return false }, 5*time.Millisecond)
	const maxInFlight = 3
	e := startOrdered(t, q, Sink{Sink: sink, MaxInFlight: maxInFlight, Schedule: fastRetries, Ordering: []string{"subject"}}, Options{})
	var evs []sdk.Event
	for k := range 200 {
		evs = append(evs, keyedEvent("k"+strconv.Itoa(k), 0))
	}
	if err := e.Publish(context.Background(), "src", evs); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 60*time.Second, "every event delivered", func() bool {
		for k := range 200 {
			if sink.count("k"+strconv.Itoa(k)) == 0 {
				return false
			}
		}
		return true
	})
	if p := sink.peak.Load(); p > maxInFlight {
		t.Fatalf("peak deliveries in flight %d, max_in_flight %d", p, maxInFlight)
	}
	if p := sink.peak.Load(); p < 2 {
		t.Fatalf("peak deliveries in flight %d: the partitions did not deliver in parallel", p)
	}
}

// twoKeys returns two keys of different partitions.
func twoKeys() (string, string) {
	a := "stuck"
	for i := 0; ; i++ {
		b := "free-" + strconv.Itoa(i)
		if envelope.Partition(a) != envelope.Partition(b) {
			return a, b
		}
	}
}

// TestOrderedFailingKeyBlocksOnlyItsPartition: a key whose first event
// keeps failing holds up the events behind it (never attempted), while
// another key's events are all delivered; once the receiver recovers, the
// held key's events follow in order.
func TestOrderedFailingKeyBlocksOnlyItsPartition(t *testing.T) {
	q := openEmbedded(t)
	stuck, free := twoKeys()
	var recovered atomic.Bool
	sink := newKeyedSink(func(d sdk.Delivery, _ *rand.Rand) bool { return d.Event.Subject == stuck && !recovered.Load() }, 0)
	e := startOrdered(t, q, Sink{Sink: sink, Schedule: retry.Schedule{Delays: repeat(20*time.Millisecond, 1000)}, Ordering: []string{"subject"}}, Options{})
	for i := range 5 {
		if err := e.Publish(context.Background(), "src", []sdk.Event{keyedEvent(stuck, i), keyedEvent(free, i)}); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, 60*time.Second, "the free key delivered", func() bool { return sink.count(free) == 5 })
	testenv.Eventually(t, 60*time.Second, "the stuck key's head retried", func() bool {
		sink.mu.Lock()
		defer sink.mu.Unlock()
		return sink.attempts[stuck+"-0"] >= 3
	})
	sink.mu.Lock()
	for i := 1; i < 5; i++ {
		if n := sink.attempts[fmt.Sprintf("%s-%d", stuck, i)]; n > 0 {
			sink.mu.Unlock()
			t.Fatalf("event %d of the stuck key attempted %d times while event 0 failed", i, n)
		}
	}
	sink.mu.Unlock()
	recovered.Store(true)
	testenv.Eventually(t, 60*time.Second, "the stuck key delivered", func() bool { return sink.distinct(stuck) == 5 })
	sink.mu.Lock()
	checkOrder(t, sink.got, []string{stuck, free}, 5)
	sink.mu.Unlock()
}

// TestOrderedExhaustedLetsTheNextGo: an event whose attempts run out is
// dead-lettered, and the next event of its key is delivered after it.
func TestOrderedExhaustedLetsTheNextGo(t *testing.T) {
	q := openEmbedded(t)
	sink := newKeyedSink(func(d sdk.Delivery, _ *rand.Rand) bool { return d.Event.ID == "k-0" }, 0)
	dls := &deadLetters{}
	e := startOrdered(t, q, Sink{Sink: sink, Schedule: retry.Schedule{Delays: repeat(10*time.Millisecond, 2)}, Ordering: []string{"data", "key"}}, Options{DeadLetters: dls})
	var evs []sdk.Event
	for i := range 3 {
		evs = append(evs, sdk.Event{ID: fmt.Sprintf("k-%d", i), Type: "t", Subject: "k", Data: json.RawMessage(fmt.Sprintf(`{"key":"k","seq":%d}`, i))})
	}
	if err := e.Publish(context.Background(), "src", evs); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 60*time.Second, "the rest delivered", func() bool { return sink.count("k") == 2 })
	testenv.Eventually(t, 30*time.Second, "the first dead-lettered", func() bool { return len(dls.all()) == 1 })
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if got := sink.got["k"]; got[0] != 1 || got[1] != 2 || sink.attempts["k-0"] != 3 {
		t.Fatalf("delivered %v, attempts of the first %d", got, sink.attempts["k-0"])
	}
}

// TestOrderingTurnedOffMovesThePartitions: events waiting on an ordered
// sink's partitions when its ordering is turned off are moved to its
// topic and delivered; so are the events that come after.
func TestOrderingTurnedOffMovesThePartitions(t *testing.T) {
	q := openEmbedded(t)
	var down atomic.Bool
	down.Store(true)
	sink := newKeyedSink(func(sdk.Delivery, *rand.Rand) bool { return down.Load() }, 0)
	e := startOrdered(t, q, Sink{Sink: sink, Schedule: retry.Schedule{Delays: repeat(50*time.Millisecond, 1000)}, Ordering: []string{"subject"}}, Options{})
	for i := range 4 {
		if err := e.Publish(context.Background(), "src", []sdk.Event{keyedEvent("a", i), keyedEvent("b", i)}); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, 30*time.Second, "the heads attempted", func() bool {
		sink.mu.Lock()
		defer sink.mu.Unlock()
		return sink.attempts["a-0"] > 0 && sink.attempts["b-0"] > 0
	})
	if err := e.SetSink(context.Background(), Sink{Name: "out", Sink: sink, Schedule: fastRetries}); err != nil {
		t.Fatal(err)
	}
	down.Store(false)
	if err := e.Publish(context.Background(), "src", []sdk.Event{keyedEvent("a", 4), keyedEvent("b", 4)}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 60*time.Second, "every event delivered", func() bool { return sink.distinct("a") == 5 && sink.distinct("b") == 5 })
	// The partitions' consumers are gone once emptied.
	testenv.Eventually(t, 30*time.Second, "the partition groups removed", func() bool {
		gl := q.(queue.GroupLister)
		stale, err := gl.StaleGroups(context.Background())
		if err != nil {
			return false
		}
		for _, g := range stale {
			if _, _, ok := envelope.PartitionOf(g.Topic); ok {
				return false
			}
		}
		return true
	})
}

// TestOrderingRefused: a driver that cannot order, or a fan-out sink,
// gets an error naming the sink.
func TestOrderingRefused(t *testing.T) {
	_, err := New(Options{Queue: queue.NewMemory(), Sinks: map[string]Sink{"out": {Name: "out", Sink: &collectSink{}, Ordering: []string{"subject"}}}})
	if err == nil || !strings.Contains(err.Error(), `sink "out": ordering`) {
		t.Fatalf("memory driver: %v", err)
	}
}

func TestOrderingKey(t *testing.T) {
	for _, tc := range []struct {
		payload string
		path    []string
		want    string
		ok      bool
	}{
		{`{"subject":"a"}`, []string{"subject"}, "a", true},
		{`{"data":{"order_id":42}}`, []string{"data", "order_id"}, "42", true},
		{`{"data":{"order_id":-1.5}}`, []string{"data", "order_id"}, "-1.5", true},
		{`{"data":{"order_id":"x\u00e9"}}`, []string{"data", "order_id"}, "xé", true},
		{`{"data":{"order_id":null}}`, []string{"data", "order_id"}, "", false},
		{`{"data":{"order_id":{"a":1}}}`, []string{"data", "order_id"}, "", false},
		{`{"data":{"order_id":true}}`, []string{"data", "order_id"}, "", false},
		{`{"data":"text"}`, []string{"data", "order_id"}, "", false},
		{`{"data":{}}`, []string{"data", "order_id"}, "", false},
		{`not json`, []string{"subject"}, "", false},
	} {
		got, ok := orderingKey([]byte(tc.payload), tc.path)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%s %v: %q %v, want %q %v", tc.payload, tc.path, got, ok, tc.want, tc.ok)
		}
	}
}

// TestOrderedLateSink: an ordered sink that is not ready yet (a plugin
// still initialising) keeps its events on its partitions and, once ready,
// delivers them in per-key order.
func TestOrderedLateSink(t *testing.T) {
	q := openEmbedded(t)
	sink := newKeyedSink(func(_ sdk.Delivery, rnd *rand.Rand) bool { return rnd.IntN(4) == 0 }, time.Millisecond)
	ready := make(chan struct{})
	e := startOrdered(t, q, Sink{Ready: ready, Resolve: func() (sdk.Sink, int) { return sink, 8 }, Schedule: fastRetries, Ordering: []string{"subject"}}, Options{})
	keys := []string{"a", "b", "c"}
	for i := range 20 {
		for _, k := range keys {
			if err := e.Publish(context.Background(), "src", []sdk.Event{keyedEvent(k, i)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Queued on the partitions meanwhile.
	testenv.Eventually(t, 30*time.Second, "events on the partitions", func() bool {
		b, err := q.(queue.BacklogReporter).Backlog(context.Background())
		if err != nil {
			return false
		}
		var n uint64
		for _, g := range b {
			if _, _, ok := envelope.PartitionOf(g.Topic); ok {
				n += g.Pending + g.Unacked
			}
		}
		return n == 60
	})
	close(ready)
	testenv.Eventually(t, 60*time.Second, "every event delivered", func() bool {
		return sink.distinct("a") == 20 && sink.distinct("b") == 20 && sink.distinct("c") == 20
	})
	sink.mu.Lock()
	defer sink.mu.Unlock()
	checkOrder(t, sink.got, keys, 20)
}
