package store

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hookbus/hookbus/core/attempt"
)

// Text that a sink or source made up (a NUL, invalid UTF-8) is stored
// cleaned, not refused: one such attempt must not fail its whole batch,
// which on PostgreSQL refuses a NUL in a text column.
func TestAttemptTextIsStorable(t *testing.T) {
	ctx := context.Background()
	eachStore(t, func(t *testing.T, db testDB, s *Store) {
		ids := newAttemptIDs()
		now := time.Now()
		bad := attempt.Attempt{ID: ids.at(now), EventID: "evt_nul", EventType: "order\x00.paid", Sink: "partner", Number: 1, StartedAt: now,
			Outcome: attempt.Retry, Error: "HTTP 500: \x00bad\xffbytes", URL: "http://partner.test/\x00"}
		good := bad
		good.ID, good.EventID, good.EventType, good.Error, good.URL = ids.at(now.Add(time.Millisecond)), "evt_ok", "order.paid", "HTTP 500", "http://partner.test/"
		mustWrite(t, s, attempt.Entry{Attempt: bad, Event: &attempt.Event{Type: "order\x00.paid", ReceivedAt: now, Payload: []byte(`{"id":"evt_nul"}`)}}, attempt.Entry{Attempt: good})
		got, err := s.GetAttempt(ctx, bad.ID)
		if err != nil {
			t.Fatal(err)
		}
		if strings.ContainsRune(got.Error, 0) || got.EventType != "order.paid" || got.Error != "HTTP 500: bad\uFFFDbytes" || got.URL != "http://partner.test/" {
			t.Errorf("stored %q %q %q", got.EventType, got.Error, got.URL)
		}
		if _, err := s.GetAttempt(ctx, good.ID); err != nil {
			t.Errorf("the batch's other attempt: %v", err)
		}
	})
}
