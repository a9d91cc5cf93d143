package app

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hookbus/hookbus/core/attempt"
	"github.com/hookbus/hookbus/core/deadletter"
	"github.com/hookbus/hookbus/core/operational"
	"github.com/hookbus/hookbus/core/pipeline"
	"github.com/hookbus/hookbus/core/subscription"
	"github.com/hookbus/hookbus/internal/testenv"
)

const operationalConfig = `version: 1
server: {listen: "127.0.0.1:0", shutdown_timeout: 5s}
data_dir: DIR/data
queue: {driver: embedded}
reload: {watch: false}
operational_events: {source: hookbus-ops, failing_after: 2}
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
  pager:
    type: webhook
    config: {url: "PAGER/ops", secret: ` + testSecret + `, allow_private_networks: true, timeout: 2s, retry: {schedule: []}}
pipelines:
  orders: {from: [shop], to: [partner]}
  platform: {from: [apps], to: [partners]}
  ops: {from: [hookbus-ops], to: [pager]}
`

// opsEvent is an operational event as the pager received it.
type opsEvent struct {
	id, typ, source, subject string
	data                     operational.Data
}

func opsEvents(t *testing.T, r *receiver) []opsEvent {
	t.Helper()
	var out []opsEvent
	for _, d := range r.all() {
		var data operational.Data
		if err := json.Unmarshal(d.Event.Data, &data); err != nil {
			t.Fatalf("operational event %s: data %s: %v", d.ID, d.Event.Data, err)
		}
		if d.WebhookID != d.ID {
			t.Errorf("operational event %s came with webhook-id %s", d.ID, d.WebhookID)
		}
		// An event about an application's deliveries names it as its
		// application attribute (a subscriptions sink gives it to that
		// application only); one about a plain sink names none.
		var app string
		if raw, ok := d.Event.Extensions["application"]; ok {
			_ = json.Unmarshal(raw, &app)
		}
		if app != data.Application {
			t.Errorf("operational event %s has application attribute %q, data.application %q", d.ID, app, data.Application)
		}
		out = append(out, opsEvent{id: d.ID, typ: d.Event.Type, source: d.Event.Source, subject: d.Event.Subject, data: data})
	}
	return out
}

// find returns the operational events of type typ about event id (any
// event when id is "").
func find(evs []opsEvent, typ, eventID string) []opsEvent {
	var out []opsEvent
	for _, e := range evs {
		if e.typ == typ && (eventID == "" || e.data.EventID == eventID) {
			out = append(out, e)
		}
	}
	return out
}

// The four operational events reach a webhook sink through a pipeline
// reading the operational events' source (declared nowhere else), with
// the fields of each type: delivery.exhausted for a webhook sink's
// delivery that used its retries and for permanent failures (a
// subscription's too), delivery.failing at a subscription's
// failing_after-th failure in a row, subscription.recovered at its next
// delivered attempt, subscription.disabled when it answers 410. None is
// made about an operational event's own delivery, even a failed one.
func TestOperationalEventsReachAWebhookSink(t *testing.T) {
	t.Parallel()
	partner, sub, pager := newReceiver(t), newReceiver(t), newReceiver(t)
	y := strings.NewReplacer("PARTNER", partner.srv.URL, "PAGER", pager.srv.URL).Replace(operationalConfig)
	a := startApp(t, loadConfig(t, y))
	ctx := context.Background()
	if _, err := a.Store.CreateApplication(ctx, subscription.Application{ID: "acme", Name: "Acme"}); err != nil {
		t.Fatal(err)
	}
	s1, err := a.Store.CreateSubscription(ctx, subscription.Subscription{App: "acme", URL: sub.srv.URL + "/hooks", EventTypes: []string{"order.*"},
		Secrets: []subscription.Secret{{Value: testSecret, Created: time.Now()}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Subscriptions.Refresh(ctx); err != nil {
		t.Fatal(err)
	}

	// The webhook sink: x1 fails both its attempts, x2 permanently; the
	// pager refuses x3's delivery.exhausted, which is dead-lettered and
	// makes no event of its own.
	partner.answer("x1", response{status: 500}, response{status: 500})
	partner.answer("x2", response{status: 422})
	partner.answer("x3", response{status: 400})
	x3Exhausted := operational.ID(operational.DeliveryExhausted, "shop", "orders", "partner", "", "x3", "")
	pager.answer(x3Exhausted, response{status: 400})
	if status, body := post(t, a, "shop", "application/json", `[{"id":"x1","type":"order.paid"},{"id":"x2","type":"order.paid"},{"id":"x3","type":"order.paid"}]`); status != http.StatusAccepted {
		t.Fatalf("ingest: %d %v", status, body)
	}
	// The subscription: b1 and b2 fail (400), b3 is delivered, b4 is
	// answered 410 Gone.
	sub.answer("b1", response{status: 400})
	sub.answer("b2", response{status: 400})
	sub.answer("b4", response{status: 410})
	for _, id := range []string{"b1", "b2", "b3", "b4"} {
		// One at a time: the run of failures is counted in order.
		if status, body := post(t, a, "apps", "application/json", `{"id":"`+id+`","type":"order.paid","application":"acme"}`); status != http.StatusAccepted {
			t.Fatalf("ingest %s: %d %v", id, status, body)
		}
		// Its outcome counted by the sink, not only its request received:
		// the attempt is in the delivery log once the sink has judged it.
		testenv.Eventually(t, 30*time.Second, id+" tried and judged", func() bool {
			as, _, err := a.Attempts.ListAttempts(ctx, attempt.Filter{EventID: id})
			return len(sub.attempts(id)) == 1 && err == nil && len(as) == 1
		})
	}

	testenv.Eventually(t, 60*time.Second, "every operational event at the pager", func() bool {
		evs := opsEvents(t, pager)
		return len(find(evs, operational.DeliveryExhausted, "")) >= 6 && len(find(evs, operational.DeliveryFailing, "")) >= 1 &&
			len(find(evs, operational.SubscriptionRecovered, "")) >= 1 && len(find(evs, operational.SubscriptionDisabled, "")) >= 1 &&
			len(pager.attempts(x3Exhausted)) == 1
	})
	// The pager's dead letter of x3's event is on record: an event about
	// it would have been published before it.
	testenv.Eventually(t, 30*time.Second, "the pager's dead letter recorded", func() bool {
		dls, err := a.Store.ListDeadLetters(ctx, deadletter.Filter{Sink: "pager"})
		return err == nil && len(dls) == 1
	})
	evs := opsEvents(t, pager)
	for _, e := range evs {
		if e.source != "hookbus-ops" || !strings.HasPrefix(e.id, "op_") {
			t.Errorf("operational event %+v: source %q, id %q", e, e.source, e.id)
		}
		if e.data.Sink == "pager" || e.data.Pipeline == "ops" {
			t.Errorf("an operational event about an operational event's delivery: %+v", e)
		}
	}

	exhausted := func(eventID string) operational.Data {
		t.Helper()
		got := find(evs, operational.DeliveryExhausted, eventID)
		if len(got) != 1 {
			t.Fatalf("delivery.exhausted of %s: %d events, want 1: %+v", eventID, len(got), evs)
		}
		return got[0].data
	}
	want := operational.Data{EventID: "x1", EventType: "order.paid", Sink: "partner", Pipeline: "orders", Attempts: 2, LastStatus: 500, LastReason: exhausted("x1").LastReason, Kind: "exhausted"}
	if d := exhausted("x1"); d != want || d.LastReason == "" {
		t.Errorf("x1 exhausted: %+v, want %+v", d, want)
	}
	if d := exhausted("x2"); d.Kind != "permanent" || d.Attempts != 1 || d.LastStatus != 422 || d.Sink != "partner" || d.Subscription != "" {
		t.Errorf("x2 exhausted: %+v", d)
	}
	if got := find(evs, operational.DeliveryExhausted, "x1"); got[0].subject != "partner" {
		t.Errorf("x1 exhausted subject %q, want the sink", got[0].subject)
	}
	for _, id := range []string{"b1", "b2", "b4"} {
		d := exhausted(id)
		if d.Kind != "permanent" || d.Sink != "partners" || d.Pipeline != "platform" || d.Application != "acme" || d.Subscription != s1.ID || d.Attempts != 1 {
			t.Errorf("%s exhausted: %+v", id, d)
		}
	}
	if got := find(evs, operational.DeliveryExhausted, "b1"); got[0].subject != s1.ID {
		t.Errorf("b1 exhausted subject %q, want the subscription", got[0].subject)
	}

	failing := find(evs, operational.DeliveryFailing, "")
	if len(failing) != 1 {
		t.Fatalf("delivery.failing: %+v, want one", failing)
	}
	if f := failing[0]; f.subject != s1.ID || f.data.EventID != "b2" || f.data.Attempts != 2 || f.data.LastStatus != 400 ||
		f.data.Application != "acme" || f.data.Subscription != s1.ID || f.data.Sink != "partners" || f.data.FailingSince.IsZero() {
		t.Errorf("delivery.failing = %+v", f)
	}
	recovered := find(evs, operational.SubscriptionRecovered, "")
	if len(recovered) != 1 {
		t.Fatalf("subscription.recovered: %+v, want one", recovered)
	}
	if r := recovered[0]; r.subject != s1.ID || r.data.EventID != "b3" || r.data.Attempts != 2 || !r.data.FailingSince.Equal(failing[0].data.FailingSince) {
		t.Errorf("subscription.recovered = %+v (failing since %v)", r, failing[0].data.FailingSince)
	}
	disabled := find(evs, operational.SubscriptionDisabled, "")
	if len(disabled) != 1 {
		t.Fatalf("subscription.disabled: %+v, want one", disabled)
	}
	if d := disabled[0]; d.subject != s1.ID || d.data.EventID != "b4" || d.data.LastStatus != 410 || d.data.DisabledReason != "410 Gone" || d.data.Application != "acme" {
		t.Errorf("subscription.disabled = %+v", d)
	}
	if got, _ := a.Store.GetSubscription(ctx, "acme", s1.ID); !got.Disabled {
		t.Errorf("subscription not disabled in the store")
	}
	// x1 queued again (as a resend does) is a new delivery: its
	// exhaustion is a new event.
	partner.answer("x1", response{status: 500}, response{status: 500})
	if err := a.Engine.Redeliver(ctx, []pipeline.Redelivery{{Event: attempt.Event{ID: "x1", Sink: "partner", Pipeline: "orders", Source: "shop", Type: "order.paid",
		ReceivedAt: time.Now(), Payload: json.RawMessage(`{"id":"x1","type":"order.paid"}`)}, ID: "resend/test/x1"}}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, "x1's second exhaustion told", func() bool {
		return len(find(opsEvents(t, pager), operational.DeliveryExhausted, "x1")) == 2
	})
	evs = opsEvents(t, pager)
	ids := make([]string, 0, len(evs))
	for _, e := range evs {
		ids = append(ids, e.id)
	}
	slices.Sort(ids)
	if len(slices.Compact(ids)) != len(evs) {
		t.Errorf("an operational event arrived twice: %v", ids)
	}
}

// operational_events may be set by a reload: from then on the events flow
// into the new source's pipeline.
func TestOperationalEventsSetByAReload(t *testing.T) {
	t.Parallel()
	partner, pager := newReceiver(t), newReceiver(t)
	full := strings.NewReplacer("PARTNER", partner.srv.URL, "PAGER", pager.srv.URL).Replace(operationalConfig)
	without := strings.Replace(strings.Replace(full, "operational_events: {source: hookbus-ops, failing_after: 2}\n", "", 1),
		"  ops: {from: [hookbus-ops], to: [pager]}\n", "", 1)
	cfg := loadConfig(t, without)
	a := startApp(t, cfg)
	partner.answer("r1", response{status: 400})
	if status, body := post(t, a, "shop", "application/json", `{"id":"r1","type":"order.paid"}`); status != http.StatusAccepted {
		t.Fatalf("ingest: %d %v", status, body)
	}
	testenv.Eventually(t, 30*time.Second, "r1 dead-lettered", func() bool {
		dls, err := a.Store.ListDeadLetters(context.Background(), deadletter.Filter{Sink: "partner"})
		return err == nil && len(dls) == 1
	})
	if err := os.WriteFile(cfg.File, []byte(strings.ReplaceAll(full, "DIR", filepath.Dir(cfg.File))), 0o644); err != nil {
		t.Fatal(err)
	}
	if res, err := a.Reload(context.Background(), "test"); err != nil || !res.OK {
		t.Fatalf("reload: %+v, %v", res, err)
	}
	partner.answer("r2", response{status: 400})
	if status, body := post(t, a, "shop", "application/json", `{"id":"r2","type":"order.paid"}`); status != http.StatusAccepted {
		t.Fatalf("ingest: %d %v", status, body)
	}
	testenv.Eventually(t, 30*time.Second, "r2's delivery.exhausted at the pager", func() bool {
		return len(find(opsEvents(t, pager), operational.DeliveryExhausted, "r2")) == 1
	})
	if got := find(opsEvents(t, pager), operational.DeliveryExhausted, "r1"); len(got) != 0 {
		t.Errorf("an event from before the reload: %+v", got)
	}
}
