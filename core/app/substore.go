package app

import (
	"context"

	"github.com/hookbus/hookbus/core/subscription"
)

// refreshingStore is the subscription store as the API sees it: after a
// write that changes subscriptions, this instance's live index reads the
// change feed at once, so a request that follows sees its change here
// without waiting for the next poll (other instances see it within their
// poll).
type refreshingStore struct {
	subscription.Store
	live *subscription.Live
}

func (s refreshingStore) refresh(ctx context.Context, err error) {
	if err == nil && s.live != nil {
		// A failed refresh is logged by Live and repaired by its poll.
		_ = s.live.Refresh(context.WithoutCancel(ctx))
	}
}

func (s refreshingStore) DeleteApplication(ctx context.Context, id string) error {
	err := s.Store.DeleteApplication(ctx, id)
	s.refresh(ctx, err)
	return err
}

func (s refreshingStore) CreateSubscription(ctx context.Context, sub subscription.Subscription) (subscription.Subscription, error) {
	out, err := s.Store.CreateSubscription(ctx, sub)
	s.refresh(ctx, err)
	return out, err
}

func (s refreshingStore) UpdateSubscription(ctx context.Context, sub subscription.Subscription) (subscription.Subscription, error) {
	out, err := s.Store.UpdateSubscription(ctx, sub)
	s.refresh(ctx, err)
	return out, err
}

func (s refreshingStore) DeleteSubscription(ctx context.Context, app, id string) error {
	err := s.Store.DeleteSubscription(ctx, app, id)
	s.refresh(ctx, err)
	return err
}
