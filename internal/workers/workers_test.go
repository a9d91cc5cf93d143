package workers

import (
	"sync"
	"testing"
	"time"

	"github.com/hookbus/hookbus/internal/testenv"
)

func TestWorkersAreReused(t *testing.T) {
	p := New()
	// One at a time: the first worker takes every function.
	for range 100 {
		done := make(chan struct{})
		p.Go(func() { close(done) })
		<-done
	}
	// Handing over needs the worker to be back in its select; allow a
	// few extra starts for that race; a new goroutine per call would be 100.
	if n := p.started.Load(); n > 50 {
		t.Errorf("%d goroutines started for 100 sequential calls", n)
	}
	// Concurrent callers get as many workers as they need.
	burst(p, 8)
	if n := p.started.Load(); n < 8 {
		t.Errorf("8 concurrent calls ran on %d goroutines", n)
	}
}

func TestPoolShrinksUnderLightLoad(t *testing.T) {
	p := New()
	p.idleTimeout = 50 * time.Millisecond
	// A burst of 20 concurrent calls needs 20 workers.
	burst(p, 20)
	if n := p.started.Load(); n != 20 {
		t.Fatalf("%d workers for 20 concurrent calls", n)
	}
	// Then one call at a time, more often than the idle timeout: the most
	// recently idle worker takes each, and the rest time out.
	deadline := time.Now().Add(testenv.Timeout(10 * time.Second))
	for p.Idle() > 2 && time.Now().Before(deadline) {
		done := make(chan struct{})
		p.Go(func() { close(done) })
		<-done
		time.Sleep(time.Millisecond)
	}
	if n := p.Idle(); n > 2 {
		t.Errorf("%d idle workers after light load, want the pool to shrink", n)
	}
}

// burst runs n calls that all wait until every one has started.
func burst(p *Pool, n int) {
	var wg sync.WaitGroup
	release := make(chan struct{})
	for range n {
		wg.Add(1)
		p.Go(func() { defer wg.Done(); <-release })
	}
	close(release)
	wg.Wait()
}
