package subscriptions

import (
	"context"
	"strconv"
	"time"

	"github.com/hookbus/hookbus/core/operational"
	"github.com/hookbus/hookbus/core/subscription"
	"github.com/hookbus/hookbus/sdk"
)

// trigger is the attempt that changed what the sink knows of a
// subscription: its delivery and result.
type trigger struct {
	d   sdk.Delivery
	res sdk.Result
}

// runKey names a run of failures in operational event ids: its start to
// the second (the store may keep times less precisely than this process).
func runKey(since time.Time) string { return strconv.FormatInt(since.Unix(), 10) }

// failedAttempt counts a failed attempt of st's subscription; the
// FailingAfter-th in a row makes delivery.failing.
func (s *Sink) failedAttempt(ctx context.Context, st *subState, now time.Time, tr trigger) {
	ops := s.host.Operational
	st.mu.Lock()
	if st.opFailures == 0 {
		// The store's FailingSince, just written (or another instance's).
		st.opSince = st.stored
		if st.opSince.IsZero() {
			st.opSince = now.UTC()
		}
	}
	st.opFailures++
	n, since, sub := st.opFailures, st.opSince, st.sub
	st.mu.Unlock()
	if n != ops.FailingAfter() || !ops.Enabled(ctx) {
		return
	}
	id := operational.ID(operational.DeliveryFailing, s.host.Sink, sub.ID, runKey(since))
	s.emit(ctx, operational.DeliveryFailing, id, sub, s.eventData(sub, tr, n, since))
}

// deliveredAttempt ends the run of failed attempts of st's subscription:
// one that was told as delivery.failing makes subscription.recovered.
func (s *Sink) deliveredAttempt(ctx context.Context, st *subState, d sdk.Delivery) {
	ops := s.host.Operational
	st.mu.Lock()
	n, since, sub := st.opFailures, st.opSince, st.sub
	st.opFailures, st.opSince = 0, time.Time{}
	st.mu.Unlock()
	if n < ops.FailingAfter() || !ops.Enabled(ctx) {
		return
	}
	id := operational.ID(operational.SubscriptionRecovered, s.host.Sink, sub.ID, runKey(since))
	data := s.eventData(sub, trigger{d: d}, n, since)
	s.emit(ctx, operational.SubscriptionRecovered, id, sub, data)
}

// disabledEvent tells that this process disabled sub (at its stored
// version, which names the event), for reason.
func (s *Sink) disabledEvent(ctx context.Context, st *subState, sub *subscription.Subscription, reason string, version time.Time, tr trigger) {
	if !s.host.Operational.Enabled(ctx) {
		return
	}
	st.mu.Lock()
	n, since := st.opFailures, st.opSince
	st.mu.Unlock()
	data := s.eventData(sub, tr, n, since)
	data.DisabledReason = reason
	id := operational.ID(operational.SubscriptionDisabled, s.host.Sink, sub.ID, version.UTC().Format(time.RFC3339Nano))
	s.emit(ctx, operational.SubscriptionDisabled, id, sub, data)
}

// eventData is the data of an operational event about sub, triggered by
// tr, after n failed attempts in a row since since.
func (s *Sink) eventData(sub *subscription.Subscription, tr trigger, n int, since time.Time) operational.Data {
	return operational.Data{
		EventID: tr.d.Event.ID, EventType: tr.d.Event.Type, Sink: s.host.Sink, Pipeline: tr.d.Pipeline,
		Application: sub.App, Subscription: sub.ID, Attempts: n, LastStatus: tr.res.StatusCode, LastReason: tr.res.Reason,
		FailingSince: since,
	}
}

// emit publishes an operational event. The state change it tells of is
// recorded already (in the store, or in this process), so a failed publish
// is not the delivery's concern: it is logged at error.
func (s *Sink) emit(ctx context.Context, typ, id string, sub *subscription.Subscription, data operational.Data) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
	defer cancel()
	if err := s.host.Operational.Emit(ctx, typ, id, sub.ID, data); err != nil {
		s.host.Logger.Error("subscriptions sink: operational event not published", "sink", s.host.Sink, "application", sub.App,
			"subscription", sub.ID, "type", typ, "id", id, "error", err)
	}
}
