package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hookbus/hookbus/core/attempt"
)

// deliveryEntries makes the attempts of one delivery received at
// received: a retry, then last (when last is not Retry), with the event on
// record unless noEvent.
func deliveryEntries(ids *attemptIDs, eventID, app, sub string, received time.Time, last attempt.Outcome, noEvent bool) []attempt.Entry {
	a := attempt.Attempt{EventID: eventID, EventType: "order.paid", Sink: "subs", Application: app, Subscription: sub, ReceivedAt: received,
		Number: 1, StartedAt: received.Add(time.Second), Duration: time.Millisecond, Outcome: attempt.Retry}
	a.ID = ids.at(a.StartedAt)
	first := attempt.Entry{Attempt: a}
	if !noEvent {
		first.Event = &attempt.Event{Type: "order.paid", Application: app, ReceivedAt: received, Payload: []byte(`{"id":"` + eventID + `"}`)}
	}
	out := []attempt.Entry{first}
	if last != attempt.Retry {
		a.Number, a.StartedAt, a.Outcome = 2, a.StartedAt.Add(time.Minute), last
		a.ID = ids.at(a.StartedAt)
		out = append(out, attempt.Entry{Attempt: a})
	}
	return out
}

func deliveryEvents(ds []attempt.Delivery) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.EventID
	}
	return out
}

func TestDeliveriesAndMarkQueued(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	eachStore(t, func(t *testing.T, db testDB, s *Store) {
		s.now = func() time.Time { return now }
		ids := newAttemptIDs()
		var entries []attempt.Entry
		for i := range 10 {
			last := attempt.Failed
			if i%2 == 1 {
				last = attempt.Delivered
			}
			// evt_9 has no event on record: it cannot be sent again.
			entries = append(entries, deliveryEntries(ids, fmt.Sprintf("evt_%d", i), "app_r", "sub_r", now.Add(time.Duration(i-10)*time.Hour), last, i == 9)...)
		}
		entries = append(entries, deliveryEntries(ids, "evt_o", "app_o", "sub_o", now.Add(-5*time.Hour), attempt.Failed, false)...)
		entries = append(entries, deliveryEntries(ids, "evt_w", "app_r", "sub_r", now.Add(-5*time.Hour), attempt.Retry, false)...)
		slices.Reverse(entries) // newest attempt first: the state is still the latest attempt's
		mustWrite(t, s, entries...)

		list := func(q attempt.RecoverQuery) ([]string, []attempt.Delivery) {
			t.Helper()
			var got []string
			var all []attempt.Delivery
			for pages := 0; ; pages++ {
				ds, evs, next, err := s.Deliveries(ctx, q)
				if err != nil {
					t.Fatal(err)
				}
				if q.Limit > 0 && len(ds) > q.Limit || pages > 20 {
					t.Fatalf("page of %d (limit %d), page %d", len(ds), q.Limit, pages)
				}
				if len(evs) != len(ds) {
					t.Fatalf("%d deliveries with %d events", len(ds), len(evs))
				}
				for i, d := range ds {
					if evs[i].ID != d.EventID || evs[i].Sink != d.Sink || string(evs[i].Payload) != `{"id":"`+d.EventID+`"}` {
						t.Fatalf("delivery %+v with event %+v", d, evs[i])
					}
				}
				got = append(got, deliveryEvents(ds)...)
				all = append(all, ds...)
				if next == "" {
					return got, all
				}
				q.Cursor = next
			}
		}
		since := now.Add(-11 * time.Hour)
		for _, c := range []struct {
			name string
			q    attempt.RecoverQuery
			want []string
		}{
			{"failed of a subscription", attempt.RecoverQuery{Subscription: "sub_r", Since: since}, []string{"evt_0", "evt_2", "evt_4", "evt_6", "evt_8"}},
			{"paged", attempt.RecoverQuery{Subscription: "sub_r", Since: since, Limit: 2}, []string{"evt_0", "evt_2", "evt_4", "evt_6", "evt_8"}},
			{"all", attempt.RecoverQuery{Subscription: "sub_r", Since: since, All: true, Limit: 3},
				[]string{"evt_0", "evt_1", "evt_2", "evt_3", "evt_4", "evt_5", "evt_w", "evt_6", "evt_7", "evt_8"}},
			{"application", attempt.RecoverQuery{Application: "app_o"}, []string{"evt_o"}},
			{"sink", attempt.RecoverQuery{Sink: "subs", Since: since}, []string{"evt_0", "evt_2", "evt_4", "evt_o", "evt_6", "evt_8"}},
			{"range", attempt.RecoverQuery{Subscription: "sub_r", Since: now.Add(-8 * time.Hour), Until: now.Add(-4 * time.Hour)}, []string{"evt_2", "evt_4"}},
			{"other sink", attempt.RecoverQuery{Sink: "audit"}, nil},
		} {
			if got, _ := list(c.q); !slices.Equal(got, c.want) {
				t.Errorf("%s: %v, want %v", c.name, got, c.want)
			}
		}
		_, ds := list(attempt.RecoverQuery{Subscription: "sub_r", Since: since, Limit: 2})
		if d := ds[0]; d.Attempts != 2 || d.LastOutcome != attempt.Failed || d.Application != "app_r" || d.EventType != "order.paid" ||
			!d.ReceivedAt.Equal(now.Add(-10*time.Hour)) || !d.LastAttempt.Equal(now.Add(-10*time.Hour+time.Second+time.Minute)) || d.Queued {
			t.Errorf("delivery %+v", d)
		}
		if _, _, _, err := s.Deliveries(ctx, attempt.RecoverQuery{Subscription: "sub_r", Cursor: "bm90IGEgY3Vyc29y"}); !errors.Is(err, attempt.ErrBadCursor) {
			t.Errorf("bad cursor: %v", err)
		}
		if _, _, _, err := s.Deliveries(ctx, attempt.RecoverQuery{}); err == nil {
			t.Error("no scope: no error")
		}

		// Queue the first two: they leave the list; marking them again marks nothing.
		marked, err := s.MarkQueued(ctx, ds[:2])
		if err != nil || len(marked) != 2 || marked[0] != ds[0].DeliveryKey || marked[1] != ds[1].DeliveryKey {
			t.Fatalf("MarkQueued = %v, %v", marked, err)
		}
		if again, err := s.MarkQueued(ctx, ds[:2]); err != nil || len(again) != 0 {
			t.Fatalf("MarkQueued again = %v, %v", again, err)
		}
		if got, _ := list(attempt.RecoverQuery{Subscription: "sub_r", Since: since}); !slices.Equal(got, []string{"evt_4", "evt_6", "evt_8"}) {
			t.Errorf("after marking: %v", got)
		}
		// An older attempt of evt_0 written late (it started before the
		// mark) leaves it queued.
		late := attempt.Attempt{ID: ids.at(now.Add(-time.Minute)), EventID: "evt_0", Sink: "subs", Subscription: "sub_r", Application: "app_r", EventType: "order.paid",
			Number: 3, StartedAt: now.Add(-time.Minute), Outcome: attempt.Retry, ReceivedAt: now.Add(-10 * time.Hour)}
		mustWrite(t, s, attempt.Entry{Attempt: late})
		if got, _ := list(attempt.RecoverQuery{Subscription: "sub_r", Since: since, All: true}); slices.Contains(got, "evt_0") {
			t.Errorf("an attempt older than the mark ended it: %v", got)
		}
		// The resend of evt_0 fails again (attempt 1 of a new delivery,
		// after the mark): it is no longer queued and fails in the list again.
		resent := attempt.Attempt{ID: ids.at(now.Add(time.Second)), EventID: "evt_0", Sink: "subs", Subscription: "sub_r", Application: "app_r", EventType: "order.paid",
			Number: 1, StartedAt: now.Add(time.Second), Outcome: attempt.Failed, ReceivedAt: now.Add(-10 * time.Hour)}
		mustWrite(t, s, attempt.Entry{Attempt: resent})
		got, all := list(attempt.RecoverQuery{Subscription: "sub_r", Since: since})
		if !slices.Equal(got, []string{"evt_0", "evt_4", "evt_6", "evt_8"}) || all[0].Attempts != 4 || !all[0].LastAttempt.Equal(resent.StartedAt) {
			t.Errorf("after the resend: %v %+v", got, all)
		}
		// A redelivery of evt_4 whose attempt is recorded before its mark
		// (published at now-3m, attempted at now-2m, marked after): the
		// mark is taken, but does not hold against the later attempt, so
		// evt_4 is not left queued for good.
		again4 := attempt.Attempt{ID: ids.at(now.Add(-2 * time.Minute)), EventID: "evt_4", Sink: "subs", Subscription: "sub_r", Application: "app_r", EventType: "order.paid",
			Number: 1, StartedAt: now.Add(-2 * time.Minute), Outcome: attempt.Failed, ReceivedAt: now.Add(-6 * time.Hour)}
		mustWrite(t, s, attempt.Entry{Attempt: again4})
		d4 := attempt.Delivery{DeliveryKey: attempt.DeliveryKey{EventID: "evt_4", Sink: "subs", Subscription: "sub_r"}, QueuedAt: now.Add(-3 * time.Minute)}
		if m, err := s.MarkQueued(ctx, []attempt.Delivery{d4}); err != nil || len(m) != 1 {
			t.Fatalf("MarkQueued of evt_4 = %v, %v", m, err)
		}
		got, all = list(attempt.RecoverQuery{Subscription: "sub_r", Since: since})
		if !slices.Equal(got, []string{"evt_0", "evt_4", "evt_6", "evt_8"}) || all[1].Queued {
			t.Errorf("a mark older than the attempt it would wait for holds: %v %+v", got, all)
		}
		// A mark taken before no attempt holds.
		d4.QueuedAt = now
		if m, err := s.MarkQueued(ctx, []attempt.Delivery{d4}); err != nil || len(m) != 1 {
			t.Fatalf("MarkQueued of evt_4 again = %v, %v", m, err)
		}
		if got, _ = list(attempt.RecoverQuery{Subscription: "sub_r", Since: since}); !slices.Equal(got, []string{"evt_0", "evt_6", "evt_8"}) {
			t.Errorf("after marking evt_4 at now: %v", got)
		}
		// A mark no attempt followed (a redelivery filtered on its way)
		// expires after MarkTTL: evt_4 can be recovered again.
		s.now = func() time.Time { return now.Add(MarkTTL + time.Minute) }
		if got, _ = list(attempt.RecoverQuery{Subscription: "sub_r", Since: since}); !slices.Contains(got, "evt_4") {
			t.Errorf("a mark older than MarkTTL still holds: %v", got)
		}
		s.now = func() time.Time { return now }
		// A resend to a subscription that never had the event creates its delivery, queued.
		fresh := attempt.Delivery{DeliveryKey: attempt.DeliveryKey{EventID: "evt_1", Sink: "subs", Subscription: "sub_new"}, Application: "app_r", ReceivedAt: now.Add(-9 * time.Hour)}
		if m, err := s.MarkQueued(ctx, []attempt.Delivery{fresh, fresh}); err != nil || !slices.Equal(m, []attempt.DeliveryKey{fresh.DeliveryKey}) {
			t.Fatalf("MarkQueued of a new delivery = %v, %v", m, err)
		}
		if m, err := s.MarkQueued(ctx, []attempt.Delivery{fresh}); err != nil || len(m) != 0 {
			t.Fatalf("MarkQueued of the new delivery again = %v, %v", m, err)
		}
		if _, err := s.MarkQueued(ctx, []attempt.Delivery{{DeliveryKey: attempt.DeliveryKey{EventID: "evt_1"}}}); err == nil {
			t.Error("a key without a sink: no error")
		}
	})
}

// TestMarkQueuedConcurrently: two instances (stores on one database)
// mark the same deliveries at once; each is marked by exactly one.
func TestMarkQueuedConcurrently(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	eachStore(t, func(t *testing.T, db testDB, s *Store) {
		other := db.open(t)
		ids := newAttemptIDs()
		for round := range 5 {
			var entries []attempt.Entry
			for i := range 40 {
				entries = append(entries, deliveryEntries(ids, fmt.Sprintf("evt_%d_%d", round, i), "app_c", fmt.Sprintf("sub_c%d", round), now.Add(-time.Duration(i)*time.Minute), attempt.Failed, false)...)
			}
			mustWrite(t, s, entries...)
			ds, _, _, err := s.Deliveries(ctx, attempt.RecoverQuery{Subscription: fmt.Sprintf("sub_c%d", round), Until: now.Add(time.Hour)})
			if err != nil || len(ds) != 40 {
				t.Fatalf("%d deliveries, %v", len(ds), err)
			}
			// Each marks the keys in its own order.
			rev := slices.Clone(ds)
			slices.Reverse(rev)
			var wg sync.WaitGroup
			var got [2][]attempt.DeliveryKey
			var errs [2]error
			start := make(chan struct{})
			for i, st := range []*Store{s, other} {
				wg.Go(func() {
					<-start
					got[i], errs[i] = st.MarkQueued(ctx, [][]attempt.Delivery{ds, rev}[i])
				})
			}
			close(start)
			wg.Wait()
			if errs[0] != nil || errs[1] != nil {
				t.Fatal(errs)
			}
			seen := map[attempt.DeliveryKey]int{}
			for _, ks := range got {
				for _, k := range ks {
					seen[k]++
				}
			}
			for _, d := range ds {
				if seen[d.DeliveryKey] != 1 {
					t.Fatalf("round %d: %v marked %d times (%d + %d marked)", round, d.DeliveryKey, seen[d.DeliveryKey], len(got[0]), len(got[1]))
				}
			}
		}
	})
}

func TestPrune(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	eachStore(t, func(t *testing.T, db testDB, s *Store) {
		s.now = func() time.Time { return now }
		ids := newAttemptIDs()
		var entries []attempt.Entry
		for i := range 7 {
			// Received 40 days ago: all goes; 10 days ago: the event and
			// its delivery go, the attempts stay; an hour ago: all stays.
			for _, age := range []time.Duration{40 * 24 * time.Hour, 10 * 24 * time.Hour, time.Hour} {
				received := now.Add(-age + time.Duration(i)*time.Minute)
				entries = append(entries, deliveryEntries(ids, fmt.Sprintf("evt_%v_%d", age, i), "app_p", "sub_p", received, attempt.Failed, false)...)
			}
		}
		mustWrite(t, s, entries...)
		count := func(query string, args ...any) int {
			t.Helper()
			var n int
			if err := db.raw.QueryRow(s.q(query), args...).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		}
		eventsBefore, attemptsBefore := now.Add(-7*24*time.Hour), now.Add(-30*24*time.Hour)
		oldFigures := count(`SELECT COUNT(*) FROM hookbus_attempt_stats WHERE start < ?`, attemptsBefore.Unix())
		if oldFigures == 0 {
			t.Fatal("no old figures")
		}
		want := 14 + 14 + 14 + oldFigures // events, deliveries, attempts, figures
		total, calls := 0, 0
		for {
			n, err := s.Prune(ctx, eventsBefore, attemptsBefore, 3)
			if err != nil {
				t.Fatal(err)
			}
			if n > 4*3 {
				t.Fatalf("one call pruned %d rows, batch 3", n)
			}
			calls++
			if n == 0 {
				break
			}
			total += n
		}
		if total != want || calls < 5 {
			t.Errorf("pruned %d rows in %d calls, want %d in batches of 3", total, calls, want)
		}
		if n := count(`SELECT COUNT(*) FROM hookbus_events WHERE received_at < ?`, eventsBefore.UnixNano()); n != 0 {
			t.Errorf("%d old events left", n)
		}
		for table, want := range map[string]int{"hookbus_events": 7, "hookbus_deliveries": 7, "hookbus_attempts": 28} {
			if n := count(`SELECT COUNT(*) FROM ` + table); n != want {
				t.Errorf("%s: %d rows left, want %d", table, n, want)
			}
		}
		if n := count(`SELECT COUNT(*) FROM hookbus_attempt_stats WHERE start < ?`, attemptsBefore.Unix()); n != 0 {
			t.Errorf("%d old figures left", n)
		}
		if _, err := s.GetEvent(ctx, fmt.Sprintf("evt_%v_0", 10*24*time.Hour)); !errors.Is(err, attempt.ErrNotFound) {
			t.Errorf("a pruned event: %v", err)
		}
		if evs, err := s.GetEvent(ctx, fmt.Sprintf("evt_%v_0", time.Hour)); err != nil || len(evs) != 1 {
			t.Errorf("a recent event: %v, %v", evs, err)
		}
		st, err := s.Stats(ctx, attempt.Scope{Subscription: "sub_p"}, 24*time.Hour)
		if err != nil || st.Attempts != 14 || st.Failed != 7 {
			t.Errorf("figures of the last day after pruning: %+v, %v", st, err)
		}
		list, _, err := s.ListAttempts(ctx, attempt.Filter{Subscription: "sub_p", Until: attemptsBefore})
		if err != nil || len(list) != 0 {
			t.Errorf("attempts older than the retention: %d, %v", len(list), err)
		}
	})
}
