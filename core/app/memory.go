package app

import (
	"context"
	"log/slog"
	"runtime/debug"
	"runtime/metrics"
	"time"

	"github.com/hookbus/hookbus/core/config"
)

// ApplyMemoryLimit sets the Go runtime's soft memory limit to limit
// (server.memory_limit) when it is positive; 0 leaves the runtime's own
// (the GOMEMLIMIT environment variable, or none). It returns the limit in
// force, math.MaxInt64 for none. The limit is the process's: call it from
// the command that runs hookbus, not for each App.
func ApplyMemoryLimit(limit config.ByteSize) int64 {
	if limit > 0 {
		debug.SetMemoryLimit(int64(limit))
	}
	return debug.SetMemoryLimit(-1)
}

// Memory returning: a drained backlog leaves the heap with free spans the
// runtime hands back to the system only gradually (the background
// scavenger paces itself to about 1% of a CPU), so a process that held a
// large backlog keeps its peak RSS for minutes. ReturnMemory checks every
// interval and, when more than returnThreshold of the heap is free but not
// yet returned, returns it at once.
const (
	returnInterval  = 10 * time.Second
	returnThreshold = 32 << 20
)

// ReturnMemory runs until ctx ends, returning free heap memory to the
// system when a lot of it is held (see returnIdle). It costs one read of
// runtime/metrics per interval, and a collection only after the heap
// shrank by more than the threshold.
func ReturnMemory(ctx context.Context, log *slog.Logger) {
	t := time.NewTicker(returnInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if freed, ok := returnIdle(returnThreshold); ok {
				log.Debug("returned free heap memory to the system", "bytes", freed)
			}
		}
	}
}

// heapFree is the runtime/metrics sample of heap memory that is free and
// not yet returned to the system.
const heapFree = "/memory/classes/heap/free:bytes"

// returnIdle returns the heap's free memory to the system
// (debug.FreeOSMemory) when more than threshold of it is held, and reports
// how much was held.
func returnIdle(threshold uint64) (uint64, bool) {
	s := []metrics.Sample{{Name: heapFree}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0, false
	}
	free := s[0].Value.Uint64()
	if free <= threshold {
		return free, false
	}
	debug.FreeOSMemory()
	return free, true
}
