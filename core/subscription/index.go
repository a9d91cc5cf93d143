package subscription

import (
	"slices"
	"strings"
)

// Index matches an event to the subscriptions it goes to. It is immutable:
// With, Without and Update return a new Index sharing what did not change
// with the old one, which stays valid, so any number of goroutines read an
// Index without locks while one builds the next.
//
// A lookup costs in proportion to the subscriptions it returns and to the
// dots in the event type, never to the number of subscriptions: each
// application has its exact types in a map, its prefixes ("order." for
// "order.*") in another and its "*" subscriptions in a list; one more set
// of the three spans every application for MatchAll.
//
// The index keeps the subscriptions it is given and hands out pointers to
// them: neither the caller nor the users of Match and Get may modify them.
// It validates nothing (the API does) and treats an odd pattern as an
// exact type: only "*" and patterns ending in ".*" are wildcards.
type Index struct {
	// subs has every subscription by ID, disabled ones included.
	subs pmap[*Subscription]
	// apps has each application's subscriptions and match tables.
	apps pmap[*appIndex]
	// all matches over every application.
	all globalTable
}

// appIndex is one application's part of an Index.
type appIndex struct {
	// subs has all of the application's subscriptions, by ID.
	subs []*Subscription
	table
}

// table matches event types to enabled subscriptions; every list is in
// ID order and holds a subscription at most once.
type table struct {
	exact  map[string][]*Subscription
	prefix map[string][]*Subscription
	wild   []*Subscription
	// maxPrefix is the length of the longest prefix: a lookup looks for
	// dots no further into the event type.
	maxPrefix int
}

// globalTable is table over every application, in persistent maps so a
// change copies only the lists of the types it touches. Its maxPrefix
// only grows between rebuilds: a bound, not the exact length.
type globalTable struct {
	exact     pmap[[]*Subscription]
	prefix    pmap[[]*Subscription]
	wild      []*Subscription
	maxPrefix int
}

// patternKind is what a pattern of event_types is.
type patternKind uint8

const (
	patternExact  patternKind = iota // "order.paid": that type
	patternPrefix                    // "order.*": key "order.", every type that begins so
	patternAll                       // "*": every type
)

// classify returns a pattern's kind and its key in the table of that kind.
func classify(p string) (patternKind, string) {
	switch {
	case p == "*":
		return patternAll, ""
	case strings.HasSuffix(p, ".*"):
		return patternPrefix, p[:len(p)-1]
	default:
		return patternExact, p
	}
}

func byID(a, b *Subscription) int { return strings.Compare(a.ID, b.ID) }

// patternKey is one entry of a table a subscription is listed in.
type patternKey struct {
	kind patternKind
	key  string
}

// keysOf returns the distinct table entries of s's patterns; none when s
// is disabled (a disabled subscription matches nothing).
func keysOf(s *Subscription) []patternKey {
	if s == nil || s.Disabled {
		return nil
	}
	keys := make([]patternKey, 0, len(s.EventTypes))
	for _, p := range s.EventTypes {
		kind, key := classify(p)
		k := patternKey{kind, key}
		if !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	return keys
}

// add appends s to l unless it is l's last element already: subscriptions
// are added in ID order, one at a time with all of its patterns, so that is
// enough to list each at most once.
func add(l []*Subscription, s *Subscription) []*Subscription {
	if len(l) > 0 && l[len(l)-1] == s {
		return l
	}
	return append(l, s)
}

// NewIndex builds an index of subs. Of several with one ID the last is
// kept. The index copies the Subscription values but shares what they
// point to (EventTypes, Headers, Metadata, Secrets): do not modify those.
func NewIndex(subs []Subscription) *Index {
	own := make([]Subscription, len(subs))
	copy(own, subs)
	return newIndexOwned(own)
}

// newIndexOwned is NewIndex on a slice the index may keep: the caller
// never touches it again.
func newIndexOwned(subs []Subscription) *Index {
	ptrs := make([]*Subscription, len(subs))
	for i := range subs {
		ptrs[i] = &subs[i]
	}
	// Stable, so the last of equal IDs stays last; then keep it alone.
	slices.SortStableFunc(ptrs, byID)
	kept := ptrs[:0]
	for i, s := range ptrs {
		if i+1 < len(ptrs) && ptrs[i+1].ID == s.ID {
			continue
		}
		kept = append(kept, s)
	}
	ptrs = kept

	e := new(edit)
	ix := &Index{}
	byApp := map[string][]*Subscription{}
	var g table
	for _, s := range ptrs {
		ix.subs.set(e, s.ID, s)
		byApp[s.App] = append(byApp[s.App], s)
		g.add(s)
	}
	for app, l := range byApp {
		ix.apps.set(e, app, newAppIndex(l))
	}
	for k, l := range g.exact {
		ix.all.exact.set(e, k, l)
	}
	for k, l := range g.prefix {
		ix.all.prefix.set(e, k, l)
	}
	ix.all.wild = g.wild
	ix.all.maxPrefix = g.maxPrefix
	return ix
}

// newAppIndex indexes one application's subscriptions, given in ID order.
func newAppIndex(subs []*Subscription) *appIndex {
	a := &appIndex{subs: subs}
	for _, s := range subs {
		a.add(s)
	}
	return a
}

// add lists s under each of its patterns (none when disabled); s comes
// after every subscription already in t in ID order.
func (t *table) add(s *Subscription) {
	if s.Disabled {
		return
	}
	for _, p := range s.EventTypes {
		switch kind, key := classify(p); kind {
		case patternAll:
			t.wild = add(t.wild, s)
		case patternPrefix:
			if t.prefix == nil {
				t.prefix = map[string][]*Subscription{}
			}
			t.prefix[key] = add(t.prefix[key], s)
			t.maxPrefix = max(t.maxPrefix, len(key))
		default:
			if t.exact == nil {
				t.exact = map[string][]*Subscription{}
			}
			t.exact[key] = add(t.exact[key], s)
		}
	}
}

// With returns an index with s added, or replacing the subscription of
// its ID. It costs in proportion to s's application's subscriptions and to
// the global lists of the patterns s has and had; ix is unchanged.
func (ix *Index) With(s Subscription) *Index { return ix.Update([]Subscription{s}, nil) }

// Without returns an index without subscription id (ix itself when it has
// none); ix is unchanged.
func (ix *Index) Without(id string) *Index { return ix.Update(nil, []string{id}) }

// Update returns an index with the subscriptions of dels removed and then
// those of puts added or replaced, in one pass: each application and each
// pattern touched is rebuilt once however many of the changes touch it.
// An ID both deleted and put is put. ix is unchanged.
func (ix *Index) Update(puts []Subscription, dels []string) *Index {
	// next[id] is what id becomes: nil for deleted.
	next := make(map[string]*Subscription, len(puts)+len(dels))
	for _, id := range dels {
		next[id] = nil
	}
	own := make([]Subscription, len(puts))
	copy(own, puts)
	for i := range own {
		next[own[i].ID] = &own[i]
	}

	e := new(edit)
	nx := &Index{subs: ix.subs, apps: ix.apps, all: ix.all}
	// The applications and global lists touched, each with the
	// subscriptions put into it.
	apps := map[string][]*Subscription{}
	keys := map[patternKey][]*Subscription{}
	changed := false
	for id, n := range next {
		old, had := ix.subs.get(id)
		if had {
			if _, ok := apps[old.App]; !ok {
				apps[old.App] = nil
			}
			for _, k := range keysOf(old) {
				if _, ok := keys[k]; !ok {
					keys[k] = nil
				}
			}
		}
		if n == nil {
			if had {
				nx.subs.del(e, id)
				changed = true
			}
			continue
		}
		apps[n.App] = append(apps[n.App], n)
		for _, k := range keysOf(n) {
			keys[k] = append(keys[k], n)
		}
		nx.subs.set(e, id, n)
		changed = true
	}
	if !changed {
		return ix
	}

	// Each touched application: its subscriptions but the changed ones,
	// plus those put into it, rebuilt.
	for app, added := range apps {
		var l []*Subscription
		if a, ok := ix.apps.get(app); ok {
			l = make([]*Subscription, 0, len(a.subs)+len(added))
			for _, s := range a.subs {
				if _, ch := next[s.ID]; !ch {
					l = append(l, s)
				}
			}
		}
		l = append(l, added...)
		if len(l) == 0 {
			nx.apps.del(e, app)
			continue
		}
		slices.SortFunc(l, byID)
		nx.apps.set(e, app, newAppIndex(l))
	}

	// Each touched global list likewise.
	for k, added := range keys {
		var old []*Subscription
		switch k.kind {
		case patternAll:
			old = ix.all.wild
		case patternPrefix:
			old, _ = ix.all.prefix.get(k.key)
		default:
			old, _ = ix.all.exact.get(k.key)
		}
		l := make([]*Subscription, 0, len(old)+len(added))
		for _, s := range old {
			if _, ch := next[s.ID]; !ch {
				l = append(l, s)
			}
		}
		l = append(l, added...)
		slices.SortFunc(l, byID)
		switch k.kind {
		case patternAll:
			nx.all.wild = l
		case patternPrefix:
			if len(l) == 0 {
				nx.all.prefix.del(e, k.key)
			} else {
				nx.all.prefix.set(e, k.key, l)
				nx.all.maxPrefix = max(nx.all.maxPrefix, len(k.key))
			}
		default:
			if len(l) == 0 {
				nx.all.exact.del(e, k.key)
			} else {
				nx.all.exact.set(e, k.key, l)
			}
		}
	}
	return nx
}

// Len is the number of subscriptions, disabled ones included.
func (ix *Index) Len() int { return ix.subs.len() }

// Get returns a subscription by ID, disabled ones included.
func (ix *Index) Get(id string) (*Subscription, bool) { return ix.subs.get(id) }

// Application returns application app's subscriptions, disabled ones
// included, in ID order. The slice is the index's own: do not modify it.
func (ix *Index) Application(app string) []*Subscription {
	a, ok := ix.apps.get(app)
	if !ok {
		return nil
	}
	return a.subs
}

// Match appends to dst the enabled subscriptions of application app whose
// event_types match eventType: an exact pattern equal to it, a prefix
// pattern "p.*" with eventType beginning "p.", or "*". Each subscription
// comes at most once, in ID order. With a dst of enough capacity Match
// allocates nothing.
func (ix *Index) Match(app, eventType string, dst []*Subscription) []*Subscription {
	a, ok := ix.apps.get(app)
	if !ok {
		return dst
	}
	t := &a.table
	start, lists := len(dst), 0
	if l := t.exact[eventType]; len(l) > 0 {
		dst = append(dst, l...)
		lists++
	}
	if len(t.prefix) > 0 {
		for i := dotAfter(eventType, 0, t.maxPrefix); i >= 0; i = dotAfter(eventType, i+1, t.maxPrefix) {
			if l := t.prefix[eventType[:i+1]]; len(l) > 0 {
				dst = append(dst, l...)
				lists++
			}
		}
	}
	if len(t.wild) > 0 {
		dst = append(dst, t.wild...)
		lists++
	}
	return merged(dst, start, lists)
}

// MatchAll is Match over every application (a broadcast sink's lookup).
func (ix *Index) MatchAll(eventType string, dst []*Subscription) []*Subscription {
	t := &ix.all
	start, lists := len(dst), 0
	if l, _ := t.exact.get(eventType); len(l) > 0 {
		dst = append(dst, l...)
		lists++
	}
	if t.prefix.len() > 0 {
		for i := dotAfter(eventType, 0, t.maxPrefix); i >= 0; i = dotAfter(eventType, i+1, t.maxPrefix) {
			if l, _ := t.prefix.get(eventType[:i+1]); len(l) > 0 {
				dst = append(dst, l...)
				lists++
			}
		}
	}
	if len(t.wild) > 0 {
		dst = append(dst, t.wild...)
		lists++
	}
	return merged(dst, start, lists)
}

// dotAfter returns the position of the first '.' of s at or after from
// and before limit, or -1.
func dotAfter(s string, from, limit int) int {
	if limit > len(s) {
		limit = len(s)
	}
	if from >= limit {
		return -1
	}
	i := strings.IndexByte(s[from:limit], '.')
	if i < 0 {
		return -1
	}
	return from + i
}

// merged puts dst[start:], made of lists sorted lists, in ID order
// without repeats: a subscription with several matching patterns is in
// several lists.
func merged(dst []*Subscription, start, lists int) []*Subscription {
	if lists < 2 {
		return dst
	}
	seg := dst[start:]
	slices.SortFunc(seg, byID)
	n := 1
	for i := 1; i < len(seg); i++ {
		if seg[i].ID != seg[n-1].ID {
			seg[n] = seg[i]
			n++
		}
	}
	clear(seg[n:])
	return dst[:start+n]
}
