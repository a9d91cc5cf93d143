package store

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/hookbus/hookbus/core/attempt"
)

// benchAttempts makes n attempts of subscription sub_b (sink subs) spread
// evenly over span before now, from start on, with log-uniform latencies
// and mostly delivered outcomes.
func benchAttempts(now time.Time, span time.Duration, start, n int, total int) []attempt.Entry {
	r := rand.New(rand.NewPCG(uint64(start), 9))
	ids := newAttemptIDs()
	out := make([]attempt.Entry, 0, n)
	for i := start; i < start+n; i++ {
		started := now.Add(-span + time.Duration(float64(span)*float64(i)/float64(total)))
		received := started.Add(-time.Duration(r.IntN(5000)) * time.Millisecond)
		outcome := attempt.Delivered
		switch x := r.IntN(20); {
		case x == 0:
			outcome = attempt.Failed
		case x < 4:
			outcome = attempt.Retry
		}
		a := attempt.Attempt{ID: ids.at(started), EventID: fmt.Sprintf("evt_%d", i), EventType: "order.paid", Sink: "subs", Application: "app_b", Subscription: "sub_b",
			Number: 1, StartedAt: started, Duration: time.Duration(1e6 * math.Pow(1e3, r.Float64())), ReceivedAt: received, Outcome: outcome, StatusCode: 200,
			URL: "https://partner.example/hooks", WebhookID: fmt.Sprintf("msg_%d", i), ResponseBody: []byte(`{"ok":true}`)}
		out = append(out, attempt.Entry{Attempt: a, Event: &attempt.Event{Type: "order.paid", ReceivedAt: received, Payload: []byte(`{"id":1}`)}})
	}
	return out
}

// BenchmarkWriteAttempts writes batches of 512 attempts (with their
// events, as first attempts) and reports attempts/s.
func BenchmarkWriteAttempts(b *testing.B) {
	for _, db := range freshDBs(b) {
		b.Run(db.name, func(b *testing.B) {
			s := db.open(b)
			now := time.Now()
			n := 0
			b.ResetTimer()
			for b.Loop() {
				batch := benchAttempts(now, time.Hour, n, 512, 1<<24)
				n += 512
				if err := s.WriteAttempts(context.Background(), batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "attempts/s")
		})
	}
}

// BenchmarkStats1M writes 1,000,000 attempts of one subscription spread
// over 7 days, once, and measures Stats of the subscription over 1 h, 24 h
// and 7 d.
func BenchmarkStats1M(b *testing.B) {
	const total = 1_000_000
	ctx := context.Background()
	for _, db := range freshDBs(b) {
		b.Run(db.name, func(b *testing.B) {
			s := db.open(b)
			now := time.Now()
			s.now = func() time.Time { return now }
			began := time.Now()
			for start := 0; start < total; start += 5000 {
				if err := s.WriteAttempts(ctx, benchAttempts(now, 7*24*time.Hour, start, 5000, total)); err != nil {
					b.Fatal(err)
				}
			}
			b.Logf("%s: wrote %d attempts in %v", db.name, total, time.Since(began))
			for _, w := range []time.Duration{time.Hour, 24 * time.Hour, 7 * 24 * time.Hour} {
				b.Run(fmt.Sprint(w), func(b *testing.B) {
					for b.Loop() {
						st, err := s.Stats(ctx, attempt.Scope{Subscription: "sub_b"}, w)
						if err != nil {
							b.Fatal(err)
						}
						if st.Attempts == 0 {
							b.Fatal("no attempts")
						}
					}
				})
			}
		})
	}
}
