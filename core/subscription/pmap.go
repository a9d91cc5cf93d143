package subscription

import (
	"hash/maphash"
	"math/bits"
)

// pmap is a persistent map from string keys: a hash array mapped trie.
// A change returns a new map that shares every node off the changed path
// with the old one, so it costs O(log n) however large the map, and the
// old map stays valid and unchanged (readers of an Index never lock).
//
// Nodes made during one batch of changes carry that batch's edit token
// and are changed in place by later changes of the same batch: building
// a map of n keys copies no paths, and a batch copies each path once.
type pmap[V any] struct {
	root *pnode[V]
	n    int
}

// edit marks the nodes one batch of changes owns. It is not zero-sized:
// distinct tokens must have distinct addresses.
type edit struct{ _ byte }

type pnode[V any] struct {
	owner *edit
	// bitmap says which of the 32 slots of this level are taken; slots
	// holds the taken ones in order. A collision node (every key of it has
	// the same 64-bit hash) ignores bitmap and holds leaves only.
	bitmap uint32
	coll   bool
	slots  []pslot[V]
}

// pslot is a leaf (node == nil) or a sub-trie.
type pslot[V any] struct {
	node *pnode[V]
	hash uint64
	key  string
	val  V
}

const (
	pbits = 5
	pmask = 1<<pbits - 1
)

// pseed only has to be stable for the life of the process: the maps are
// never stored.
var pseed = maphash.MakeSeed()

func phash(key string) uint64 { return maphash.String(pseed, key) }

// len is the number of keys.
func (m *pmap[V]) len() int { return m.n }

// get returns the value of key.
func (m *pmap[V]) get(key string) (V, bool) { return m.getH(phash(key), key) }

// getH is get with key's hash given (tests force collisions with it).
func (m *pmap[V]) getH(h uint64, key string) (V, bool) {
	var zero V
	n := m.root
	if n == nil {
		return zero, false
	}
	for shift := uint(0); ; shift += pbits {
		if n.coll {
			for i := range n.slots {
				if n.slots[i].key == key {
					return n.slots[i].val, true
				}
			}
			return zero, false
		}
		bit := uint32(1) << ((h >> shift) & pmask)
		if n.bitmap&bit == 0 {
			return zero, false
		}
		s := &n.slots[bits.OnesCount32(n.bitmap&(bit-1))]
		if s.node == nil {
			if s.key == key {
				return s.val, true
			}
			return zero, false
		}
		n = s.node
	}
}

// set makes key's value val, changing the nodes e owns in place and
// copying the others.
func (m *pmap[V]) set(e *edit, key string, val V) { m.setH(e, phash(key), key, val) }

func (m *pmap[V]) setH(e *edit, h uint64, key string, val V) {
	var added bool
	m.root, added = m.root.set(e, 0, h, key, val)
	if added {
		m.n++
	}
}

// del removes key.
func (m *pmap[V]) del(e *edit, key string) { m.delH(e, phash(key), key) }

func (m *pmap[V]) delH(e *edit, h uint64, key string) {
	if m.root == nil {
		return
	}
	root, removed := m.root.del(e, 0, h, key)
	if !removed {
		return
	}
	m.n--
	if root != nil && len(root.slots) == 0 {
		root = nil
	}
	m.root = root
}

// each calls fn for every key and value, in no particular order.
func (m *pmap[V]) each(fn func(key string, val V)) {
	m.root.each(fn)
}

func (n *pnode[V]) each(fn func(string, V)) {
	if n == nil {
		return
	}
	for i := range n.slots {
		if s := &n.slots[i]; s.node != nil {
			s.node.each(fn)
		} else {
			fn(s.key, s.val)
		}
	}
}

// own returns n itself when e owns it, else a copy that e owns.
func (n *pnode[V]) own(e *edit, extra int) *pnode[V] {
	if n.owner == e && e != nil {
		return n
	}
	c := &pnode[V]{owner: e, bitmap: n.bitmap, coll: n.coll}
	c.slots = make([]pslot[V], len(n.slots), len(n.slots)+extra)
	copy(c.slots, n.slots)
	return c
}

func (n *pnode[V]) set(e *edit, shift uint, h uint64, key string, val V) (*pnode[V], bool) {
	leaf := pslot[V]{hash: h, key: key, val: val}
	if n == nil {
		return &pnode[V]{owner: e, bitmap: 1 << ((h >> shift) & pmask), slots: []pslot[V]{leaf}}, true
	}
	if n.coll {
		for i := range n.slots {
			if n.slots[i].key == key {
				c := n.own(e, 0)
				c.slots[i].val = val
				return c, false
			}
		}
		c := n.own(e, 1)
		c.slots = append(c.slots, leaf)
		return c, true
	}
	bit := uint32(1) << ((h >> shift) & pmask)
	i := bits.OnesCount32(n.bitmap & (bit - 1))
	if n.bitmap&bit == 0 {
		c := n.own(e, 1)
		c.bitmap |= bit
		c.slots = append(c.slots, pslot[V]{})
		copy(c.slots[i+1:], c.slots[i:])
		c.slots[i] = leaf
		return c, true
	}
	s := n.slots[i]
	switch {
	case s.node != nil:
		sub, added := s.node.set(e, shift+pbits, h, key, val)
		if sub == s.node {
			return n, added
		}
		c := n.own(e, 0)
		c.slots[i].node = sub
		return c, added
	case s.key == key:
		c := n.own(e, 0)
		c.slots[i].val = val
		return c, false
	default:
		c := n.own(e, 0)
		c.slots[i] = pslot[V]{node: pjoin(e, shift+pbits, s, leaf)}
		return c, true
	}
}

// pjoin makes the node holding two leaves whose hashes agree on the bits
// above shift.
func pjoin[V any](e *edit, shift uint, a, b pslot[V]) *pnode[V] {
	if shift >= 64 {
		return &pnode[V]{owner: e, coll: true, slots: []pslot[V]{a, b}}
	}
	ia, ib := (a.hash>>shift)&pmask, (b.hash>>shift)&pmask
	switch {
	case ia == ib:
		return &pnode[V]{owner: e, bitmap: 1 << ia, slots: []pslot[V]{{node: pjoin(e, shift+pbits, a, b)}}}
	case ia < ib:
		return &pnode[V]{owner: e, bitmap: 1<<ia | 1<<ib, slots: []pslot[V]{a, b}}
	default:
		return &pnode[V]{owner: e, bitmap: 1<<ia | 1<<ib, slots: []pslot[V]{b, a}}
	}
}

// del returns the node without key; a node left with one leaf is handed
// back for its parent to inline.
func (n *pnode[V]) del(e *edit, shift uint, h uint64, key string) (*pnode[V], bool) {
	if n.coll {
		for i := range n.slots {
			if n.slots[i].key == key {
				c := n.own(e, 0)
				c.slots = append(c.slots[:i], c.slots[i+1:]...)
				return c, true
			}
		}
		return n, false
	}
	bit := uint32(1) << ((h >> shift) & pmask)
	if n.bitmap&bit == 0 {
		return n, false
	}
	i := bits.OnesCount32(n.bitmap & (bit - 1))
	s := n.slots[i]
	if s.node == nil {
		if s.key != key {
			return n, false
		}
		c := n.own(e, 0)
		c.bitmap &^= bit
		c.slots = append(c.slots[:i], c.slots[i+1:]...)
		return c, true
	}
	sub, removed := s.node.del(e, shift+pbits, h, key)
	if !removed {
		return n, false
	}
	c := n.own(e, 0)
	switch {
	case len(sub.slots) == 0:
		c.bitmap &^= bit
		c.slots = append(c.slots[:i], c.slots[i+1:]...)
	case len(sub.slots) == 1 && sub.slots[0].node == nil:
		c.slots[i] = sub.slots[0]
	default:
		c.slots[i].node = sub
	}
	return c, true
}
