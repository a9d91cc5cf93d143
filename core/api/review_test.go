package api

import (
	"net/http"
	"strings"
	"testing"

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
				if key == tok.Token && tt.path == "/v1/applications" {
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
