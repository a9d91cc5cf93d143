package subscription

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
	"time"
)

// The benchmark platform: benchApps applications with benchPerApp
// subscriptions each, over event types "<resource>.<action>" of
// benchResources resources and benchActions actions. A subscription has
// one to three patterns: mostly exact types, some "<resource>.*", a few
// "*". An event of one application matches at most benchPerApp of them.
// Every tenth application is busy: each of its subscriptions also has
// "*", "res00.*" or "res00.act0", so a "res00.act0" event to it matches
// all ten, found in three lists.
const (
	benchApps      = 10_000
	benchPerApp    = 10
	benchResources = 40
	benchActions   = 8
)

func benchType(rng *rand.Rand) string {
	return fmt.Sprintf("res%02d.act%d", rng.IntN(benchResources), rng.IntN(benchActions))
}

// benchSubs makes the platform's subscriptions as a store would hand them
// over: every string its own allocation.
func benchSubs() []Subscription {
	rng := rand.New(rand.NewPCG(42, 42))
	subs := make([]Subscription, 0, benchApps*benchPerApp)
	for a := range benchApps {
		app := fmt.Sprintf("app_%020d", a)
		for s := range benchPerApp {
			var types []string
			if a%10 == 0 {
				types = append(types, []string{"*", "res00.*", "res00.act0"}[s%3])
			}
			for range 1 + rng.IntN(3) {
				var p string
				switch r := rng.IntN(100); {
				case r < 5:
					p = "*"
				case r < 25:
					p = fmt.Sprintf("res%02d.*", rng.IntN(benchResources))
				default:
					p = benchType(rng)
				}
				types = append(types, p)
			}
			subs = append(subs, Subscription{
				ID:         fmt.Sprintf("sub_%022d", a*benchPerApp+s),
				App:        strings.Clone(app),
				URL:        fmt.Sprintf("https://hooks.customer-%d.example/webhooks/%d", a, s),
				EventTypes: types,
				Secrets:    []Secret{{Value: "whsec_" + strings.Repeat("k", 43), Created: time.Unix(1, 0)}},
			})
		}
	}
	return subs
}

type benchEvent struct{ app, typ string }

func benchApp(a int) string { return fmt.Sprintf("app_%020d", a) }

// benchEvents are events to random applications of random types.
func benchEvents(n int) []benchEvent {
	rng := rand.New(rand.NewPCG(1, 1))
	evs := make([]benchEvent, n)
	for i := range evs {
		evs[i] = benchEvent{benchApp(rng.IntN(benchApps)), benchType(rng)}
	}
	return evs
}

// busyEvents are "res00.act0" events to busy applications: 10 matches each.
func busyEvents(n int) []benchEvent {
	rng := rand.New(rand.NewPCG(2, 2))
	evs := make([]benchEvent, n)
	for i := range evs {
		evs[i] = benchEvent{benchApp(rng.IntN(benchApps/10) * 10), "res00.act0"}
	}
	return evs
}

// BenchmarkMatch is one event's lookup among 100,000 subscriptions of
// 10,000 applications with a reused dst: "random" events match about one
// subscription, "10-matches" events all ten of their application's.
func BenchmarkMatch(b *testing.B) {
	ix := NewIndex(benchSubs())
	for _, bc := range []struct {
		name string
		evs  []benchEvent
	}{{"random", benchEvents(4096)}, {"10-matches", busyEvents(4096)}} {
		b.Run(bc.name, func(b *testing.B) {
			dst := make([]*Subscription, 0, 64)
			matches := 0
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				ev := bc.evs[i%len(bc.evs)]
				dst = ix.Match(ev.app, ev.typ, dst[:0])
				matches += len(dst)
			}
			b.ReportMetric(float64(matches)/float64(b.N), "matches/op")
		})
	}
}

// BenchmarkMatchAll is a broadcast lookup over the same platform: its
// cost follows the thousands of subscriptions every type matches.
func BenchmarkMatchAll(b *testing.B) {
	ix := NewIndex(benchSubs())
	evs := benchEvents(4096)
	var dst []*Subscription
	matches := 0
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		dst = ix.MatchAll(evs[i%len(evs)].typ, dst[:0])
		matches += len(dst)
	}
	b.ReportMetric(float64(matches)/float64(b.N), "matches/op")
}

// BenchmarkWith is one subscription changed in the 100,000 (what the live
// index does per change of the feed).
func BenchmarkWith(b *testing.B) {
	subs := benchSubs()
	ix := NewIndex(subs)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		s := subs[(i*7919)%len(subs)]
		s.Disabled = i%2 == 0
		ix = ix.With(s)
	}
}

// BenchmarkNewIndex builds the index of 100,000 subscriptions (a snapshot
// of the store).
func BenchmarkNewIndex(b *testing.B) {
	subs := benchSubs()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		NewIndex(subs)
	}
}

// BenchmarkIndexMemory reports the heap 100,000 subscriptions take in a
// live index (built as Live builds it, keeping the snapshot's values):
// index-bytes is what the index adds to the loaded subscriptions (its
// tables and maps), with-data-bytes counts the subscriptions too (their
// structs, strings, slices and secrets as a store hands them over).
// NewIndex, which copies the values, adds 256 bytes a subscription.
func BenchmarkIndexMemory(b *testing.B) {
	var index, total uint64
	for b.Loop() {
		base := heapInUse()
		subs := benchSubs()
		loaded := heapInUse()
		ix := newIndexOwned(subs)
		built := heapInUse()
		runtime.KeepAlive(ix)
		index += built - loaded
		total += built - base
	}
	n := float64(b.N) * float64(benchApps*benchPerApp) / 100_000
	b.ReportMetric(float64(index)/n, "index-bytes/100k-subs")
	b.ReportMetric(float64(total)/n, "with-data-bytes/100k-subs")
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}
