package subscriptions

import (
	"context"
	"sync"
	"testing"

	"github.com/hookbus/hookbus/core/subscription"
)

// racingStore runs before, once, between reading a subscription and
// answering: a write that lands between the sink's read and its write.
type racingStore struct {
	subscription.Store
	mu     sync.Mutex
	before func()
}

func (r *racingStore) GetSubscription(ctx context.Context, app, id string) (subscription.Subscription, error) {
	sub, err := r.Store.GetSubscription(ctx, app, id)
	r.mu.Lock()
	f := r.before
	r.before = nil
	r.mu.Unlock()
	if f != nil {
		f()
	}
	return sub, err
}

// A user's change made while the sink disables a subscription (its read
// and its write apart by a moment) survives: the sink neither writes its
// older copy over it (which put the URL the user had just moved away from
// back into use) nor gives up disabling.
func TestSinkWriteKeepsAConcurrentChange(t *testing.T) {
	race := &racingStore{}
	h := start(t, setup{wrap: func(st subscription.Store) subscription.Store { race.Store = st; return race }})
	h.app("acme")
	r := newReceiver(t)
	r.setStatus(func(string, int) int { return 410 })
	sub := h.subscribe("acme", r, []string{"*"})
	const moved = "https://moved.example/hooks"
	race.mu.Lock()
	race.before = func() {
		cur := h.get(sub)
		cur.URL = moved
		if _, err := h.st.UpdateSubscription(context.Background(), cur); err != nil {
			t.Error(err)
		}
	}
	race.mu.Unlock()
	h.publish(event("e1", "order.paid", "acme", `{}`))
	h.settled("e1 dead-lettered", 0, 0, 1)
	got := h.get(sub)
	if got.URL != moved || !got.Disabled || got.DisabledReason != "410 Gone" {
		t.Fatalf("after the race: url %q, disabled %v (%q); want the moved URL, disabled by the 410", got.URL, got.Disabled, got.DisabledReason)
	}
}
