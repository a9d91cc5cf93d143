package workers

import (
	"sync"
	"testing"
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
	var wg sync.WaitGroup
	release := make(chan struct{})
	for range 8 {
		wg.Add(1)
		p.Go(func() { defer wg.Done(); <-release })
	}
	close(release)
	wg.Wait()
	if n := p.started.Load(); n < 8 {
		t.Errorf("8 concurrent calls ran on %d goroutines", n)
	}
}
