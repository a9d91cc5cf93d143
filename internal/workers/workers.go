// Package workers runs functions on reused goroutines.
package workers

import (
	"sync/atomic"
	"time"
)

// idle is how long an idle worker waits for work before it exits.
const idle = 30 * time.Second

// Pool runs functions on reused goroutines. Work that goes deep (into
// net/http, say) grows a fresh goroutine's stack every time, which costs
// more than the handoff to a goroutine whose stack has grown already. The
// number of workers follows the concurrency of the callers and shrinks back
// when they stay idle. The zero Pool is not usable; a nil *Pool runs each
// function on a new goroutine.
type Pool struct {
	work    chan func()
	started atomic.Int64 // goroutines started, for tests
}

// New returns an empty pool.
func New() *Pool { return &Pool{work: make(chan func())} }

// Go runs f on an idle worker, or on a new one.
func (p *Pool) Go(f func()) {
	if p == nil {
		go f()
		return
	}
	select {
	case p.work <- f:
	default:
		p.started.Add(1)
		go p.loop(f)
	}
}

func (p *Pool) loop(f func()) {
	t := time.NewTimer(idle)
	defer t.Stop()
	for {
		f()
		t.Reset(idle)
		select {
		case f = <-p.work:
		case <-t.C:
			return
		}
	}
}
