package store

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hookbus/hookbus/core/aggregate"
	"github.com/hookbus/hookbus/sdk"
)

func addOne(t *testing.T, s *Store, key, member string, spec aggregate.Spec) aggregate.Added {
	t.Helper()
	r, err := s.AddToWindows(context.Background(), []aggregate.Add{{Pipeline: "p", Sink: "k", Key: key, Member: member,
		Event: sdk.Event{ID: member, Type: "order.paid"}, Source: "shop", ReceivedAt: 7, Spec: spec}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return r[0]
}

// Windows by key and by count, members added once, claims leased to one
// owner, and a released window claimed again as the same window.
func TestAggregateWindows(t *testing.T) {
	ctx := context.Background()
	for _, db := range freshDBs(t) {
		t.Run(db.name, func(t *testing.T) {
			s := db.open(t)
			clock := time.Unix(1000, 0)
			s.now = func() time.Time { return clock }
			spec := aggregate.Spec{Window: time.Minute, MaxEvents: 3, MaxKeys: 2}
			addOne(t, s, "a", "m1", spec)
			if r := addOne(t, s, "a", "m1", spec); !r.Duplicate {
				t.Fatalf("a member added twice: %+v", r)
			}
			addOne(t, s, "b", "m2", spec)
			addOne(t, s, "a", "m3", spec)
			if r := addOne(t, s, "a", "m4", spec); !r.Full {
				t.Fatalf("the third event of a window with max_events 3 did not fill it: %+v", r)
			}
			// a is full (closing); the next event of a opens a new window.
			if n, _ := s.OpenWindows(ctx, "p"); n != 1 {
				t.Fatalf("open windows = %d, want 1 (b)", n)
			}
			ws, err := s.ClaimWindows(ctx, "p", "me", clock, 30*time.Second, 10)
			if err != nil || len(ws) != 1 || ws[0].Key != "a" || ws[0].Count != 3 {
				t.Fatalf("claim: %+v, %v", ws, err)
			}
			full := ws[0]
			if full.ID != aggregate.WindowID("p", "k", "a", clock) || !full.Start.Equal(clock) || !full.End.Equal(clock) {
				t.Fatalf("full window %+v", full)
			}
			if again, _ := s.ClaimWindows(ctx, "p", "other", clock, 30*time.Second, 10); len(again) != 0 {
				t.Fatalf("a leased window claimed by another owner: %+v", again)
			}
			evs, err := s.WindowEvents(ctx, full.ID)
			if err != nil || len(evs) != 3 || evs[0].Event.ID != "m1" || evs[2].Event.ID != "m4" || evs[1].Source != "shop" || evs[1].ReceivedAt != 7 {
				t.Fatalf("events %+v, %v", evs, err)
			}
			// Released (a timed-out close): due again later, same window.
			if err := s.ReleaseWindow(ctx, full.ID, "me", clock.Add(time.Second)); err != nil {
				t.Fatal(err)
			}
			clock = clock.Add(2 * time.Second)
			ws, _ = s.ClaimWindows(ctx, "p", "other", clock, 30*time.Second, 10)
			if len(ws) != 1 || ws[0].ID != full.ID || !ws[0].End.Equal(full.End) || ws[0].Attempts != 1 {
				t.Fatalf("claimed again: %+v", ws)
			}
			if err := s.DeleteWindow(ctx, full.ID); err != nil {
				t.Fatal(err)
			}
			// max_keys 2: a third key closes the oldest (b) early.
			addOne(t, s, "c", "m5", spec)
			if r := addOne(t, s, "d", "m6", spec); !r.Full || r.Evicted != 1 {
				t.Fatalf("a window over max_keys: %+v", r)
			}
			ws, _ = s.ClaimWindows(ctx, "p", "me", clock, 30*time.Second, 10)
			if len(ws) != 1 || ws[0].Key != "b" {
				t.Fatalf("claimed after eviction: %+v", ws)
			}
			if err := s.DeleteWindow(ctx, ws[0].ID); err != nil {
				t.Fatal(err)
			}
			// Time: c and d are due a minute after they opened.
			due, ok, err := s.NextDue(ctx, "p")
			if err != nil || !ok || due.After(clock.Add(time.Minute)) {
				t.Fatalf("next due %v %v %v", due, ok, err)
			}
			clock = clock.Add(time.Minute)
			ws, _ = s.ClaimWindows(ctx, "p", "me", clock, 30*time.Second, 10)
			if len(ws) != 2 || ws[0].End.After(clock) {
				t.Fatalf("due windows: %+v", ws)
			}
			// Members are forgotten once expired.
			if err := s.PruneDedup(ctx, clock.Add(2*time.Hour)); err != nil {
				t.Fatal(err)
			}
			if r := addOne(t, s, "a", "m1", spec); r.Duplicate {
				t.Fatalf("an expired member still deduplicated")
			}
		})
	}
}

// Instances adding to the same keys at once and claiming at once: every
// event lands in exactly one window, and each window is claimed once.
func TestAggregateConcurrentInstances(t *testing.T) {
	ctx := context.Background()
	for _, db := range freshDBs(t) {
		t.Run(db.name, func(t *testing.T) {
			stores := []*Store{db.open(t), db.open(t), db.open(t)}
			spec := aggregate.Spec{Window: time.Hour, MaxEvents: 7, MaxKeys: 100}
			const per = 60
			var wg sync.WaitGroup
			for i, s := range stores {
				wg.Go(func() {
					for j := range per {
						_, err := s.AddToWindows(ctx, []aggregate.Add{
							{Pipeline: "p", Sink: "k", Key: fmt.Sprint(j % 3), Member: fmt.Sprintf("%d-%d", i, j), Event: sdk.Event{ID: fmt.Sprintf("%d-%d", i, j), Type: "t"}, Spec: spec},
							{Pipeline: "p", Sink: "k", Key: fmt.Sprint((j + 1) % 3), Member: fmt.Sprintf("%d-%d-b", i, j), Event: sdk.Event{ID: fmt.Sprintf("%d-%d-b", i, j), Type: "t"}, Spec: spec},
						}, time.Hour)
						if err != nil {
							t.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			seen := map[string]int{}
			var mu sync.Mutex
			far := time.Now().Add(2 * time.Hour)
			for i, s := range stores {
				wg.Go(func() {
					for {
						ws, err := s.ClaimWindows(ctx, "p", fmt.Sprint(i), far, time.Hour, 2)
						if err != nil {
							t.Error(err)
							return
						}
						if len(ws) == 0 {
							return
						}
						for _, w := range ws {
							evs, err := s.WindowEvents(ctx, w.ID)
							if err != nil || len(evs) != w.Count {
								t.Errorf("window %s: %d events, count %d, %v", w.ID, len(evs), w.Count, err)
							}
							mu.Lock()
							for _, m := range evs {
								seen[m.Event.ID]++
							}
							mu.Unlock()
						}
					}
				})
			}
			wg.Wait()
			if len(seen) != 2*per*len(stores) {
				t.Fatalf("%d distinct events in claimed windows, want %d", len(seen), 2*per*len(stores))
			}
			for id, n := range seen {
				if n != 1 {
					t.Fatalf("event %s in %d claimed windows", id, n)
				}
			}
		})
	}
}

// One batch of adds: a key with more events than max_events fills one
// window and opens the next; a member twice in the batch is added once;
// opening windows over max_keys closes the oldest.
func TestAggregateBatch(t *testing.T) {
	ctx := context.Background()
	for _, db := range freshDBs(t) {
		t.Run(db.name, func(t *testing.T) {
			s := db.open(t)
			spec := aggregate.Spec{Window: time.Hour, MaxEvents: 4, MaxKeys: 3}
			var adds []aggregate.Add
			add := func(key, member string) {
				adds = append(adds, aggregate.Add{Pipeline: "p", Sink: "k", Key: key, Member: member, Event: sdk.Event{ID: member, Type: "t"}, Spec: spec})
			}
			for i := range 10 {
				add("a", fmt.Sprint("a", i))
			}
			add("a", "a3") // the same member again
			add("b", "b0")
			add("c", "c0")
			add("d", "d0")
			res, err := s.AddToWindows(ctx, adds, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			if !res[10].Duplicate {
				t.Fatalf("a member twice in one batch: %+v", res[10])
			}
			ws, err := s.ClaimWindows(ctx, "p", "me", time.Now(), time.Minute, 10)
			if err != nil {
				t.Fatal(err)
			}
			// a: two full windows of 4; the third (2 events), b, c, d are
			// four open windows over max_keys 3: the oldest of them (b or
			// c, opened first) closes.
			var sizes []string
			total := 0
			for _, w := range ws {
				evs, err := s.WindowEvents(ctx, w.ID)
				if err != nil || len(evs) != w.Count {
					t.Fatalf("window %+v: %d events, %v", w, len(evs), err)
				}
				for j, m := range evs {
					if m.Seq != j+1 {
						t.Fatalf("window %s: seq %d at %d", w.ID, m.Seq, j)
					}
				}
				sizes = append(sizes, fmt.Sprintf("%s:%d", w.Key, w.Count))
				total += w.Count
			}
			slices.Sort(sizes)
			if len(ws) != 3 || sizes[0] != "a:4" || sizes[1] != "a:4" || (sizes[2] != "b:1" && sizes[2] != "c:1") {
				t.Fatalf("claimed %v, want a:4 a:4 and the evicted oldest", sizes)
			}
			if n, _ := s.OpenWindows(ctx, "p"); n != 3 || total != 9 {
				t.Fatalf("open %d, claimed events %d", n, total)
			}
		})
	}
}
