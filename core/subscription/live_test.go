package subscription

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookbus/hookbus/internal/testenv"
)

// feedStore is a Store of subscriptions alone, in memory, with a change
// feed that can be pruned and reads that can be made to fail. (Live on
// the real stores is tested in live_store_test.go.)
type feedStore struct {
	Store // the methods Live does not use panic

	mu     sync.Mutex
	subs   map[string]Subscription
	feed   []Change
	seq    int64
	pruned int64 // changes up to this one are gone
	// fail, when set, is returned by the reads it names.
	failSnapshot, failChanges, failGet error
	gets                               atomic.Int64
}

func newFeedStore(subs ...Subscription) *feedStore {
	f := &feedStore{subs: map[string]Subscription{}}
	for _, s := range subs {
		f.put(s)
	}
	return f
}

func (f *feedStore) put(s Subscription) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s.Updated = time.Now()
	f.subs[s.ID] = s
	f.seq++
	f.feed = append(f.feed, Change{Seq: f.seq, Kind: ChangeUpserted, App: s.App, Sub: s.ID})
}

func (f *feedStore) del(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.subs[id]
	delete(f.subs, id)
	f.seq++
	f.feed = append(f.feed, Change{Seq: f.seq, Kind: ChangeDeleted, App: s.App, Sub: id})
}

// prune forgets the feed so far.
func (f *feedStore) prune() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pruned = f.seq
	f.feed = nil
}

func (f *feedStore) fail(snapshot, changes, get error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failSnapshot, f.failChanges, f.failGet = snapshot, changes, get
}

func (f *feedStore) Snapshot(ctx context.Context) ([]Subscription, int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failSnapshot != nil {
		return nil, 0, f.failSnapshot
	}
	var out []Subscription
	for _, s := range f.subs {
		out = append(out, s)
	}
	return out, f.seq, nil
}

func (f *feedStore) Changes(ctx context.Context, after int64, limit int) ([]Change, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failChanges != nil {
		return nil, f.failChanges
	}
	if after < f.pruned {
		return nil, ErrFeedGap
	}
	var out []Change
	for _, c := range f.feed {
		if c.Seq > after && len(out) < limit {
			out = append(out, c)
		}
	}
	return out, nil
}

func (f *feedStore) GetSubscription(ctx context.Context, app, id string) (Subscription, error) {
	f.gets.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failGet != nil {
		return Subscription{}, f.failGet
	}
	s, ok := f.subs[id]
	if !ok || s.App != app {
		return Subscription{}, ErrNotFound
	}
	return s, nil
}

// changeLog records OnChange calls.
type changeLog struct {
	mu    sync.Mutex
	calls []string
}

func (c *changeLog) on(old, new *Subscription) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case old == nil:
		c.calls = append(c.calls, "+"+new.ID)
	case new == nil:
		c.calls = append(c.calls, "-"+old.ID)
	default:
		c.calls = append(c.calls, fmt.Sprintf("~%s:%s>%s", new.ID, old.URL, new.URL))
	}
}

func (c *changeLog) take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.calls
	c.calls = nil
	slices.Sort(out)
	return out
}

// logCount is a slog handler counting records by level.
type logCount struct {
	mu     sync.Mutex
	counts map[slog.Level]int
}

func (h *logCount) Enabled(context.Context, slog.Level) bool { return true }
func (h *logCount) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.counts == nil {
		h.counts = map[slog.Level]int{}
	}
	h.counts[r.Level]++
	return nil
}
func (h *logCount) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *logCount) WithGroup(string) slog.Handler      { return h }
func (h *logCount) n(l slog.Level) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.counts[l]
}

func matchIDs(l *Live, app, typ string) []string { return ids(l.Index().Match(app, typ, nil)) }

func TestLiveFollowsTheFeed(t *testing.T) {
	st := newFeedStore(sub("sub_1", "app", "order.*"), sub("sub_2", "app", "user.created"))
	var changes changeLog
	l := NewLive(st, LiveOptions{Poll: 20 * time.Millisecond, OnChange: changes.on})
	if l.Index().Len() != 0 {
		t.Fatal("index not empty before Start")
	}
	if err := l.Refresh(context.Background()); !errors.Is(err, ErrLiveNotStarted) {
		t.Fatalf("Refresh before Start: %v", err)
	}
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if got := matchIDs(l, "app", "order.paid"); !slices.Equal(got, []string{"sub_1"}) {
		t.Fatalf("after Start: %v", got)
	}
	if got := changes.take(); len(got) != 0 {
		t.Fatalf("Start's snapshot made OnChange calls: %v", got)
	}
	if l.Seq() != 2 {
		t.Fatalf("Seq %d, want 2", l.Seq())
	}

	// The polling picks up a create, an update and a delete.
	st.put(sub("sub_3", "app", "order.paid"))
	changed := sub("sub_1", "app", "order.*")
	changed.URL = "https://moved.example"
	st.put(changed)
	st.del("sub_2")
	testenv.Eventually(t, 5*time.Second, "the changes in the index", func() bool {
		return l.Seq() == 5
	})
	if got := matchIDs(l, "app", "order.paid"); !slices.Equal(got, []string{"sub_1", "sub_3"}) {
		t.Fatalf("after the changes: %v", got)
	}
	if s, _ := l.Index().Get("sub_1"); s.URL != "https://moved.example" {
		t.Fatalf("sub_1 URL %q", s.URL)
	}
	if _, ok := l.Index().Get("sub_2"); ok {
		t.Fatal("deleted sub_2 still in the index")
	}
	want := []string{"+sub_3", "-sub_2", "~sub_1:https://app.example/sub_1>https://moved.example"}
	if got := changes.take(); !slices.Equal(got, want) {
		t.Fatalf("OnChange calls %v, want %v", got, want)
	}

	// Disabling takes a subscription out of Match, not out of Get.
	off := changed
	off.Disabled = true
	st.put(off)
	if err := l.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := matchIDs(l, "app", "order.paid"); !slices.Equal(got, []string{"sub_3"}) {
		t.Fatalf("after disabling sub_1: %v", got)
	}
	if s, ok := l.Index().Get("sub_1"); !ok || !s.Disabled {
		t.Fatal("disabled sub_1 not in Get")
	}
}

// TestLiveRefreshIsImmediate: Refresh returns with every change made
// before it in the index, whatever the poll interval.
func TestLiveRefreshIsImmediate(t *testing.T) {
	st := newFeedStore()
	l := NewLive(st, LiveOptions{Poll: time.Hour})
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i := range 20 {
		st.put(sub(fmt.Sprintf("sub_%02d", i), "app", "*"))
		if err := l.Refresh(context.Background()); err != nil {
			t.Fatal(err)
		}
		if n := len(l.Index().Match("app", "x", nil)); n != i+1 {
			t.Fatalf("after create %d and Refresh: %d matches", i, n)
		}
	}
}

// TestLiveBigBatch: more changes than one read of the feed asks for are
// all applied by one Refresh, each subscription read once per batch.
func TestLiveBigBatch(t *testing.T) {
	st := newFeedStore()
	l := NewLive(st, LiveOptions{Poll: time.Hour})
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i := range 1200 {
		st.put(sub(fmt.Sprintf("sub_%04d", i%700), "app", "*"))
	}
	st.gets.Store(0)
	if err := l.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if l.Index().Len() != 700 || l.Seq() != 1200 {
		t.Fatalf("Len %d Seq %d, want 700 and 1200", l.Index().Len(), l.Seq())
	}
	// Batches of 500: 500 distinct, then 200 + 300 (700 distinct), then 200.
	if n := st.gets.Load(); n != 500+500+200 {
		t.Fatalf("%d reads of subscriptions", n)
	}
}

func TestLiveStartFails(t *testing.T) {
	st := newFeedStore(sub("sub_1", "app", "*"))
	boom := errors.New("connection refused")
	st.fail(boom, nil, nil)
	l := NewLive(st, LiveOptions{})
	if err := l.Start(context.Background()); !errors.Is(err, boom) {
		t.Fatalf("Start: %v, want the store's error", err)
	}
	if l.Index().Len() != 0 {
		t.Fatal("failed Start filled the index")
	}
	l.Close()
}

// TestLiveStoreErrors: while the store fails, the index in use stays as it
// was and the failure is logged once, not per poll; then it catches up.
func TestLiveStoreErrors(t *testing.T) {
	st := newFeedStore(sub("sub_1", "app", "*"))
	logs := &logCount{}
	l := NewLive(st, LiveOptions{Poll: 5 * time.Millisecond, Logger: slog.New(logs)})
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	boom := errors.New("connection reset")
	st.fail(nil, boom, nil)
	st.put(sub("sub_2", "app", "*"))
	if err := l.Refresh(context.Background()); !errors.Is(err, boom) {
		t.Fatalf("Refresh while the feed fails: %v", err)
	}
	// Many failed polls, one warning.
	testenv.Eventually(t, 5*time.Second, "a failed poll logged", func() bool { return logs.n(slog.LevelWarn) >= 1 })
	unlogged := func() int {
		l.turn <- struct{}{}
		defer func() { <-l.turn }()
		return l.unlogged
	}
	testenv.Eventually(t, 5*time.Second, "more failed polls", func() bool { return unlogged() >= 10 })
	if n := logs.n(slog.LevelWarn); n != 1 {
		t.Fatalf("%d warnings for one run of failures", n)
	}
	if l.Index().Len() != 1 {
		t.Fatal("index changed while the store failed")
	}

	// A subscription that cannot be read holds the whole batch back.
	st.fail(nil, nil, boom)
	if err := l.Refresh(context.Background()); !errors.Is(err, boom) {
		t.Fatalf("Refresh while reads fail: %v", err)
	}
	if l.Index().Len() != 1 || l.Seq() != 1 {
		t.Fatalf("partly applied: Len %d Seq %d", l.Index().Len(), l.Seq())
	}

	st.fail(nil, nil, nil)
	testenv.Eventually(t, 5*time.Second, "the index catching up", func() bool { return l.Index().Len() == 2 })
	testenv.Eventually(t, 5*time.Second, "the recovery logged", func() bool { return logs.n(slog.LevelInfo) >= 1 })
}

// TestLiveFeedGap: a feed pruned past the index's sequence number makes
// Live load a snapshot, and OnChange hears of what differs.
func TestLiveFeedGap(t *testing.T) {
	st := newFeedStore(sub("sub_1", "app", "*"), sub("sub_2", "app", "*"), sub("sub_3", "app", "*"))
	var changes changeLog
	l := NewLive(st, LiveOptions{Poll: time.Hour, OnChange: changes.on, Logger: slog.New(slog.DiscardHandler)})
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	moved := sub("sub_1", "app", "*")
	moved.URL = "https://moved.example"
	st.put(moved)
	st.del("sub_2")
	st.put(sub("sub_4", "app_b", "*"))
	st.prune()
	if err := l.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := ids(l.Index().MatchAll("x", nil)); !slices.Equal(got, []string{"sub_1", "sub_3", "sub_4"}) {
		t.Fatalf("after the snapshot: %v", got)
	}
	if l.Seq() != 6 {
		t.Fatalf("Seq %d, want 6", l.Seq())
	}
	want := []string{"+sub_4", "-sub_2", "~sub_1:https://app.example/sub_1>https://moved.example"}
	if got := changes.take(); !slices.Equal(got, want) {
		t.Fatalf("OnChange after the snapshot: %v, want %v", got, want)
	}
	// And the feed is followed from the snapshot on.
	st.put(sub("sub_5", "app", "*"))
	if err := l.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, ok := l.Index().Get("sub_5"); !ok {
		t.Fatal("change after the snapshot not applied")
	}
}

// TestLiveReadersDuringChanges: readers match while changes are applied
// (run with -race), and each index they get is whole.
func TestLiveReadersDuringChanges(t *testing.T) {
	st := newFeedStore()
	l := NewLive(st, LiveOptions{Poll: time.Millisecond})
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			dst := make([]*Subscription, 0, 64)
			for ctx.Err() == nil {
				ix := l.Index()
				dst = ix.Match("app", "order.paid", dst[:0])
				// Every subscription has both patterns: all or nothing of
				// each change, never a half-applied one.
				if len(dst) != len(ix.Application("app")) {
					t.Errorf("%d matches of %d subscriptions", len(dst), len(ix.Application("app")))
					return
				}
			}
		})
	}
	for i := range 200 {
		st.put(sub(fmt.Sprintf("sub_%03d", i%50), "app", "order.*", "order.paid"))
		if i%3 == 0 {
			st.del(fmt.Sprintf("sub_%03d", (i*7)%50))
		}
	}
	testenv.Eventually(t, 10*time.Second, "every change applied", func() bool { return l.Seq() == st.seq })
	cancel()
	wg.Wait()
	l.Close()
	l.Close()
	if err := l.Refresh(context.Background()); !errors.Is(err, ErrLiveClosed) {
		t.Fatalf("Refresh after Close: %v", err)
	}
}

// pruningStore is a feedStore that prunes its feed (a ChangePruner).
type pruningStore struct {
	*feedStore
	mu      sync.Mutex
	befores []time.Time
}

func (p *pruningStore) PruneChanges(ctx context.Context, before time.Time) (int64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.befores = append(p.befores, before)
	return 0, nil
}

func (p *pruningStore) prunes() []time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.befores)
}

// TestLivePrunesTheFeed: Live prunes a store that can prune, keeping
// KeepChanges; a negative KeepChanges never prunes.
func TestLivePrunesTheFeed(t *testing.T) {
	st := &pruningStore{feedStore: newFeedStore()}
	l := NewLive(st, LiveOptions{Poll: time.Hour, KeepChanges: 3 * time.Hour})
	l.pruneEvery = 10 * time.Millisecond
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 5*time.Second, "two prunes", func() bool { return len(st.prunes()) >= 2 })
	l.Close()
	before := st.prunes()[0]
	if age := time.Since(before); age < 3*time.Hour || age > 3*time.Hour+time.Minute {
		t.Fatalf("pruned changes older than %v, want 3h", age)
	}

	never := &pruningStore{feedStore: newFeedStore()}
	l = NewLive(never, LiveOptions{Poll: 5 * time.Millisecond, KeepChanges: -1})
	l.pruneEvery = time.Millisecond
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Polls run; no prune among them.
	never.put(sub("sub_1", "app", "*"))
	testenv.Eventually(t, 5*time.Second, "a poll", func() bool { return l.Index().Len() == 1 })
	l.Close()
	if n := len(never.prunes()); n != 0 {
		t.Fatalf("%d prunes with KeepChanges < 0", n)
	}
}
