package subscriptions

import (
	"context"
	"errors"
	"time"

	"github.com/hookbus/hookbus/core/subscription"
	"github.com/hookbus/hookbus/sdk"
)

// storeTimeout bounds one write of what the sink learnt of a subscription.
const storeTimeout = 10 * time.Second

// afterSuccess clears the subscription's FailingSince in the store, once
// per run of failures, and ends the run of failed attempts counted for
// delivery.failing (d is the attempt's delivery).
func (s *Sink) afterSuccess(ctx context.Context, st *subState, d sdk.Delivery) {
	s.deliveredAttempt(ctx, st, d)
	if !st.writeMu.TryLock() {
		return // a write is under way; a later attempt tries again
	}
	defer st.writeMu.Unlock()
	st.mu.Lock()
	sub, failing := st.sub, !st.stored.IsZero()
	st.mu.Unlock()
	if !failing {
		return
	}
	err := s.updateSub(ctx, sub, func(x *subscription.Subscription) bool {
		if x.FailingSince.IsZero() {
			return false
		}
		x.FailingSince = time.Time{}
		return true
	})
	if err != nil {
		s.host.Logger.Warn("subscriptions sink: could not record that a subscription recovered", "sink", s.host.Sink, "application", sub.App, "subscription", sub.ID, "error", err)
		return
	}
	st.mu.Lock()
	st.stored = time.Time{}
	st.mu.Unlock()
	s.host.Logger.Info("subscription delivering again", "sink", s.host.Sink, "application", sub.App, "subscription", sub.ID)
}

// afterFailure marks the subscription failing in the store at the first
// failure of a run (one write per run), and disables it once it has
// failed for disable_after; then it counts the failed attempt tr for
// delivery.failing.
func (s *Sink) afterFailure(ctx context.Context, st *subState, now time.Time, tr trigger) {
	s.markFailing(ctx, st, now, tr)
	s.failedAttempt(ctx, st, now, tr)
}

func (s *Sink) markFailing(ctx context.Context, st *subState, now time.Time, tr trigger) {
	st.mu.Lock()
	sub, stored, disabled := st.sub, st.stored, st.disabled != ""
	st.mu.Unlock()
	switch {
	case disabled:
	case stored.IsZero():
		if !st.writeMu.TryLock() {
			return
		}
		defer st.writeMu.Unlock()
		since := now.UTC()
		err := s.updateSub(ctx, sub, func(x *subscription.Subscription) bool {
			if !x.FailingSince.IsZero() {
				since = x.FailingSince // another instance was first
				return false
			}
			x.FailingSince = since
			return true
		})
		if err != nil {
			s.host.Logger.Warn("subscriptions sink: could not record that a subscription is failing", "sink", s.host.Sink, "application", sub.App, "subscription", sub.ID, "error", err)
			return
		}
		st.mu.Lock()
		st.stored = since
		st.mu.Unlock()
	case now.Sub(stored) > s.cfg.DisableAfter:
		s.disable(ctx, st, "failing since "+stored.UTC().Format(time.RFC3339), "failing", tr)
	}
}

// disable disables the subscription in the store (so every instance stops
// delivering to it), logged at warn, counted and told as a
// subscription.disabled event (tr is the attempt that decided it); its
// pairs still queued are discarded from then on.
func (s *Sink) disable(ctx context.Context, st *subState, reason, label string, tr trigger) {
	st.writeMu.Lock()
	defer st.writeMu.Unlock()
	st.mu.Lock()
	sub, done := st.sub, st.disabled != ""
	st.mu.Unlock()
	if done {
		return
	}
	// The version this call disabled: the operational event's id.
	var version time.Time
	err := s.updateSub(ctx, sub, func(x *subscription.Subscription) bool {
		if x.Disabled {
			version = time.Time{}
			return false
		}
		version = x.Updated
		x.Disabled, x.DisabledReason = true, reason
		return true
	})
	if err != nil {
		s.host.Logger.Error("subscriptions sink: could not disable a subscription", "sink", s.host.Sink, "application", sub.App, "subscription", sub.ID, "reason", reason, "error", err)
		return
	}
	st.mu.Lock()
	st.disabled = reason
	st.mu.Unlock()
	s.host.Metrics.SubscriptionsDisabled.WithLabelValues(s.host.Sink, label).Inc()
	s.host.Logger.Warn("subscription disabled", "sink", s.host.Sink, "application", sub.App, "subscription", sub.ID, "reason", reason)
	if !version.IsZero() {
		s.disabledEvent(ctx, st, sub, reason, version, tr)
	}
}

// updateTries is how many times updateSub reads and writes a subscription
// that keeps being changed between its read and its write.
const updateTries = 5

// updateSub changes the stored subscription as change says (false: it
// needs no change), read fresh; a write made between that read and this
// one (a user moving the URL or rotating the secret through the API) is
// never overwritten: the store answers ErrChanged and the change is
// applied again to what it holds now.
func (s *Sink) updateSub(ctx context.Context, sub *subscription.Subscription, change func(*subscription.Subscription) bool) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
	defer cancel()
	for try := 1; ; try++ {
		fresh, err := s.host.Store.GetSubscription(ctx, sub.App, sub.ID)
		if err != nil {
			return err
		}
		if !change(&fresh) {
			return nil
		}
		_, err = s.host.Store.UpdateSubscription(ctx, fresh)
		if !errors.Is(err, subscription.ErrChanged) || try == updateTries {
			return err
		}
	}
}
