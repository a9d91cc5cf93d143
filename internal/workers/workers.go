// Package workers runs functions on reused goroutines.
package workers

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// defaultIdle is how long an idle worker waits for work before it exits.
const defaultIdle = 30 * time.Second

// Pool runs functions on reused goroutines. Work that goes deep (into
// net/http, say) grows a fresh goroutine's stack every time, which costs
// more than the handoff to a goroutine whose stack has grown already.
//
// Work goes to the worker that became idle last, so under a light load the
// same few workers stay busy and the others time out: the pool grows with
// the concurrency of the callers and shrinks back when it drops. A worker
// keeps no reference to work it has finished. A nil *Pool runs each
// function on a new goroutine.
type Pool struct {
	idleTimeout time.Duration
	mu          sync.Mutex
	idle        []*worker    // a stack: the last to become idle is on top
	started     atomic.Int64 // goroutines started, for tests
}

type worker struct {
	work chan func() // buffered: a hand-off never blocks
}

// New returns an empty pool.
func New() *Pool { return &Pool{idleTimeout: defaultIdle} }

// Go runs f on an idle worker, or on a new one.
func (p *Pool) Go(f func()) {
	if p == nil {
		go f()
		return
	}
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		w := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		w.work <- f
		return
	}
	p.mu.Unlock()
	p.started.Add(1)
	go p.loop(&worker{work: make(chan func(), 1)}, f)
}

func (p *Pool) loop(w *worker, f func()) {
	t := time.NewTimer(p.idleTimeout)
	defer t.Stop()
	for {
		f()
		f = nil
		p.mu.Lock()
		p.idle = append(p.idle, w)
		p.mu.Unlock()
		t.Reset(p.idleTimeout)
		select {
		case f = <-w.work:
			continue
		case <-t.C:
		}
		p.mu.Lock()
		i := slices.Index(p.idle, w)
		if i >= 0 {
			p.idle = slices.Delete(p.idle, i, i+1)
		}
		p.mu.Unlock()
		if i >= 0 {
			return
		}
		// Taken off the stack just as the timer fired: its work is coming.
		f = <-w.work
	}
}

// Idle is the number of idle workers, for tests.
func (p *Pool) Idle() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle)
}
