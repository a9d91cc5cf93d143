package app

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hookbus/hookbus/core/subscription"
	"github.com/hookbus/hookbus/internal/testenv"
	"github.com/hookbus/hookbus/sdk"
)

const subscriptionsConfig = configHead + `reload: {watch: false}
sources:
  shop: {type: http}
sinks:
  partners:
    type: subscriptions
    config:
      allow_private_networks: true
      timeout: 2s
      subscription_max_in_flight: MIF
      retry: {schedule: [50ms, 50ms]}
pipelines:
  platform:
    from: [shop]
    to: [partners]
`

// A subscriptions sink configured in YAML delivers an ingested event to
// the subscription of its application registered in the store, through a
// reload of the sink; the host answers the API's test sends and SSRF
// question from it.
func TestSubscriptionsSinkInTheApp(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t)
	cfg := loadConfig(t, strings.ReplaceAll(subscriptionsConfig, "MIF", "8"))
	a := startApp(t, cfg)
	ctx := context.Background()
	if _, err := a.Store.CreateApplication(ctx, subscription.Application{ID: "acme", Name: "Acme"}); err != nil {
		t.Fatal(err)
	}
	sub, err := a.Store.CreateSubscription(ctx, subscription.Subscription{App: "acme", URL: rcv.srv.URL + "/hooks", EventTypes: []string{"order.*"},
		Secrets: []subscription.Secret{{Value: testSecret, Created: time.Now()}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Subscriptions.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	post(t, a, "shop", "application/json", `[{"id":"e1","type":"order.paid","application":"acme","data":{}},{"id":"e2","type":"order.paid","application":"globex","data":{}}]`)
	testenv.Eventually(t, 10*time.Second, "e1 delivered", func() bool { return len(rcv.attempts("e1")) == 1 })

	// A reload that changes the sink builds it again; deliveries go on.
	b, err := os.ReadFile(cfg.File)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg.File, []byte(strings.ReplaceAll(string(b), "subscription_max_in_flight: 8", "subscription_max_in_flight: 4")), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := a.Reload(ctx, "test")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(res.Changes.Changed, ","), "sink partners") {
		t.Fatalf("reload changes = %+v, want sink partners changed", res.Changes)
	}
	post(t, a, "shop", "application/json", `{"id":"e3","type":"order.shipped","application":"acme","data":{}}`)
	testenv.Eventually(t, 10*time.Second, "e3 delivered", func() bool { return len(rcv.attempts("e3")) == 1 })
	if n := len(rcv.attempts("e2")); n != 0 {
		t.Fatalf("another application's event was delivered %d times", n)
	}

	tr, err := a.SubscriptionTestSend(ctx, sub, sdk.Event{ID: "t1", Type: "hookbus.test", Data: []byte(`{}`)})
	if err != nil || tr.Outcome != "delivered" {
		t.Fatalf("test send: %+v, %v", tr, err)
	}
	if !a.AllowPrivateNetworks() {
		t.Fatal("AllowPrivateNetworks false with a sink that allows them")
	}
}

// Without a subscriptions sink a test send has nowhere to come from, and
// private networks are not allowed.
func TestNoSubscriptionsSink(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t)
	a := startApp(t, testConfig(t, "memory", rcv.srv.URL, pipelineSteps, ""))
	if _, err := a.SubscriptionTestSend(context.Background(), subscription.Subscription{}, sdk.Event{}); err != ErrNoSubscriptionsSink {
		t.Fatalf("test send without a subscriptions sink: %v", err)
	}
	if a.AllowPrivateNetworks() {
		t.Fatal("AllowPrivateNetworks true without a subscriptions sink")
	}
}

// A subscription written through the API is in this instance's live index
// when the answer arrives: the next event already uses it.
func TestAPIWritesReachTheLiveIndexAtOnce(t *testing.T) {
	t.Parallel()
	cfg := loadConfig(t, strings.ReplaceAll(subscriptionsConfig, "MIF", "8"))
	a := startApp(t, cfg)
	call := func(method, path, body string, want int) map[string]any {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+a.Addr()+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		if resp.StatusCode != want {
			t.Fatalf("%s %s = %d %v, want %d", method, path, resp.StatusCode, m, want)
		}
		return m
	}
	call("POST", "/v1/applications", `{"id":"acme","name":"Acme"}`, http.StatusCreated)
	sub := call("POST", "/v1/applications/acme/subscriptions", `{"url":"http://127.0.0.1:9/hooks","event_types":["order.*"]}`, http.StatusCreated)
	id, _ := sub["id"].(string)
	if _, ok := a.Subscriptions.Index().Get(id); !ok {
		t.Fatalf("subscription %s not in the live index right after its creation", id)
	}
	call("PATCH", "/v1/applications/acme/subscriptions/"+id, `{"disabled":true}`, http.StatusOK)
	if s, ok := a.Subscriptions.Index().Get(id); !ok || !s.Disabled {
		t.Fatalf("disabled subscription in the live index: %+v, %v", s, ok)
	}
	call("DELETE", "/v1/applications/acme/subscriptions/"+id, ``, http.StatusNoContent)
	if _, ok := a.Subscriptions.Index().Get(id); ok {
		t.Fatalf("deleted subscription %s still in the live index", id)
	}
}
