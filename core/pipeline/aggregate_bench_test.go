package pipeline

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookbus/hookbus/core/aggregate"
	"github.com/hookbus/hookbus/core/queue"
	"github.com/hookbus/hookbus/core/retry"
	"github.com/hookbus/hookbus/core/store"
	"github.com/hookbus/hookbus/sdk"
)

// Aggregation throughput against the same pipeline without the step, on
// the embedded queue and the SQLite store (the defaults), and the memory
// with every window open:
//
//	go test -run '^$' -bench BenchmarkAggregate -benchtime 5x ./core/pipeline
//
// Each run sends 100,000 events over 1,000 keys. "without": until every
// event is delivered; "aggregate" (max_events 100): until the 1,000
// digests of 100 events each are delivered. One iteration runs both, in
// alternating order, so both see the same load of a shared machine; the
// medians and the median of the per-iteration ratios are reported.
// "open-windows" (window 1h): until every event is in one of the 1,000
// open windows, then the process RSS and the Go heap in use.
func BenchmarkAggregate(b *testing.B) {
	b.Run("throughput", func(b *testing.B) {
		var without, with, ratios []float64
		for i := range b.N {
			var w, a float64
			if i%2 == 0 {
				w, a = runAggregateBench(b, "without"), runAggregateBench(b, "aggregate")
			} else {
				a, w = runAggregateBench(b, "aggregate"), runAggregateBench(b, "without")
			}
			without, with, ratios = append(without, w), append(with, a), append(ratios, a/w)
			b.Logf("iteration %d: without %.0f events/s, aggregate %.0f events/s (%.0f%%)", i, w, a, 100*a/w)
		}
		b.ReportMetric(median(without), "without-events/s")
		b.ReportMetric(median(with), "aggregate-events/s")
		b.ReportMetric(100*median(ratios), "ratio-%")
	})
	b.Run("open-windows", func(b *testing.B) {
		var rates []float64
		for range b.N {
			rates = append(rates, runAggregateBench(b, "open-windows"))
		}
		b.ReportMetric(median(rates), "events/s")
	})
}

const (
	benchEvents = 100000
	benchKeys   = 1000
)

// digestCountingSink counts the events delivered and, for digests, the events
// in them.
type digestCountingSink struct {
	deliveries, inDigests atomic.Int64
}

func (s *digestCountingSink) Init(context.Context, json.RawMessage) (sdk.SinkInfo, error) {
	return sdk.SinkInfo{}, nil
}

func (s *digestCountingSink) Deliver(_ context.Context, batch []sdk.Delivery) []sdk.Result {
	res := make([]sdk.Result, len(batch))
	for i, d := range batch {
		s.deliveries.Add(1)
		if strings.HasSuffix(d.Event.Type, ".batch") {
			s.inDigests.Add(int64(strings.Count(string(d.Event.Data), `"type":`)))
		}
		res[i] = sdk.Result{Outcome: sdk.OK}
	}
	return res
}

func (s *digestCountingSink) Close(context.Context) error { return nil }

func runAggregateBench(b *testing.B, mode string) float64 {
	b.StopTimer()
	dir := b.TempDir()
	q, err := queue.NewEmbeddedJetStream(context.Background(), queue.JetStreamOptions{DataDir: filepath.Join(dir, "queue"), CloseGrace: 100 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	st, err := store.Open(context.Background(), "sqlite", "", dir)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	sink := &digestCountingSink{}
	var steps []Step
	switch mode {
	case "aggregate":
		steps = []Step{&AggregateStep{Path: aggregate.Path{"data", "customer"}, Spec: aggregate.Spec{Key: "data.customer", Window: time.Hour, MaxEvents: benchEvents / benchKeys}.WithDefaults()}}
	case "open-windows":
		steps = []Step{&AggregateStep{Path: aggregate.Path{"data", "customer"}, Spec: aggregate.Spec{Key: "data.customer", Window: time.Hour}.WithDefaults()}}
	}
	e, err := New(Options{Queue: q, Windows: st, Logger: slog.New(slog.DiscardHandler),
		Pipelines: []Pipeline{{Name: "p", From: []string{"src"}, Steps: steps, To: []string{"out"}}},
		Sinks:     map[string]Sink{"out": {Name: "out", Sink: sink, MaxInFlight: 256, Schedule: retry.Schedule{Delays: []time.Duration{time.Second}}}}})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := e.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	batches := make([][]sdk.Event, 0, benchEvents/100)
	for i := 0; i < benchEvents; i += 100 {
		evs := make([]sdk.Event, 100)
		for j := range evs {
			n := i + j
			evs[j] = sdk.Event{ID: "e-" + strconv.Itoa(n), Type: "order.paid", Source: "shop",
				Data: json.RawMessage(fmt.Sprintf(`{"customer":"c-%d","amount":%d,"currency":"eur"}`, n%benchKeys, n))}
		}
		batches = append(batches, evs)
	}
	var inWindows func() int64
	if mode == "open-windows" {
		db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "hookbus.db")+"?mode=ro")
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		inWindows = func() int64 {
			var n sql.NullInt64
			_ = db.QueryRow(`SELECT SUM(count) FROM hookbus_agg_windows`).Scan(&n)
			return n.Int64
		}
	}
	done := func() bool {
		switch mode {
		case "without":
			return sink.deliveries.Load() >= benchEvents
		case "aggregate":
			return sink.inDigests.Load() >= benchEvents
		}
		return inWindows() >= benchEvents
	}
	runtime.GC()
	b.StartTimer()
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(len(batches)) {
					return
				}
				if err := e.Publish(context.Background(), "src", batches[i]); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	deadline := time.Now().Add(5 * time.Minute)
	for !done() {
		if time.Now().After(deadline) {
			b.Fatalf("%s: not done after 5 minutes (delivered %d, in digests %d)", mode, sink.deliveries.Load(), sink.inDigests.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	if mode == "open-windows" {
		if n, _ := st.OpenWindows(context.Background(), "p"); n != benchKeys {
			b.Fatalf("%d open windows, want %d", n, benchKeys)
		}
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		b.ReportMetric(float64(rssBytes())/(1<<20), "RSS-MiB")
		b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-MiB")
	}
	return benchEvents / elapsed.Seconds()
}

// rssBytes is the process's resident set (Linux), 0 when unknown.
func rssBytes() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}
