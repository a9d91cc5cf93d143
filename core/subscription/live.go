package subscription

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sync/atomic"
	"time"
)

// LiveOptions configure a Live.
type LiveOptions struct {
	// Poll is how often the store's change feed is read (default 250ms):
	// a change made on any instance sharing the store is in every
	// instance's index within about Poll plus a round trip.
	Poll time.Duration
	// Logger receives store errors (rate-limited) and recoveries; nil is
	// slog.Default().
	Logger *slog.Logger
	// OnChange, when set, is called for each subscription that changed,
	// after the index holding the change is in place: old is the
	// subscription as the previous index had it (nil: new), new as it is
	// now (nil: deleted). Calls come one at a time, from the goroutine that
	// polled (Live's own, or Refresh's caller); they must not block and
	// must not call Refresh. Start's first snapshot makes no calls.
	OnChange func(old, new *Subscription)
	// KeepChanges is how long the store's change feed keeps a change when
	// the store can prune it (a ChangePruner): every instance prunes older
	// ones every 10 minutes. An instance that was away for longer loads a
	// snapshot instead of catching up from the feed. Default 24h; negative:
	// never prune.
	KeepChanges time.Duration
}

// ChangePruner is a Store that can prune its change feed: PruneChanges
// removes the changes recorded before before (the store may keep more)
// and returns how many it removed.
type ChangePruner interface {
	PruneChanges(ctx context.Context, before time.Time) (int64, error)
}

// liveBatch is how many changes one read of the feed asks for.
const liveBatch = 500

// liveErrorEvery is how often a store that keeps failing is logged again.
const liveErrorEvery = 30 * time.Second

// livePruneEvery is how often Live prunes the change feed.
const livePruneEvery = 10 * time.Minute

// livePollTimeout bounds one poll, so a store that hangs does not stop the
// index from being retried (the old one stays in use).
const livePollTimeout = 30 * time.Second

// ErrLiveNotStarted is Refresh's error before Start; ErrLiveClosed after Close.
var (
	ErrLiveNotStarted = errors.New("subscriptions: live index not started")
	ErrLiveClosed     = errors.New("subscriptions: live index closed")
)

// Live keeps an Index current from a Store on every instance sharing the
// store: it loads a Snapshot, then reads the change feed every Poll and
// re-reads each subscription that changed, swapping in a new Index. Readers
// call Index, which never blocks. When the store fails, the error is
// logged and the poll retried; the index in use stays as it was.
type Live struct {
	st       Store
	poll     time.Duration
	log      *slog.Logger
	onChange func(old, new *Subscription)
	// pruner is st when it prunes and KeepChanges allows.
	pruner     ChangePruner
	keep       time.Duration
	pruneEvery time.Duration

	ix  atomic.Pointer[Index]
	seq atomic.Int64
	// turn is held by the one poll running (a channel, so that waiting
	// for it respects a context); it guards the fields below.
	turn    chan struct{}
	started bool
	// Rate-limited error logging.
	failing    bool
	lastLogged time.Time
	unlogged   int

	// ctx is cancelled by Close; done is closed when the polling ends.
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
}

// NewLive returns a Live on st; Start loads it. Until then Index is empty.
func NewLive(st Store, opts LiveOptions) *Live {
	if opts.Poll <= 0 {
		opts.Poll = 250 * time.Millisecond
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.KeepChanges == 0 {
		opts.KeepChanges = 24 * time.Hour
	}
	l := &Live{
		st:         st,
		poll:       opts.Poll,
		log:        opts.Logger,
		onChange:   opts.OnChange,
		keep:       opts.KeepChanges,
		pruneEvery: livePruneEvery,
		turn:       make(chan struct{}, 1),
		done:       make(chan struct{}),
	}
	if p, ok := st.(ChangePruner); ok && opts.KeepChanges > 0 {
		l.pruner = p
	}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	l.ix.Store(NewIndex(nil))
	return l
}

// Index returns the current index. It never blocks, and the index it
// returns never changes: hold it for the length of one lookup or one
// delivery, then ask again.
func (l *Live) Index() *Index { return l.ix.Load() }

// Seq is the sequence number of the last change the index holds.
func (l *Live) Seq() int64 { return l.seq.Load() }

// Start loads a snapshot of the store into the index, failing when the
// store does, then polls the change feed every Poll until Close. ctx
// bounds the snapshot only.
func (l *Live) Start(ctx context.Context) error {
	if err := l.lock(ctx); err != nil {
		return err
	}
	defer l.unlock()
	if l.ctx.Err() != nil {
		return ErrLiveClosed
	}
	if l.started {
		return errors.New("subscriptions: live index already started")
	}
	if err := l.snapshot(ctx, false); err != nil {
		return err
	}
	l.started = true
	go l.run()
	return nil
}

// Refresh reads the change feed now and returns once the index holds
// every change made before the call (the API may call it after a write, so
// the instance that made a change uses it at once). A store error is
// returned and the index left as it was.
func (l *Live) Refresh(ctx context.Context) error {
	if err := l.lock(ctx); err != nil {
		return err
	}
	defer l.unlock()
	switch {
	case l.ctx.Err() != nil:
		return ErrLiveClosed
	case !l.started:
		return ErrLiveNotStarted
	}
	return l.update(ctx)
}

// Close stops the polling and waits for it to end. The last index stays
// readable.
func (l *Live) Close() {
	l.cancel() // ends a poll under way, so the turn comes soon
	l.turn <- struct{}{}
	started := l.started
	<-l.turn
	if started {
		<-l.done
	}
}

func (l *Live) lock(ctx context.Context) error {
	select {
	case l.turn <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (l *Live) unlock() { <-l.turn }

// run polls until Close.
func (l *Live) run() {
	defer close(l.done)
	t := time.NewTicker(l.poll)
	defer t.Stop()
	var prune <-chan time.Time
	if l.pruner != nil {
		pt := time.NewTicker(l.pruneEvery)
		defer pt.Stop()
		prune = pt.C
	}
	ctx := l.ctx
	for {
		select {
		case <-ctx.Done():
			return
		case <-prune:
			l.prune(ctx)
			continue
		case <-t.C:
		}
		if l.lock(ctx) != nil {
			return
		}
		pctx, pcancel := context.WithTimeout(ctx, livePollTimeout)
		err := l.update(pctx)
		pcancel()
		if ctx.Err() == nil {
			l.report(err)
		}
		l.unlock()
	}
}

// prune removes the changes older than KeepChanges from the feed.
func (l *Live) prune(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, livePollTimeout)
	defer cancel()
	n, err := l.pruner.PruneChanges(ctx, time.Now().Add(-l.keep))
	switch {
	case err != nil && ctx.Err() == nil:
		l.log.Warn("subscriptions: cannot prune the change feed; it grows until a later prune", "error", err)
	case n > 0:
		l.log.Debug("subscriptions: change feed pruned", "removed", n, "older_than", l.keep)
	}
}

// report logs a failed poll, rate-limited: the first failure at once,
// then at most once every liveErrorEvery with the number of failures in
// between; and the recovery. Called holding the turn.
func (l *Live) report(err error) {
	now := time.Now()
	switch {
	case err == nil && l.failing:
		l.failing = false
		l.log.Info("subscriptions: change feed read again; index current", "seq", l.seq.Load(), "failed_polls", l.unlogged)
		l.unlogged = 0
	case err == nil:
	case !l.failing || now.Sub(l.lastLogged) >= liveErrorEvery:
		l.log.Warn("subscriptions: cannot read the store; the index in use stays as it was until it can",
			"error", err, "seq", l.seq.Load(), "failed_polls_not_logged", l.unlogged)
		l.failing, l.lastLogged, l.unlogged = true, now, 0
	default:
		l.unlogged++
	}
}

// update applies the feed's changes after l.seq until the feed is empty.
// Called holding the turn.
func (l *Live) update(ctx context.Context) error {
	for {
		changes, err := l.st.Changes(ctx, l.seq.Load(), liveBatch)
		if errors.Is(err, ErrFeedGap) {
			l.log.Info("subscriptions: change feed pruned past the index; loading a snapshot", "seq", l.seq.Load())
			return l.snapshot(ctx, true)
		}
		if err != nil {
			return fmt.Errorf("subscriptions: change feed after %d: %w", l.seq.Load(), err)
		}
		if len(changes) == 0 {
			return nil
		}
		if err := l.apply(ctx, changes); err != nil {
			return err
		}
		if len(changes) < liveBatch {
			return nil
		}
	}
}

// apply re-reads the subscriptions changes name and swaps in the index
// holding them. A read that fails applies nothing: the next poll reads
// the same changes again.
func (l *Live) apply(ctx context.Context, changes []Change) error {
	// The last change of each subscription, in the order of the first.
	last := make(map[string]int, len(changes))
	var order []Change
	for _, c := range changes {
		if i, ok := last[c.Sub]; ok {
			order[i] = c
			continue
		}
		last[c.Sub] = len(order)
		order = append(order, c)
	}
	cur := l.ix.Load()
	var puts []Subscription
	var dels []string
	for _, c := range order {
		if c.Kind == ChangeDeleted {
			// A subscription deleted stays deleted: IDs are not reused,
			// and anything later would be a later change.
			if _, ok := cur.Get(c.Sub); ok {
				dels = append(dels, c.Sub)
			}
			continue
		}
		s, err := l.st.GetSubscription(ctx, c.App, c.Sub)
		switch {
		case errors.Is(err, ErrNotFound):
			if _, ok := cur.Get(c.Sub); ok {
				dels = append(dels, c.Sub)
			}
		case err != nil:
			return fmt.Errorf("subscriptions: reading changed subscription %s of application %s: %w", c.Sub, c.App, err)
		default:
			// The same subscription again (read once already, after a
			// later change than this one): nothing to do.
			if old, ok := cur.Get(s.ID); !ok || !sameSubscription(old, &s) {
				puts = append(puts, s)
			}
		}
	}
	next := cur.Update(puts, dels)
	l.ix.Store(next)
	l.seq.Store(changes[len(changes)-1].Seq)
	if l.onChange != nil {
		for _, id := range dels {
			old, _ := cur.Get(id)
			l.onChange(old, nil)
		}
		for i := range puts {
			old, _ := cur.Get(puts[i].ID)
			n, _ := next.Get(puts[i].ID)
			l.onChange(old, n)
		}
	}
	return nil
}

// snapshot loads everything; after the first (diff), OnChange hears of
// every subscription the new index has differently from the old one.
func (l *Live) snapshot(ctx context.Context, diff bool) error {
	subs, seq, err := l.st.Snapshot(ctx)
	if err != nil {
		return fmt.Errorf("subscriptions: loading a snapshot of the store: %w", err)
	}
	cur := l.ix.Load()
	next := newIndexOwned(subs)
	l.ix.Store(next)
	l.seq.Store(seq)
	if !diff || l.onChange == nil {
		return nil
	}
	cur.subs.each(func(id string, old *Subscription) {
		if _, ok := next.Get(id); !ok {
			l.onChange(old, nil)
		}
	})
	next.subs.each(func(id string, n *Subscription) {
		if old, ok := cur.Get(id); !ok || !sameSubscription(old, n) {
			l.onChange(old, n)
		}
	})
	return nil
}

// sameSubscription tells whether a and b are the same version of a
// subscription (times compared as instants, whatever their location).
func sameSubscription(a, b *Subscription) bool {
	if !a.Created.Equal(b.Created) || !a.Updated.Equal(b.Updated) || !a.FailingSince.Equal(b.FailingSince) ||
		!sameSecrets(a.Secrets, b.Secrets) || !sameSecrets(a.SigningKeys, b.SigningKeys) {
		return false
	}
	x, y := *a, *b
	x.Created, x.Updated, x.FailingSince, x.Secrets, x.SigningKeys = time.Time{}, time.Time{}, time.Time{}, nil, nil
	y.Created, y.Updated, y.FailingSince, y.Secrets, y.SigningKeys = time.Time{}, time.Time{}, time.Time{}, nil, nil
	return reflect.DeepEqual(x, y)
}

// sameSecrets tells whether two lists of secrets or signing keys are the
// same (times compared as instants).
func sameSecrets(a, b []Secret) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.Value != y.Value || !x.Created.Equal(y.Created) || !x.Expires.Equal(y.Expires) {
			return false
		}
	}
	return true
}
