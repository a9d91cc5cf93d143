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

// heapMetric counts the bytes of heap objects, live or not yet swept.
const heapMetric = "/memory/classes/heap/objects:bytes"

// heapWatch interrupts script calls whose process heap growth passes their
// memory bound. Go cannot tell which goroutine allocated what, so the
// growth is the process's: each call's bound is multiplied by the number
// of calls in progress, and a growth over it is confirmed by a garbage
// collection first, so that garbage (which a busy process makes plenty of)
// does not count. An interrupt takes effect at the next JavaScript
// instruction: it cannot stop a native built-in in the middle (the size
// guards of hardenSource cover the ones that allocate a lot at once).
type heapWatch struct {
	mu      sync.Mutex
	calls   map[*watchedCall]struct{}
	running bool
}

type watchedCall struct {
	vm     *goja.Runtime
	base   uint64 // heap bytes when the call started
	budget uint64
	gcBase uint64 // heap bytes after the last confirming collection

	mu   sync.Mutex // holds off the end of the call while it is interrupted
	done bool
}

var watch = heapWatch{calls: map[*watchedCall]struct{}{}}

func heapBytes() uint64 {
	s := []metrics.Sample{{Name: heapMetric}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// start registers a call; the returned function unregisters it.
func (w *heapWatch) start(vm *goja.Runtime, budget int64) func() {
	h := heapBytes()
	c := &watchedCall{vm: vm, base: h, budget: uint64(budget), gcBase: h}
	w.mu.Lock()
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

func (w *heapWatch) check(calls []*watchedCall) {
	n := uint64(len(calls))
	h := heapBytes()
	suspect := false
	for _, c := range calls {
		if h > max(c.base, c.gcBase)+c.budget*n {
			suspect = true
		}
	}
	if !suspect {
		return
	}
	// Confirm with a collection: only what stays live counts.
	runtime.GC()
	h = heapBytes()
	for _, c := range calls {
		c.gcBase = h
		if h > c.base+c.budget*n {
			c.mu.Lock()
			if !c.done {
				c.vm.Interrupt(fmt.Errorf("%w: the process heap grew by %d bytes during the call, over the %d-byte bound (scripts.max_memory)",
					ErrMemory, h-c.base, c.budget))
			}
			c.mu.Unlock()
		}
	}
}
