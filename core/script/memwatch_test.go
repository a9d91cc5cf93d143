package script

import (
	"errors"
	"testing"
	"time"

	"github.com/dop251/goja"
)

// fakeHeap drives a heapWatch with a heap, collections and a clock of the test's own.
type fakeHeap struct {
	heap, live uint64
	gcs        int
	afterGC    uint64 // live bytes a collection leaves
	now        time.Time
}

func (f *fakeHeap) watch() *heapWatch {
	return &heapWatch{calls: map[*watchedCall]struct{}{},
		running: true, // no sampling loop: the test calls check itself
		heap:    func() uint64 { return f.heap }, live: func() uint64 { return f.live },
		gc: func() { f.gcs++; f.live, f.heap = f.afterGC, f.afterGC }, now: func() time.Time { return f.now }}
}

// interrupted reports whether vm has a pending interrupt, and with what.
func interrupted(vm *goja.Runtime) error {
	_, err := vm.RunString("1")
	vm.ClearInterrupt()
	var ie *goja.InterruptedError
	if errors.As(err, &ie) {
		if cause, ok := ie.Value().(error); ok {
			return cause
		}
	}
	return err
}

// TestHeapWatchBlamesOneCallAndCollectsAtMostEvery100ms: after a
// confirming collection only the call that has seen the most growth (the
// lowest heap at its start) is interrupted, not every call running; and a
// suspicion forces a collection at most once per 100ms.
func TestHeapWatchBlamesOneCallAndCollectsAtMostEvery100ms(t *testing.T) {
	f := &fakeHeap{now: time.Unix(1000, 0)}
	w := f.watch()
	const budget = 100
	// The culprit starts at a heap of 1000 bytes, a second call later at
	// 1500.
	f.live, f.heap = 1000, 1000
	culprit := goja.New()
	stop1 := w.start(culprit, budget)
	defer stop1()
	f.live, f.heap = 1500, 1500
	other := goja.New()
	stop2 := w.start(other, budget)
	defer stop2()
	calls := func() []*watchedCall {
		var cs []*watchedCall
		for c := range w.calls {
			cs = append(cs, c)
		}
		return cs
	}

	// Garbage only: the collection finds the growth is not live.
	f.heap, f.afterGC = 9000, 1100
	w.check(calls())
	if f.gcs != 1 {
		t.Fatalf("collections = %d, want 1", f.gcs)
	}
	if err := interrupted(culprit); err != nil {
		t.Errorf("interrupted on garbage: %v", err)
	}

	// Real growth, 50ms later: suspected, but no collection yet.
	f.now = f.now.Add(50 * time.Millisecond)
	f.heap, f.afterGC = 9000, 9000
	w.check(calls())
	if f.gcs != 1 {
		t.Fatalf("collections = %d, want still 1 within 100ms", f.gcs)
	}
	if err := interrupted(culprit); err != nil {
		t.Errorf("interrupted before a confirming collection: %v", err)
	}

	// 100ms after the first collection: confirmed; only the culprit goes.
	f.now = f.now.Add(50 * time.Millisecond)
	w.check(calls())
	if f.gcs != 2 {
		t.Fatalf("collections = %d, want 2", f.gcs)
	}
	if err := interrupted(culprit); !errors.Is(err, ErrMemory) {
		t.Errorf("culprit: %v, want ErrMemory", err)
	}
	if err := interrupted(other); err != nil {
		t.Errorf("the other call is interrupted too: %v", err)
	}
}

// TestHeapWatchBaseCountsHeapSinceLastCollection: the live heap of the last
// collection is stale; what was allocated since, and is still live when
// the confirming collection runs, was there before the call started and
// must not be blamed on it. (With the stale live heap as its base, this
// innocent call was interrupted.)
func TestHeapWatchBaseCountsHeapSinceLastCollection(t *testing.T) {
	f := &fakeHeap{now: time.Unix(1000, 0)}
	w := f.watch()
	const budget = 100
	f.live, f.heap = 1000, 50000 // 49000 bytes allocated since the last collection
	vm := goja.New()
	stop := w.start(vm, budget)
	defer stop()
	var calls []*watchedCall
	for c := range w.calls {
		calls = append(calls, c)
	}
	// The call grows the heap by 50 bytes; all of it is live.
	f.heap, f.afterGC = 50050, 50050
	w.check(calls)
	if err := interrupted(vm); err != nil {
		t.Errorf("innocent call interrupted: %v", err)
	}
	// Over its budget from where it started: interrupted.
	f.now = f.now.Add(time.Second)
	f.heap, f.afterGC = 50200, 50200
	w.check(calls)
	if err := interrupted(vm); !errors.Is(err, ErrMemory) {
		t.Errorf("call over its budget: %v, want ErrMemory", err)
	}
}
