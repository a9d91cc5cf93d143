package webhook

import (
	"sync/atomic"
	"time"
)

// workerIdle is how long an idle worker waits for work before it exits.
const workerIdle = 30 * time.Second

// workers runs functions on reused goroutines. A delivery goes deep into
// net/http; a fresh goroutine per delivery grows its stack every time,
// which costs more than the handoff. The number of workers follows the
// concurrency of the callers (max_in_flight bounds it) and shrinks back
// when they stay idle.
type workers struct {
	work    chan func()
	started atomic.Int64 // goroutines started, for tests
}

func newWorkers() *workers { return &workers{work: make(chan func())} }

// run hands f to an idle worker, or starts one.
func (p *workers) run(f func()) {
	if p == nil { // sink not set up: attempt reports it
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

func (p *workers) loop(f func()) {
	t := time.NewTimer(workerIdle)
	defer t.Stop()
	for {
		f()
		t.Reset(workerIdle)
		select {
		case f = <-p.work:
		case <-t.C:
			return
		}
	}
}
