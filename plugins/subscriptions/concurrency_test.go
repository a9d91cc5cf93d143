package subscriptions

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/hookbus/hookbus/core/subscription"
	"github.com/hookbus/hookbus/internal/testenv"
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

// A pair waiting for its retry whose subscription no longer asks for the
// event's type (its event_types changed since the event was fanned out) is
// not sent any more: it is counted as filtered, as a changed filter that
// drops it would.
func TestEventTypesChangedWhilePairWaits(t *testing.T) {
	h := start(t, setup{schedule: []time.Duration{300 * time.Millisecond, 300 * time.Millisecond, 300 * time.Millisecond}})
	h.app("acme")
	r := newReceiver(t)
	r.setStatus(func(string, int) int { return 503 })
	sub := h.subscribe("acme", r, []string{"user.*", "order.*"})
	h.publish(event("e1", "user.created", "acme", `{}`))
	testenv.Eventually(t, 30*time.Second, "first attempt made", func() bool { return len(r.ids()) >= 1 })
	sub = h.change(sub, func(s *subscription.Subscription) { s.EventTypes = []string{"order.*"} })
	n := len(r.ids())
	h.settled("the pair filtered", 0, 1, 0)
	if got := len(r.ids()); got != n {
		t.Fatalf("%d requests after the subscription dropped user.*, want none", got-n)
	}
}
