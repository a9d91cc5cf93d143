package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookbus/hookbus/core/signing"
	"github.com/hookbus/hookbus/core/store"
	"github.com/hookbus/hookbus/core/subscription"
	"github.com/hookbus/hookbus/internal/testenv"
	"github.com/hookbus/hookbus/sdk"
)

// TestAuth: admin keys reach everything; an application token reaches its
// own application only (another's answers 404 like an absent one, admin
// routes 403), cannot set filter, and stops working when revoked.
func TestAuth(t *testing.T) {
	eachStore(t, func(t *testing.T, st *store.Store) {
		p := newPlatform(t, st, nil)
		p.createApp("acme")
		p.createApp("globex")
		sub := p.createSub("acme", map[string]any{})
		other := p.createSub("globex", map[string]any{})
		tok := p.createToken("acme")
		if !strings.HasPrefix(tok.Token, TokenPrefix) || tok.Application != "acme" || tok.ID == "" {
			t.Fatalf("token = %+v", tok)
		}

		// No key, a wrong key, a made-up token: 401 with WWW-Authenticate.
		for _, key := range []string{"", "wrong", TokenPrefix + "madeup"} {
			a := p.do("GET", "/v1/applications/acme", key, nil)
			if a.status != http.StatusUnauthorized || a.header.Get("WWW-Authenticate") == "" {
				t.Fatalf("key %q: status %d, want 401 with WWW-Authenticate: %s", key, a.status, a.body)
			}
			a.problem(t)
		}
		// Both admin keys, and the scheme in any case.
		p.must(http.StatusOK, "GET", "/v1/applications", adminKey, nil)
		p.must(http.StatusOK, "GET", "/v1/applications/globex", otherKey, nil)

		// The token on its own application.
		own := []string{
			"/v1/applications/acme",
			"/v1/applications/acme/subscriptions",
			"/v1/applications/acme/subscriptions/" + sub.ID,
			"/v1/applications/acme/subscriptions/" + sub.ID + "/secret",
		}
		for _, path := range own {
			p.must(http.StatusOK, "GET", path, tok.Token, nil)
		}
		created := p.must(http.StatusCreated, "POST", "/v1/applications/acme/subscriptions", tok.Token,
			map[string]any{"url": "https://acme.example/hooks", "event_types": []string{"order.*"}})
		var mine SubscriptionJSON
		created.json(t, &mine)
		p.must(http.StatusOK, "PATCH", "/v1/applications/acme/subscriptions/"+mine.ID, tok.Token, map[string]any{"description": "mine"})
		p.must(http.StatusOK, "POST", "/v1/applications/acme/subscriptions/"+mine.ID+"/rotate-secret", tok.Token, nil)
		// The application's name and metadata are the operator's.
		p.must(http.StatusForbidden, "PATCH", "/v1/applications/acme", tok.Token, map[string]any{"name": "Acme Inc"}).problem(t)

		// Another application's paths: the same 404 as an application
		// that does not exist.
		absent := p.must(http.StatusNotFound, "GET", "/v1/applications/nosuch", tok.Token, nil).problem(t)
		for _, rq := range []struct{ method, path string }{
			{"GET", "/v1/applications/globex"},
			{"GET", "/v1/applications/globex/subscriptions"},
			{"POST", "/v1/applications/globex/subscriptions"},
			{"GET", "/v1/applications/globex/subscriptions/" + other.ID},
			{"GET", "/v1/applications/globex/subscriptions/" + other.ID + "/secret"},
			{"PATCH", "/v1/applications/globex/subscriptions/" + other.ID},
			{"DELETE", "/v1/applications/globex/subscriptions/" + other.ID},
			{"POST", "/v1/applications/globex/subscriptions/" + other.ID + "/rotate-secret"},
			{"POST", "/v1/applications/globex/subscriptions/" + other.ID + "/test"},
		} {
			a := p.do(rq.method, rq.path, tok.Token, map[string]any{"description": "x"})
			pr := a.problem(t)
			if a.status != http.StatusNotFound || pr.Detail != strings.Replace(absent.Detail, "nosuch", "globex", 1) {
				t.Errorf("token on %s %s: %d %q, want the 404 of an absent application", rq.method, rq.path, a.status, pr.Detail)
			}
		}
		// Another application's subscription under its own path: 404 too.
		p.must(http.StatusNotFound, "GET", "/v1/applications/acme/subscriptions/"+other.ID, tok.Token, nil).problem(t)
		p.must(http.StatusNotFound, "DELETE", "/v1/applications/acme/subscriptions/"+other.ID, adminKey, nil).problem(t)

		// Admin routes: 403.
		for _, rq := range []struct{ method, path string }{
			{"GET", "/v1/applications"},
			{"POST", "/v1/applications"},
			{"DELETE", "/v1/applications/acme"},
			{"POST", "/v1/applications/acme/tokens"},
			{"GET", "/v1/applications/acme/tokens"},
			{"DELETE", "/v1/applications/acme/tokens/" + tok.ID},
			{"GET", "/v1/dead-letters"},
		} {
			p.must(http.StatusForbidden, rq.method, rq.path, tok.Token, map[string]any{"name": "x"}).problem(t)
		}

		// filter: admin keys only.
		filter := "function filter(event) { return event.data.amount > 10 }"
		for _, rq := range []struct{ method, path string }{
			{"POST", "/v1/applications/acme/subscriptions"},
			{"PATCH", "/v1/applications/acme/subscriptions/" + mine.ID},
		} {
			pr := p.must(http.StatusForbidden, rq.method, rq.path, tok.Token,
				map[string]any{"url": "https://acme.example/x", "event_types": []string{"*"}, "filter": filter}).problem(t)
			fieldError(t, pr, "filter")
		}
		var filtered SubscriptionJSON
		p.must(http.StatusOK, "PATCH", "/v1/applications/acme/subscriptions/"+mine.ID, adminKey, map[string]any{"filter": filter}).json(t, &filtered)
		if filtered.Filter != filter {
			t.Fatalf("filter = %q", filtered.Filter)
		}
		// The token may change the other fields; the admin's filter stays.
		p.must(http.StatusOK, "PATCH", "/v1/applications/acme/subscriptions/"+mine.ID, tok.Token, map[string]any{"url": "https://acme.example/v2"}).json(t, &filtered)
		if filtered.Filter != filter || filtered.URL != "https://acme.example/v2" {
			t.Fatalf("after the token's update: %+v", filtered)
		}

		// Revoked: 401 at once on this instance; within the cache's TTL
		// on another one sharing the store.
		peer := newPlatform(t, st, nil)
		peer.must(http.StatusOK, "GET", "/v1/applications/acme", tok.Token, nil)
		p.must(http.StatusNoContent, "DELETE", "/v1/applications/acme/tokens/"+tok.ID, adminKey, nil)
		p.must(http.StatusUnauthorized, "GET", "/v1/applications/acme", tok.Token, nil).problem(t)
		testenv.Eventually(t, 2*time.Second, "revoked token refused by another instance", func() bool {
			return peer.do("GET", "/v1/applications/acme", tok.Token, nil).status == http.StatusUnauthorized
		})
	})
}

// TestOpenWithoutKeys: with no server.api_keys anyone is admin, but an
// application token still reaches only its own application.
func TestOpenWithoutKeys(t *testing.T) {
	eachStore(t, func(t *testing.T, st *store.Store) {
		p := newPlatform(t, st, &Options{})
		p.createApp("a")
		p.createApp("b")
		p.must(http.StatusOK, "GET", "/v1/applications", "", nil)
		p.must(http.StatusOK, "GET", "/v1/applications", "anything", nil)
		tok := p.createToken("a")
		p.must(http.StatusOK, "GET", "/v1/applications/a", tok.Token, nil)
		p.must(http.StatusNotFound, "GET", "/v1/applications/b", tok.Token, nil)
		p.must(http.StatusForbidden, "GET", "/v1/applications", tok.Token, nil)
		p.must(http.StatusUnauthorized, "GET", "/v1/applications/a", TokenPrefix+"nope", nil)
	})
}

// TestValidation: every invalid field is a 422 validation_failed naming it.
func TestValidation(t *testing.T) {
	eachStore(t, func(t *testing.T, st *store.Store) {
		var private bool
		var mu sync.Mutex
		p := newPlatform(t, st, &Options{APIKeys: []string{adminKey}, AllowPrivateNetworks: func() bool {
			mu.Lock()
			defer mu.Unlock()
			return private
		}})
		p.createApp("acme")
		base := func(change map[string]any) map[string]any {
			b := map[string]any{"url": "https://receiver.example/hooks", "event_types": []string{"order.paid"}}
			for k, v := range change {
				if v == nil {
					delete(b, k)
				} else {
					b[k] = v
				}
			}
			return b
		}
		path := "/v1/applications/acme/subscriptions"
		for _, tt := range []struct {
			name  string
			body  map[string]any
			field string
			msg   string
		}{
			{"no url", base(map[string]any{"url": nil}), "url", "is required"},
			{"url scheme", base(map[string]any{"url": "ftp://receiver.example/"}), "url", `scheme "ftp" not allowed`},
			{"url not a string", base(map[string]any{"url": 42}), "url", "must be a string"},
			{"credentials in url", base(map[string]any{"url": "https://user:pw@receiver.example/"}), "url", "must not contain credentials"},
			{"loopback", base(map[string]any{"url": "http://127.0.0.1:8080/hooks"}), "url", "loopback address"},
			{"private", base(map[string]any{"url": "http://10.1.2.3/hooks"}), "url", "private address"},
			{"metadata address", base(map[string]any{"url": "http://169.254.169.254/latest"}), "url", "refused"},
			{"no event types", base(map[string]any{"event_types": []string{}}), "event_types", "is required"},
			{"bad event type", base(map[string]any{"event_types": []string{"order.paid", "order*"}}), "event_types[1]", `"*" may only end`},
			{"event types not strings", base(map[string]any{"event_types": []int{1}}), "event_types", "array of strings"},
			{"reserved header", base(map[string]any{"headers": map[string]string{"Webhook-Signature": "x"}}), "headers.Webhook-Signature", "sets this header itself"},
			{"bad header name", base(map[string]any{"headers": map[string]string{"Bad Header": "x"}}), "headers.Bad Header", "invalid header name"},
			{"bad header value", base(map[string]any{"headers": map[string]string{"X-Ok": "a\nb"}}), "headers.X-Ok", "line breaks"},
			{"bad secret", base(map[string]any{"secret": "not-a-secret"}), "secret", "whsec_"},
			{"bad secret base64", base(map[string]any{"secret": "whsec_!!!"}), "secret", "base64"},
			{"negative rate limit", base(map[string]any{"rate_limit": -1}), "rate_limit", "between 0"},
			{"max in flight too high", base(map[string]any{"max_in_flight": 100000}), "max_in_flight", "between 0"},
			{"max in flight fractional", base(map[string]any{"max_in_flight": 1.5}), "max_in_flight", "an integer"},
			{"filter syntax", base(map[string]any{"filter": "function filter(event) {\n  return event.(\n}"}), "filter", "filter:2:"},
			{"filter without filter", base(map[string]any{"filter": "var x = 1"}), "filter", "filter"},
			{"unknown member", base(map[string]any{"urll": "https://x.example/"}), "urll", "unknown member"},
			{"read-only member", base(map[string]any{"id": "sub_mine"}), "id", "read-only"},
			{"disabled not a bool", base(map[string]any{"disabled": "yes"}), "disabled", "true or false"},
		} {
			t.Run(tt.name, func(t *testing.T) {
				pr := p.must(http.StatusUnprocessableEntity, "POST", path, adminKey, tt.body).problem(t)
				if msg := fieldError(t, pr, tt.field); !strings.Contains(msg, tt.msg) {
					t.Errorf("%s: %q, want it to say %q", tt.field, msg, tt.msg)
				}
			})
		}
		// Every problem at once.
		pr := p.must(http.StatusUnprocessableEntity, "POST", path, adminKey,
			map[string]any{"url": "gopher://x", "event_types": []string{"a b"}, "rate_limit": -2}).problem(t)
		for _, f := range []string{"url", "event_types[0]", "rate_limit"} {
			fieldError(t, pr, f)
		}
		// A private address is accepted once a subscriptions sink allows them.
		mu.Lock()
		private = true
		mu.Unlock()
		p.must(http.StatusCreated, "POST", path, adminKey, base(map[string]any{"url": "http://127.0.0.1:9/hooks"}))

		// The body itself.
		p.must(http.StatusBadRequest, "POST", path, adminKey, `{"url":`).problem(t)
		p.must(http.StatusBadRequest, "POST", path, adminKey, `[1,2]`).problem(t)
		p.must(http.StatusBadRequest, "POST", path, adminKey, "").problem(t)
		big := `{"description":"` + strings.Repeat("x", MaxRequestBody) + `"}`
		p.must(http.StatusRequestEntityTooLarge, "POST", path, adminKey, big).problem(t)
		req, _ := http.NewRequest("POST", p.url+path, strings.NewReader(`url=x`))
		req.Header.Set("Authorization", "Bearer "+adminKey)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnsupportedMediaType {
			t.Errorf("form body: status %d, want 415", resp.StatusCode)
		}

		// Applications.
		pr = p.must(http.StatusUnprocessableEntity, "POST", "/v1/applications", adminKey, map[string]any{"id": "a/b", "name": ""}).problem(t)
		fieldError(t, pr, "id")
		fieldError(t, pr, "name")
		pr = p.must(http.StatusUnprocessableEntity, "POST", "/v1/applications", adminKey, map[string]any{"name": "x", "metadata": []int{1}}).problem(t)
		fieldError(t, pr, "metadata")
		p.must(http.StatusConflict, "POST", "/v1/applications", adminKey, map[string]any{"id": "acme", "name": "again"}).problem(t)
		pr = p.must(http.StatusUnprocessableEntity, "PATCH", "/v1/applications/acme", adminKey, map[string]any{"id": "renamed"}).problem(t)
		fieldError(t, pr, "id")
		var gen ApplicationJSON
		p.must(http.StatusCreated, "POST", "/v1/applications", adminKey, map[string]any{"name": "Generated"}).json(t, &gen)
		if !strings.HasPrefix(gen.ID, "app_") || len(gen.ID) != len("app_")+26 {
			t.Errorf("generated id %q, want app_ and a ULID", gen.ID)
		}

		// Query parameters.
		pr = p.must(http.StatusBadRequest, "GET", "/v1/applications?limit=501", adminKey, nil).problem(t)
		fieldError(t, pr, "limit")
		pr = p.must(http.StatusBadRequest, "GET", path+"?disabled=maybe&event_type=a%20b", adminKey, nil).problem(t)
		fieldError(t, pr, "disabled")
		fieldError(t, pr, "event_type")
	})
}

// collect pages through a list with limit, checking every page's shape.
func collect(t *testing.T, p *platform, path string, limit int) []string {
	t.Helper()
	var ids []string
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 1000 {
			t.Fatal("the list does not end")
		}
		q := url.Values{"limit": {fmt.Sprint(limit)}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		sep := "?"
		if strings.Contains(path, "?") {
			sep = "&"
		}
		var page struct {
			Data       []struct{ ID string }
			NextCursor *string `json:"next_cursor"`
		}
		p.must(http.StatusOK, "GET", path+sep+q.Encode(), adminKey, nil).json(t, &page)
		if len(page.Data) > limit {
			t.Fatalf("page of %d items, limit %d", len(page.Data), limit)
		}
		for _, d := range page.Data {
			ids = append(ids, d.ID)
		}
		if page.NextCursor == nil {
			return ids
		}
		cursor = *page.NextCursor
	}
}

// TestPagination: 250 applications and 250 subscriptions, listed in pages
// of several sizes: every one exactly once, in order.
func TestPagination(t *testing.T) {
	eachStore(t, func(t *testing.T, st *store.Store) {
		p := newPlatform(t, st, nil)
		const n = 250
		var wantApps, wantSubs []string
		var mu sync.Mutex
		p.createApp("big")
		var wg sync.WaitGroup
		sem := make(chan struct{}, 4)
		for i := range n {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				id := fmt.Sprintf("app-%03d", i)
				p.createApp(id)
				s := p.createSub("big", map[string]any{"event_types": []string{fmt.Sprintf("t.%d", i)}})
				mu.Lock()
				wantApps = append(wantApps, id)
				wantSubs = append(wantSubs, s.ID)
				mu.Unlock()
			}()
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		wantApps = append(wantApps, "big")
		slices.Sort(wantApps)
		slices.Sort(wantSubs)
		for _, limit := range []int{7, 50, 500} {
			if got := collect(t, p, "/v1/applications", limit); !slices.Equal(got, wantApps) {
				t.Errorf("applications in pages of %d: %d ids, want %d (no duplicate, no gap, in order)", limit, len(got), len(wantApps))
			}
			if got := collect(t, p, "/v1/applications/big/subscriptions", limit); !slices.Equal(got, wantSubs) {
				t.Errorf("subscriptions in pages of %d: %d ids, want %d (no duplicate, no gap, in order)", limit, len(got), len(wantSubs))
			}
		}
		for _, path := range []string{"/v1/applications?cursor=not%20a%20cursor!", "/v1/applications/big/subscriptions?cursor=%21%21"} {
			pr := p.must(http.StatusBadRequest, "GET", path, adminKey, nil).problem(t)
			fieldError(t, pr, "cursor")
		}
		var first struct{ Data []json.RawMessage }
		p.must(http.StatusOK, "GET", "/v1/applications", adminKey, nil).json(t, &first)
		if len(first.Data) != DefaultLimit {
			t.Errorf("default page: %d items, want %d", len(first.Data), DefaultLimit)
		}
	})
}

// TestListFilters: ?event_type= keeps the subscriptions an event of that
// type goes to (exact, prefix wildcards, "*"); ?disabled= the disabled or
// enabled ones.
func TestListFilters(t *testing.T) {
	eachStore(t, func(t *testing.T, st *store.Store) {
		p := newPlatform(t, st, nil)
		p.createApp("acme")
		p.createApp("other")
		p.createSub("other", map[string]any{"event_types": []string{"*"}})
		subs := map[string]string{}
		for name, types := range map[string][]string{
			"exact":    {"order.paid"},
			"prefix":   {"order.*"},
			"all":      {"*"},
			"user":     {"user.created"},
			"deeper":   {"order.paid.*"},
			"multi":    {"invoice.sent", "order.paid"},
			"disabled": {"order.*"},
		} {
			body := map[string]any{"event_types": types, "description": name}
			if name == "disabled" {
				body["disabled"] = true
			}
			subs[name] = p.createSub("acme", body).ID
		}
		names := func(path string) []string {
			var page struct{ Data []SubscriptionJSON }
			p.must(http.StatusOK, "GET", path, adminKey, nil).json(t, &page)
			var out []string
			for _, s := range page.Data {
				if s.Application != "acme" {
					t.Errorf("%s listed a subscription of %q", path, s.Application)
				}
				out = append(out, s.Description)
			}
			slices.Sort(out)
			return out
		}
		base := "/v1/applications/acme/subscriptions"
		for _, tt := range []struct {
			query string
			want  []string
		}{
			{"?event_type=order.paid", []string{"all", "disabled", "exact", "multi", "prefix"}},
			{"?event_type=order.refunded", []string{"all", "disabled", "prefix"}},
			{"?event_type=order.paid.late", []string{"all", "deeper", "disabled", "prefix"}},
			{"?event_type=user.created", []string{"all", "user"}},
			{"?event_type=ordering", []string{"all"}},
			{"?event_type=order.paid&disabled=false", []string{"all", "exact", "multi", "prefix"}},
			{"?disabled=true", []string{"disabled"}},
		} {
			if got := names(base + tt.query); !slices.Equal(got, tt.want) {
				t.Errorf("%s: %v, want %v", tt.query, got, tt.want)
			}
		}
		var dis SubscriptionJSON
		p.must(http.StatusOK, "GET", base+"/"+subs["disabled"], adminKey, nil).json(t, &dis)
		if !dis.Disabled || dis.DisabledReason != DisabledByAPI {
			t.Errorf("disabled subscription: %+v", dis)
		}
		p.must(http.StatusOK, "PATCH", base+"/"+subs["disabled"], adminKey, map[string]any{"disabled": false}).json(t, &dis)
		if dis.Disabled || dis.DisabledReason != "" {
			t.Errorf("re-enabled subscription: %+v", dis)
		}
	})
}

// TestDeletesAreIdempotent: a DELETE answers 204, the same DELETE again
// 404; deleting an application takes its subscriptions and tokens along.
func TestDeletesAreIdempotent(t *testing.T) {
	eachStore(t, func(t *testing.T, st *store.Store) {
		p := newPlatform(t, st, nil)
		p.createApp("acme")
		s1 := p.createSub("acme", map[string]any{})
		s2 := p.createSub("acme", map[string]any{})
		tok := p.createToken("acme")
		tok2 := p.createToken("acme")
		subPath := "/v1/applications/acme/subscriptions/" + s1.ID
		p.must(http.StatusNoContent, "DELETE", subPath, adminKey, nil)
		p.must(http.StatusNotFound, "DELETE", subPath, adminKey, nil).problem(t)
		p.must(http.StatusNotFound, "GET", subPath, adminKey, nil).problem(t)

		tokPath := "/v1/applications/acme/tokens/" + tok2.ID
		p.must(http.StatusNoContent, "DELETE", tokPath, adminKey, nil)
		p.must(http.StatusNotFound, "DELETE", tokPath, adminKey, nil).problem(t)
		var toks struct{ Data []TokenJSON }
		p.must(http.StatusOK, "GET", "/v1/applications/acme/tokens", adminKey, nil).json(t, &toks)
		if len(toks.Data) != 1 || toks.Data[0].ID != tok.ID || toks.Data[0].Token != "" {
			t.Fatalf("tokens after revoking one: %+v (values must never be listed)", toks.Data)
		}

		p.must(http.StatusOK, "GET", "/v1/applications/acme", tok.Token, nil)
		p.must(http.StatusNoContent, "DELETE", "/v1/applications/acme", adminKey, nil)
		p.must(http.StatusNotFound, "DELETE", "/v1/applications/acme", adminKey, nil).problem(t)
		p.must(http.StatusNotFound, "GET", "/v1/applications/acme/subscriptions/"+s2.ID, adminKey, nil).problem(t)
		p.must(http.StatusUnauthorized, "GET", "/v1/applications/acme", tok.Token, nil).problem(t)
		if _, err := st.GetSubscription(t.Context(), "acme", s2.ID); err == nil {
			t.Fatal("the deleted application's subscription is still in the store")
		}
		// A new application of the same id starts empty.
		p.createApp("acme")
		var page struct{ Data []SubscriptionJSON }
		p.must(http.StatusOK, "GET", "/v1/applications/acme/subscriptions", adminKey, nil).json(t, &page)
		if len(page.Data) != 0 {
			t.Fatalf("re-created application has %d subscriptions", len(page.Data))
		}
	})
}

// TestUpdatesMerge: a PATCH changes the given members only.
func TestUpdatesMerge(t *testing.T) {
	eachStore(t, func(t *testing.T, st *store.Store) {
		p := newPlatform(t, st, nil)
		var a ApplicationJSON
		p.must(http.StatusCreated, "POST", "/v1/applications", adminKey,
			map[string]any{"id": "acme", "name": "Acme", "metadata": map[string]any{"plan": "gold"}}).json(t, &a)
		p.must(http.StatusOK, "PATCH", "/v1/applications/acme", adminKey, map[string]any{"name": "Acme Inc"}).json(t, &a)
		if a.Name != "Acme Inc" || a.Metadata["plan"] != "gold" {
			t.Fatalf("after PATCH name: %+v", a)
		}
		a = ApplicationJSON{}
		p.must(http.StatusOK, "PATCH", "/v1/applications/acme", adminKey, map[string]any{"metadata": nil}).json(t, &a)
		if a.Name != "Acme Inc" || len(a.Metadata) != 0 {
			t.Fatalf("after PATCH metadata null: %+v", a)
		}

		s := p.createSub("acme", map[string]any{"url": "https://r.example/a", "event_types": []string{"a.*"}, "description": "first",
			"headers": map[string]string{"X-Tenant": "acme"}, "rate_limit": 2.5, "max_in_flight": 4, "metadata": map[string]any{"k": "v"}})
		if s.Secret == "" {
			t.Fatal("create did not answer the secret")
		}
		var got SubscriptionJSON
		p.must(http.StatusOK, "PATCH", "/v1/applications/acme/subscriptions/"+s.ID, adminKey, map[string]any{"description": "second"}).json(t, &got)
		if got.Description != "second" || got.URL != s.URL || !slices.Equal(got.EventTypes, s.EventTypes) || got.Headers["X-Tenant"] != "acme" ||
			got.RateLimit != 2.5 || got.MaxInFlight != 4 || got.Metadata["k"] != "v" || got.Secret != "" {
			t.Fatalf("after PATCH description: %+v, was %+v", got, s)
		}
		// An object member is replaced as a whole, not merged into the stored one.
		got = SubscriptionJSON{}
		p.must(http.StatusOK, "PATCH", "/v1/applications/acme/subscriptions/"+s.ID, adminKey,
			map[string]any{"headers": map[string]string{"X-Env": "prod"}, "metadata": map[string]any{"n": 1}}).json(t, &got)
		if len(got.Headers) != 1 || got.Headers["X-Env"] != "prod" || len(got.Metadata) != 1 || got.Metadata["n"] != 1.0 {
			t.Fatalf("after PATCH headers and metadata: %+v", got)
		}
		p.must(http.StatusOK, "GET", "/v1/applications/acme/subscriptions/"+s.ID, adminKey, nil).json(t, &got)
		if got.Secret != "" {
			t.Fatal("GET answered the secret")
		}
		var sec secretJSON
		p.must(http.StatusOK, "GET", "/v1/applications/acme/subscriptions/"+s.ID+"/secret", adminKey, nil).json(t, &sec)
		if sec.Secret != s.Secret {
			t.Fatalf("GET …/secret = %q, want the one created %q", sec.Secret, s.Secret)
		}
	})
}

// TestRotateSecret: the new secret becomes current; the old one keeps
// signing until now+overlap; a zero overlap drops it at once.
func TestRotateSecret(t *testing.T) {
	eachStore(t, func(t *testing.T, st *store.Store) {
		p := newPlatform(t, st, nil)
		p.createApp("acme")
		s := p.createSub("acme", map[string]any{"secret": testWhsec})
		if s.Secret != testWhsec {
			t.Fatalf("secret = %q, want the one given", s.Secret)
		}
		path := "/v1/applications/acme/subscriptions/" + s.ID
		before := time.Now()
		var rot secretJSON
		p.must(http.StatusOK, "POST", path+"/rotate-secret", adminKey, map[string]any{"overlap": "1h"}).json(t, &rot)
		if rot.Secret == testWhsec || !strings.HasPrefix(rot.Secret, signing.Prefix) {
			t.Fatalf("rotated secret %q", rot.Secret)
		}
		var cur secretJSON
		p.must(http.StatusOK, "GET", path+"/secret", adminKey, nil).json(t, &cur)
		if cur.Secret != rot.Secret {
			t.Fatalf("current secret %q, want the rotated %q", cur.Secret, rot.Secret)
		}
		stored, err := st.GetSubscription(t.Context(), "acme", s.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(stored.Secrets) != 2 || stored.Secrets[0].Value != rot.Secret || !stored.Secrets[0].Expires.IsZero() ||
			stored.Secrets[1].Value != testWhsec {
			t.Fatalf("secrets after rotation: %+v", stored.Secrets)
		}
		exp := stored.Secrets[1].Expires
		if exp.Before(before.Add(time.Hour-time.Second)) || exp.After(time.Now().Add(time.Hour+time.Second)) {
			t.Fatalf("old secret expires at %v, want about an hour from %v", exp, before)
		}
		if got := stored.Signing(time.Now()); len(got) != 2 {
			t.Fatalf("%d secrets sign during the overlap, want 2", len(got))
		}
		if got := stored.Signing(exp); len(got) != 1 || got[0].Value != rot.Secret {
			t.Fatalf("after the overlap: %+v, want only the new secret", got)
		}

		// A given secret, with the default overlap: the older expiry stays.
		const given = "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
		p.must(http.StatusOK, "POST", path+"/rotate-secret", adminKey, map[string]any{"secret": given}).json(t, &rot)
		if rot.Secret != given {
			t.Fatalf("rotate with a secret answered %q", rot.Secret)
		}
		stored, _ = st.GetSubscription(t.Context(), "acme", s.ID)
		if len(stored.Secrets) != 3 || !stored.Secrets[2].Expires.Equal(exp) ||
			stored.Secrets[1].Expires.Before(time.Now().Add(DefaultOverlap-time.Minute)) {
			t.Fatalf("secrets after a second rotation: %+v", stored.Secrets)
		}
		// overlap 0: the old ones stop at once.
		p.must(http.StatusOK, "POST", path+"/rotate-secret", adminKey, map[string]any{"overlap": "0s"}).json(t, &rot)
		stored, _ = st.GetSubscription(t.Context(), "acme", s.ID)
		if len(stored.Secrets) != 1 || stored.Secrets[0].Value != rot.Secret {
			t.Fatalf("secrets after a rotation without overlap: %+v", stored.Secrets)
		}
		for _, body := range []map[string]any{{"overlap": "soon"}, {"overlap": "-1h"}, {"overlap": "10000h"}, {"secret": "plain"}, {"extra": 1}} {
			pr := p.must(http.StatusUnprocessableEntity, "POST", path+"/rotate-secret", adminKey, body).problem(t)
			if len(pr.Errors) != 1 {
				t.Errorf("rotate %v: %+v", body, pr.Errors)
			}
		}
	})
}

// TestRotate covers the rotation rule without the API.
func TestRotate(t *testing.T) {
	t.Parallel()
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	old := []subscription.Secret{
		{Value: "current"},
		{Value: "soon", Expires: now.Add(time.Minute)},
		{Value: "gone", Expires: now.Add(-time.Second)},
	}
	got := Rotate(old, subscription.Secret{Value: "new"}, time.Hour, now)
	want := []string{"new", "current", "soon"}
	if len(got) != 3 {
		t.Fatalf("Rotate = %+v", got)
	}
	for i, s := range got {
		if s.Value != want[i] {
			t.Fatalf("Rotate = %+v, want %v", got, want)
		}
	}
	if !got[1].Expires.Equal(now.Add(time.Hour)) || !got[2].Expires.Equal(now.Add(time.Minute)) {
		t.Fatalf("expiries: %+v", got)
	}
	many := make([]subscription.Secret, 20)
	if got := Rotate(many, subscription.Secret{Value: "new"}, time.Hour, now); len(got) != subscription.MaxSecrets {
		t.Fatalf("kept %d secrets, want at most %d", len(got), subscription.MaxSecrets)
	}
}

// TestTestSend: POST …/test hands the subscription and a hookbus.test
// event of its application to TestSend and answers the result; 503
// without TestSend.
func TestTestSend(t *testing.T) {
	eachStore(t, func(t *testing.T, st *store.Store) {
		var mu sync.Mutex
		var gotSub subscription.Subscription
		var gotEv sdk.Event
		p := newPlatform(t, st, &Options{APIKeys: []string{adminKey},
			TestSend: func(ctx context.Context, sub subscription.Subscription, ev sdk.Event) (subscription.TestResult, error) {
				mu.Lock()
				defer mu.Unlock()
				gotSub, gotEv = sub, ev
				return subscription.TestResult{Outcome: "delivered", StatusCode: 204, LatencyMS: 3, Response: ""}, nil
			}})
		p.createApp("acme")
		s := p.createSub("acme", map[string]any{})
		tok := p.createToken("acme")
		var res subscription.TestResult
		p.must(http.StatusOK, "POST", "/v1/applications/acme/subscriptions/"+s.ID+"/test", tok.Token, nil).json(t, &res)
		if res.Outcome != "delivered" || res.StatusCode != 204 {
			t.Fatalf("result %+v", res)
		}
		mu.Lock()
		if gotSub.ID != s.ID || gotEv.Type != TestEventType || gotEv.ID == "" || string(gotEv.Extensions["application"]) != `"acme"` {
			t.Fatalf("TestSend got %+v / %+v", gotSub, gotEv)
		}
		mu.Unlock()
		p.must(http.StatusOK, "POST", "/v1/applications/acme/subscriptions/"+s.ID+"/test", adminKey,
			map[string]any{"type": "order.paid", "data": map[string]any{"amount": 42}})
		mu.Lock()
		if gotEv.Type != "order.paid" || string(gotEv.Data) != `{"amount":42}` {
			t.Fatalf("TestSend got %+v", gotEv)
		}
		mu.Unlock()
		pr := p.must(http.StatusUnprocessableEntity, "POST", "/v1/applications/acme/subscriptions/"+s.ID+"/test", adminKey,
			map[string]any{"type": "order.*"}).problem(t)
		fieldError(t, pr, "type")

		bare := newPlatform(t, st, nil)
		bare.must(http.StatusServiceUnavailable, "POST", "/v1/applications/acme/subscriptions/"+s.ID+"/test", adminKey, nil).problem(t)
		noSink := newPlatform(t, st, &Options{APIKeys: []string{adminKey},
			TestSend: func(context.Context, subscription.Subscription, sdk.Event) (subscription.TestResult, error) {
				return subscription.TestResult{}, fmt.Errorf("%w: no sink of type subscriptions", ErrTestUnavailable)
			}})
		noSink.must(http.StatusServiceUnavailable, "POST", "/v1/applications/acme/subscriptions/"+s.ID+"/test", adminKey, nil).problem(t)
	})
}
