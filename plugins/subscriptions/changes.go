package subscriptions

import (
	"sync"

	"github.com/hookbus/hookbus/core/subscription"
)

// Changes passes the live index's change calls (subscription.LiveOptions.
// OnChange) on to the subscriptions sinks running: the host lives longer
// than any of them. The zero value is ready to use.
type Changes struct {
	mu   sync.RWMutex
	next int
	ls   map[int]func(old, new *subscription.Subscription)
}

// OnChange tells every listening sink of a changed subscription (old nil:
// created; new nil: deleted). It is the Live's OnChange.
func (c *Changes) OnChange(old, new *subscription.Subscription) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	for _, f := range c.ls {
		f(old, new)
	}
}

// listen adds f until stop is called.
func (c *Changes) listen(f func(old, new *subscription.Subscription)) (stop func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ls == nil {
		c.ls = map[int]func(old, new *subscription.Subscription){}
	}
	id := c.next
	c.next++
	c.ls[id] = f
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		delete(c.ls, id)
	}
}
