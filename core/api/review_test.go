package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookbus/hookbus/core/store"
	"github.com/hookbus/hookbus/core/subscription"
)

// TestOddPathSegments: ids in a path that no id can be (invalid UTF-8, a
// NUL, control characters) are the 404 of an absent resource, on
// PostgreSQL too (which refuses such bytes as a parameter), never a 500;
// so is such an event type filter a 400 naming it.
func TestOddPathSegments(t *testing.T) {
	eachStore(t, func(t *testing.T, st *store.Store) {
		p := newPlatform(t, st, nil)
		p.createApp("acme")
		sub := p.createSub("acme", map[string]any{})
		patchSub := map[string]any{"description": "x"}
		newSub := map[string]any{"url": "https://x.example/", "event_types": []string{"*"}}
		named := map[string]any{"name": "x"}
		for _, rq := range []struct {
			method, path string
			body         any
		}{
			{"GET", "/v1/applications/%FF", nil},
			{"GET", "/v1/applications/%00", nil},
			{"PATCH", "/v1/applications/%FF", named},
			{"DELETE", "/v1/applications/%FF", nil},
			{"GET", "/v1/applications/%FF/subscriptions", nil},
			{"POST", "/v1/applications/%FF/subscriptions", newSub},
			{"GET", "/v1/applications/%FF/tokens", nil},
			{"POST", "/v1/applications/%FF/tokens", named},
			{"DELETE", "/v1/applications/acme/tokens/%FF", nil},
			{"DELETE", "/v1/applications/acme/tokens/a%00b", nil},
			{"GET", "/v1/applications/acme/subscriptions/%FF", nil},
			{"PATCH", "/v1/applications/acme/subscriptions/%FF", patchSub},
			{"DELETE", "/v1/applications/acme/subscriptions/%FF", nil},
			{"GET", "/v1/applications/acme/subscriptions/%FF/secret", nil},
			{"POST", "/v1/applications/acme/subscriptions/%FF/rotate-secret", nil},
			{"POST", "/v1/applications/acme/subscriptions/%FF/test", nil},
			{"GET", "/v1/applications/%FF/subscriptions/" + sub.ID, nil},
			{"DELETE", "/v1/applications/%FF/subscriptions/" + sub.ID, nil},
		} {
			a := p.do(rq.method, rq.path, adminKey, rq.body)
			if a.status != http.StatusNotFound {
				t.Errorf("%s %s: status %d, want 404: %s", rq.method, rq.path, a.status, a.body)
				continue
			}
			a.problem(t)
		}
		pr := p.must(http.StatusBadRequest, "GET", "/v1/applications/acme/subscriptions?event_type=order.%FF", adminKey, nil).problem(t)
		fieldError(t, pr, "event_type")
	})
}

// TestTextPostgreSQLRefuses: text members with a NUL character (which
// PostgreSQL cannot store) are a 422 naming the member on either store,
// not a 500 on one of them.
func TestTextPostgreSQLRefuses(t *testing.T) {
	eachStore(t, func(t *testing.T, st *store.Store) {
		p := newPlatform(t, st, nil)
		p.createApp("acme")
		subs := "/v1/applications/acme/subscriptions"
		for _, tt := range []struct {
			path  string
			body  map[string]any
			field string
		}{
			{subs, map[string]any{"url": "https://x.example/", "event_types": []string{"*"}, "description": "a\u0000b"}, "description"},
			{subs, map[string]any{"url": "https://x.example/", "event_types": []string{"*"}, "filter": "function filter(e) { return '\u0000' }"}, "filter"},
			{"/v1/applications/acme/tokens", map[string]any{"name": "a\u0000b"}, "name"},
			{"/v1/applications/acme/tokens", map[string]any{"name": "line\nbreak"}, "name"},
		} {
			pr := p.must(http.StatusUnprocessableEntity, "POST", tt.path, adminKey, tt.body).problem(t)
			if msg := fieldError(t, pr, tt.field); !strings.Contains(msg, "character") {
				t.Errorf("%s: %q, want it to name the characters", tt.field, msg)
			}
		}
		// A description may have line breaks.
		p.must(http.StatusCreated, "POST", subs, adminKey, map[string]any{"url": "https://x.example/", "event_types": []string{"*"}, "description": "two\nlines"})
	})
}

// TestDotApplicationIDs: "." and ".." are no application ids: a path
// holding them is cleaned away by every HTTP client and router, so such an
// application could not be reached.
func TestDotApplicationIDs(t *testing.T) {
	eachStore(t, func(t *testing.T, st *store.Store) {
		p := newPlatform(t, st, nil)
		for _, id := range []string{".", ".."} {
			pr := p.must(http.StatusUnprocessableEntity, "POST", "/v1/applications", adminKey, map[string]any{"id": id, "name": "dots"}).problem(t)
			fieldError(t, pr, "id")
		}
		p.createApp("a.b..c")
	})
}

// TestMetadataAndHeaderBounds: metadata (of applications and
// subscriptions) and a subscription's headers are bounded in size and
// nesting: every instance keeps every subscription in memory, answers
// are indented (a deeply nested value of a few KiB would come back as
// megabytes), and receivers refuse request headers beyond a few KiB.
func TestMetadataAndHeaderBounds(t *testing.T) {
	eachStore(t, func(t *testing.T, st *store.Store) {
		p := newPlatform(t, st, nil)
		p.createApp("acme")
		tok := p.createToken("acme")
		deep := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
		big := strings.Repeat("x", subscription.MaxMetadataBytes)
		subs := "/v1/applications/acme/subscriptions"
		sub := `{"url": "https://x.example/", "event_types": ["*"], `
		for _, tt := range []struct {
			method, path, body, field, msg string
		}{
			{"POST", "/v1/applications", `{"name": "x", "metadata": {"a": ` + deep(5000) + `}}`, "metadata", "nested"},
			{"POST", "/v1/applications", `{"name": "x", "metadata": {"a": "` + big + `"}}`, "metadata", "bytes"},
			{"PATCH", "/v1/applications/acme", `{"metadata": {"a": ` + deep(subscription.MaxMetadataDepth) + `}}`, "metadata", "nested"},
			{"POST", subs, sub + `"metadata": {"a": ` + deep(100) + `}}`, "metadata", "nested"},
			{"POST", subs, sub + `"metadata": {"a": "` + big + `"}}`, "metadata", "bytes"},
			{"POST", subs, sub + `"headers": {"X-Big": "` + strings.Repeat("x", subscription.MaxHeaderBytes) + `"}}`, "headers", "bytes"},
		} {
			for _, key := range []string{adminKey, tok.Token} {
				if key == tok.Token && (tt.path == "/v1/applications" || tt.path == "/v1/applications/acme") {
					continue
				}
				pr := p.must(http.StatusUnprocessableEntity, tt.method, tt.path, key, tt.body).problem(t)
				if msg := fieldError(t, pr, tt.field); !strings.Contains(msg, tt.msg) {
					t.Errorf("%s %s: %s: %q, want it to say %q", tt.method, tt.path, tt.field, msg, tt.msg)
				}
			}
		}
		// Within the bounds.
		p.must(http.StatusOK, "PATCH", "/v1/applications/acme", adminKey, `{"metadata": {"a": `+deep(subscription.MaxMetadataDepth-1)+`, "b": "`+strings.Repeat("y", subscription.MaxMetadataBytes-200)+`"}}`)
		p.must(http.StatusCreated, "POST", subs, tok.Token, sub+`"metadata": {"plan": {"tier": "gold"}}, "headers": {"Authorization": "Bearer `+strings.Repeat("t", 4000)+`"}}`)
	})
}

// TestRateLimitExtremes: a positive rate_limit below one delivery per
// 1000 s is refused: at 1e-300 deliveries per second every pair but the
// first was deferred for the longest time.Duration holds (292 years), never
// delivered nor dead-lettered. Numbers JSON cannot hold are refused too.
func TestRateLimitExtremes(t *testing.T) {
	eachStore(t, func(t *testing.T, st *store.Store) {
		p := newPlatform(t, st, nil)
		p.createApp("acme")
		subs := "/v1/applications/acme/subscriptions"
		sub := `{"url": "https://x.example/", "event_types": ["*"], "rate_limit": `
		for _, v := range []string{"1e-300", "0.0009", "-0.5", "1e7"} {
			pr := p.must(http.StatusUnprocessableEntity, "POST", subs, adminKey, sub+v+`}`).problem(t)
			fieldError(t, pr, "rate_limit")
		}
		for _, v := range []string{"1e400", `"NaN"`, `"Infinity"`} {
			pr := p.must(http.StatusUnprocessableEntity, "POST", subs, adminKey, sub+v+`}`).problem(t)
			fieldError(t, pr, "rate_limit")
		}
		for _, v := range []string{"0", "0.001", "1e6"} {
			p.must(http.StatusCreated, "POST", subs, adminKey, sub+v+`}`)
		}
		for _, v := range []string{"1e30", "-1", "0"} {
			body := `{"url": "https://x.example/", "event_types": ["*"], "max_in_flight": ` + v + `}`
			if v == "0" {
				p.must(http.StatusCreated, "POST", subs, adminKey, body)
				continue
			}
			pr := p.must(http.StatusUnprocessableEntity, "POST", subs, adminKey, body).problem(t)
			fieldError(t, pr, "max_in_flight")
		}
	})
}

// racingSubs runs before, once, between reading a subscription and
// answering: a write (a subscriptions sink recording failing_since, or
// another request) landing between a PATCH's read and its write.
type racingSubs struct {
	subscription.Store
	mu     sync.Mutex
	before func()
}

func (r *racingSubs) arm(f func()) {
	r.mu.Lock()
	r.before = f
	r.mu.Unlock()
}

func (r *racingSubs) GetSubscription(ctx context.Context, app, id string) (subscription.Subscription, error) {
	sub, err := r.Store.GetSubscription(ctx, app, id)
	r.mu.Lock()
	f := r.before
	r.before = nil
	r.mu.Unlock()
	if f != nil {
		f()
	}
	return sub, err
}

// TestConcurrentWritesKeepBoth: a PATCH or a rotation whose subscription
// is changed by someone else between its read and its write keeps both
// changes (it is applied again to the newer version), where the later
// write used to put back the fields it had read.
func TestConcurrentWritesKeepBoth(t *testing.T) {
	eachStore(t, func(t *testing.T, st *store.Store) {
		race := &racingSubs{Store: st}
		srv := New(Options{APIKeys: []string{adminKey}, Subscriptions: race, Store: st})
		hs := httptest.NewServer(validating(t, srv))
		t.Cleanup(hs.Close)
		p := &platform{t: t, url: hs.URL, st: st, srv: srv}
		p.createApp("acme")
		sub := p.createSub("acme", map[string]any{})
		path := "/v1/applications/acme/subscriptions/" + sub.ID
		failing := func() {
			cur, err := st.GetSubscription(context.Background(), "acme", sub.ID)
			if err != nil {
				t.Error(err)
				return
			}
			cur.FailingSince = time.Now().UTC()
			if _, err := st.UpdateSubscription(context.Background(), cur); err != nil {
				t.Error(err)
			}
		}

		race.arm(failing)
		var got SubscriptionJSON
		p.must(http.StatusOK, "PATCH", path, adminKey, map[string]any{"url": "https://moved.example/hooks"}).json(t, &got)
		stored, err := st.GetSubscription(t.Context(), "acme", sub.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.URL != "https://moved.example/hooks" || stored.URL != got.URL || stored.FailingSince.IsZero() {
			t.Fatalf("after a PATCH raced by another write: answer url %q, stored url %q failing_since %v; want both changes", got.URL, stored.URL, stored.FailingSince)
		}

		race.arm(func() {
			cur, err := st.GetSubscription(context.Background(), "acme", sub.ID)
			if err != nil {
				t.Error(err)
				return
			}
			cur.Description = "changed meanwhile"
			if _, err := st.UpdateSubscription(context.Background(), cur); err != nil {
				t.Error(err)
			}
		})
		var rotated secretJSON
		p.must(http.StatusOK, "POST", path+"/rotate-secret", adminKey, map[string]any{"overlap": "1h"}).json(t, &rotated)
		stored, err = st.GetSubscription(t.Context(), "acme", sub.ID)
		if err != nil {
			t.Fatal(err)
		}
		if stored.Secrets[0].Value != rotated.Secret || len(stored.Secrets) != 2 || stored.Description != "changed meanwhile" {
			t.Fatalf("after a rotation raced by another write: %+v; want the new secret, the old one beside it and the description", stored)
		}
	})
}

// racingTokens runs before, once, after a token lookup read the store
// and before it answers.
type racingTokens struct {
	subscription.Store
	mu     sync.Mutex
	before func()
}

func (r *racingTokens) TokenByHash(ctx context.Context, hash []byte) (subscription.Token, error) {
	tok, err := r.Store.TokenByHash(ctx, hash)
	r.mu.Lock()
	f := r.before
	r.before = nil
	r.mu.Unlock()
	if f != nil {
		f()
	}
	return tok, err
}

// TestRevokeDuringLookup: a token revoked while a request using it was
// being authenticated stops working at once on this instance; the lookup
// that read it before the revocation does not put it back in the cache.
func TestRevokeDuringLookup(t *testing.T) {
	eachStore(t, func(t *testing.T, st *store.Store) {
		race := &racingTokens{Store: st}
		srv := New(Options{APIKeys: []string{adminKey}, Subscriptions: race, Store: st})
		hs := httptest.NewServer(validating(t, srv))
		t.Cleanup(hs.Close)
		p := &platform{t: t, url: hs.URL, st: st, srv: srv}
		p.createApp("acme")
		tok := p.createToken("acme")
		race.mu.Lock()
		race.before = func() {
			p.must(http.StatusNoContent, "DELETE", "/v1/applications/acme/tokens/"+tok.ID, adminKey, nil)
		}
		race.mu.Unlock()
		// Authenticated by the read made before the revocation.
		p.must(http.StatusOK, "GET", "/v1/applications/acme", tok.Token, nil)
		p.must(http.StatusUnauthorized, "GET", "/v1/applications/acme", tok.Token, nil).problem(t)
	})
}
