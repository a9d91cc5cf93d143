package store

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/hookbus/hookbus/core/attempt"
)

// attemptIDs makes ULIDs in the order they are asked for, at the times
// given (ids of one millisecond still ascend).
type attemptIDs struct {
	mu      sync.Mutex
	entropy *ulid.MonotonicEntropy
}

func newAttemptIDs() *attemptIDs {
	return &attemptIDs{entropy: ulid.Monotonic(crand.Reader, 0)}
}

func (g *attemptIDs) at(t time.Time) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return ulid.MustNew(ulid.Timestamp(t), g.entropy).String()
}

// mustWrite writes entries or fails the test.
func mustWrite(t testing.TB, s *Store, entries ...attempt.Entry) {
	t.Helper()
	if err := s.WriteAttempts(context.Background(), entries); err != nil {
		t.Fatal(err)
	}
}

// asStoredAttempt is a as the store gives it back.
func asStoredAttempt(a attempt.Attempt) attempt.Attempt {
	a.StartedAt, a.ReceivedAt = asStored(a.StartedAt), asStored(a.ReceivedAt)
	return a
}

func TestAttemptFieldsRoundTrip(t *testing.T) {
	ctx := context.Background()
	eachStore(t, func(t *testing.T, db testDB, s *Store) {
		ids := newAttemptIDs()
		received := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.Local)
		body := bytes.Repeat([]byte("0123456789abcdef"), attempt.MaxResponseBody/16)
		started := received.Add(time.Second)
		base := attempt.Attempt{EventID: "evt_1", EventType: "order.paid", Sink: "subs", Pipeline: "orders", Source: "shop",
			Application: "app_1", Subscription: "sub_1", ReceivedAt: received, URL: "https://partner.example/hooks", WebhookID: "msg_evt_1",
			RequestHeaders: http.Header{"Content-Type": {"application/json"}, "Authorization": {"[redacted]"}, "Webhook-Id": {"msg_evt_1"}}}
		retried := base
		retried.ID, retried.Number, retried.StartedAt, retried.Duration = ids.at(started), 1, started, 1500*time.Millisecond
		retried.Outcome, retried.StatusCode, retried.Error = attempt.Retry, 503, "HTTP 503: Service Unavailable"
		retried.ResponseHeaders = http.Header{"Retry-After": {"3"}, "X-Multi": {"a", "b"}}
		retried.ResponseBody = []byte(`{"error":"busy"}`)
		delivered := base
		delivered.ID, delivered.Number, delivered.StartedAt, delivered.Duration = ids.at(started.Add(time.Minute)), 2, started.Add(time.Minute), 42*time.Millisecond
		delivered.Outcome, delivered.StatusCode = attempt.Delivered, 200
		delivered.ResponseHeaders = http.Header{"Content-Type": {"text/plain"}}
		delivered.ResponseBody = body
		failed := base
		failed.Subscription, failed.URL = "sub_2", "https://gone.example/hooks"
		failed.ID, failed.Number, failed.StartedAt, failed.Duration = ids.at(started.Add(2*time.Minute)), 5, started.Add(2*time.Minute), 10*time.Second
		failed.Outcome, failed.Error = attempt.Failed, "dial tcp 192.0.2.1:443: i/o timeout: é"
		failed.ResponseHeaders, failed.ResponseBody = nil, nil

		ev := &attempt.Event{ID: "evt_1", Sink: "subs", Pipeline: "orders", Source: "shop", Type: "order.paid", Application: "app_1",
			ReceivedAt: received, Payload: json.RawMessage(`{"id":"evt_1","data":{"n":1}}`), Metadata: map[string]string{"ingest": "1"}}
		other := *ev
		other.Sink, other.Payload = "audit", json.RawMessage(`{"id":"evt_1","data":{"n":2}}`)
		mustWrite(t, s, attempt.Entry{Attempt: retried, Event: ev}, attempt.Entry{Attempt: delivered}, attempt.Entry{Attempt: failed, Event: ev})
		// The event reaches a second sink; a later copy for the first sink is not kept.
		later := *ev
		later.Payload = json.RawMessage(`{"changed":true}`)
		otherAttempt := delivered
		otherAttempt.ID, otherAttempt.Sink, otherAttempt.Subscription, otherAttempt.Application = ids.at(started.Add(3*time.Minute)), "audit", "", ""
		mustWrite(t, s, attempt.Entry{Attempt: otherAttempt, Event: &other}, attempt.Entry{Attempt: retried, Event: &later})

		for _, want := range []attempt.Attempt{retried, delivered, failed, otherAttempt} {
			got, err := s.GetAttempt(ctx, want.ID)
			if err != nil {
				t.Fatal(err)
			}
			if w := asStoredAttempt(want); !reflect.DeepEqual(got, w) {
				t.Errorf("attempt %d (%s):\n got %+v\nwant %+v", want.Number, want.Outcome, got, w)
			}
		}
		if _, err := s.GetAttempt(ctx, "01NOPE"); !errors.Is(err, attempt.ErrNotFound) {
			t.Fatalf("unknown attempt: %v", err)
		}
		evs, err := s.GetEvent(ctx, "evt_1")
		if err != nil {
			t.Fatal(err)
		}
		wantEv := *ev
		wantEv.ReceivedAt = asStored(received)
		wantOther := other
		wantOther.ReceivedAt = asStored(received)
		if !reflect.DeepEqual(evs, []attempt.Event{wantOther, wantEv}) {
			t.Fatalf("event records:\n got %+v\nwant %+v", evs, []attempt.Event{wantOther, wantEv})
		}
		if _, err := s.GetEvent(ctx, "evt_none"); !errors.Is(err, attempt.ErrNotFound) {
			t.Fatalf("unknown event: %v", err)
		}
	})
}

func TestWriteAttemptsRefusesBadEntries(t *testing.T) {
	eachStore(t, func(t *testing.T, db testDB, s *Store) {
		ok := attempt.Attempt{ID: "01A", EventID: "e", Sink: "k", Number: 1, StartedAt: time.Now(), Outcome: attempt.Delivered}
		for field, mod := range map[string]func(a *attempt.Attempt){
			"attempt.id": func(a *attempt.Attempt) { a.ID = "" },
			"event_id":   func(a *attempt.Attempt) { a.EventID = "" },
			"sink":       func(a *attempt.Attempt) { a.Sink = "" },
			"number":     func(a *attempt.Attempt) { a.Number = 0 },
			"started_at": func(a *attempt.Attempt) { a.StartedAt = time.Time{} },
			"outcome":    func(a *attempt.Attempt) { a.Outcome = "maybe" },
		} {
			bad := ok
			mod(&bad)
			err := s.WriteAttempts(context.Background(), []attempt.Entry{{Attempt: ok}, {Attempt: bad}})
			if err == nil || !strings.Contains(err.Error(), field) || !strings.Contains(err.Error(), "entry 1") {
				t.Errorf("bad %s: %v", field, err)
			}
		}
		if _, err := s.GetAttempt(context.Background(), "01A"); !errors.Is(err, attempt.ErrNotFound) {
			t.Fatalf("a refused batch wrote its good entry: %v", err)
		}
		if err := s.WriteAttempts(context.Background(), []attempt.Entry{{Attempt: ok, Event: &attempt.Event{Payload: []byte("{\"a\":\"\xff\"}")}}}); err == nil || !strings.Contains(err.Error(), "event.payload") {
			t.Fatalf("a payload not in UTF-8: %v", err)
		}
		mismatch := attempt.Entry{Attempt: ok, Event: &attempt.Event{ID: "other"}}
		if err := s.WriteAttempts(context.Background(), []attempt.Entry{mismatch}); err == nil || !strings.Contains(err.Error(), "event.id") {
			t.Fatalf("event of another id: %v", err)
		}
	})
}

// logFixture is a varied set of attempts for the list tests.
func logFixture(now time.Time) []attempt.Attempt {
	ids := newAttemptIDs()
	r := rand.New(rand.NewPCG(7, 7))
	var out []attempt.Attempt
	for i := range 60 {
		started := now.Add(-time.Duration(60-i) * time.Minute)
		a := attempt.Attempt{
			ID: ids.at(started), EventID: fmt.Sprintf("evt_%d", i/3), EventType: []string{"order.paid", "order.shipped"}[i%2],
			Sink: []string{"subs", "audit"}[i%5/4], Number: i%3 + 1, StartedAt: started, Duration: time.Duration(r.IntN(900)+1) * time.Millisecond,
			Outcome: []attempt.Outcome{attempt.Delivered, attempt.Retry, attempt.Failed}[i%3], StatusCode: []int{200, 503, 0, 410}[i%4],
		}
		// Every other attempt went in a batch of up to 5 events.
		a.WebhookID = a.EventID
		if i%2 == 0 {
			a.WebhookID = fmt.Sprintf("batch_%d", i/10)
		}
		if a.Sink == "subs" {
			a.Application = []string{"app_a", "app_b"}[i%7%2]
			a.Subscription = fmt.Sprintf("sub_%d", i%3)
		}
		out = append(out, a)
	}
	return out
}

func TestListAttemptsFiltersAndPages(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	all := logFixture(now)
	eachStore(t, func(t *testing.T, db testDB, s *Store) {
		var entries []attempt.Entry
		for _, a := range all {
			entries = append(entries, attempt.Entry{Attempt: a})
		}
		mustWrite(t, s, entries...)
		newestFirst := slices.Clone(all)
		slices.Reverse(newestFirst)
		cases := []struct {
			name string
			f    attempt.Filter
			keep func(a attempt.Attempt) bool
		}{
			{"none", attempt.Filter{}, func(a attempt.Attempt) bool { return true }},
			{"application", attempt.Filter{Application: "app_b"}, func(a attempt.Attempt) bool { return a.Application == "app_b" }},
			{"subscription", attempt.Filter{Subscription: "sub_1"}, func(a attempt.Attempt) bool { return a.Subscription == "sub_1" }},
			{"sink", attempt.Filter{Sink: "audit"}, func(a attempt.Attempt) bool { return a.Sink == "audit" }},
			{"event", attempt.Filter{EventID: "evt_4"}, func(a attempt.Attempt) bool { return a.EventID == "evt_4" }},
			{"event type", attempt.Filter{EventType: "order.shipped"}, func(a attempt.Attempt) bool { return a.EventType == "order.shipped" }},
			{"batch webhook-id", attempt.Filter{WebhookID: "batch_2"}, func(a attempt.Attempt) bool { return a.WebhookID == "batch_2" }},
			{"event webhook-id", attempt.Filter{WebhookID: "evt_5"}, func(a attempt.Attempt) bool { return a.WebhookID == "evt_5" }},
			{"outcome", attempt.Filter{Outcome: attempt.Failed}, func(a attempt.Attempt) bool { return a.Outcome == attempt.Failed }},
			{"status", attempt.Filter{Status: 503}, func(a attempt.Attempt) bool { return a.StatusCode == 503 }},
			{"since", attempt.Filter{Since: now.Add(-20 * time.Minute)}, func(a attempt.Attempt) bool { return !a.StartedAt.Before(now.Add(-20 * time.Minute)) }},
			{"until", attempt.Filter{Until: now.Add(-50 * time.Minute)}, func(a attempt.Attempt) bool { return a.StartedAt.Before(now.Add(-50 * time.Minute)) }},
			{"combined", attempt.Filter{Sink: "subs", Outcome: attempt.Delivered, Since: now.Add(-40 * time.Minute), Until: now.Add(-10 * time.Minute)},
				func(a attempt.Attempt) bool {
					return a.Sink == "subs" && a.Outcome == attempt.Delivered && !a.StartedAt.Before(now.Add(-40*time.Minute)) && a.StartedAt.Before(now.Add(-10*time.Minute))
				}},
		}
		for _, c := range cases {
			var want []string
			for _, a := range newestFirst {
				if c.keep(a) {
					want = append(want, a.ID)
				}
			}
			if len(want) == 0 || len(want) == len(all) && c.name != "none" {
				t.Fatalf("%s: the fixture does not exercise the filter (%d of %d)", c.name, len(want), len(all))
			}
			// One page, then pages of 4 following the cursor.
			one, next, err := s.ListAttempts(ctx, c.f)
			if err != nil || next != "" {
				t.Fatalf("%s: %v (next %q)", c.name, err, next)
			}
			if got := attemptIDsOf(one); !slices.Equal(got, want) {
				t.Errorf("%s:\n got %v\nwant %v", c.name, got, want)
			}
			var paged []string
			f, pages := c.f, 0
			f.Limit = 4
			for {
				page, next, err := s.ListAttempts(ctx, f)
				if err != nil {
					t.Fatal(err)
				}
				if len(page) > 4 {
					t.Fatalf("%s: page of %d", c.name, len(page))
				}
				pages++
				paged = append(paged, attemptIDsOf(page)...)
				if next == "" {
					break
				}
				f.Cursor = next
			}
			if !slices.Equal(paged, want) || pages < (len(want)+3)/4 {
				t.Errorf("%s paged in %d pages:\n got %v\nwant %v", c.name, pages, paged, want)
			}
		}
		for _, bad := range []string{"!!!", base64.RawURLEncoding.EncodeToString([]byte("a\x00b")), base64.RawURLEncoding.EncodeToString([]byte{0xff, 0xfe})} {
			if _, _, err := s.ListAttempts(ctx, attempt.Filter{Cursor: bad}); !errors.Is(err, attempt.ErrBadCursor) {
				t.Errorf("cursor %q: %v, want ErrBadCursor", bad, err)
			}
		}
		if _, _, err := s.ListAttempts(ctx, attempt.Filter{Outcome: "lost"}); err == nil || !strings.Contains(err.Error(), "outcome") {
			t.Errorf("bad outcome: %v", err)
		}
	})
}

func attemptIDsOf(as []attempt.Attempt) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.ID
	}
	return out
}
