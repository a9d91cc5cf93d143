package store

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/hookbus/hookbus/core/statuspolicy"
	"github.com/hookbus/hookbus/core/subscription"
)

// A subscription's delivery options are stored and read back as they
// were given: unset ones stay unset (nil, not empty), an empty schedule
// stays empty, and an update replaces them.
func TestSubscriptionDeliveryOptions(t *testing.T) {
	eachStore(t, func(t *testing.T, _ testDB, s *Store) {
		ctx := context.Background()
		mustApp(t, s, "acme")
		plain := mustSub(t, s, subscription.Subscription{ID: "sub_plain", App: "acme", Secrets: []subscription.Secret{{Value: "whsec_bmV3IHNlY3JldA=="}}})
		got, err := s.GetSubscription(ctx, "acme", plain.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !got.Delivery.IsZero() || got.Delivery.RetrySchedule != nil || got.Delivery.RetryOn != nil {
			t.Fatalf("unset options read back as %+v", got.Delivery)
		}
		opts := subscription.DeliveryOptions{
			Timeout:       1500 * time.Millisecond,
			RetrySchedule: []time.Duration{time.Second, 2 * time.Minute},
			RetryOn:       statuspolicy.List{{Code: 401}, {Class: 5}},
			PermanentOn:   statuspolicy.List{},
		}
		full := mustSub(t, s, subscription.Subscription{ID: "sub_full", App: "acme", Secrets: []subscription.Secret{{Value: "whsec_bmV3IHNlY3JldA=="}}, Delivery: opts})
		got, err = s.GetSubscription(ctx, "acme", full.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got.Delivery, opts) {
			t.Fatalf("options read back as %+v, want %+v", got.Delivery, opts)
		}
		got.Delivery = subscription.DeliveryOptions{RetrySchedule: []time.Duration{}}
		if _, err := s.UpdateSubscription(ctx, got); err != nil {
			t.Fatal(err)
		}
		snap, _, err := s.Snapshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, sub := range snap {
			if sub.ID == full.ID && (sub.Delivery.RetrySchedule == nil || len(sub.Delivery.RetrySchedule) != 0 || sub.Delivery.Timeout != 0 || sub.Delivery.RetryOn != nil) {
				t.Fatalf("updated options read back as %+v, want an empty schedule alone", sub.Delivery)
			}
		}
	})
}
