package subscriptions

import (
	"strings"
	"testing"
	"time"

	"github.com/hookbus/hookbus/core/deadletter"
	"github.com/hookbus/hookbus/core/statuspolicy"
	"github.com/hookbus/hookbus/core/subscription"
)

// requests counts the requests r took for event id.
func (r *receiver) requests(id string) int {
	n := 0
	for _, got := range r.ids() {
		if got == id {
			n++
		}
	}
	return n
}

// deadLetterOf is the dead letter of sub's pair, failing the test when
// there is none.
func (h *harness) deadLetterOf(sub subscription.Subscription) deadletter.DeadLetter {
	h.t.Helper()
	for _, dl := range h.deadLetters() {
		if dl.Subscription == sub.ID {
			return dl
		}
	}
	h.t.Fatalf("no dead letter for %s", sub.ID)
	return deadletter.DeadLetter{}
}

// Status policies through real receivers on loopback, one subscription
// per row, all on a sink whose own policy retries 404: a subscription's
// lists replace the sink's, unlisted answers follow the default table,
// and a subscription's own schedule sets how many attempts are made.
func TestStatusPoliciesPerSubscription(t *testing.T) {
	h := start(t, setup{config: `{"allow_private_networks": true, "retry_on": [404]}`})
	h.app("acme")
	once := []time.Duration{20 * time.Millisecond} // two attempts
	rows := []struct {
		name     string
		answer   int
		delivery subscription.DeliveryOptions
		kind     deadletter.Kind
		requests int
	}{
		{"401 retried with retry_on [401]", 401,
			subscription.DeliveryOptions{RetryOn: statuspolicy.List{{Code: 401}}, RetrySchedule: once}, deadletter.KindExhausted, 2},
		{"401 permanent by default", 401,
			subscription.DeliveryOptions{RetrySchedule: once}, deadletter.KindPermanent, 1},
		{"503 permanent with permanent_on [503]", 503,
			subscription.DeliveryOptions{PermanentOn: statuspolicy.List{{Code: 503}}, RetrySchedule: once}, deadletter.KindPermanent, 1},
		{"503 retried by default, on its own schedule", 503,
			subscription.DeliveryOptions{RetrySchedule: []time.Duration{20 * time.Millisecond, 20 * time.Millisecond}}, deadletter.KindExhausted, 3},
		{"503 with an empty schedule: one attempt", 503,
			subscription.DeliveryOptions{RetrySchedule: []time.Duration{}}, deadletter.KindExhausted, 1},
		{"404 retried by the sink's retry_on", 404,
			subscription.DeliveryOptions{RetrySchedule: once}, deadletter.KindExhausted, 2},
		{"404 permanent: own lists replace the sink's", 404,
			subscription.DeliveryOptions{PermanentOn: statuspolicy.List{{Code: 429}}, RetrySchedule: once}, deadletter.KindPermanent, 1},
		{"500 permanent with permanent_on [5xx]", 500,
			subscription.DeliveryOptions{PermanentOn: statuspolicy.List{{Class: 5}}, RetrySchedule: once}, deadletter.KindPermanent, 1},
	}
	type made struct {
		sub subscription.Subscription
		r   *receiver
	}
	var subs []made
	for _, row := range rows {
		r := newReceiver(t)
		code := row.answer
		r.setStatus(func(string, int) int { return code })
		sub := h.subscribe("acme", r, []string{"*"}, func(s *subscription.Subscription) { s.Delivery = row.delivery })
		subs = append(subs, made{sub, r})
	}
	h.publish(event("e1", "order.paid", "acme", `{}`))
	h.settled("every pair dead-lettered", 0, 0, len(rows))
	for i, row := range rows {
		dl := h.deadLetterOf(subs[i].sub)
		if dl.Kind != row.kind || dl.Attempts != row.requests {
			t.Errorf("%s: dead letter %s after %d attempts (%s), want %s after %d", row.name, dl.Kind, dl.Attempts, dl.Reason, row.kind, row.requests)
		}
		if n := subs[i].r.requests("e1"); n != row.requests {
			t.Errorf("%s: receiver took %d requests, want %d", row.name, n, row.requests)
		}
	}
}

// A 410 the subscription's policy retries does not disable it.
func TestGoneRetriedDoesNotDisable(t *testing.T) {
	h := start(t, setup{})
	h.app("acme")
	r := newReceiver(t)
	r.setStatus(func(string, int) int { return 410 })
	sub := h.subscribe("acme", r, []string{"*"}, func(s *subscription.Subscription) {
		s.Delivery = subscription.DeliveryOptions{RetryOn: statuspolicy.List{{Class: 4}}, RetrySchedule: []time.Duration{20 * time.Millisecond}}
	})
	h.publish(event("e1", "order.paid", "acme", `{}`))
	h.settled("e1 dead-lettered", 0, 0, 1)
	if dl := h.deadLetterOf(sub); dl.Kind != deadletter.KindExhausted || dl.Attempts != 2 {
		t.Fatalf("dead letter %+v, want exhausted after 2 attempts", dl)
	}
	if got := h.get(sub); got.Disabled {
		t.Fatalf("subscription disabled (%q) by a 410 its policy retries", got.DisabledReason)
	}
}

// A subscription's own timeout bounds its attempts to a receiver that
// never answers, and the sink's max_timeout caps a longer one.
func TestSubscriptionTimeout(t *testing.T) {
	h := start(t, setup{config: `{"allow_private_networks": true, "max_timeout": "400ms"}`})
	h.app("acme")
	slow := func() *receiver {
		r := newReceiver(t)
		r.hang = make(chan struct{})
		return r
	}
	short, capped := slow(), slow()
	subShort := h.subscribe("acme", short, []string{"*"}, func(s *subscription.Subscription) {
		s.Delivery = subscription.DeliveryOptions{Timeout: 150 * time.Millisecond, RetrySchedule: []time.Duration{}}
	})
	subCapped := h.subscribe("acme", capped, []string{"*"}, func(s *subscription.Subscription) {
		s.Delivery = subscription.DeliveryOptions{Timeout: time.Minute, RetrySchedule: []time.Duration{}}
	})
	h.publish(event("e1", "order.paid", "acme", `{}`))
	h.settled("both pairs timed out", 0, 0, 2)
	for sub, want := range map[string]string{subShort.ID: "timeout after 150ms", subCapped.ID: "timeout after 400ms"} {
		dl := h.deadLetterOf(subscription.Subscription{ID: sub})
		if dl.Kind != deadletter.KindExhausted || !strings.Contains(dl.Reason, want) {
			t.Errorf("dead letter of %s: %s %q, want exhausted, %q", sub, dl.Kind, dl.Reason, want)
		}
	}
	// Without its own timeout a subscription has the sink's.
	if got := h.sink.timeout(&subscription.Subscription{}); got != DefaultTimeout {
		t.Fatalf("timeout of a subscription without one = %v, want the sink's %v", got, DefaultTimeout)
	}
}
