package queue

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkSQLiteIDs is the producer-id store on the embedded server's
// ingest path: a lookup of a batch of new ids, then their record. Sizes are
// the batches the combiner forms (one event per request makes small ones).
func BenchmarkSQLiteIDs(b *testing.B) {
	for _, n := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
			s, err := openSQLiteIDs(filepath.Join(b.TempDir(), "ids.db"), time.Hour, slog.New(slog.DiscardHandler))
			if err != nil {
				b.Fatal(err)
			}
			defer s.close()
			var next atomic.Int64
			ctx := context.Background()
			b.ResetTimer()
			for b.Loop() {
				ids := make([]string, n)
				for i := range ids {
					ids[i] = "evt_" + strconv.FormatInt(next.Add(1), 10)
				}
				for _, seen := range s.seen(ctx, ids) {
					if seen {
						b.Fatal("a new id was seen")
					}
				}
				if err := s.remember(ctx, ids); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n)/1000, "µs/id")
		})
	}
}
