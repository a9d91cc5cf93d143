package store

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookbus/hookbus/core/subscription"
	"github.com/hookbus/hookbus/internal/testenv"
)

// openWith opens the store on db with options.
func (db testDB) openWith(t *testing.T, opts ...Option) *Store {
	t.Helper()
	s, err := Open(context.Background(), db.driver, db.dsn, db.dir, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// eachStore runs f on a fresh SQLite store and, when PostgreSQL runs, a
// fresh PostgreSQL one.
func eachStore(t *testing.T, f func(t *testing.T, db testDB, s *Store)) {
	for _, db := range freshDBs(t) {
		t.Run(db.name, func(t *testing.T) { f(t, db, db.open(t)) })
	}
}

func mustApp(t *testing.T, s *Store, id string) subscription.Application {
	t.Helper()
	a, err := s.CreateApplication(context.Background(), subscription.Application{ID: id, Name: "app " + id})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func mustSub(t *testing.T, s *Store, sub subscription.Subscription) subscription.Subscription {
	t.Helper()
	if sub.URL == "" {
		sub.URL = "https://example.com/hook"
	}
	if sub.EventTypes == nil {
		sub.EventTypes = []string{"*"}
	}
	got, err := s.CreateSubscription(context.Background(), sub)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func wantErrIs(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: error %v, want %v", what, err, want)
	}
}

func isUTC(ts ...time.Time) bool {
	for _, t := range ts {
		if t.Location() != time.UTC {
			return false
		}
	}
	return true
}

func TestApplications(t *testing.T) {
	ctx := context.Background()
	eachStore(t, func(t *testing.T, db testDB, s *Store) {
		a, err := s.CreateApplication(ctx, subscription.Application{ID: "shop", Name: "Shop", Metadata: map[string]any{"tier": "gold", "n": 2.0}})
		if err != nil {
			t.Fatal(err)
		}
		if a.Created.IsZero() || !a.Created.Equal(a.Updated) || !isUTC(a.Created, a.Updated) {
			t.Fatalf("created: %+v", a)
		}
		got, err := s.GetApplication(ctx, "shop")
		if err != nil || !reflect.DeepEqual(got, a) {
			t.Fatalf("get = %+v, %v; want %+v", got, err, a)
		}
		_, err = s.CreateApplication(ctx, subscription.Application{ID: "shop", Name: "again"})
		wantErrIs(t, "create with a taken id", err, subscription.ErrConflict)
		if got, _ := s.GetApplication(ctx, "shop"); got.Name != "Shop" {
			t.Fatalf("the conflicting create changed the application: %+v", got)
		}

		gen, err := s.CreateApplication(ctx, subscription.Application{Name: "generated"})
		if err != nil || !strings.HasPrefix(gen.ID, "app_") || len(gen.ID) != len("app_")+26 {
			t.Fatalf("generated id: %+v, %v", gen, err)
		}

		s.now = func() time.Time { return a.Created.Add(time.Minute).In(time.FixedZone("X", 3600)) }
		up, err := s.UpdateApplication(ctx, subscription.Application{ID: "shop", Name: "Shop 2", Metadata: map[string]any{"tier": "silver"}})
		if err != nil || up.Name != "Shop 2" || !up.Created.Equal(a.Created) || !up.Updated.Equal(a.Created.Add(time.Minute)) || !isUTC(up.Created, up.Updated) {
			t.Fatalf("update = %+v, %v", up, err)
		}
		if got, _ := s.GetApplication(ctx, "shop"); !reflect.DeepEqual(got, up) {
			t.Fatalf("after update get = %+v, want %+v", got, up)
		}
		_, err = s.UpdateApplication(ctx, subscription.Application{ID: "nope"})
		wantErrIs(t, "update of a missing application", err, subscription.ErrNotFound)
		_, err = s.GetApplication(ctx, "nope")
		wantErrIs(t, "get of a missing application", err, subscription.ErrNotFound)

		if err := s.DeleteApplication(ctx, "shop"); err != nil {
			t.Fatal(err)
		}
		_, err = s.GetApplication(ctx, "shop")
		wantErrIs(t, "get after delete", err, subscription.ErrNotFound)
		wantErrIs(t, "second delete", s.DeleteApplication(ctx, "shop"), subscription.ErrNotFound)
		// Its id is free again.
		mustApp(t, s, "shop")
	})
}

func fullSubscription(app string) subscription.Subscription {
	at := time.Date(2026, 3, 4, 5, 6, 7, 8, time.FixedZone("Y", -7200))
	return subscription.Subscription{
		App: app, URL: "https://partner.example/hooks?x=1", EventTypes: []string{"order.paid", "invoice.*"}, Description: "orders",
		Secrets: []subscription.Secret{
			{Value: "whsec_bmV3IHNlY3JldA==", Created: at},
			{Value: "whsec_b2xkIHNlY3JldA==", Created: at.Add(-time.Hour), Expires: at.Add(24 * time.Hour)},
		},
		Headers:   map[string]string{"X-Partner": "42"},
		RateLimit: 2.5, MaxInFlight: 7, Filter: "function filter(e) { return e.data.n > 1 }",
		Metadata:     map[string]any{"team": "billing", "tags": []any{"a", "b"}},
		FailingSince: at,
	}
}

func TestSubscriptions(t *testing.T) {
	ctx := context.Background()
	eachStore(t, func(t *testing.T, db testDB, s *Store) {
		mustApp(t, s, "shop")
		mustApp(t, s, "other")
		_, err := s.CreateSubscription(ctx, subscription.Subscription{App: "nope", URL: "https://x.example", EventTypes: []string{"*"}})
		wantErrIs(t, "subscription of a missing application", err, subscription.ErrNotFound)

		in := fullSubscription("shop")
		sub, err := s.CreateSubscription(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(sub.ID, "sub_") || sub.Created.IsZero() || !sub.Created.Equal(sub.Updated) ||
			!isUTC(sub.Created, sub.Updated, sub.FailingSince, sub.Secrets[0].Created, sub.Secrets[1].Expires) ||
			!sub.FailingSince.Equal(in.FailingSince) || !sub.Secrets[1].Expires.Equal(in.Secrets[1].Expires) || !sub.Secrets[0].Expires.IsZero() {
			t.Fatalf("created: %+v", sub)
		}
		got, err := s.GetSubscription(ctx, "shop", sub.ID)
		if err != nil || !reflect.DeepEqual(got, sub) {
			t.Fatalf("get = %+v, %v\nwant %+v", got, err, sub)
		}
		_, err = s.CreateSubscription(ctx, subscription.Subscription{ID: sub.ID, App: "shop", URL: "https://y.example", EventTypes: []string{"*"}})
		wantErrIs(t, "create with a taken id", err, subscription.ErrConflict)

		// Tenancy: the id under another application is not found, and
		// nothing done through it touches the subscription.
		_, err = s.GetSubscription(ctx, "other", sub.ID)
		wantErrIs(t, "get through another application", err, subscription.ErrNotFound)
		hijack := sub
		hijack.App, hijack.URL = "other", "https://attacker.example"
		_, err = s.UpdateSubscription(ctx, hijack)
		wantErrIs(t, "update through another application", err, subscription.ErrNotFound)
		wantErrIs(t, "delete through another application", s.DeleteSubscription(ctx, "other", sub.ID), subscription.ErrNotFound)
		if got, err := s.GetSubscription(ctx, "shop", sub.ID); err != nil || !reflect.DeepEqual(got, sub) {
			t.Fatalf("after another application's attempts: %+v, %v", got, err)
		}
		if list, _, err := s.ListSubscriptions(ctx, "other", subscription.SubscriptionQuery{}, subscription.Page{}); err != nil || len(list) != 0 {
			t.Fatalf("another application lists %+v, %v", list, err)
		}

		// Update replaces every field but Created, the secrets too.
		s.now = func() time.Time { return sub.Created.Add(time.Second) }
		ch := sub
		ch.URL, ch.EventTypes, ch.Description = "https://partner.example/v2", []string{"order.*"}, ""
		ch.Secrets = []subscription.Secret{{Value: "whsec_b25seSBvbmU=", Created: sub.Created}}
		ch.Headers, ch.RateLimit, ch.MaxInFlight, ch.Filter = nil, 0, 0, ""
		ch.Disabled, ch.DisabledReason, ch.Metadata, ch.FailingSince = true, "410 Gone", nil, time.Time{}
		ch.Created = time.Unix(1, 0) // ignored
		up, err := s.UpdateSubscription(ctx, ch)
		if err != nil {
			t.Fatal(err)
		}
		want := ch
		want.Created, want.Updated = sub.Created, sub.Created.Add(time.Second)
		if !reflect.DeepEqual(up, want) {
			t.Fatalf("update = %+v\nwant %+v", up, want)
		}
		if got, err := s.GetSubscription(ctx, "shop", sub.ID); err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("get after update = %+v, %v\nwant %+v", got, err, want)
		}
		// The event types index follows the update.
		if list, _, _ := s.ListSubscriptions(ctx, "shop", subscription.SubscriptionQuery{EventType: "invoice.sent"}, subscription.Page{}); len(list) != 0 {
			t.Fatalf("old event types still match: %+v", list)
		}
		if list, _, _ := s.ListSubscriptions(ctx, "shop", subscription.SubscriptionQuery{EventType: "order.refunded"}, subscription.Page{}); len(list) != 1 {
			t.Fatalf("new event types do not match: %+v", list)
		}
		_, err = s.UpdateSubscription(ctx, subscription.Subscription{ID: "sub_missing", App: "shop"})
		wantErrIs(t, "update of a missing subscription", err, subscription.ErrNotFound)

		if err := s.DeleteSubscription(ctx, "shop", sub.ID); err != nil {
			t.Fatal(err)
		}
		_, err = s.GetSubscription(ctx, "shop", sub.ID)
		wantErrIs(t, "get after delete", err, subscription.ErrNotFound)
		wantErrIs(t, "second delete", s.DeleteSubscription(ctx, "shop", sub.ID), subscription.ErrNotFound)
		_, _, err = s.ListSubscriptions(ctx, "nope", subscription.SubscriptionQuery{}, subscription.Page{})
		wantErrIs(t, "list of a missing application", err, subscription.ErrNotFound)
	})
}

func tokenHash(v string) []byte { h := sha256.Sum256([]byte(v)); return h[:] }

func TestTokens(t *testing.T) {
	ctx := context.Background()
	eachStore(t, func(t *testing.T, db testDB, s *Store) {
		mustApp(t, s, "shop")
		mustApp(t, s, "other")
		_, err := s.CreateToken(ctx, subscription.Token{App: "shop", Hash: []byte("short")})
		if err == nil || !strings.Contains(err.Error(), "SHA-256") {
			t.Fatalf("a hash that is no SHA-256: %v", err)
		}
		_, err = s.CreateToken(ctx, subscription.Token{App: "nope", Hash: tokenHash("t0")})
		wantErrIs(t, "token of a missing application", err, subscription.ErrNotFound)
		tok, err := s.CreateToken(ctx, subscription.Token{App: "shop", Hash: tokenHash("hbat_one"), Name: "ci"})
		if err != nil || !strings.HasPrefix(tok.ID, "tok_") || tok.Created.IsZero() || !isUTC(tok.Created) {
			t.Fatalf("create = %+v, %v", tok, err)
		}
		_, err = s.CreateToken(ctx, subscription.Token{App: "other", Hash: tokenHash("hbat_one")})
		wantErrIs(t, "a hash stored already", err, subscription.ErrConflict)
		tok2, err := s.CreateToken(ctx, subscription.Token{App: "shop", Hash: tokenHash("hbat_two")})
		if err != nil {
			t.Fatal(err)
		}
		otherTok, err := s.CreateToken(ctx, subscription.Token{App: "other", Hash: tokenHash("hbat_three")})
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.TokenByHash(ctx, tokenHash("hbat_one"))
		if err != nil || !reflect.DeepEqual(got, tok) {
			t.Fatalf("by hash = %+v, %v; want %+v", got, err, tok)
		}
		_, err = s.TokenByHash(ctx, tokenHash("hbat_unknown"))
		wantErrIs(t, "unknown token", err, subscription.ErrNotFound)
		list, err := s.ListTokens(ctx, "shop")
		if err != nil || len(list) != 2 || list[0].ID != tok.ID || list[1].ID != tok2.ID {
			t.Fatalf("list = %+v, %v", list, err)
		}
		_, err = s.ListTokens(ctx, "nope")
		wantErrIs(t, "tokens of a missing application", err, subscription.ErrNotFound)
		wantErrIs(t, "revoke through another application", s.DeleteToken(ctx, "shop", otherTok.ID), subscription.ErrNotFound)
		if err := s.DeleteToken(ctx, "shop", tok.ID); err != nil {
			t.Fatal(err)
		}
		_, err = s.TokenByHash(ctx, tokenHash("hbat_one"))
		wantErrIs(t, "revoked token", err, subscription.ErrNotFound)
		wantErrIs(t, "second revoke", s.DeleteToken(ctx, "shop", tok.ID), subscription.ErrNotFound)
	})
}

func TestDeleteApplicationCascades(t *testing.T) {
	ctx := context.Background()
	eachStore(t, func(t *testing.T, db testDB, s *Store) {
		mustApp(t, s, "gone")
		mustApp(t, s, "stays")
		var goneSubs []string
		for range 3 {
			goneSubs = append(goneSubs, mustSub(t, s, subscription.Subscription{App: "gone", EventTypes: []string{"order.*"}}).ID)
		}
		kept := mustSub(t, s, subscription.Subscription{App: "stays", EventTypes: []string{"order.*"}})
		for _, tk := range []subscription.Token{{App: "gone", Hash: tokenHash("a")}, {App: "gone", Hash: tokenHash("b")}, {App: "stays", Hash: tokenHash("c")}} {
			if _, err := s.CreateToken(ctx, tk); err != nil {
				t.Fatal(err)
			}
		}
		_, before, err := s.Snapshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteApplication(ctx, "gone"); err != nil {
			t.Fatal(err)
		}
		for _, id := range goneSubs {
			_, err := s.GetSubscription(ctx, "gone", id)
			wantErrIs(t, "subscription of the deleted application", err, subscription.ErrNotFound)
		}
		for _, h := range []string{"a", "b"} {
			_, err := s.TokenByHash(ctx, tokenHash(h))
			wantErrIs(t, "token of the deleted application", err, subscription.ErrNotFound)
		}
		changes, err := s.Changes(ctx, before, 0)
		if err != nil {
			t.Fatal(err)
		}
		var deleted []string
		for _, c := range changes {
			if c.Kind != subscription.ChangeDeleted || c.App != "gone" {
				t.Fatalf("change %+v", c)
			}
			deleted = append(deleted, c.Sub)
		}
		if !reflect.DeepEqual(deleted, goneSubs) {
			t.Fatalf("deleted changes for %v, want %v", deleted, goneSubs)
		}
		snap, _, err := s.Snapshot(ctx)
		if err != nil || len(snap) != 1 || snap[0].ID != kept.ID {
			t.Fatalf("snapshot after the deletion: %+v, %v", snap, err)
		}
		// The index by event type lost them too: an application made again
		// under the same id starts empty.
		mustApp(t, s, "gone")
		if list, _, err := s.ListSubscriptions(ctx, "gone", subscription.SubscriptionQuery{EventType: "order.paid"}, subscription.Page{}); err != nil || len(list) != 0 {
			t.Fatalf("the new application has %+v, %v", list, err)
		}
		if list, err := s.ListTokens(ctx, "gone"); err != nil || len(list) != 0 {
			t.Fatalf("the new application has tokens %+v, %v", list, err)
		}
		if _, err := s.TokenByHash(ctx, tokenHash("c")); err != nil {
			t.Fatalf("the other application's token: %v", err)
		}
	})
}

// pageAll reads every page of list with pages of size limit, failing on
// a duplicate, and returns the ids in the order read.
func pageAll(t *testing.T, limit int, list func(p subscription.Page) ([]string, string, error)) []string {
	t.Helper()
	var all []string
	seen := map[string]bool{}
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 1000 {
			t.Fatal("pagination does not end")
		}
		ids, next, err := list(subscription.Page{Limit: limit, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		if len(ids) > max(limit, 0) && limit > 0 {
			t.Fatalf("a page of %d items for limit %d", len(ids), limit)
		}
		for _, id := range ids {
			if seen[id] {
				t.Fatalf("%s listed twice", id)
			}
			seen[id] = true
		}
		all = append(all, ids...)
		if next == "" {
			return all
		}
		if len(ids) == 0 {
			t.Fatal("an empty page with a next cursor")
		}
		cursor = next
	}
}

func TestPagination(t *testing.T) {
	ctx := context.Background()
	eachStore(t, func(t *testing.T, db testDB, s *Store) {
		// Mixed case, digits and a dash: both databases order them byte by byte.
		var appIDs []string
		for i := range 250 {
			id := fmt.Sprintf("app-%03d", i)
			switch i % 3 {
			case 1:
				id = fmt.Sprintf("App_%03d", i)
			case 2:
				id = fmt.Sprintf("z%d", i)
			}
			appIDs = append(appIDs, id)
			mustApp(t, s, id)
		}
		sort.Strings(appIDs)
		listApps := func(p subscription.Page) ([]string, string, error) {
			apps, next, err := s.ListApplications(ctx, p)
			var ids []string
			for _, a := range apps {
				ids = append(ids, a.ID)
			}
			return ids, next, err
		}
		for _, limit := range []int{1, 7, 100, 249, 250, 251, 0} {
			if got := pageAll(t, limit, listApps); !reflect.DeepEqual(got, appIDs) {
				t.Fatalf("limit %d: listed %d applications, want the %d in order\n%v", limit, len(got), len(appIDs), got)
			}
		}
		first, next, _ := s.ListApplications(ctx, subscription.Page{})
		if len(first) != DefaultPageLimit || next == "" {
			t.Fatalf("default page: %d items, next %q", len(first), next)
		}
		if all, next, _ := s.ListApplications(ctx, subscription.Page{Limit: 5000}); len(all) != 250 || next != "" {
			t.Fatalf("a limit above the maximum: %d items, next %q", len(all), next)
		}
		_, _, err := s.ListApplications(ctx, subscription.Page{Cursor: "not base64!"})
		wantErrIs(t, "a made-up cursor", err, subscription.ErrBadCursor)
		// Base64 of bytes that are no id (invalid UTF-8, which PostgreSQL
		// would refuse as a parameter).
		_, _, err = s.ListApplications(ctx, subscription.Page{Cursor: "_-8"})
		wantErrIs(t, "a cursor of invalid UTF-8", err, subscription.ErrBadCursor)
		_, _, err = s.ListSubscriptions(ctx, "other", subscription.SubscriptionQuery{}, subscription.Page{Cursor: "_-8"})
		wantErrIs(t, "a subscriptions cursor of invalid UTF-8", err, subscription.ErrBadCursor)

		mustApp(t, s, "other")
		mustSub(t, s, subscription.Subscription{App: "other"})
		mustApp(t, s, "many")
		var subIDs, disabledIDs []string
		for i := range 250 {
			sub := mustSub(t, s, subscription.Subscription{App: "many", Disabled: i%5 == 0})
			subIDs = append(subIDs, sub.ID)
			if sub.Disabled {
				disabledIDs = append(disabledIDs, sub.ID)
			}
		}
		sort.Strings(subIDs)
		listSubs := func(q subscription.SubscriptionQuery) func(p subscription.Page) ([]string, string, error) {
			return func(p subscription.Page) ([]string, string, error) {
				subs, next, err := s.ListSubscriptions(ctx, "many", q, p)
				var ids []string
				for _, sub := range subs {
					if sub.App != "many" {
						t.Fatalf("listed %+v of another application", sub)
					}
					ids = append(ids, sub.ID)
				}
				return ids, next, err
			}
		}
		for _, limit := range []int{1, 13, 250, 0} {
			if got := pageAll(t, limit, listSubs(subscription.SubscriptionQuery{})); !reflect.DeepEqual(got, subIDs) {
				t.Fatalf("limit %d: listed %d subscriptions, want the %d in order", limit, len(got), len(subIDs))
			}
		}
		yes := true
		if got := pageAll(t, 4, listSubs(subscription.SubscriptionQuery{Disabled: &yes})); !reflect.DeepEqual(got, disabledIDs) {
			t.Fatalf("disabled ones: %v, want %v", got, disabledIDs)
		}
		no := false
		if got := pageAll(t, 30, listSubs(subscription.SubscriptionQuery{Disabled: &no, EventType: "x.y"})); len(got) != 200 || slices.ContainsFunc(got, func(id string) bool { return slices.Contains(disabledIDs, id) }) {
			t.Fatalf("enabled ones matching x.y: %d", len(got))
		}
	})
}

func TestListSubscriptionsByEventType(t *testing.T) {
	ctx := context.Background()
	long := strings.Repeat("a.", maxEnumeratedPatterns+10) + "end" // past the enumerated patterns
	eachStore(t, func(t *testing.T, db testDB, s *Store) {
		mustApp(t, s, "shop")
		mustApp(t, s, "other")
		byName := map[string]string{}
		for name, types := range map[string][]string{
			"exact":    {"order.paid"},
			"prefix":   {"order.*"},
			"deep":     {"order.paid.*"},
			"all":      {"*"},
			"invoices": {"invoice.*", "refund.issued"},
			"plural":   {"orders.*"},
			"long":     {"a.a.*"},
			"longx":    {long},
		} {
			byName[mustSub(t, s, subscription.Subscription{App: "shop", EventTypes: types, Description: name}).ID] = name
		}
		// Another application's subscriptions never match.
		mustSub(t, s, subscription.Subscription{App: "other", EventTypes: []string{"*"}})
		mustSub(t, s, subscription.Subscription{App: "other", EventTypes: []string{"order.paid"}})
		yes, no := true, false
		disabled := mustSub(t, s, subscription.Subscription{App: "shop", EventTypes: []string{"order.paid"}, Disabled: true, Description: "off"})
		byName[disabled.ID] = "off"
		for _, tc := range []struct {
			typ      string
			disabled *bool
			want     []string
		}{
			{"order.paid", nil, []string{"all", "exact", "off", "prefix"}},
			{"order.paid", &no, []string{"all", "exact", "prefix"}},
			{"order.paid", &yes, []string{"off"}},
			{"order.refunded", nil, []string{"all", "prefix"}},
			{"order.paid.partial", nil, []string{"all", "deep", "prefix"}},
			{"order", nil, []string{"all"}},
			{"orders.x", nil, []string{"all", "plural"}},
			{"invoice.sent", nil, []string{"all", "invoices"}},
			{"refund.issued", nil, []string{"all", "invoices"}},
			{"refund.issued.x", nil, []string{"all"}},
			{"a.a.b", nil, []string{"all", "long"}},
			{long, nil, []string{"all", "long", "longx"}},
			{"b" + long, nil, []string{"all"}},
		} {
			subs, _, err := s.ListSubscriptions(ctx, "shop", subscription.SubscriptionQuery{EventType: tc.typ, Disabled: tc.disabled}, subscription.Page{})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, sub := range subs {
				got = append(got, byName[sub.ID])
			}
			sort.Strings(got)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("type %.40q disabled %v: %v, want %v", tc.typ, tc.disabled, got, tc.want)
			}
		}
	})
}

func TestChangeFeed(t *testing.T) {
	ctx := context.Background()
	eachStore(t, func(t *testing.T, db testDB, s *Store) {
		t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		var clock time.Time
		var mu sync.Mutex
		s.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
		setClock := func(t time.Time) { mu.Lock(); clock = t; mu.Unlock() }
		setClock(t0)

		snap, seq0, err := s.Snapshot(ctx)
		if err != nil || len(snap) != 0 || seq0 != 0 {
			t.Fatalf("empty snapshot: %+v, %d, %v", snap, seq0, err)
		}
		if c, err := s.Changes(ctx, 0, 0); err != nil || len(c) != 0 {
			t.Fatalf("changes of an empty store: %+v, %v", c, err)
		}
		mustApp(t, s, "shop")
		a := mustSub(t, s, subscription.Subscription{App: "shop"})
		b := mustSub(t, s, subscription.Subscription{App: "shop"})
		a.URL = "https://example.com/v2"
		if _, err := s.UpdateSubscription(ctx, a); err != nil {
			t.Fatal(err)
		}
		setClock(t0.Add(2 * time.Hour))
		if err := s.DeleteSubscription(ctx, "shop", b.ID); err != nil {
			t.Fatal(err)
		}
		c := mustSub(t, s, subscription.Subscription{App: "shop"})
		changes, err := s.Changes(ctx, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		type kindSub struct {
			kind subscription.ChangeKind
			sub  string
		}
		var got []kindSub
		for i, ch := range changes {
			if ch.App != "shop" || i > 0 && ch.Seq <= changes[i-1].Seq {
				t.Fatalf("changes %+v", changes)
			}
			got = append(got, kindSub{ch.Kind, ch.Sub})
		}
		want := []kindSub{{subscription.ChangeUpserted, a.ID}, {subscription.ChangeUpserted, b.ID}, {subscription.ChangeUpserted, a.ID},
			{subscription.ChangeDeleted, b.ID}, {subscription.ChangeUpserted, c.ID}}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("changes %+v, want %+v", got, want)
		}
		if two, err := s.Changes(ctx, changes[1].Seq, 2); err != nil || len(two) != 2 || two[0].Seq != changes[2].Seq || two[1].Seq != changes[3].Seq {
			t.Fatalf("2 after the second: %+v, %v", two, err)
		}
		snap, seq, err := s.Snapshot(ctx)
		if err != nil || seq != changes[4].Seq || len(snap) != 2 || snap[0].ID != a.ID || snap[0].URL != "https://example.com/v2" || snap[1].ID != c.ID {
			t.Fatalf("snapshot %+v at %d, %v", snap, seq, err)
		}
		last := changes[4].Seq
		_, err = s.Changes(ctx, last+1, 0)
		wantErrIs(t, "changes after a number the store never gave", err, subscription.ErrFeedGap)

		// Pruning keeps the last ChangeRetention whatever it is asked:
		// asked for everything before t0+3h at t0+2h, only the 3 changes
		// made at t0 go.
		if n, err := s.PruneChanges(ctx, t0.Add(3*time.Hour)); err != nil || n != 3 {
			t.Fatalf("pruned %d, want the 3 older than 1h: %v", n, err)
		}
		setClock(t0.Add(2*time.Hour + 30*time.Minute))
		if n, err := s.PruneChanges(ctx, t0.Add(2*time.Hour+30*time.Minute)); err != nil || n != 0 {
			t.Fatalf("pruned %d changes younger than 1h: %v", n, err)
		}
		for _, after := range []int64{0, changes[0].Seq, changes[1].Seq} {
			_, err := s.Changes(ctx, after, 0)
			wantErrIs(t, fmt.Sprintf("changes after %d once pruned", after), err, subscription.ErrFeedGap)
		}
		if rest, err := s.Changes(ctx, changes[2].Seq, 0); err != nil || len(rest) != 2 || rest[0].Seq != changes[3].Seq {
			t.Fatalf("changes after the pruned ones: %+v, %v", rest, err)
		}
		// Everything pruned: the numbers go on from where they were.
		setClock(t0.Add(10 * time.Hour))
		if n, err := s.PruneChanges(ctx, t0.Add(10*time.Hour)); err != nil || n != 2 {
			t.Fatalf("pruned %d, want 2: %v", n, err)
		}
		if _, seq, err := s.Snapshot(ctx); err != nil || seq != last {
			t.Fatalf("snapshot of an empty feed at %d, want %d: %v", seq, last, err)
		}
		if rest, err := s.Changes(ctx, last, 0); err != nil || len(rest) != 0 {
			t.Fatalf("up to date on an empty feed: %+v, %v", rest, err)
		}
		_, err = s.Changes(ctx, last-1, 0)
		wantErrIs(t, "behind an empty feed", err, subscription.ErrFeedGap)
		if err := s.DeleteSubscription(ctx, "shop", c.ID); err != nil {
			t.Fatal(err)
		}
		if rest, err := s.Changes(ctx, last, 0); err != nil || len(rest) != 1 || rest[0].Seq <= last || rest[0].Kind != subscription.ChangeDeleted {
			t.Fatalf("a change after pruning all: %+v, %v", rest, err)
		}
	})
}

// On PostgreSQL, transactions writing changes at once must not let a
// reader skip one: the reader polls Changes and moves past what it saw,
// as an instance following the feed does, and must see every change the
// writers made.
func TestChangesConcurrentWritersPostgres(t *testing.T) {
	testenv.NeedService(t, "127.0.0.1:5432")
	var db testDB
	for _, d := range freshDBs(t) {
		if d.name == "postgres" {
			db = d
		}
	}
	ctx := context.Background()
	// Several stores, as several instances: each its own connections.
	writers := []*Store{db.open(t), db.open(t), db.open(t), db.open(t)}
	reader := db.open(t)
	mustApp(t, writers[0], "shop")
	const perWriter = 40
	const goroutinesPerStore = 3
	var wg sync.WaitGroup
	created := make(chan string, len(writers)*goroutinesPerStore*perWriter)
	for _, w := range writers {
		for range goroutinesPerStore {
			wg.Go(func() {
				for range perWriter {
					sub, err := w.CreateSubscription(ctx, subscription.Subscription{App: "shop", URL: "https://example.com", EventTypes: []string{"*"}})
					if err != nil {
						t.Error(err)
						return
					}
					created <- sub.ID
				}
			})
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()

	seen := map[string]bool{}
	var after int64
	poll := func() {
		changes, err := reader.Changes(ctx, after, 7)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range changes {
			if c.Seq <= after {
				t.Fatalf("change %d after %d", c.Seq, after)
			}
			after = c.Seq
			seen[c.Sub] = true
		}
	}
	for writing := true; writing; {
		select {
		case <-done:
			writing = false
		default:
		}
		poll()
	}
	close(created)
	// Catch up with what is left, then everything must have been seen.
	_, last, err := reader.feedBounds(ctx, reader.db)
	if err != nil {
		t.Fatal(err)
	}
	for after < last {
		poll()
	}
	n := 0
	for id := range created {
		n++
		if !seen[id] {
			t.Errorf("the reader skipped the creation of %s", id)
		}
	}
	if n != len(writers)*goroutinesPerStore*perWriter {
		t.Fatalf("%d subscriptions created", n)
	}
}

// rawSecrets is the stored secrets column of subscription id.
func rawSecrets(t *testing.T, db testDB, id string) string {
	t.Helper()
	var v string
	q := `SELECT secrets FROM hookbus_subscriptions WHERE id = ?`
	if db.name == "postgres" {
		q = `SELECT secrets FROM hookbus_subscriptions WHERE id = $1`
	}
	if err := db.raw.QueryRow(q, id).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

const (
	keyA = "6g8u8bCqkQ9Xz1mYbN0m1bXJ2p9k3pY4r8QeYb1x2Zs=" // base64 of 32 bytes
	keyB = "qUoX5ZpKx1oVbq9m0HfFq8h8y7bX9rXk4Y1pYh0m3aU="
)

func TestEncryptionAtRest(t *testing.T) {
	ctx := context.Background()
	for _, k := range []string{keyA, keyB} {
		if b, err := decodeKey(k); err != nil || len(b) != 32 {
			t.Fatalf("test key %s: %v", k, err)
		}
	}
	idA, idB := mustKeyID(t, keyA), mustKeyID(t, keyB)
	for _, db := range freshDBs(t) {
		t.Run(db.name, func(t *testing.T) {
			s := db.openWith(t, EncryptionKeys(keyA))
			mustApp(t, s, "shop")
			in := fullSubscription("shop")
			sub := mustSub(t, s, in)
			raw := rawSecrets(t, db, sub.ID)
			for _, sec := range in.Secrets {
				if strings.Contains(raw, sec.Value) || strings.Contains(raw, strings.TrimPrefix(sec.Value, "whsec_")) {
					t.Fatalf("the stored secrets hold a clear secret: %s", raw)
				}
			}
			if strings.Count(raw, encPrefix+idA+":") != 2 {
				t.Fatalf("stored secrets %s, want two values under key %s", raw, idA)
			}
			if got, err := s.GetSubscription(ctx, "shop", sub.ID); err != nil || !reflect.DeepEqual(got.Secrets, sub.Secrets) || got.Secrets[0].Value != in.Secrets[0].Value {
				t.Fatalf("read back: %+v, %v", got.Secrets, err)
			}
			if snap, _, err := s.Snapshot(ctx); err != nil || snap[0].Secrets[1].Value != in.Secrets[1].Value {
				t.Fatalf("snapshot: %+v, %v", snap, err)
			}
			// Each value is bound to its subscription: copied into another
			// row it does not decrypt.
			other := mustSub(t, s, subscription.Subscription{App: "shop", Secrets: []subscription.Secret{{Value: "whsec_b3RoZXI="}}})
			copyRaw(t, db, other.ID, raw)
			_, err := s.GetSubscription(ctx, "shop", other.ID)
			if !errors.Is(err, ErrEncryptionKey) || !strings.Contains(err.Error(), other.ID) {
				t.Fatalf("a value copied from another subscription: %v", err)
			}
			if err := s.DeleteSubscription(ctx, "shop", other.ID); err != nil {
				t.Fatal(err)
			}
			s.Close()

			// Without the key: a clear error naming the subscription, no secret in it.
			s = db.openWith(t)
			_, err = s.GetSubscription(ctx, "shop", sub.ID)
			wantNoKeyError(t, err, sub.ID, in, "store.encryption_key is not set")
			_, _, err = s.Snapshot(ctx)
			wantNoKeyError(t, err, sub.ID, in, idA)
			_, _, err = s.ListSubscriptions(ctx, "shop", subscription.SubscriptionQuery{}, subscription.Page{})
			wantNoKeyError(t, err, sub.ID, in, idA)
			s.Close()
			// With another key only: the same, naming the key id.
			s = db.openWith(t, EncryptionKeys(keyB))
			_, err = s.GetSubscription(ctx, "shop", sub.ID)
			wantNoKeyError(t, err, sub.ID, in, "neither store.encryption_key nor one of store.old_encryption_keys")
			s.Close()

			// Rotation: B is current, A still decrypts; new writes use B.
			s = db.openWith(t, EncryptionKeys(keyB, keyA))
			if got, err := s.GetSubscription(ctx, "shop", sub.ID); err != nil || got.Secrets[0].Value != in.Secrets[0].Value {
				t.Fatalf("with the old key: %+v, %v", got.Secrets, err)
			}
			sub2 := mustSub(t, s, subscription.Subscription{App: "shop", Secrets: []subscription.Secret{{Value: "whsec_c2Vjb25k"}}})
			if raw := rawSecrets(t, db, sub2.ID); !strings.Contains(raw, encPrefix+idB+":") {
				t.Fatalf("a new secret is not under the current key: %s", raw)
			}
			n, err := s.Reencrypt(ctx)
			if err != nil || n != 1 {
				t.Fatalf("reencrypt moved %d subscriptions, want 1: %v", n, err)
			}
			rawB := rawSecrets(t, db, sub.ID)
			if strings.Contains(rawB, idA) || strings.Count(rawB, encPrefix+idB+":") != 2 {
				t.Fatalf("after reencrypt: %s", rawB)
			}
			if n, err := s.Reencrypt(ctx); err != nil || n != 0 {
				t.Fatalf("a second reencrypt moved %d: %v", n, err)
			}
			changes, _ := s.Changes(ctx, 0, 0)
			s.Close()

			// The old key can go.
			s = db.openWith(t, EncryptionKeys(keyB))
			for _, id := range []string{sub.ID, sub2.ID} {
				if _, err := s.GetSubscription(ctx, "shop", id); err != nil {
					t.Fatalf("with the new key only: %v", err)
				}
			}
			if after, _ := s.Changes(ctx, 0, 0); len(after) != len(changes) {
				t.Fatalf("reencrypt recorded changes: %d then %d", len(changes), len(after))
			}
			s.Close()

			// Turning encryption off: no current key, B old: reencrypt stores them in clear.
			s = db.openWith(t, EncryptionKeys("", keyB))
			if n, err := s.Reencrypt(ctx); err != nil || n != 2 {
				t.Fatalf("decrypting reencrypt moved %d, want 2: %v", n, err)
			}
			if raw := rawSecrets(t, db, sub.ID); strings.Contains(raw, encPrefix) || !strings.Contains(raw, in.Secrets[0].Value) {
				t.Fatalf("after turning encryption off: %s", raw)
			}
			s.Close()
			s = db.openWith(t)
			if got, err := s.GetSubscription(ctx, "shop", sub.ID); err != nil || got.Secrets[1].Value != in.Secrets[1].Value {
				t.Fatalf("clear secrets read without a key: %+v, %v", got, err)
			}
			// A clear value that looks like a stored form reads back as it was.
			odd := mustSub(t, s, subscription.Subscription{App: "shop", Secrets: []subscription.Secret{{Value: "enc:v1:" + idA + ":AAAA"}, {Value: "plain:x"}}})
			if got, err := s.GetSubscription(ctx, "shop", odd.ID); err != nil || got.Secrets[0].Value != "enc:v1:"+idA+":AAAA" || got.Secrets[1].Value != "plain:x" {
				t.Fatalf("odd clear values: %+v, %v", got, err)
			}
			// Reencrypt stops at what it cannot decrypt, naming it, and
			// keeps what it did before.
			copyRaw(t, db, odd.ID, rawB)
			s.Close()
			s = db.openWith(t, EncryptionKeys(keyA))
			n, err = s.Reencrypt(ctx)
			wantNoKeyError(t, err, odd.ID, in, idB)
			if raw := rawSecrets(t, db, sub.ID); n != 2 || !strings.Contains(raw, encPrefix+idA+":") {
				t.Fatalf("reencrypt before the failure: %d moved, %s", n, raw)
			}
		})
	}
}

func mustKeyID(t *testing.T, k string) string {
	t.Helper()
	b, err := decodeKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return keyID(b)
}

func copyRaw(t *testing.T, db testDB, id, secrets string) {
	t.Helper()
	q := `UPDATE hookbus_subscriptions SET secrets = ? WHERE id = ?`
	if db.name == "postgres" {
		q = `UPDATE hookbus_subscriptions SET secrets = $1 WHERE id = $2`
	}
	if _, err := db.raw.Exec(q, secrets, id); err != nil {
		t.Fatal(err)
	}
}

func wantNoKeyError(t *testing.T, err error, sub string, in subscription.Subscription, says string) {
	t.Helper()
	if !errors.Is(err, ErrEncryptionKey) || !strings.Contains(err.Error(), sub) || !strings.Contains(err.Error(), says) {
		t.Fatalf("error %v; want ErrEncryptionKey naming %s and saying %q", err, sub, says)
	}
	for _, sec := range in.Secrets {
		if strings.Contains(err.Error(), sec.Value) {
			t.Fatalf("the error shows a secret: %v", err)
		}
	}
}

func TestOpenRefusesBadKeys(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		opt  Option
		want string
	}{
		{EncryptionKeys("not base64 at all!"), "store.encryption_key"},
		{EncryptionKeys("c2hvcnQ="), "store.encryption_key: decodes to 5 bytes"},
		{EncryptionKeys(keyA, keyB, "c2hvcnQ="), "store.old_encryption_keys[1]"},
	} {
		s, err := Open(context.Background(), "sqlite", "", dir, tc.opt)
		if err == nil {
			s.Close()
			t.Fatalf("opened with a bad key (want %q)", tc.want)
		}
		if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "c2hvcnQ") || strings.Contains(err.Error(), "not base64 at all") {
			t.Fatalf("error %v; want it to say %q and not quote the key", err, tc.want)
		}
	}
}
