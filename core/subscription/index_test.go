package subscription

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func sub(id, app string, types ...string) Subscription {
	return Subscription{ID: id, App: app, URL: "https://" + app + ".example/" + id, EventTypes: types}
}

func ids(subs []*Subscription) []string {
	out := make([]string, len(subs))
	for i, s := range subs {
		out[i] = s.ID
	}
	return out
}

func TestIndexMatch(t *testing.T) {
	disabled := sub("sub_09", "app_a", "*")
	disabled.Disabled = true
	ix := NewIndex([]Subscription{
		sub("sub_05", "app_a", "order.paid"),
		sub("sub_01", "app_a", "order.*"),
		sub("sub_03", "app_a", "*"),
		sub("sub_02", "app_a", "order.paid", "order.*", "*", "order.paid"),
		sub("sub_04", "app_a", "order.paid.refunded"),
		sub("sub_06", "app_a", "user.*", "order.paid.*"),
		disabled,
		sub("sub_07", "app_b", "order.paid", "*"),
		sub("sub_08", "app_b", "user.created"),
	})
	cases := []struct {
		app, typ string
		want     []string
	}{
		{"app_a", "order.paid", []string{"sub_01", "sub_02", "sub_03", "sub_05"}},
		{"app_a", "order.created", []string{"sub_01", "sub_02", "sub_03"}},
		// Prefixes match at every depth.
		{"app_a", "order.paid.refunded", []string{"sub_01", "sub_02", "sub_03", "sub_04", "sub_06"}},
		// "order.*" wants a dot after order: not "order", not "orders.x".
		{"app_a", "order", []string{"sub_02", "sub_03"}},
		{"app_a", "orders.x", []string{"sub_02", "sub_03"}},
		{"app_a", "user.deleted", []string{"sub_02", "sub_03", "sub_06"}},
		{"app_a", "", []string{"sub_02", "sub_03"}},
		{"app_b", "order.paid", []string{"sub_07"}},
		{"app_b", "user.created", []string{"sub_07", "sub_08"}},
		{"app_b", "order.created", []string{"sub_07"}},
		{"app_none", "order.paid", []string{}},
	}
	for _, c := range cases {
		got := ids(ix.Match(c.app, c.typ, nil))
		if !slices.Equal(got, c.want) {
			t.Errorf("Match(%q, %q) = %v, want %v", c.app, c.typ, got, c.want)
		}
	}

	all := ids(ix.MatchAll("order.paid", nil))
	if want := []string{"sub_01", "sub_02", "sub_03", "sub_05", "sub_07"}; !slices.Equal(all, want) {
		t.Errorf("MatchAll(order.paid) = %v, want %v", all, want)
	}
	all = ids(ix.MatchAll("user.created", nil))
	if want := []string{"sub_02", "sub_03", "sub_06", "sub_07", "sub_08"}; !slices.Equal(all, want) {
		t.Errorf("MatchAll(user.created) = %v, want %v", all, want)
	}

	// Disabled: matched by nothing, yet there for Get.
	if s, ok := ix.Get("sub_09"); !ok || !s.Disabled {
		t.Errorf("Get(sub_09) = %v, %v; want the disabled subscription", s, ok)
	}
	if _, ok := ix.Get("sub_99"); ok {
		t.Error("Get(sub_99) found a subscription that does not exist")
	}
	if ix.Len() != 9 {
		t.Errorf("Len = %d, want 9", ix.Len())
	}
	if got := ids(ix.Application("app_a")); !slices.Equal(got, []string{"sub_01", "sub_02", "sub_03", "sub_04", "sub_05", "sub_06", "sub_09"}) {
		t.Errorf("Application(app_a) = %v", got)
	}

	// Match appends: what dst held stays in front.
	keep := &Subscription{ID: "zzz"}
	got := ix.Match("app_b", "order.paid", []*Subscription{keep})
	if len(got) != 2 || got[0] != keep || got[1].ID != "sub_07" {
		t.Errorf("Match onto a non-empty dst = %v", ids(got))
	}
}

// TestIndexTenancy: whatever the patterns, Match returns only the named
// application's subscriptions.
func TestIndexTenancy(t *testing.T) {
	var subs []Subscription
	for a := range 20 {
		for s := range 5 {
			subs = append(subs, sub(fmt.Sprintf("sub_%02d_%d", a, s), fmt.Sprintf("app_%02d", a), "*", "order.*", "order.paid"))
		}
	}
	ix := NewIndex(subs)
	for a := range 20 {
		app := fmt.Sprintf("app_%02d", a)
		got := ix.Match(app, "order.paid", nil)
		if len(got) != 5 {
			t.Fatalf("%s: %d matches, want 5", app, len(got))
		}
		for _, s := range got {
			if s.App != app {
				t.Fatalf("Match(%s) returned %s of %s", app, s.ID, s.App)
			}
		}
	}
	if n := len(ix.MatchAll("order.paid", nil)); n != 100 {
		t.Fatalf("MatchAll: %d, want 100", n)
	}
}

// TestIndexOddPatterns: patterns the API would refuse neither panic nor
// match more than their literal meaning.
func TestIndexOddPatterns(t *testing.T) {
	odd := []string{"", ".", "..", "*.*", ".*", "order.*.paid", "**", "order*", "*order", "order.**", strings.Repeat(".", 1000) + "*"}
	var subs []Subscription
	for i, p := range odd {
		subs = append(subs, sub(fmt.Sprintf("sub_%02d", i), "app", p))
	}
	subs = append(subs, Subscription{ID: "sub_nil", App: "app"}, Subscription{})
	ix := NewIndex(subs)
	types := []string{"", ".", "..", "...", "order", "order.paid", "order.x.paid", "*.x", ".x", "**", strings.Repeat(".", 5000), "order*", "\xff.\x00"}
	for _, typ := range types {
		for _, s := range ix.Match("app", typ, nil) {
			if !slices.ContainsFunc(s.EventTypes, func(p string) bool { return matchesRef(p, typ) }) {
				t.Errorf("type %q matched %s %q", typ, s.ID, s.EventTypes)
			}
		}
		ix.MatchAll(typ, nil)
	}
	if got := ids(ix.Match("app", "order.*.paid", nil)); !slices.Equal(got, []string{"sub_05"}) {
		t.Errorf("literal order.*.paid matched %v", got)
	}
	if got := ids(ix.Match("app", ".x", nil)); !slices.Equal(got, []string{"sub_04"}) {
		t.Errorf(".x matched %v, want the \".*\" prefix alone", got)
	}
	ix = ix.Without("").With(Subscription{ID: "", EventTypes: []string{"*"}})
	if _, ok := ix.Get(""); !ok {
		t.Error("empty ID lost")
	}
}

// TestIndexWithWithout: a changed index leaves the old one as it was.
func TestIndexWithWithout(t *testing.T) {
	v1 := NewIndex([]Subscription{
		sub("sub_1", "app_a", "order.paid"),
		sub("sub_2", "app_a", "order.*"),
		sub("sub_3", "app_b", "*"),
	})
	v2 := v1.With(sub("sub_4", "app_a", "order.paid"))
	off := sub("sub_1", "app_a", "order.paid")
	off.Disabled = true
	v3 := v2.With(off)
	v4 := v3.Without("sub_2")
	moved := sub("sub_3", "app_c", "order.*")
	v5 := v4.With(moved)
	v6 := v5.Without("sub_nope")

	check := func(name string, ix *Index, n int, a, b, c, all []string) {
		t.Helper()
		if ix.Len() != n {
			t.Errorf("%s: Len %d, want %d", name, ix.Len(), n)
		}
		for _, w := range []struct {
			app  string
			want []string
		}{{"app_a", a}, {"app_b", b}, {"app_c", c}} {
			if got := ids(ix.Match(w.app, "order.paid", nil)); !slices.Equal(got, w.want) {
				t.Errorf("%s: Match(%s) = %v, want %v", name, w.app, got, w.want)
			}
		}
		if got := ids(ix.MatchAll("order.paid", nil)); !slices.Equal(got, all) {
			t.Errorf("%s: MatchAll = %v, want %v", name, got, all)
		}
	}
	e := []string{}
	check("v1", v1, 3, []string{"sub_1", "sub_2"}, []string{"sub_3"}, e, []string{"sub_1", "sub_2", "sub_3"})
	check("v2", v2, 4, []string{"sub_1", "sub_2", "sub_4"}, []string{"sub_3"}, e, []string{"sub_1", "sub_2", "sub_3", "sub_4"})
	check("v3", v3, 4, []string{"sub_2", "sub_4"}, []string{"sub_3"}, e, []string{"sub_2", "sub_3", "sub_4"})
	check("v4", v4, 3, []string{"sub_4"}, []string{"sub_3"}, e, []string{"sub_3", "sub_4"})
	check("v5", v5, 3, []string{"sub_4"}, e, []string{"sub_3"}, []string{"sub_3", "sub_4"})
	if v6 != v5 {
		t.Error("Without of an unknown ID made a new index")
	}
	if s, _ := v3.Get("sub_1"); !s.Disabled {
		t.Error("v3: sub_1 not disabled")
	}
	if s, _ := v2.Get("sub_1"); s.Disabled {
		t.Error("v2 changed by v3's With")
	}
	if got := v5.Application("app_b"); got != nil {
		t.Errorf("app_b still has %v after its one subscription moved", ids(got))
	}
}

// TestIndexCallerCopies: NewIndex and With keep their own copy of the
// Subscription values given.
func TestIndexCallerCopies(t *testing.T) {
	subs := []Subscription{sub("sub_1", "app", "*")}
	ix := NewIndex(subs)
	subs[0].URL = "https://changed.example"
	subs[0].Disabled = true
	if s, _ := ix.Get("sub_1"); s.URL == "https://changed.example" || s.Disabled {
		t.Fatal("the caller's slice reaches into the index")
	}
	// The last of several with one ID wins.
	ix = NewIndex([]Subscription{sub("sub_1", "app", "a"), sub("sub_1", "app", "b")})
	if ix.Len() != 1 || len(ix.Match("app", "b", nil)) != 1 || len(ix.Match("app", "a", nil)) != 0 {
		t.Fatalf("duplicate IDs: Len %d", ix.Len())
	}
}

func TestIndexMatchAllocates(t *testing.T) {
	ix := NewIndex([]Subscription{
		sub("sub_1", "app", "order.paid"),
		sub("sub_2", "app", "order.*"),
		sub("sub_3", "app", "*"),
		sub("sub_4", "app2", "order.*"),
	})
	dst := make([]*Subscription, 0, 16)
	if n := testing.AllocsPerRun(100, func() {
		dst = ix.Match("app", "order.paid", dst[:0])
		dst = ix.MatchAll("order.paid.x", dst[:0])
	}); n != 0 {
		t.Fatalf("Match with a reused dst: %v allocations, want 0", n)
	}
}

// matchesRef is the definition of matching, written plainly.
func matchesRef(pattern, typ string) bool {
	switch {
	case pattern == "*":
		return true
	case strings.HasSuffix(pattern, ".*"):
		return strings.HasPrefix(typ, pattern[:len(pattern)-1])
	default:
		return pattern == typ
	}
}

// model is a plain list of subscriptions matched by brute force.
type model map[string]Subscription

func (m model) match(app, typ string, anyApp bool) []string {
	out := []string{}
	for _, s := range m {
		if s.Disabled || (!anyApp && s.App != app) {
			continue
		}
		if slices.ContainsFunc(s.EventTypes, func(p string) bool { return matchesRef(p, typ) }) {
			out = append(out, s.ID)
		}
	}
	slices.Sort(out)
	return out
}

// TestIndexAgainstModel applies random changes (one at a time and in
// batches) and compares every version of the index, old ones included,
// with brute-force matching.
func TestIndexAgainstModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	patterns := []string{"*", "a.*", "a.b.*", "a.b", "a.b.c", "b.*", "b.x", "c", "a.", ".*"}
	types := []string{"a.b", "a.b.c", "a.b.c.d", "a.x", "b.x", "b.y.z", "c", "a", "a.", ".q", "zzz"}
	randSub := func() Subscription {
		s := Subscription{
			ID:  fmt.Sprintf("sub_%03d", rng.IntN(200)),
			App: fmt.Sprintf("app_%d", rng.IntN(8)),
		}
		for range rng.IntN(4) {
			s.EventTypes = append(s.EventTypes, patterns[rng.IntN(len(patterns))])
		}
		s.Disabled = rng.IntN(5) == 0
		return s
	}
	type version struct {
		ix *Index
		m  model
	}
	m := model{}
	var initial []Subscription
	for range 100 {
		s := randSub()
		initial = append(initial, s)
		m[s.ID] = s
	}
	ix := NewIndex(initial)
	versions := []version{{ix, clone(m)}}
	for step := range 600 {
		switch rng.IntN(3) {
		case 0:
			s := randSub()
			ix = ix.With(s)
			m[s.ID] = s
		case 1:
			id := fmt.Sprintf("sub_%03d", rng.IntN(200))
			ix = ix.Without(id)
			delete(m, id)
		default:
			var puts []Subscription
			var dels []string
			for range rng.IntN(10) {
				if rng.IntN(2) == 0 {
					dels = append(dels, fmt.Sprintf("sub_%03d", rng.IntN(200)))
				} else {
					puts = append(puts, randSub())
				}
			}
			ix = ix.Update(puts, dels)
			for _, id := range dels {
				delete(m, id)
			}
			for _, s := range puts {
				m[s.ID] = s
			}
		}
		if step%50 == 0 {
			versions = append(versions, version{ix, clone(m)})
		}
	}
	versions = append(versions, version{ix, m})
	for i, v := range versions {
		if v.ix.Len() != len(v.m) {
			t.Fatalf("version %d: Len %d, want %d", i, v.ix.Len(), len(v.m))
		}
		for id, s := range v.m {
			got, ok := v.ix.Get(id)
			if !ok || got.App != s.App || got.Disabled != s.Disabled || !slices.Equal(got.EventTypes, s.EventTypes) {
				t.Fatalf("version %d: Get(%s) = %+v, want %+v", i, id, got, s)
			}
		}
		for _, typ := range types {
			for a := range 9 {
				app := fmt.Sprintf("app_%d", a)
				if got, want := ids(v.ix.Match(app, typ, nil)), v.m.match(app, typ, false); !slices.Equal(got, want) {
					t.Fatalf("version %d: Match(%s, %q) = %v, want %v", i, app, typ, got, want)
				}
			}
			if got, want := ids(v.ix.MatchAll(typ, nil)), v.m.match("", typ, true); !slices.Equal(got, want) {
				t.Fatalf("version %d: MatchAll(%q) = %v, want %v", i, typ, got, want)
			}
		}
		// Rebuilding from scratch gives the same answers as the changes did.
		var all []Subscription
		for _, s := range v.m {
			all = append(all, s)
		}
		fresh := NewIndex(all)
		for _, typ := range types {
			if got, want := ids(fresh.MatchAll(typ, nil)), ids(v.ix.MatchAll(typ, nil)); !slices.Equal(got, want) {
				t.Fatalf("version %d: rebuilt MatchAll(%q) = %v, changed one %v", i, typ, got, want)
			}
		}
	}
}

func clone(m model) model {
	c := make(model, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// TestIndexManyDots: a type with more dots than the lookup merges in one
// pass (the lists are then sorted) still gives each match once, in order.
func TestIndexManyDots(t *testing.T) {
	var subs []Subscription
	typ := "a.b.c.d.e.f.g.h.i.j.k.l"
	parts := strings.Split(typ, ".")
	for i := 1; i < len(parts); i++ {
		p := strings.Join(parts[:i], ".") + ".*"
		// Two subscriptions a prefix, in reverse ID order of depth, and
		// one with every prefix.
		subs = append(subs, sub(fmt.Sprintf("sub_%02d", 40-i), "app", p), sub(fmt.Sprintf("sub_%02d", 80-i), "app", p, "*"))
	}
	var every []string
	for i := 1; i < len(parts); i++ {
		every = append(every, strings.Join(parts[:i], ".")+".*")
	}
	subs = append(subs, sub("sub_00", "app", append(every, typ, "*")...))
	ix := NewIndex(subs)
	for _, got := range [][]*Subscription{ix.Match("app", typ, nil), ix.MatchAll(typ, nil)} {
		if len(got) != len(subs) {
			t.Fatalf("%d matches, want %d: %v", len(got), len(subs), ids(got))
		}
		if !slices.IsSortedFunc(got, byID) {
			t.Fatalf("not in ID order: %v", ids(got))
		}
	}
	if n := testing.AllocsPerRun(50, func() { ix.Match("app", typ, make([]*Subscription, 0, 64)[:0]) }); n > 1 {
		t.Fatalf("%v allocations", n)
	}
}

// TestMatchesAgreesWithTheIndex: Subscription.Matches says what the index
// matches, for exact types, prefixes and "*".
func TestMatchesAgreesWithTheIndex(t *testing.T) {
	patterns := [][]string{{"order.paid"}, {"order.*"}, {"*"}, {"order.*", "user.created"}, {"a.b.*"}, {"order"}}
	types := []string{"order.paid", "order.", "order", "orders.paid", "order.paid.late", "user.created", "a.b", "a.b.c", "a.bc", "x"}
	for _, ps := range patterns {
		s := Subscription{ID: "sub_1", App: "acme", EventTypes: ps}
		ix := NewIndex([]Subscription{s})
		for _, typ := range types {
			want := len(ix.Match("acme", typ, nil)) == 1
			if got := s.Matches(typ); got != want {
				t.Errorf("%v matches %q: %v, the index says %v", ps, typ, got, want)
			}
		}
	}
}
