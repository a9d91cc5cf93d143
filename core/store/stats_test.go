package store

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hookbus/hookbus/core/attempt"
)

// traffic makes the attempts of events events received in the span before
// now: each has 1 to 4 attempts, retries then a delivered, failed or (for
// some) a retry still waiting. Subscriptions sub_s and sub_u (of
// application app_1) and sub_t (of app_2) of sink subs, and sink audit
// (no subscription) share them; some of audit's events name app_1, whose
// figures must not count them (they are not its subscriptions').
func traffic(now time.Time, events int, span time.Duration, seed uint64) []attempt.Entry {
	r := rand.New(rand.NewPCG(seed, seed))
	ids := newAttemptIDs()
	var out []attempt.Entry
	for e := range events {
		received := now.Add(-time.Duration(r.Int64N(int64(span))))
		sink, sub, app := "subs", []string{"sub_s", "sub_u", "sub_s", "sub_t"}[e%4], "app_1"
		if sub == "sub_t" {
			app = "app_2"
		}
		if e%3 == 2 {
			sink, sub, app = "audit", "", ""
			if e%2 == 0 {
				app = "app_1"
			}
		}
		n := 1 + r.IntN(4)
		started := received.Add(time.Duration(r.IntN(2000)) * time.Millisecond)
		ev := &attempt.Event{Type: "order.paid", ReceivedAt: received, Payload: []byte(`{}`)}
		for j := 1; j <= n; j++ {
			// Latency log-uniform between 0.3 ms and 30 s.
			d := time.Duration(0.3e6 * math.Pow(1e5, r.Float64()))
			outcome := attempt.Retry
			if j == n {
				switch x := r.IntN(20); {
				case x < 14:
					outcome = attempt.Delivered
				case x < 17:
					outcome = attempt.Failed
				}
			}
			if !started.Before(now) {
				break
			}
			a := attempt.Attempt{ID: ids.at(started), EventID: fmt.Sprintf("evt_%d", e), EventType: "order.paid", Sink: sink, Subscription: sub,
				Number: j, StartedAt: started, Duration: d, ReceivedAt: received, Outcome: outcome, Application: app}
			entry := attempt.Entry{Attempt: a}
			if j == 1 {
				entry.Event = ev
			}
			out = append(out, entry)
			started = started.Add(d + time.Duration(1+r.IntN(90))*time.Second)
		}
	}
	return out
}

// expectedStats computes from the attempts what Stats must say of the
// attempts of scope started in [from, now), and its exact percentiles.
func expectedStats(entries []attempt.Entry, in func(a *attempt.Attempt) bool, from time.Time) (st attempt.Stats, latency, delay []time.Duration) {
	last := map[attempt.DeliveryKey]*attempt.Attempt{}
	for i := range entries {
		a := &entries[i].Attempt
		if !in(a) {
			continue
		}
		k := attempt.DeliveryKey{EventID: a.EventID, Sink: a.Sink, Subscription: a.Subscription}
		if l := last[k]; l == nil || a.StartedAt.After(l.StartedAt) {
			last[k] = a
		}
		if a.StartedAt.Before(from) {
			continue
		}
		st.Attempts++
		latency = append(latency, a.Duration)
		switch a.Outcome {
		case attempt.Delivered:
			st.Delivered++
			delay = append(delay, a.Delay())
		case attempt.Retry:
			st.Retried++
		case attempt.Failed:
			st.Failed++
		}
	}
	for _, a := range last {
		if a.Outcome == attempt.Retry && (st.OldestWaiting.IsZero() || a.ReceivedAt.Before(st.OldestWaiting)) {
			st.OldestWaiting = a.ReceivedAt
		}
	}
	slices.Sort(latency)
	slices.Sort(delay)
	return st, latency, delay
}

// exactPercentile is the ceil(p·n)-th smallest of sorted.
func exactPercentile(sorted []time.Duration, p float64) time.Duration {
	return sorted[int(math.Ceil(p*float64(len(sorted))))-1]
}

// checkPercentile fails unless got is within the width of the bucket
// holding want (the precision Stats documents).
func checkPercentile(t *testing.T, what string, got, want time.Duration) {
	t.Helper()
	i := bucketOf(want)
	lo, hi := time.Duration(0), bucketBounds[min(i, len(bucketBounds)-1)]
	if i > 0 {
		lo = bucketBounds[i-1]
	}
	if got < lo || got > hi {
		t.Errorf("%s = %v, want %v (its bucket [%v, %v))", what, got, want, lo, hi)
	}
}

// ofApp1 selects the attempts app_1's figures count: those of its
// subscriptions.
func ofApp1(a *attempt.Attempt) bool { return a.Application == "app_1" && a.Subscription != "" }

func TestStats(t *testing.T) {
	ctx := context.Background()
	// Not on the hour: windows begin with minutes, then hours.
	now := time.Date(2026, 3, 1, 12, 17, 0, 0, time.UTC)
	entries := traffic(now, 2000, 30*time.Hour, 3)
	eachStore(t, func(t *testing.T, db testDB, s *Store) {
		s.now = func() time.Time { return now }
		// In shuffled batches: a delivery's attempts arrive in any order.
		shuffled := slices.Clone(entries)
		rand.New(rand.NewPCG(5, 5)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		for b := range slices.Chunk(shuffled, 700) {
			mustWrite(t, s, b...)
		}
		check := func(t *testing.T) {
			for _, c := range []struct {
				scope attempt.Scope
				in    func(a *attempt.Attempt) bool
			}{
				{attempt.Scope{Subscription: "sub_s"}, func(a *attempt.Attempt) bool { return a.Subscription == "sub_s" }},
				{attempt.Scope{Sink: "subs"}, func(a *attempt.Attempt) bool { return a.Sink == "subs" }},
				{attempt.Scope{Sink: "audit"}, func(a *attempt.Attempt) bool { return a.Sink == "audit" }},
				{attempt.Scope{Application: "app_1"}, ofApp1},
				// The narrowest scope wins.
				{attempt.Scope{Sink: "audit", Application: "app_1"}, ofApp1},
				{attempt.Scope{Application: "app_2", Subscription: "sub_s"}, func(a *attempt.Attempt) bool { return a.Subscription == "sub_s" }},
			} {
				for _, window := range []time.Duration{time.Hour, 24 * time.Hour, 7 * 24 * time.Hour} {
					want, latency, delay := expectedStats(entries, c.in, now.Add(-window))
					got, err := s.Stats(ctx, c.scope, window)
					if err != nil {
						t.Fatal(err)
					}
					what := fmt.Sprintf("%+v over %v", c.scope, window)
					if want.Attempts < 30 || want.Delivered == 0 || want.Failed == 0 || want.Retried == 0 {
						t.Fatalf("%s: the traffic is too thin: %+v", what, want)
					}
					if got.Window != window || got.Attempts != want.Attempts || got.Delivered != want.Delivered || got.Retried != want.Retried || got.Failed != want.Failed {
						t.Errorf("%s: counts %+v, want %+v", what, got, want)
					}
					if r := float64(want.Delivered) / float64(want.Attempts); math.Abs(got.SuccessRate-r) > 1e-12 {
						t.Errorf("%s: success rate %v, want %v", what, got.SuccessRate, r)
					}
					if r := float64(want.Delivered) / float64(want.Delivered+want.Failed); math.Abs(got.DeliverySuccessRate-r) > 1e-12 {
						t.Errorf("%s: delivery success rate %v, want %v", what, got.DeliverySuccessRate, r)
					}
					checkPercentile(t, what+" latency p50", got.LatencyP50, exactPercentile(latency, 0.5))
					checkPercentile(t, what+" latency p99", got.LatencyP99, exactPercentile(latency, 0.99))
					checkPercentile(t, what+" delay p50", got.DelayP50, exactPercentile(delay, 0.5))
					checkPercentile(t, what+" delay p99", got.DelayP99, exactPercentile(delay, 0.99))
					if want.OldestWaiting.IsZero() || !got.OldestWaiting.Equal(want.OldestWaiting) {
						t.Errorf("%s: oldest waiting %v, want %v", what, got.OldestWaiting, want.OldestWaiting)
					}
				}
			}
			waiting, err := s.OldestWaiting(ctx)
			if err != nil {
				t.Fatal(err)
			}
			subs, _, _ := expectedStats(entries, func(a *attempt.Attempt) bool { return a.Sink == "subs" }, now)
			audit, _, _ := expectedStats(entries, func(a *attempt.Attempt) bool { return a.Sink == "audit" }, now)
			if len(waiting) != 2 || !waiting["subs"].Equal(subs.OldestWaiting) || !waiting["audit"].Equal(audit.OldestWaiting) {
				t.Errorf("OldestWaiting = %v, want subs %v, audit %v", waiting, subs.OldestWaiting, audit.OldestWaiting)
			}
		}
		t.Run("written once", check)
		before, err := s.Stats(ctx, attempt.Scope{Sink: "subs"}, 7*24*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		var deliveryAttempts int64
		if err := db.raw.QueryRow(`SELECT SUM(attempts) FROM hookbus_deliveries`).Scan(&deliveryAttempts); err != nil {
			t.Fatal(err)
		}
		if deliveryAttempts != int64(len(entries)) {
			t.Fatalf("deliveries count %d attempts, want %d", deliveryAttempts, len(entries))
		}
		// Written again (a Writer retrying a batch that had committed), and
		// twice within one batch: nothing changes.
		mustWrite(t, s, entries...)
		mustWrite(t, s, entries[0], entries[0], entries[1])
		t.Run("written again", check)
		after, err := s.Stats(ctx, attempt.Scope{Sink: "subs"}, 7*24*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(before, after) {
			t.Errorf("a rewrite changed the figures:\n%+v\n%+v", before, after)
		}
		var again int64
		if err := db.raw.QueryRow(`SELECT SUM(attempts) FROM hookbus_deliveries`).Scan(&again); err != nil || again != deliveryAttempts {
			t.Errorf("deliveries count %d attempts after the rewrite (%v), want %d", again, err, deliveryAttempts)
		}
		list, _, err := s.ListAttempts(ctx, attempt.Filter{EventID: entries[0].Attempt.EventID})
		if err != nil || len(list) == 0 || len(list) > 4 {
			t.Errorf("attempts of %s after the rewrite: %d, %v", entries[0].Attempt.EventID, len(list), err)
		}

		if _, err := s.Stats(ctx, attempt.Scope{}, time.Hour); err == nil {
			t.Error("Stats of no scope: no error")
		}
		if _, err := s.Stats(ctx, attempt.Scope{Sink: "subs"}, 0); err == nil {
			t.Error("Stats of a zero window: no error")
		}
		empty, err := s.Stats(ctx, attempt.Scope{Sink: "nothing"}, time.Hour)
		if err != nil || empty != (attempt.Stats{Window: time.Hour}) {
			t.Errorf("Stats of an idle sink: %+v, %v", empty, err)
		}
	})
}

func TestBuckets(t *testing.T) {
	if len(bucketBounds) != histBuckets-1 || bucketBounds[0] != time.Millisecond || bucketBounds[len(bucketBounds)-1] < 24*time.Hour {
		t.Fatalf("bounds %v … %v", bucketBounds[0], bucketBounds[len(bucketBounds)-1])
	}
	for i, b := range bucketBounds {
		if got := bucketOf(b); got != i+1 {
			t.Errorf("bucketOf(%v) = %d, want %d", b, got, i+1)
		}
		if got := bucketOf(b - 1); got != i {
			t.Errorf("bucketOf(%v - 1ns) = %d, want %d", b, got, i)
		}
	}
	if bucketOf(0) != 0 || bucketOf(1000*time.Hour) != histBuckets-1 {
		t.Error("the end buckets")
	}
	if len(statColumns()) != 4+2*histBuckets {
		t.Error("columns")
	}
}

// TestWriteAttemptsConcurrently: two instances (stores on one database)
// write at once the attempts of the same deliveries, minutes and scopes;
// the figures and the deliveries' state come out as if written by one.
func TestWriteAttemptsConcurrently(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	entries := traffic(now, 600, 3*time.Hour, 11)
	eachStore(t, func(t *testing.T, db testDB, s *Store) {
		s.now = func() time.Time { return now }
		other := db.open(t)
		var halves [2][]attempt.Entry
		for i, e := range entries {
			halves[i%2] = append(halves[i%2], e)
		}
		var wg sync.WaitGroup
		errs := make(chan error, 2)
		for i, st := range []*Store{s, other} {
			wg.Go(func() {
				for b := range slices.Chunk(halves[i], 50) {
					if err := st.WriteAttempts(ctx, b); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		want, _, _ := expectedStats(entries, func(a *attempt.Attempt) bool { return a.Sink == "subs" }, now.Add(-24*time.Hour))
		got, err := s.Stats(ctx, attempt.Scope{Sink: "subs"}, 24*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if got.Attempts != want.Attempts || got.Delivered != want.Delivered || got.Retried != want.Retried || got.Failed != want.Failed ||
			!got.OldestWaiting.Equal(want.OldestWaiting) {
			t.Errorf("figures %+v, want %+v", got, want)
		}
		var n int
		if err := db.raw.QueryRow(`SELECT SUM(attempts) FROM hookbus_deliveries`).Scan(&n); err != nil || n != len(entries) {
			t.Errorf("deliveries count %d attempts (%v), want %d", n, err, len(entries))
		}
	})
}
