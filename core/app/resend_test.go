package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"

	"github.com/hookbus/hookbus/core/attempt"
	"github.com/hookbus/hookbus/core/subscription"
	"github.com/hookbus/hookbus/internal/testenv"
)

const resendConfig = `version: 1
server: {listen: "127.0.0.1:0", shutdown_timeout: 5s}
data_dir: DIR/data
queue: {driver: embedded}
reload: {watch: false}
sources:
  shop: {type: http}
  apps: {type: http}
sinks:
  partner:
    type: webhook
    config: {url: "PARTNER/hooks", secret: ` + testSecret + `, allow_private_networks: true, timeout: 2s, retry: {schedule: [50ms]}}
  partners:
    type: subscriptions
    config: {allow_private_networks: true, timeout: 2s, retry: {schedule: [50ms]}}
pipelines:
  orders: {from: [shop], to: [partner]}
  platform: {from: [apps], to: [partners]}
`

// resendFixture is an instance with a webhook sink (partner) and a
// subscriptions sink (partners) whose applications acme and globex have
// one subscription each, every endpoint a receiver.
type resendFixture struct {
	a                  *App
	partner, rA, rG    *receiver
	subA, subG, subDel subscription.Subscription
}

// newResendFixture starts the instance on a store of driver (sqlite or
// postgres, see storeBlock).
func newResendFixture(t *testing.T, driver string) *resendFixture {
	t.Helper()
	f := &resendFixture{partner: newReceiver(t), rA: newReceiver(t), rG: newReceiver(t)}
	y := strings.Replace(strings.ReplaceAll(resendConfig, "PARTNER", f.partner.srv.URL), "reload: {watch: false}\n", "reload: {watch: false}\n"+storeBlock(t, driver), 1)
	f.a = startApp(t, loadConfig(t, y))
	f.subscribe(t)
	return f
}

// subscribe makes the applications acme and globex, a subscription of
// each and one of acme's deleted since.
func (f *resendFixture) subscribe(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	for _, app := range []string{"acme", "globex"} {
		if _, err := f.a.Store.CreateApplication(ctx, subscription.Application{ID: app, Name: app}); err != nil {
			t.Fatal(err)
		}
	}
	mk := func(app string, r *receiver) subscription.Subscription {
		s, err := f.a.Store.CreateSubscription(ctx, subscription.Subscription{App: app, URL: r.srv.URL + "/hooks", EventTypes: []string{"order.*"},
			Secrets: []subscription.Secret{{Value: testSecret, Created: time.Now()}}})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	f.subA, f.subG, f.subDel = mk("acme", f.rA), mk("globex", f.rG), mk("acme", f.rA)
	if err := f.a.Store.DeleteSubscription(ctx, "acme", f.subDel.ID); err != nil {
		t.Fatal(err)
	}
	if err := f.a.Subscriptions.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
}

// onRecord is an event on record for sink, as its message carried it.
func onRecord(id, app, sink string, received time.Time) attempt.Event {
	appMember := ""
	if app != "" {
		appMember = fmt.Sprintf(`,"application":%q`, app)
	}
	pipeline, source := "orders", "shop"
	if sink == "partners" {
		pipeline, source = "platform", "apps"
	}
	return attempt.Event{ID: id, Sink: sink, Pipeline: pipeline, Source: source, Type: "order.paid", Application: app, ReceivedAt: received,
		Payload: json.RawMessage(fmt.Sprintf(`{"id":%q,"type":"order.paid","source":%q%s,"data":{"order":%q}}`, id, source, appMember, id))}
}

// ids lists the event ids r received, each checked to have come with its
// own id as webhook-id.
func receivedIDs(t *testing.T, r *receiver) []string {
	t.Helper()
	var out []string
	for _, d := range r.all() {
		if d.WebhookID != d.ID {
			t.Errorf("event %s came with webhook-id %q", d.ID, d.WebhookID)
		}
		out = append(out, d.ID)
	}
	slices.Sort(out)
	return out
}

// Resend sends exactly the given events again, with their own event id as
// webhook-id: to one subscription as new deliveries of the subscriptions
// sink (no other subscription gets them), to a plain webhook sink on its
// topic. Recover of an application's failed deliveries in a time range
// sends exactly those (not the delivered ones, not those outside the
// range, not those of a deleted subscription, which are scanned and
// skipped); run again, it queues nothing. A resend scoped to an
// application fails for another application's subscription or event, and
// an admin's resend never sends one application's event to another's
// subscription.
func TestResendAndRecover(t *testing.T) {
	for _, driver := range []string{"sqlite", "postgres"} {
		t.Run(driver, func(t *testing.T) {
			t.Parallel()
			testResendAndRecover(t, driver)
		})
	}
}

func testResendAndRecover(t *testing.T, driver string) {
	f := newResendFixture(t, driver)
	as := f.a.Store
	rs := f.a.resender()
	ctx := context.Background()
	// The delivery log as the engine writes it: each delivery's last
	// attempt (its second), with its event on record.
	record := func(ev attempt.Event, sub subscription.Subscription, outcome attempt.Outcome) {
		t.Helper()
		at := ev.ReceivedAt.Add(time.Minute)
		e := attempt.Entry{Attempt: attempt.Attempt{ID: watermill.NewULID(), EventID: ev.ID, EventType: ev.Type, Sink: ev.Sink, Pipeline: ev.Pipeline,
			Source: ev.Source, Application: sub.App, Subscription: sub.ID, Number: 2, StartedAt: at, Duration: time.Millisecond,
			ReceivedAt: ev.ReceivedAt, Outcome: outcome, StatusCode: 400, Error: "HTTP 400", WebhookID: ev.ID}, Event: &ev}
		if outcome == attempt.Delivered {
			e.Attempt.StatusCode, e.Attempt.Error = 204, ""
		}
		if err := as.WriteAttempts(ctx, []attempt.Entry{e}); err != nil {
			t.Fatal(err)
		}
	}
	since := time.Now().Add(-2 * time.Hour)
	in := since.Add(30 * time.Minute)
	for _, ev := range []struct {
		id, app string
		at      time.Time
		sub     subscription.Subscription
		outcome attempt.Outcome
	}{
		{"e1", "acme", in, f.subA, attempt.Failed},
		{"e2", "acme", in.Add(time.Minute), f.subA, attempt.Failed},
		{"e3", "acme", in.Add(2 * time.Minute), f.subA, attempt.Delivered},
		{"e4", "acme", since.Add(-time.Minute), f.subA, attempt.Failed},   // before the range
		{"e5", "acme", in.Add(3 * time.Minute), f.subDel, attempt.Failed}, // its subscription was deleted
		{"g1", "globex", in.Add(4 * time.Minute), f.subG, attempt.Failed}, // another application's
	} {
		record(onRecord(ev.id, ev.app, "partners", ev.at), ev.sub, ev.outcome)
	}
	record(onRecord("p1", "", "partner", in), subscription.Subscription{}, attempt.Failed)

	// Refused before anything is queued.
	refused := []struct {
		name string
		req  attempt.ResendRequest
		want string
	}{
		{"unknown event", attempt.ResendRequest{EventIDs: []string{"e1", "nope"}, Subscription: f.subA.ID}, `"nope"`},
		{"unknown subscription", attempt.ResendRequest{EventIDs: []string{"e1"}, Subscription: "sub_nope"}, "sub_nope"},
		{"deleted subscription", attempt.ResendRequest{EventIDs: []string{"e1"}, Subscription: f.subDel.ID}, f.subDel.ID},
		{"unknown sink", attempt.ResendRequest{EventIDs: []string{"p1"}, Sink: "nope"}, `"nope"`},
		{"app token, another application's subscription", attempt.ResendRequest{EventIDs: []string{"e1"}, Subscription: f.subG.ID, Application: "acme"}, f.subG.ID},
		{"app token, another application's event", attempt.ResendRequest{EventIDs: []string{"g1"}, Subscription: f.subA.ID, Application: "acme"}, `"g1"`},
		{"app token, a sink", attempt.ResendRequest{EventIDs: []string{"e1"}, Sink: "partners", Application: "acme"}, "subscription"}, // refused
		{"admin, one application's event to another's subscription", attempt.ResendRequest{EventIDs: []string{"g1"}, Subscription: f.subA.ID}, `"g1"`},
	}
	for _, tc := range refused {
		n, err := rs.Resend(ctx, tc.req)
		want := attempt.ErrNotFound
		if tc.name == "app token, a sink" {
			want = attempt.ErrRefused // exists, but not for an application to ask
		}
		if !errors.Is(err, want) || !strings.Contains(err.Error(), tc.want) || n != 0 {
			t.Errorf("%s: Resend = %d, %v; want %v naming %s", tc.name, n, err, want, tc.want)
		}
	}

	// Resend to a subscription, and to a plain sink.
	if n, err := rs.Resend(ctx, attempt.ResendRequest{EventIDs: []string{"e1", "e3"}, Subscription: f.subA.ID, Application: "acme"}); err != nil || n != 2 {
		t.Fatalf("resend to subscription: %d, %v", n, err)
	}
	if n, err := rs.Resend(ctx, attempt.ResendRequest{EventIDs: []string{"p1"}, Sink: "partner"}); err != nil || n != 1 {
		t.Fatalf("resend to sink: %d, %v", n, err)
	}
	testenv.Eventually(t, 30*time.Second, "the resends delivered", func() bool {
		return len(f.rA.all()) >= 2 && len(f.partner.all()) >= 1
	})

	// Recover acme's failed deliveries of the range: e2 only (e1 is
	// queued already, e3 delivered, e4 before the range, e5's subscription
	// deleted, g1 globex's).
	// One delivery a page: the first has e2, the second e5's, skipped.
	q := attempt.RecoverQuery{Application: "acme", Since: since, Until: time.Now(), Limit: 1}
	res, err := rs.Recover(ctx, q)
	if err != nil || res.Queued != 1 || res.Scanned != 1 || res.Cursor == "" {
		t.Fatalf("recover, first page = %+v, %v; want 1 queued of 1 scanned, and a cursor", res, err)
	}
	next := q
	next.Cursor = res.Cursor
	if res, err = rs.Recover(ctx, next); err != nil || res.Queued != 0 || res.Scanned != 1 {
		t.Fatalf("recover, second page = %+v, %v; want the deleted subscription's delivery scanned and skipped", res, err)
	}
	if res, err := rs.Recover(ctx, q); err != nil || res.Queued != 0 {
		t.Fatalf("recover run again = %+v, %v; want nothing queued", res, err)
	}
	testenv.Eventually(t, 30*time.Second, "the recovered delivery delivered", func() bool { return len(f.rA.attempts("e2")) == 1 })

	// A marker behind everything: once it arrives, nothing else is coming.
	if n, err := rs.Resend(ctx, attempt.ResendRequest{EventIDs: []string{"e3"}, Subscription: f.subA.ID}); err != nil || n != 1 {
		t.Fatalf("marker resend: %d, %v", n, err)
	}
	testenv.Eventually(t, 30*time.Second, "the marker delivered", func() bool { return len(f.rA.attempts("e3")) == 2 })
	if got, want := receivedIDs(t, f.rA), []string{"e1", "e2", "e3", "e3"}; !slices.Equal(got, want) {
		t.Errorf("acme's subscription received %v, want %v", got, want)
	}
	if got := receivedIDs(t, f.rG); len(got) != 0 {
		t.Errorf("globex's subscription received %v, want nothing", got)
	}
	if got := receivedIDs(t, f.partner); !slices.Equal(got, []string{"p1"}) {
		t.Errorf("the webhook sink received %v, want [p1]", got)
	}
	if d := f.rA.attempts("e1"); len(d) == 1 && string(d[0].Event.Data) != `{"order":"e1"}` {
		t.Errorf("e1 resent with data %s, want the payload on record", d[0].Event.Data)
	}

	// Two applications' events share an id (ids come from producers):
	// globex's is on record for the sink first, acme's delivery of its own
	// "dup" failed. Neither a recover nor an admin's resend sends globex's
	// payload to acme's URL.
	dupAt := since.Add(-30 * time.Minute)
	record(onRecord("dup", "globex", "partners", dupAt), f.subG, attempt.Delivered)
	record(onRecord("dup", "acme", "partners", dupAt), f.subA, attempt.Failed)
	if res, err := rs.Recover(ctx, attempt.RecoverQuery{Subscription: f.subA.ID, Since: dupAt, Until: dupAt.Add(time.Second)}); err != nil || res.Queued != 0 || res.Scanned != 1 {
		t.Errorf("recover of a delivery whose record is another application's = %+v, %v; want 1 scanned, none queued", res, err)
	}
	if n, err := rs.Resend(ctx, attempt.ResendRequest{EventIDs: []string{"dup"}, Subscription: f.subA.ID}); !errors.Is(err, attempt.ErrNotFound) || n != 0 || strings.Contains(err.Error(), "globex") {
		t.Errorf("admin resend of another application's record = %d, %v; want not found, not naming globex", n, err)
	}
}
