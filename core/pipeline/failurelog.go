package pipeline

import (
	"sync"
	"time"
)

// failureLogEvery is how often a sink logs its failed attempts at info
// level: a dead endpoint fails every attempt of every event, and a line per
// attempt would cost the healthy sinks their CPU and bury the log.
const failureLogEvery = 10 * time.Second

// failureLog folds a sink's failed attempts into one info line per
// period: the first failure logs at once, the next ones within the
// period are counted and the first after it logs with their count. Every
// attempt still logs at debug level, and is counted in the attempt metrics.
type failureLog struct {
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

// allow reports whether the failure at now logs at info level, and how
// many failures were held back since the last line that did.
func (f *failureLog) allow(now time.Time) (bool, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.last.IsZero() && now.Sub(f.last) < failureLogEvery {
		f.suppressed++
		return false, 0
	}
	n := f.suppressed
	f.last, f.suppressed = now, 0
	return true, n
}
