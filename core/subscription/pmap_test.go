package subscription

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestPmapAgainstMap runs random sets and deletes on a pmap and a Go map
// side by side, with hashes squeezed into a few values so that keys share
// long paths and whole hashes collide, and checks that every earlier
// version of the pmap still holds what it held.
func TestPmapAgainstMap(t *testing.T) {
	hashes := map[string]func(string) uint64{
		"maphash": phash,
		// 4 distinct hashes: every key collides with a quarter of the others.
		"collide": func(k string) uint64 { return uint64(len(k)%4) * 0x9e3779b97f4a7c15 },
		// Hashes agreeing on all but the top bits: the deepest levels.
		"deep": func(k string) uint64 { return uint64(len(k)%3) << 61 },
	}
	for name, hash := range hashes {
		t.Run(name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, 2))
			type version struct {
				m    pmap[int]
				want map[string]int
			}
			var versions []version
			var m pmap[int]
			want := map[string]int{}
			for step := range 3000 {
				// A batch of up to 5 changes under one edit token.
				e := new(edit)
				for range 1 + rng.IntN(5) {
					k := fmt.Sprintf("k%d", rng.IntN(300))
					if rng.IntN(3) == 0 {
						m.delH(e, hash(k), k)
						delete(want, k)
					} else {
						m.setH(e, hash(k), k, step)
						want[k] = step
					}
				}
				if step%100 == 0 {
					cp := make(map[string]int, len(want))
					for k, v := range want {
						cp[k] = v
					}
					versions = append(versions, version{m, cp})
				}
			}
			versions = append(versions, version{m, want})
			for i, v := range versions {
				if v.m.len() != len(v.want) {
					t.Fatalf("version %d: len %d, want %d", i, v.m.len(), len(v.want))
				}
				for k := range 300 {
					key := fmt.Sprintf("k%d", k)
					got, ok := v.m.getH(hash(key), key)
					w, wok := v.want[key]
					if ok != wok || got != w {
						t.Fatalf("version %d: %s = %d,%v; want %d,%v", i, key, got, ok, w, wok)
					}
				}
				seen := 0
				v.m.each(func(k string, val int) {
					seen++
					if v.want[k] != val {
						t.Fatalf("version %d: each gave %s=%d, want %d", i, k, val, v.want[k])
					}
				})
				if seen != len(v.want) {
					t.Fatalf("version %d: each saw %d keys, want %d", i, seen, len(v.want))
				}
			}
		})
	}
}

func TestPmapEmpty(t *testing.T) {
	var m pmap[string]
	if _, ok := m.get("x"); ok {
		t.Fatal("empty map has x")
	}
	m.del(new(edit), "x")
	e := new(edit)
	m.set(e, "x", "1")
	m.del(e, "x")
	if m.len() != 0 || m.root != nil {
		t.Fatalf("after set and delete: len %d, root %v", m.len(), m.root)
	}
}
