package store

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hookbus/hookbus/core/subscription"
	"github.com/hookbus/hookbus/internal/testenv"
)

// The live index (subscription.Live) on the real stores: what a write
// through the store does to the index of every instance sharing it.

// liveChanges records a Live's OnChange calls as "+id", "-id", "~id".
type liveChanges struct {
	mu    sync.Mutex
	calls []string
}

func (c *liveChanges) on(old, new *subscription.Subscription) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case old == nil:
		c.calls = append(c.calls, "+"+new.ID)
	case new == nil:
		c.calls = append(c.calls, "-"+old.ID)
	default:
		c.calls = append(c.calls, "~"+new.ID)
	}
}

func (c *liveChanges) has(call string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Contains(c.calls, call)
}

func (c *liveChanges) take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.calls
	c.calls = nil
	slices.Sort(out)
	return out
}

func startLive(t *testing.T, s *Store, opts subscription.LiveOptions) *subscription.Live {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	l := subscription.NewLive(s, opts)
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	return l
}

func matchIDs(l *subscription.Live, app, typ string) []string {
	var out []string
	for _, s := range l.Index().Match(app, typ, nil) {
		out = append(out, s.ID)
	}
	return out
}

// seen waits (1 s, the bound, stretched on a slow machine) until
// the index of l answers Match(app, typ) with want.
func seen(t *testing.T, l *subscription.Live, what, app, typ string, want ...string) {
	t.Helper()
	testenv.Eventually(t, time.Second, what, func() bool { return slices.Equal(matchIDs(l, app, typ), want) })
}

func TestLiveOnStore(t *testing.T) {
	ctx := context.Background()
	eachStore(t, func(t *testing.T, db testDB, s *Store) {
		mustApp(t, s, "shop")
		mustApp(t, s, "crm")
		before := mustSub(t, s, subscription.Subscription{App: "shop", EventTypes: []string{"order.*"}})
		var changes liveChanges
		l := startLive(t, s, subscription.LiveOptions{OnChange: changes.on})
		if got := matchIDs(l, "shop", "order.paid"); !slices.Equal(got, []string{before.ID}) {
			t.Fatalf("after Start: %v", got)
		}

		// Create: seen by the polling.
		paid := mustSub(t, s, subscription.Subscription{App: "shop", EventTypes: []string{"order.paid"}})
		other := mustSub(t, s, subscription.Subscription{App: "crm", EventTypes: []string{"*"}})
		seen(t, l, "created subscriptions", "shop", "order.paid", sorted(before.ID, paid.ID)...)
		seen(t, l, "the other application's", "crm", "order.paid", other.ID)

		// Update: a new URL is in the index; disabling leaves Match.
		paid.URL = "https://example.com/moved"
		if _, err := s.UpdateSubscription(ctx, paid); err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, time.Second, "the new URL", func() bool {
			got, ok := l.Index().Get(paid.ID)
			return ok && got.URL == "https://example.com/moved"
		})
		before.Disabled, before.DisabledReason = true, "410 Gone"
		if _, err := s.UpdateSubscription(ctx, before); err != nil {
			t.Fatal(err)
		}
		seen(t, l, "the disabled one out of Match", "shop", "order.paid", paid.ID)
		if got, ok := l.Index().Get(before.ID); !ok || !got.Disabled || got.DisabledReason != "410 Gone" {
			t.Fatalf("disabled subscription in Get: %+v, %v", got, ok)
		}

		// Delete, then the whole other application.
		if err := s.DeleteSubscription(ctx, "shop", paid.ID); err != nil {
			t.Fatal(err)
		}
		seen(t, l, "the deleted one gone", "shop", "order.paid")
		if err := s.DeleteApplication(ctx, "crm"); err != nil {
			t.Fatal(err)
		}
		seen(t, l, "the deleted application's gone", "crm", "order.paid")
		if l.Index().Len() != 1 {
			t.Fatalf("index holds %d subscriptions, want 1", l.Index().Len())
		}
		testenv.Eventually(t, time.Second, "OnChange of the deletions", func() bool { return changes.has("-" + other.ID) })
		want := []string{"+" + other.ID, "+" + paid.ID, "-" + other.ID, "-" + paid.ID, "~" + before.ID, "~" + paid.ID}
		slices.Sort(want)
		if got := changes.take(); !slices.Equal(got, want) {
			t.Fatalf("OnChange calls %v, want %v", got, want)
		}

		// Refresh: the instance that wrote sees its write at once.
		slow := startLive(t, s, subscription.LiveOptions{Poll: time.Hour})
		again := mustSub(t, s, subscription.Subscription{App: "shop", EventTypes: []string{"order.paid"}})
		if err := slow.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		if got := matchIDs(slow, "shop", "order.paid"); !slices.Equal(got, []string{again.ID}) {
			t.Fatalf("after Refresh: %v", got)
		}
	})
}

// TestLiveFeedGapOnStore: a pruned feed makes Live load a snapshot, with
// OnChange told what differs.
func TestLiveFeedGapOnStore(t *testing.T) {
	ctx := context.Background()
	eachStore(t, func(t *testing.T, db testDB, s *Store) {
		mustApp(t, s, "shop")
		a := mustSub(t, s, subscription.Subscription{App: "shop"})
		b := mustSub(t, s, subscription.Subscription{App: "shop"})
		var changes liveChanges
		l := startLive(t, s, subscription.LiveOptions{Poll: time.Hour, OnChange: changes.on})

		a.URL = "https://example.com/v2"
		if _, err := s.UpdateSubscription(ctx, a); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteSubscription(ctx, "shop", b.ID); err != nil {
			t.Fatal(err)
		}
		c := mustSub(t, s, subscription.Subscription{App: "shop"})
		// Two hours on, everything recorded so far is old enough to prune.
		s.now = func() time.Time { return time.Now().Add(2 * time.Hour) }
		if n, err := s.PruneChanges(ctx, s.now()); err != nil || n == 0 {
			t.Fatalf("PruneChanges: %d, %v", n, err)
		}
		if _, err := s.Changes(ctx, l.Seq(), 10); err == nil {
			t.Fatal("no feed gap after the prune")
		}
		if err := l.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		if got := matchIDs(l, "shop", "x"); !slices.Equal(got, sorted(a.ID, c.ID)) {
			t.Fatalf("after the snapshot: %v", got)
		}
		if got, _ := l.Index().Get(a.ID); got.URL != "https://example.com/v2" {
			t.Fatalf("URL after the snapshot: %q", got.URL)
		}
		want := []string{"+" + c.ID, "-" + b.ID, "~" + a.ID}
		slices.Sort(want)
		if got := changes.take(); !slices.Equal(got, want) {
			t.Fatalf("OnChange after the snapshot: %v, want %v", got, want)
		}
		// The feed is followed from the snapshot on.
		d := mustSub(t, s, subscription.Subscription{App: "shop"})
		if err := l.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		if _, ok := l.Index().Get(d.ID); !ok {
			t.Fatal("a change after the snapshot is not in the index")
		}
	})
}

// TestLiveTwoInstancesPostgres: two instances (each its own store handle
// and Live) on one PostgreSQL schema see every create, update and delete
// that either makes, within 1 s.
func TestLiveTwoInstancesPostgres(t *testing.T) {
	testenv.NeedService(t, "127.0.0.1:5432")
	ctx := context.Background()
	var db testDB
	for _, d := range freshDBs(t) {
		if d.name == "postgres" {
			db = d
		}
	}
	s1, s2 := db.open(t), db.open(t)
	l1 := startLive(t, s1, subscription.LiveOptions{})
	l2 := startLive(t, s2, subscription.LiveOptions{})
	both := func(what, app, typ string, want ...string) {
		t.Helper()
		start := time.Now()
		seen(t, l1, what+" (instance 1)", app, typ, want...)
		seen(t, l2, what+" (instance 2)", app, typ, want...)
		t.Logf("%s: in both indexes after %v", what, time.Since(start).Round(time.Millisecond))
	}

	mustApp(t, s1, "shop")
	x := mustSub(t, s1, subscription.Subscription{App: "shop", EventTypes: []string{"order.paid"}})
	both("created on 1", "shop", "order.paid", x.ID)
	y := mustSub(t, s2, subscription.Subscription{App: "shop", EventTypes: []string{"order.*"}})
	both("created on 2", "shop", "order.paid", sorted(x.ID, y.ID)...)

	x.EventTypes = []string{"user.created"}
	if _, err := s2.UpdateSubscription(ctx, x); err != nil {
		t.Fatal(err)
	}
	both("updated on 2", "shop", "order.paid", y.ID)
	both("updated on 2, its new type", "shop", "user.created", x.ID)
	y.Disabled = true
	if _, err := s1.UpdateSubscription(ctx, y); err != nil {
		t.Fatal(err)
	}
	both("disabled on 1", "shop", "order.paid")

	if err := s1.DeleteSubscription(ctx, "shop", x.ID); err != nil {
		t.Fatal(err)
	}
	both("deleted on 1", "shop", "user.created")
	for _, l := range []*subscription.Live{l1, l2} {
		if _, ok := l.Index().Get(x.ID); ok {
			t.Fatal("deleted subscription still in an index")
		}
		if got, ok := l.Index().Get(y.ID); !ok || !got.Disabled {
			t.Fatal("disabled subscription not in an index")
		}
	}

	// Many writers at once on both instances: each index ends with all.
	var wg sync.WaitGroup
	var created sync.Map
	for w := range 4 {
		st := []*Store{s1, s2}[w%2]
		wg.Go(func() {
			for i := range 10 {
				sub, err := st.CreateSubscription(ctx, subscription.Subscription{App: "shop", URL: fmt.Sprintf("https://example.com/%d/%d", w, i), EventTypes: []string{"bulk.x"}})
				if err != nil {
					t.Error(err)
					return
				}
				created.Store(sub.ID, true)
			}
		})
	}
	wg.Wait()
	var want []string
	created.Range(func(k, _ any) bool { want = append(want, k.(string)); return true })
	both("40 created concurrently on both", "shop", "bulk.x", sorted(want...)...)
}

func sorted(ids ...string) []string {
	out := slices.Clone(ids)
	slices.Sort(out)
	return out
}

// The store prunes its change feed for Live.
var _ subscription.ChangePruner = (*Store)(nil)
