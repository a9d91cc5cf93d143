package subscriptions

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/hookbus/hookbus/core/batching"
	"github.com/hookbus/hookbus/core/deadletter"
	"github.com/hookbus/hookbus/core/registry"
	"github.com/hookbus/hookbus/core/signing"
	"github.com/hookbus/hookbus/core/spec/spectest"
	"github.com/hookbus/hookbus/core/subscription"
	"github.com/hookbus/hookbus/internal/testenv"
	"github.com/hookbus/hookbus/sdk"
)

func counter(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

// settled waits until n pairs reached an outcome (delivered, filtered or
// dead-lettered) and the dead letters are recorded.
func (h *harness) settled(what string, delivered, filtered, dead int) {
	h.t.Helper()
	testenv.Eventually(h.t, 60*time.Second, what, func() bool {
		return counter(h.m.Delivered.WithLabelValues("p", "partners")) == float64(delivered) &&
			counter(h.m.Filtered.WithLabelValues("p", "partners")) == float64(filtered) &&
			len(h.deadLetters()) == dead
	})
}

// Three applications, five subscriptions with their own secrets, event
// types (exact, prefix, *) and a filter: each receiver verifies its own
// signatures and gets exactly its application's events that it asked for;
// an event without application is dead-lettered as invalid, naming the
// attribute. On SQLite and PostgreSQL.
func TestFanOutToEachApplicationsSubscriptions(t *testing.T) {
	for _, storeDriver := range []string{"sqlite", "postgres"} {
		t.Run(storeDriver, func(t *testing.T) {
			h := start(t, setup{store: storeDriver})
			for _, a := range []string{"acme", "globex", "initech"} {
				h.app(a)
			}
			r := map[string]*receiver{}
			for _, n := range []string{"paid", "orders", "all", "invoices", "initech"} {
				r[n] = newReceiver(t)
			}
			h.subscribe("acme", r["paid"], []string{"order.paid"})
			h.subscribe("acme", r["orders"], []string{"order.*"}, func(s *subscription.Subscription) {
				s.Filter = "function filter(event) { return event.data.amount > 10 }"
			})
			h.subscribe("globex", r["all"], []string{"*"})
			h.subscribe("globex", r["invoices"], []string{"invoice.created"})
			h.subscribe("initech", r["initech"], []string{"order.paid"})
			h.publish(
				event("a1", "order.paid", "acme", `{"amount": 5}`),     // paid; orders filters it
				event("a2", "order.shipped", "acme", `{"amount": 20}`), // orders
				event("a3", "order.paid", "acme", `{"amount": 50}`),    // paid, orders
				event("g1", "order.paid", "globex", `{}`),              // all
				event("g2", "invoice.created", "globex", `{}`),         // all, invoices
				event("i1", "order.paid", "initech", `{}`),             // initech
				event("i2", "invoice.created", "initech", `{}`),        // nobody: filtered
				event("x1", "order.paid", "", `{}`),                    // no application: invalid
			)
			h.settled("every pair settled", 8, 2, 1)
			want := map[string][]string{
				"paid": {"a1", "a3"}, "orders": {"a2", "a3"}, "all": {"g1", "g2"}, "invoices": {"g2"}, "initech": {"i1"},
			}
			for n, ids := range want {
				got := r[n].ids()
				slices.Sort(got)
				if !slices.Equal(got, ids) {
					t.Errorf("receiver %s got %v, want %v", n, got, ids)
				}
				for _, a := range r[n].arrivals() {
					if !a.verified[0] {
						t.Errorf("receiver %s: %s not signed with its secret", n, a.id)
					}
				}
			}
			dl := h.deadLetters()[0]
			if dl.Kind != deadletter.KindInvalid || dl.Event.ID != "x1" || !strings.Contains(dl.Reason, "application") || dl.Subscription != "" {
				t.Fatalf("dead letter = %+v, want kind invalid for x1 naming application", dl)
			}
		})
	}
}

// With broadcast, an event without application goes to every
// application's matching subscriptions; one with an application still only
// to that application's.
func TestBroadcast(t *testing.T) {
	h := start(t, setup{config: `{"allow_private_networks": true, "broadcast": true}`})
	h.app("acme")
	h.app("globex")
	ra, rg := newReceiver(t), newReceiver(t)
	h.subscribe("acme", ra, []string{"order.*"})
	h.subscribe("globex", rg, []string{"order.paid"})
	h.publish(event("b1", "order.paid", "", `{}`), event("b2", "order.paid", "acme", `{}`), event("b3", "order.shipped", "", `{}`))
	h.settled("every pair settled", 4, 0, 0)
	if got := ra.ids(); !slices.Equal(sorted(got), []string{"b1", "b2", "b3"}) {
		t.Errorf("acme got %v", got)
	}
	if got := rg.ids(); !slices.Equal(got, []string{"b1"}) {
		t.Errorf("globex got %v, want [b1]", got)
	}
}

func sorted(s []string) []string { s = slices.Clone(s); slices.Sort(s); return s }

// During a rotation's overlap both secrets sign every delivery; once the
// old one expires only the new one does. The webhook-id is the event id.
func TestRotationOverlap(t *testing.T) {
	oldSecret, newSecret := mustSecret(t), mustSecret(t)
	h := start(t, setup{})
	h.app("acme")
	// The receiver verifies with the new secret first (its answer), and
	// records whether the old one verifies too.
	r := newReceiver(t, newSecret, oldSecret)
	sub := h.subscribe("acme", r, []string{"*"}, func(s *subscription.Subscription) {
		s.Secrets = []subscription.Secret{{Value: newSecret, Created: time.Now()}, {Value: oldSecret, Created: time.Now().Add(-time.Hour), Expires: time.Now().Add(time.Hour)}}
	})
	h.publish(event("e1", "order.paid", "acme", `{}`))
	h.settled("e1 delivered", 1, 0, 0)
	sub = h.change(sub, func(s *subscription.Subscription) { s.Secrets[1].Expires = time.Now().Add(-time.Second) })
	h.publish(event("e2", "order.paid", "acme", `{}`))
	h.settled("e2 delivered", 2, 0, 0)
	got := r.arrivals()
	if len(got) != 2 || got[0].id != "e1" || got[1].id != "e2" {
		t.Fatalf("arrivals %v", r.ids())
	}
	if !got[0].verified[0] || !got[0].verified[1] {
		t.Errorf("during the overlap: new verifies %v, old verifies %v; want both", got[0].verified[0], got[0].verified[1])
	}
	if !got[1].verified[0] || got[1].verified[1] {
		t.Errorf("after the overlap: new verifies %v, old verifies %v; want only the new", got[1].verified[0], got[1].verified[1])
	}
}

func mustSecret(t *testing.T) string {
	t.Helper()
	s, err := signing.GenerateSecret()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// A 410 answer disables the subscription at once (in the store, so every
// instance sees it), counted; its pair is dead-lettered as permanent and
// the subscription gets nothing more.
func TestGoneDisablesAtOnce(t *testing.T) {
	h := start(t, setup{})
	h.app("acme")
	r := newReceiver(t)
	r.setStatus(func(string, int) int { return 410 })
	sub := h.subscribe("acme", r, []string{"*"})
	h.publish(event("e1", "order.paid", "acme", `{}`))
	h.settled("e1 dead-lettered", 0, 0, 1)
	got := h.get(sub)
	if !got.Disabled || got.DisabledReason != "410 Gone" {
		t.Fatalf("subscription disabled %v (%q), want disabled with reason 410 Gone", got.Disabled, got.DisabledReason)
	}
	dl := h.deadLetters()[0]
	if dl.Kind != deadletter.KindPermanent || dl.Subscription != sub.ID || dl.Application != "acme" || dl.Attempts != 1 {
		t.Fatalf("dead letter = %+v", dl)
	}
	if n := counter(h.m.SubscriptionsDisabled.WithLabelValues("partners", "gone")); n != 1 {
		t.Fatalf("disabled counter = %v, want 1", n)
	}
	h.seen(got)
	h.publish(event("e2", "order.paid", "acme", `{}`))
	h.settled("e2 matched nothing", 0, 1, 1)
	if n := len(r.ids()); n != 1 {
		t.Fatalf("receiver took %d requests, want 1", n)
	}
}

// A subscription whose every attempt has failed for disable_after is
// disabled; its FailingSince is written once for the run of failures;
// its pairs still queued are discarded from then on.
func TestDisableAfterFailing(t *testing.T) {
	h := start(t, setup{config: `{"allow_private_networks": true, "disable_after": "1s"}`,
		schedule: slices.Repeat([]time.Duration{200 * time.Millisecond}, 50)})
	h.app("acme")
	r := newReceiver(t)
	r.setStatus(func(string, int) int { return 503 })
	sub := h.subscribe("acme", r, []string{"*"})
	_, seq, err := h.st.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	h.publish(event("e1", "order.paid", "acme", `{}`), event("e2", "order.paid", "acme", `{}`))
	testenv.Eventually(t, 60*time.Second, "the subscription disabled", func() bool { return h.get(sub).Disabled })
	got := h.get(sub)
	if !strings.HasPrefix(got.DisabledReason, "failing since ") || got.FailingSince.IsZero() {
		t.Fatalf("disabled with reason %q, failing since %v", got.DisabledReason, got.FailingSince)
	}
	h.settled("both pairs discarded", 0, 0, 2)
	for _, dl := range h.deadLetters() {
		if dl.Kind != deadletter.KindDiscarded || !strings.Contains(dl.Reason, "subscription disabled") || dl.Subscription != sub.ID {
			t.Fatalf("dead letter = %+v, want discarded: subscription disabled", dl)
		}
	}
	changes, err := h.st.Changes(context.Background(), seq, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) != 2 {
		t.Fatalf("%d writes of the subscription (%+v), want 2: failing since, then disabled", len(changes), changes)
	}
	if n := counter(h.m.SubscriptionsDisabled.WithLabelValues("partners", "failing")); n != 1 {
		t.Fatalf("disabled counter = %v, want 1", n)
	}
}

// A delivered attempt clears FailingSince (a second write, once).
func TestRecoveryClearsFailingSince(t *testing.T) {
	h := start(t, setup{})
	h.app("acme")
	r := newReceiver(t)
	r.setStatus(func(_ string, n int) int {
		if n == 1 {
			return 503
		}
		return 0
	})
	sub := h.subscribe("acme", r, []string{"*"})
	h.publish(event("e1", "order.paid", "acme", `{}`))
	h.settled("e1 delivered on its second attempt", 1, 0, 0)
	testenv.Eventually(t, 10*time.Second, "failing since cleared", func() bool { return h.get(sub).FailingSince.IsZero() })
	if got := r.ids(); !slices.Equal(got, []string{"e1", "e1"}) {
		t.Fatalf("arrivals %v", got)
	}
}

// The rate limit holds at the receiver: 60 events at 20/s spread over
// at least (60-1)/20 s. On the embedded queue (delayed nacks) and on
// PostgreSQL (deferrals as copies due later).
func TestRateLimitHolds(t *testing.T) {
	for _, q := range []string{"embedded", "postgres"} {
		t.Run(q, func(t *testing.T) {
			h := start(t, setup{queue: q})
			h.app("acme")
			r := newReceiver(t)
			h.subscribe("acme", r, []string{"*"}, func(s *subscription.Subscription) { s.RateLimit = 20 })
			const n = 60
			var evs []sdk.Event
			for i := range n {
				evs = append(evs, event(fmt.Sprintf("e%02d", i), "order.paid", "acme", `{}`))
			}
			h.publish(evs...)
			h.settled("every event delivered", n, 0, 0)
			got := r.arrivals()
			spread := got[len(got)-1].at.Sub(got[0].at)
			if min := time.Duration(float64(time.Second) * (n - 1) * 9 / 200); spread < min {
				t.Fatalf("%d deliveries over %v, want at least %v at 20/s", len(got), spread, min)
			}
			if d := counter(h.m.Deferrals.WithLabelValues("partners", "rate_limit")); d < n/2 || d > 3*n {
				t.Fatalf("%v rate-limit deferrals for %d events: want about one each", d, n)
			}
			t.Logf("%d deliveries over %v, %v deferrals", len(got), spread, counter(h.m.Deferrals.WithLabelValues("partners", "rate_limit")))
		})
	}
}

// A dead subscription (its endpoint never answers, until the attempt
// timeout) beside healthy ones: the healthy ones get every event while the
// dead one holds at most one attempt in flight.
func TestDeadSubscriptionDoesNotSlowTheOthers(t *testing.T) {
	for _, q := range []string{"embedded", "redis"} {
		t.Run(q, func(t *testing.T) { testDeadSubscription(t, q) })
	}
}

func testDeadSubscription(t *testing.T, q string) {
	h := start(t, setup{queue: q, config: `{"allow_private_networks": true, "timeout": "1s"}`, schedule: []time.Duration{time.Minute}})
	h.app("acme")
	dead := newReceiver(t)
	dead.hang = make(chan struct{})
	h.subscribe("acme", dead, []string{"*"})
	var healthy []*receiver
	for range 3 {
		r := newReceiver(t)
		healthy = append(healthy, r)
		h.subscribe("acme", r, []string{"*"})
	}
	const n = 200
	var evs []sdk.Event
	for i := range n {
		evs = append(evs, event(fmt.Sprintf("e%03d", i), "order.paid", "acme", `{}`))
	}
	h.publish(evs...)
	testenv.Eventually(t, 60*time.Second, "every healthy subscription got every event", func() bool {
		for _, r := range healthy {
			if len(r.ids()) < n {
				return false
			}
		}
		return true
	})
	oneAtATime(t, dead)
	t.Logf("healthy done; %v deferrals of the dead subscription's pairs", counter(h.m.Deferrals.WithLabelValues("partners", "max_in_flight")))
	// After circuitThreshold timeouts its circuit opens: its pairs are
	// skipped (failed attempts, not tried) instead of waiting for a place.
	testenv.Eventually(t, 60*time.Second, "attempts to the dead endpoint skipped", func() bool {
		return counter(h.m.NotTried.WithLabelValues("partners")) > 0
	})
	oneAtATime(t, dead)
}

// oneAtATime fails t when the dead subscription's receiver got a request
// before the previous one could have timed out (the sink's 1s timeout):
// its window must hold one attempt at a time. Two attempts let out
// together arrive within milliseconds of each other; consecutive ones a
// timeout apart.
func oneAtATime(t *testing.T, dead *receiver) {
	t.Helper()
	if gap, n := dead.closestHangs(); n > 1 && gap < 500*time.Millisecond {
		t.Fatalf("the dead subscription got two of %d attempts %v apart, want one at a time (each waits for the 1s timeout)", n, gap)
	}
}

// A subscription created while traffic flows gets the next matching event.
func TestSubscriptionCreatedWhileTrafficFlows(t *testing.T) {
	h := start(t, setup{})
	h.app("acme")
	before := newReceiver(t)
	h.subscribe("acme", before, []string{"*"})
	h.publish(event("e1", "order.paid", "acme", `{}`))
	h.settled("e1 delivered", 1, 0, 0)
	late := newReceiver(t)
	h.subscribe("acme", late, []string{"order.paid"})
	h.publish(event("e2", "order.paid", "acme", `{}`))
	h.settled("e2 delivered to both", 3, 0, 0)
	if got := late.ids(); !slices.Equal(got, []string{"e2"}) {
		t.Fatalf("the new subscription got %v, want [e2]", got)
	}
}

// A deleted subscription's queued pairs (waiting for their retry) are
// discarded with the reason recorded, and its URL gets nothing more; so
// are a disabled one's.
func TestDeletedOrDisabledSubscriptionsPairsDiscarded(t *testing.T) {
	h := start(t, setup{schedule: []time.Duration{500 * time.Millisecond, 500 * time.Millisecond}})
	h.app("acme")
	rDel, rDis := newReceiver(t), newReceiver(t)
	fail := func(string, int) int { return 503 }
	rDel.setStatus(fail)
	rDis.setStatus(fail)
	subDel := h.subscribe("acme", rDel, []string{"*"})
	subDis := h.subscribe("acme", rDis, []string{"*"})
	h.publish(event("e1", "order.paid", "acme", `{}`))
	testenv.Eventually(t, 30*time.Second, "first attempts made", func() bool { return len(rDel.ids()) == 1 && len(rDis.ids()) == 1 })
	if err := h.st.DeleteSubscription(context.Background(), "acme", subDel.ID); err != nil {
		t.Fatal(err)
	}
	subDis = h.change(subDis, func(s *subscription.Subscription) { s.Disabled, s.DisabledReason = true, "by its owner" })
	h.settled("both pairs discarded", 0, 0, 2)
	reasons := map[string]string{}
	for _, dl := range h.deadLetters() {
		if dl.Kind != deadletter.KindDiscarded {
			t.Fatalf("dead letter %+v, want kind discarded", dl)
		}
		reasons[dl.Subscription] = dl.Reason
		if err := deadletter.Replay(context.Background(), h.q, dl); err == nil {
			t.Fatal("a discarded pair was replayed")
		}
	}
	if reasons[subDel.ID] != "subscription deleted" || reasons[subDis.ID] != "subscription disabled: by its owner" {
		t.Fatalf("reasons = %v", reasons)
	}
	if len(rDel.ids()) != 1 || len(rDis.ids()) != 1 {
		t.Fatalf("requests after deletion or disabling: %v, %v", rDel.ids(), rDis.ids())
	}
}

// Queued retries of pairs survive a restart of the engine (on the
// embedded queue, and on Redis where they wait as copies due later), and
// continue their attempt count.
func TestPairsSurviveRestart(t *testing.T) {
	for _, q := range []string{"embedded", "redis"} {
		t.Run(q, func(t *testing.T) { testPairsSurviveRestart(t, q) })
	}
}

func testPairsSurviveRestart(t *testing.T, q string) {
	h := start(t, setup{queue: q, schedule: []time.Duration{time.Second, time.Second}})
	h.app("acme")
	r1, r2 := newReceiver(t), newReceiver(t)
	up := make(chan struct{})
	fail := func(string, int) int {
		select {
		case <-up:
			return 0
		default:
			return 503
		}
	}
	r1.setStatus(fail)
	r2.setStatus(fail)
	h.subscribe("acme", r1, []string{"*"})
	h.subscribe("acme", r2, []string{"*"})
	h.publish(event("e1", "order.paid", "acme", `{}`), event("e2", "order.paid", "acme", `{}`))
	testenv.Eventually(t, 30*time.Second, "first attempts failed", func() bool { return len(r1.ids()) == 2 && len(r2.ids()) == 2 })
	h.close()
	close(up)
	h.open()
	h.settled("every pair delivered after the restart", 4, 0, 0)
	for _, r := range []*receiver{r1, r2} {
		if got := sorted(r.ids()); !slices.Equal(got, []string{"e1", "e1", "e2", "e2"}) {
			t.Fatalf("arrivals %v, want each event twice (failed, then delivered)", got)
		}
	}
	if n := counter(h.m.Attempts.WithLabelValues("partners", "ok", "2xx")); n != 4 {
		t.Fatalf("%v successful attempts, want 4", n)
	}
}

// A replayed dead letter of one pair goes to that subscription only.
func TestReplayedPairGoesToItsSubscriptionOnly(t *testing.T) {
	h := start(t, setup{})
	h.app("acme")
	good, picky := newReceiver(t), newReceiver(t)
	picky.setStatus(func(_ string, n int) int {
		if n == 1 {
			return 422
		}
		return 0
	})
	h.subscribe("acme", good, []string{"*"})
	sub := h.subscribe("acme", picky, []string{"*"})
	h.publish(event("e1", "order.paid", "acme", `{}`))
	h.settled("e1 delivered once, dead once", 1, 0, 1)
	dl := h.deadLetters()[0]
	if dl.Subscription != sub.ID || dl.Application != "acme" || dl.Kind != deadletter.KindPermanent {
		t.Fatalf("dead letter %+v", dl)
	}
	if err := h.engine.Replay(context.Background(), dl); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, "the replay delivered", func() bool {
		return counter(h.m.Delivered.WithLabelValues("p", "partners")) == 2
	})
	if got := good.ids(); !slices.Equal(got, []string{"e1"}) {
		t.Fatalf("the other subscription got %v, want e1 once", got)
	}
	if got := picky.ids(); !slices.Equal(got, []string{"e1", "e1"}) {
		t.Fatalf("the replayed subscription got %v", got)
	}
}

// A filter that throws dead-letters its pair as kind script with
// file:line; the other subscriptions get the event.
func TestFilterThrowDeadLettersThePair(t *testing.T) {
	h := start(t, setup{})
	h.app("acme")
	ok, bad := newReceiver(t), newReceiver(t)
	h.subscribe("acme", ok, []string{"*"})
	sub := h.subscribe("acme", bad, []string{"*"}, func(s *subscription.Subscription) {
		s.Filter = "function filter(event) {\n  return event.data.missing.field > 1\n}"
	})
	h.publish(event("e1", "order.paid", "acme", `{}`))
	h.settled("e1 delivered once, dead once", 1, 0, 1)
	dl := h.deadLetters()[0]
	want := "subscriptions/" + sub.ID + "/filter.js:2:"
	if dl.Kind != deadletter.KindScript || dl.Subscription != sub.ID || !strings.Contains(dl.Reason, want) {
		t.Fatalf("dead letter %+v, want kind script with %s", dl, want)
	}
	if len(bad.ids()) != 0 {
		t.Fatal("the filtered subscription got a request")
	}
}

// A changed URL or secret is used by the next attempt.
func TestChangedURLAndSecretUsedAtOnce(t *testing.T) {
	h := start(t, setup{})
	h.app("acme")
	r1 := newReceiver(t)
	sub := h.subscribe("acme", r1, []string{"*"})
	h.publish(event("e1", "order.paid", "acme", `{}`))
	h.settled("e1 delivered", 1, 0, 0)
	r2 := newReceiver(t)
	sub = h.change(sub, func(s *subscription.Subscription) {
		s.URL, s.Secrets = r2.url, []subscription.Secret{{Value: r2.secrets[0].String(), Created: time.Now()}}
	})
	h.publish(event("e2", "order.paid", "acme", `{}`))
	h.settled("e2 delivered", 2, 0, 0)
	if !slices.Equal(r1.ids(), []string{"e1"}) || !slices.Equal(r2.ids(), []string{"e2"}) {
		t.Fatalf("old URL got %v, new URL got %v", r1.ids(), r2.ids())
	}
}

// Test send: one attempt now, signed, judged like a delivery; it changes
// nothing of the subscription (a 410 does not disable it); without
// allow_private_networks a loopback URL is refused by the SSRF guard.
func TestTestSend(t *testing.T) {
	h := start(t, setup{})
	h.app("acme")
	r := newReceiver(t)
	sub := h.subscribe("acme", r, []string{"*"})
	ev := event("t1", "hookbus.test", "acme", `{"hello":"world"}`)
	res, err := h.sink.TestSend(context.Background(), sub, ev)
	if err != nil {
		t.Fatal(err)
	}
	if res.Outcome != "delivered" || res.StatusCode != 204 || res.LatencyMS < 0 {
		t.Fatalf("result %+v", res)
	}
	got := r.arrivals()
	if len(got) != 1 || got[0].id != "t1" || !got[0].verified[0] {
		t.Fatalf("arrivals %+v", got)
	}
	var body sdk.Event
	if err := json.Unmarshal(got[0].body, &body); err != nil || string(body.Data) != `{"hello":"world"}` {
		t.Fatalf("body %s: %v", got[0].body, err)
	}
	// A batching subscription's test is a batch of one.
	batched := sub
	batched.Delivery.Batch = batching.Enabled(10, 0, 0)
	if res, err := h.sink.TestSend(context.Background(), batched, ev); err != nil || res.Outcome != "delivered" {
		t.Fatalf("batched test send: %+v, %v", res, err)
	}
	if got := r.arrivals(); len(got) != 2 || got[1].id != batching.ID([]string{"t1"}) || !got[1].verified[0] || got[1].body[0] != '[' {
		t.Fatalf("batched test send arrived as %+v", got[len(got)-1])
	}
	r.setStatus(func(string, int) int { return 410 })
	res, err = h.sink.TestSend(context.Background(), sub, ev)
	if err != nil || res.Outcome != "failed" || res.StatusCode != 410 {
		t.Fatalf("410: %+v, %v", res, err)
	}
	if h.get(sub).Disabled {
		t.Fatal("a test send disabled the subscription")
	}
	if !h.sink.AllowPrivateNetworks() {
		t.Fatal("AllowPrivateNetworks false with allow_private_networks: true")
	}
	strict := start(t, setup{config: `{}`})
	if strict.sink.AllowPrivateNetworks() {
		t.Fatal("AllowPrivateNetworks true by default")
	}
	if _, err := strict.sink.TestSend(context.Background(), sub, ev); err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("loopback URL without allow_private_networks: %v", err)
	}
}

func TestApplicationAttribute(t *testing.T) {
	for _, tc := range []struct {
		raw, want string
		bad       bool
	}{
		{"", "", false}, {`null`, "", false}, {`""`, "", false}, {`"acme"`, "acme", false}, {`42`, "", true}, {`{"id":"x"}`, "", true},
	} {
		ev := sdk.Event{ID: "e", Type: "t"}
		if tc.raw != "" {
			ev.Extensions = map[string]json.RawMessage{"application": json.RawMessage(tc.raw)}
		}
		got, err := Application(ev)
		if got != tc.want || (err != nil) != tc.bad || err != nil && !strings.HasPrefix(err.Error(), "application: ") {
			t.Errorf("%s: %q, %v", tc.raw, got, err)
		}
	}
}

func TestConfig(t *testing.T) {
	cfg, err := ParseConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Timeout != DefaultTimeout || cfg.SubscriptionMaxInFlight != DefaultSubscriptionMaxInFlight || cfg.DisableAfter != DefaultDisableAfter || cfg.Broadcast || cfg.AllowPrivateNetworks {
		t.Fatalf("defaults %+v", cfg)
	}
	if cfg.MaxTimeout != time.Minute || cfg.RetryOn != nil || cfg.PermanentOn != nil {
		t.Fatalf("defaults %+v", cfg)
	}
	_, err = ParseConfig(json.RawMessage(`{"timeout": "0s", "subscription_max_in_flight": 0, "disable_after": "soon", "url": "x",
		"retry_on": ["5xx"], "permanent_on": [404, "5xx"]}`))
	for _, key := range []string{"timeout", "subscription_max_in_flight", "disable_after", "url", "permanent_on[1]"} {
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("error %v does not name %s", err, key)
		}
	}
}

// The schema Describe publishes and the decoder agree.
func TestSchemaMatchesDecoder(t *testing.T) {
	spectest.Conformance(t, configSpec,
		`{"broadcast": true, "allow_private_networks": true, "timeout": "3s", "subscription_max_in_flight": 4, "disable_after": "10s",
		  "max_timeout": "30s", "retry_on": [401, "5xx"], "permanent_on": [503]}`, `{}`)
}

// Through hookbus' registry the block takes the shared keys too, and an
// unknown key is an error naming it.
func TestRegisteredWithTheSharedKeys(t *testing.T) {
	ok, err := registry.Default.CheckSink(Name, json.RawMessage(`{"max_in_flight": 512, "retry": {"schedule": ["1s"]}, "broadcast": true}`))
	if !ok || err != nil {
		t.Fatalf("registered %v, %v", ok, err)
	}
	if _, err := registry.Default.CheckSink(Name, json.RawMessage(`{"url": "https://x.example"}`)); err == nil || !strings.Contains(err.Error(), "url") {
		t.Fatalf("unknown key: %v", err)
	}
}

// A subscription with compression gzip gets bodies of 1 KiB or more
// gzipped, signed over the decoded body (both verifiers accept it after
// the receiver decoded it), and smaller ones as they are.
func TestSubscriptionCompression(t *testing.T) {
	h := start(t, setup{})
	h.app("acme")
	r := newReceiver(t)
	h.subscribe("acme", r, []string{"*"}, func(s *subscription.Subscription) { s.Delivery.Compression = "gzip" })
	h.publish(event("big", "order.paid", "acme", `{"pad":"`+strings.Repeat("z", 4000)+`"}`), event("small", "order.paid", "acme", `{}`))
	h.settled("both delivered", 2, 0, 0)
	for _, a := range r.arrivals() {
		if !a.verified[0] {
			t.Fatalf("%s: signature not verified after decoding", a.id)
		}
		if enc := a.header.Get("Content-Encoding"); (enc == "gzip") != (a.id == "big") {
			t.Fatalf("%s: Content-Encoding %q", a.id, enc)
		}
	}
}

// A subscription with batch gets its events as JSON arrays, one signed
// gzip request per batch of at most max_events, with the webhook-id of
// the events it carries; the events of a batch its endpoint failed are
// delivered later (each pair retried on its schedule); another
// subscription of the same application, without batch, gets one request
// per event meanwhile. (The retried batch can be cut otherwise here: the
// subscription's window, 1 at first, defers a second batch while the
// first is in flight. The engine's test of a webhook sink checks that a
// failed batch comes back whole.)
func TestSubscriptionBatches(t *testing.T) {
	h := start(t, setup{})
	h.app("acme")
	rb, rs := newReceiver(t), newReceiver(t)
	h.subscribe("acme", rb, []string{"*"}, func(s *subscription.Subscription) {
		s.Delivery.Batch = batching.Enabled(5, 0, 10*time.Second)
		s.Delivery.Compression = "gzip"
	})
	h.subscribe("acme", rs, []string{"*"})
	var mu sync.Mutex
	var first string
	rb.setStatus(func(id string, n int) int {
		mu.Lock()
		defer mu.Unlock()
		if first == "" || first == id && n == 1 {
			first = id
			return 503 // the first request fails
		}
		return 0
	})
	var evs []sdk.Event
	for i := range 10 {
		evs = append(evs, event(fmt.Sprintf("e%02d", i), "order.paid", "acme", `{"pad":"`+strings.Repeat("p", 200)+`"}`))
	}
	h.publish(evs...)
	h.settled("every pair delivered", 20, 0, 0)

	if got := rs.ids(); len(got) != 10 {
		t.Fatalf("the plain subscription got %d requests: %v", len(got), got)
	}
	arr := rb.arrivals()
	var failed []string
	delivered := map[string]int{}
	for i, a := range arr {
		if !a.verified[0] || a.header.Get("Content-Encoding") != "gzip" {
			t.Fatalf("batch %s: verified %v, encoding %q", a.id, a.verified, a.header.Get("Content-Encoding"))
		}
		var body []struct{ ID string }
		if err := json.Unmarshal(a.body, &body); err != nil {
			t.Fatalf("batch body %s: %v", a.body, err)
		}
		var ids []string
		for _, ev := range body {
			ids = append(ids, ev.ID)
		}
		if a.id != batching.ID(ids) || len(ids) == 0 || len(ids) > 5 {
			t.Fatalf("webhook-id %s for %v", a.id, ids)
		}
		if i == 0 {
			failed = ids
			continue
		}
		for _, id := range ids {
			delivered[id]++
		}
	}
	if len(delivered) != 10 {
		t.Fatalf("events delivered in batches: %v", delivered)
	}
	if len(failed) == 0 || len(arr) >= 10 {
		t.Fatalf("first (failed) batch %v, %d requests for 10 events", failed, len(arr))
	}
}
