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

// Matches tells whether s's event types take an event of type t (whether
// it is enabled aside): the rule the index matches by.
func (s *Subscription) Matches(t string) bool {
	for _, p := range s.EventTypes {
		switch kind, key := classify(p); kind {
		case patternAll:
			return true
		case patternPrefix:
			if strings.HasPrefix(t, key) {
				return true
			}
		default:
			if t == key {
				return true
			}
		}
	}
	return false
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
	// The applications and global lists touched, each with what leaves
	// it and what comes in.
	apps := map[string]*edits{}
	keys := map[patternKey]*edits{}
	touch := func(m map[string]*edits, k string) *edits {
		if m[k] == nil {
			m[k] = &edits{}
		}
		return m[k]
	}
	touchKey := func(k patternKey) *edits {
		if keys[k] == nil {
			keys[k] = &edits{}
		}
		return keys[k]
	}
	changed := false
	for id, n := range next {
		old, had := ix.subs.get(id)
		if had {
			ed := touch(apps, old.App)
			ed.gone = append(ed.gone, old)
			for _, k := range keysOf(old) {
				ed := touchKey(k)
				ed.gone = append(ed.gone, old)
			}
		}
		if n == nil {
			if had {
				nx.subs.del(e, id)
				changed = true
			}
			continue
		}
		ed := touch(apps, n.App)
		ed.added = append(ed.added, n)
		for _, k := range keysOf(n) {
			ed := touchKey(k)
			ed.added = append(ed.added, n)
		}
		nx.subs.set(e, id, n)
		changed = true
	}
	if !changed {
		return ix
	}

	for app, ed := range apps {
		var old []*Subscription
		if a, ok := ix.apps.get(app); ok {
			old = a.subs
		}
		if l := ed.apply(old); len(l) > 0 {
			nx.apps.set(e, app, newAppIndex(l))
		} else {
			nx.apps.del(e, app)
		}
	}
	for k, ed := range keys {
		switch k.kind {
		case patternAll:
			nx.all.wild = ed.apply(ix.all.wild)
		case patternPrefix:
			old, _ := ix.all.prefix.get(k.key)
			if l := ed.apply(old); len(l) > 0 {
				nx.all.prefix.set(e, k.key, l)
				nx.all.maxPrefix = max(nx.all.maxPrefix, len(k.key))
			} else {
				nx.all.prefix.del(e, k.key)
			}
		default:
			old, _ := ix.all.exact.get(k.key)
			if l := ed.apply(old); len(l) > 0 {
				nx.all.exact.set(e, k.key, l)
			} else {
				nx.all.exact.del(e, k.key)
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
	return slices.Clip(a.subs) // an append by the caller copies
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
	g := gather{dst: dst, start: len(dst)}
	g.add(t.exact[eventType])
	if len(t.prefix) > 0 {
		for i := dotAfter(eventType, 0, t.maxPrefix); i >= 0; i = dotAfter(eventType, i+1, t.maxPrefix) {
			g.add(t.prefix[eventType[:i+1]])
		}
	}
	g.add(t.wild)
	return g.done()
}

// MatchAll is Match over every application (a broadcast sink's lookup).
func (ix *Index) MatchAll(eventType string, dst []*Subscription) []*Subscription {
	t := &ix.all
	g := gather{dst: dst, start: len(dst)}
	l, _ := t.exact.get(eventType)
	g.add(l)
	if t.prefix.len() > 0 {
		for i := dotAfter(eventType, 0, t.maxPrefix); i >= 0; i = dotAfter(eventType, i+1, t.maxPrefix) {
			l, _ := t.prefix.get(eventType[:i+1])
			g.add(l)
		}
	}
	g.add(t.wild)
	return g.done()
}

// gather merges the lists a lookup finds (each in ID order) into dst in
// ID order, each subscription once: one with several matching patterns is
// in several lists. Up to len(ls) lists merge in one pass; more (a type
// with many dots) are appended and sorted.
type gather struct {
	dst   []*Subscription
	start int
	ls    [8][]*Subscription
	k     int
	spill bool
}

func (g *gather) add(l []*Subscription) {
	switch {
	case len(l) == 0:
	case !g.spill && g.k < len(g.ls):
		g.ls[g.k] = l
		g.k++
	default:
		if !g.spill {
			for _, held := range g.ls[:g.k] {
				g.dst = append(g.dst, held...)
			}
			g.spill = true
		}
		g.dst = append(g.dst, l...)
	}
}

func (g *gather) done() []*Subscription {
	if g.spill {
		return sortedOnce(g.dst, g.start)
	}
	ls := g.ls[:g.k]
	dst := g.dst
	for len(ls) > 1 {
		m := 0
		for i := 1; i < len(ls); i++ {
			if ls[i][0].ID < ls[m][0].ID {
				m = i
			}
		}
		// One ID, one *Subscription: a repeat is the last one appended.
		if s := ls[m][0]; len(dst) == g.start || dst[len(dst)-1] != s {
			dst = append(dst, s)
		}
		if ls[m] = ls[m][1:]; len(ls[m]) == 0 {
			ls[m] = ls[len(ls)-1]
			ls = ls[:len(ls)-1]
		}
	}
	if len(ls) == 1 {
		rest := ls[0]
		if len(dst) > g.start && dst[len(dst)-1] == rest[0] {
			rest = rest[1:]
		}
		dst = append(dst, rest...)
	}
	return dst
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

// sortedOnce puts dst[start:] in ID order without repeats.
func sortedOnce(dst []*Subscription, start int) []*Subscription {
	seg := dst[start:]
	slices.SortFunc(seg, byID)
	n := 0
	for i := range seg {
		if n == 0 || seg[i] != seg[n-1] {
			seg[n] = seg[i]
			n++
		}
	}
	clear(seg[n:])
	return dst[:start+n]
}

// edits are the changes to one list of an Index: the subscriptions that
// leave it (as the old index has them) and those that come in.
type edits struct {
	gone, added []*Subscription
}

// apply returns a new list: old (in ID order) without gone and with added,
// in ID order. It copies old in runs between the edits, finding each edit's
// place by binary search: O(len(old)) moves, O(edits·log) comparisons.
func (ed *edits) apply(old []*Subscription) []*Subscription {
	slices.SortFunc(ed.gone, byID)
	slices.SortFunc(ed.added, byID)
	gone, added := ed.gone, ed.added
	l := make([]*Subscription, 0, len(old)+len(added))
	for len(gone) > 0 || len(added) > 0 {
		var id string
		if len(gone) > 0 && (len(added) == 0 || gone[0].ID <= added[0].ID) {
			id = gone[0].ID
		} else {
			id = added[0].ID
		}
		i, _ := slices.BinarySearchFunc(old, id, func(s *Subscription, id string) int { return strings.Compare(s.ID, id) })
		l = append(l, old[:i]...)
		old = old[i:]
		if len(gone) > 0 && gone[0].ID == id {
			if len(old) > 0 && old[0] == gone[0] {
				old = old[1:]
			}
			gone = gone[1:]
		}
		if len(added) > 0 && added[0].ID == id {
			l = append(l, added[0])
			added = added[1:]
		}
	}
	return append(l, old...)
}
