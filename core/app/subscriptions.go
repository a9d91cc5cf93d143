package app

import (
	"context"
	"errors"
	"time"

	"github.com/hookbus/hookbus/core/subscription"
	"github.com/hookbus/hookbus/plugins/subscriptions"
	"github.com/hookbus/hookbus/sdk"
)

// ErrNoSubscriptionsSink is SubscriptionTestSend's error when the running
// configuration has no subscriptions sink.
var ErrNoSubscriptionsSink = errors.New("no sink of type subscriptions is configured")

// subscriptionsSink is the running configuration's first subscriptions
// sink by name (nil when it has none): the one whose settings (timeout,
// SSRF policy) the API's test sends and URL checks use.
func (a *App) subscriptionsSink() *subscriptions.Sink {
	rt := a.rt.Load()
	if rt == nil {
		return nil
	}
	for _, name := range rt.cfg.SinkNames() {
		if si := rt.sinks[name]; si != nil && si.subs != nil {
			return si.subs
		}
	}
	return nil
}

// SubscriptionTestSend makes one attempt of ev to sub now, outside the
// queue, as the first subscriptions sink would deliver it (for the API's
// POST …/subscriptions/{sub}/test).
func (a *App) SubscriptionTestSend(ctx context.Context, sub subscription.Subscription, ev sdk.Event) (subscription.TestResult, error) {
	s := a.subscriptionsSink()
	if s == nil {
		return subscription.TestResult{}, ErrNoSubscriptionsSink
	}
	return s.TestSend(ctx, sub, ev)
}

// AllowPrivateNetworks tells whether subscription URLs may point at
// private addresses: the first subscriptions sink allows them. False when
// there is none.
func (a *App) AllowPrivateNetworks() bool {
	s := a.subscriptionsSink()
	return s != nil && s.AllowPrivateNetworks()
}

// SubscriptionMaxTimeout is the longest timeout a subscription may set for
// itself: the first subscriptions sink's max_timeout (0 when there is none:
// the API's default bound).
func (a *App) SubscriptionMaxTimeout() time.Duration {
	if s := a.subscriptionsSink(); s != nil {
		return s.Config().MaxTimeout
	}
	return 0
}
