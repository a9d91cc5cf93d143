package app

import (
	"math"
	goruntime "runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"

	"github.com/hookbus/hookbus/core/config"
)

// ApplyMemoryLimit sets a positive limit and leaves the runtime's own
// alone for 0.
func TestApplyMemoryLimit(t *testing.T) {
	prev := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(prev) })
	if got := ApplyMemoryLimit(256 * config.MiB); got != 256<<20 {
		t.Fatalf("limit 256MiB: in force %d", got)
	}
	if got := ApplyMemoryLimit(0); got != 256<<20 {
		t.Fatalf("limit 0 changed the limit in force to %d", got)
	}
	debug.SetMemoryLimit(math.MaxInt64)
	if got := ApplyMemoryLimit(0); got != math.MaxInt64 {
		t.Fatalf("limit 0 without GOMEMLIMIT: in force %d, want none", got)
	}
}

// A heap that shrank by far more than the threshold is returned to the
// system; one that holds little free memory is left alone.
func TestReturnIdleMemory(t *testing.T) {
	big := make([][]byte, 64)
	for i := range big {
		big[i] = make([]byte, 1<<20)
		big[i][0] = 1
	}
	goruntime.KeepAlive(big)
	big = nil
	goruntime.GC() // the 64MiB are free now, and mostly not returned yet
	before := released()
	held, ok := returnIdle(16 << 20)
	if !ok {
		t.Fatalf("64MiB freed: returnIdle held %d bytes free and returned nothing", held)
	}
	if after := released(); after < before+16<<20 {
		t.Errorf("released heap grew from %d to %d bytes, want at least 16MiB more", before, after)
	}
	if held, ok := returnIdle(1 << 40); ok {
		t.Errorf("threshold 1TiB: returned memory with %d bytes free", held)
	}
}

func released() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/released:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}
