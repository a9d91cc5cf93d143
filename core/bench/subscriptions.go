package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/hookbus/hookbus/core/store"
	"github.com/hookbus/hookbus/core/subscription"
)

// runSubscriptions measures a single webhook sink (Passthrough), then the
// Subscriptions scenario, and compares their deliveries/s.
func runSubscriptions(ctx context.Context, o Options) (Result, error) {
	alone := o
	alone.Scenario = Passthrough
	alone.Progress = nil
	ar, err := runHookbus(ctx, alone)
	if err != nil {
		return Result{Scenario: o.Scenario}, fmt.Errorf("single webhook sink: %w", err)
	}
	o.application = benchApplication
	r, err := runHookbus(ctx, o)
	if err != nil {
		return r, err
	}
	r.DeliveriesPerS = r.EventsPerS * SubscriptionsPerEvent
	r.AloneEventsPerS = ar.EventsPerS
	if ar.EventsPerS > 0 {
		r.RelativeToAlone = r.DeliveriesPerS / ar.EventsPerS
	}
	if ar.Partial && !r.Partial {
		r.Partial, r.Reason = true, "single webhook sink: "+ar.Reason
	}
	return r, nil
}

// registerSubscriptions creates the bench application and a subscription
// to every event type for each URL, in the SQLite store under dataDir,
// before hookbus opens it.
func registerSubscriptions(ctx context.Context, dataDir string, urls []string) error {
	st, err := store.Open(ctx, "sqlite", "", dataDir)
	if err != nil {
		return err
	}
	defer st.Close()
	if _, err := st.CreateApplication(ctx, subscription.Application{ID: benchApplication, Name: "bench"}); err != nil {
		return err
	}
	for _, u := range urls {
		if _, err := st.CreateSubscription(ctx, subscription.Subscription{App: benchApplication, URL: u, EventTypes: []string{"*"},
			Secrets: []subscription.Secret{{Value: benchSecret, Created: time.Now()}}}); err != nil {
			return err
		}
	}
	return nil
}
