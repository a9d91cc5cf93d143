package script

import (
	"fmt"
	"runtime"
	"runtime/metrics"
	"sync"
	"time"

	"github.com/dop251/goja"
)

// heapSampleEvery is how often the heap watch samples the process heap
// while calls run.
const heapSampleEvery = 5 * time.Millisecond

// minGCInterval rate-limits the collections that confirm a suspected
// growth: each one stops the world, and a busy process with a large heap
// must not collect back to back.
const minGCInterval = 100 * time.Millisecond

const (
	// heapMetric counts the bytes of heap objects, live or not yet swept:
	// what the heap holds right now, to raise a suspicion cheaply.
	heapMetric = "/memory/classes/heap/objects:bytes"
	// liveMetric counts the bytes of the objects the last collection found
	// live: a call's base, and what counts after a confirming collection
	// (garbage left over from earlier work would make the bound loose).
	liveMetric = "/gc/heap/live:bytes"
)

// heapWatch interrupts script calls whose process heap growth passes their
// memory bound. Go cannot tell which goroutine allocated what, so the
// growth is the process's: a growth over the budget of every call in
// progress is confirmed by a garbage collection first (at most one per
// minGCInterval), so that garbage does not count, and then only the call
// that has seen the most growth (the one that started at the lowest
// heap, so the oldest among equals) is interrupted; if the heap is still
// over after that, the next one goes at the next collection. An interrupt
// takes effect at the next JavaScript instruction: it cannot stop a native
// built-in in the middle (the size guards of hardenSource cover the ones
// that allocate a lot at once). Since another call's allocations may be
// the cause, ErrMemory is not a verdict on the event: the pipeline engine
// runs it again, like a timeout.
type heapWatch struct {
	mu      sync.Mutex
	calls   map[*watchedCall]struct{}
	running bool
	lastGC  time.Time
	seq     uint64

	// The process's heap, collections and clock; tests replace them.
	heap, live func() uint64
	gc         func()
	now        func() time.Time
}

type watchedCall struct {
	vm     *goja.Runtime
	base   uint64 // the heap when the call started: see start
	budget uint64
	seq    uint64 // start order

	mu   sync.Mutex // holds off the end of the call while it is interrupted
	done bool
}

var watch = heapWatch{calls: map[*watchedCall]struct{}{},
	heap: func() uint64 { return readMetric(heapMetric) }, live: func() uint64 { return readMetric(liveMetric) },
	gc: runtime.GC, now: time.Now}

func readMetric(name string) uint64 {
	s := []metrics.Sample{{Name: name}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// start registers a call; the returned function unregisters it.
func (w *heapWatch) start(vm *goja.Runtime, budget int64) func() {
	// The live heap of the last collection is stale: what was allocated
	// since (and may well be live, another call's or the process's) is not
	// in it, and a confirming collection would blame this call for it. The
	// heap objects right now count that, and garbage not yet swept too,
	// which leaves the bound looser by that garbage at most; the larger of
	// the two never blames a call for what was there before it started.
	c := &watchedCall{vm: vm, base: max(w.live(), w.heap()), budget: uint64(budget)}
	w.mu.Lock()
	w.seq++
	c.seq = w.seq
	w.calls[c] = struct{}{}
	if !w.running {
		w.running = true
		go w.loop()
	}
	w.mu.Unlock()
	return func() {
		w.mu.Lock()
		delete(w.calls, c)
		w.mu.Unlock()
		c.mu.Lock()
		c.done = true // an interrupt must not reach the runtime's next call
		c.mu.Unlock()
	}
}

// loop samples the heap while calls are registered, then ends.
func (w *heapWatch) loop() {
	t := time.NewTicker(heapSampleEvery)
	defer t.Stop()
	for range t.C {
		w.mu.Lock()
		if len(w.calls) == 0 {
			w.running = false
			w.mu.Unlock()
			return
		}
		calls := make([]*watchedCall, 0, len(w.calls))
		for c := range w.calls {
			calls = append(calls, c)
		}
		w.mu.Unlock()
		w.check(calls)
	}
}

// over reports whether heap h is past the budget of every call in calls
// counted from c's base.
func over(h uint64, c *watchedCall, n int) bool {
	return h > c.base && h-c.base > c.budget*uint64(n)
}

func (w *heapWatch) check(calls []*watchedCall) {
	if len(calls) == 0 {
		return
	}
	// The call that has seen the most growth: the lowest base, the oldest
	// among equals.
	culprit := calls[0]
	for _, c := range calls[1:] {
		if c.base < culprit.base || c.base == culprit.base && c.seq < culprit.seq {
			culprit = c
		}
	}
	if !over(w.heap(), culprit, len(calls)) {
		return
	}
	if now := w.now(); now.Sub(w.lastGC) >= minGCInterval {
		w.lastGC = now
		w.gc() // confirm: only what stays live counts
	} else {
		return // suspected; confirmed at a later sample
	}
	h := w.live()
	if !over(h, culprit, len(calls)) {
		return
	}
	culprit.mu.Lock()
	if !culprit.done {
		culprit.vm.Interrupt(fmt.Errorf("%w: the process heap grew by %d bytes during the call, over the %d-byte bound (scripts.max_memory)",
			ErrMemory, h-culprit.base, culprit.budget))
	}
	culprit.mu.Unlock()
}
