package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hookbus/hookbus/core/subscription"
)

// TestUpdateSubscriptionIfUnchanged: an update of a subscription read at
// some version (its Updated) applies only while the store still holds
// that version: a write made meanwhile (by the API, or by a subscriptions
// sink recording failing_since or disabling it) is never overwritten with
// the older copy. ErrChanged says so; the caller reads again. An update
// without Updated replaces whatever is stored.
func TestUpdateSubscriptionIfUnchanged(t *testing.T) {
	ctx := context.Background()
	eachStore(t, func(t *testing.T, db testDB, s *Store) {
		mustApp(t, s, "shop")
		read := mustSub(t, s, subscription.Subscription{App: "shop", URL: "https://old.example/hooks"})

		// The user moves the URL…
		moved := read
		moved.URL = "https://new.example/hooks"
		moved, err := s.UpdateSubscription(ctx, moved)
		if err != nil {
			t.Fatal(err)
		}
		if !moved.Updated.After(read.Updated) {
			t.Fatalf("Updated %v, not after %v", moved.Updated, read.Updated)
		}
		// …while a sink, holding the copy it read before, records a failure.
		stale := read
		stale.FailingSince = read.Updated
		if _, err := s.UpdateSubscription(ctx, stale); !errors.Is(err, subscription.ErrChanged) {
			t.Fatalf("update of a stale copy: %v, want ErrChanged", err)
		}
		got, err := s.GetSubscription(ctx, "shop", read.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.URL != moved.URL || !got.FailingSince.IsZero() || !got.Updated.Equal(moved.Updated) {
			t.Fatalf("after the stale write: %+v, want the user's version", got)
		}
		// Read again, the change applies.
		got.FailingSince = got.Updated
		if _, err := s.UpdateSubscription(ctx, got); err != nil {
			t.Fatal(err)
		}
		// The version always moves on, even when the clock does not.
		at := got.Updated
		s.now = func() time.Time { return at }
		again, err := s.GetSubscription(ctx, "shop", read.ID)
		if err != nil {
			t.Fatal(err)
		}
		next, err := s.UpdateSubscription(ctx, again)
		if err != nil {
			t.Fatal(err)
		}
		if !next.Updated.After(again.Updated) {
			t.Fatalf("with the clock standing still: Updated %v, not after %v", next.Updated, again.Updated)
		}
		if _, err := s.UpdateSubscription(ctx, again); !errors.Is(err, subscription.ErrChanged) {
			t.Fatalf("second write of the same version: %v, want ErrChanged", err)
		}
		// Without Updated: replaces what is stored.
		blind := again
		blind.Updated = time.Time{}
		blind.Description = "blind"
		if _, err := s.UpdateSubscription(ctx, blind); err != nil {
			t.Fatal(err)
		}
		// An absent one is still ErrNotFound, with or without a version.
		gone := again
		gone.ID = "sub_missing"
		if _, err := s.UpdateSubscription(ctx, gone); !errors.Is(err, subscription.ErrNotFound) {
			t.Fatalf("absent: %v, want ErrNotFound", err)
		}
	})
}
