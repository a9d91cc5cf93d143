package subscriptions

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/hookbus/hookbus/core/signing"
	"github.com/hookbus/hookbus/core/subscription"
)

// ceArrival is an event the sdk-go receiver accepted, with the request's
// Content-Type.
type ceArrival struct {
	event       cloudevents.Event
	contentType string
}

// TestSubscriptionFormatCloudEvents delivers a subscription's events to a
// CloudEvents sdk-go receiver (StartReceiver on loopback) in binary mode,
// then, after a change of its format, in structured mode; a middleware
// refuses any request whose Standard Webhooks signature does not verify
// over the body.
func TestSubscriptionFormatCloudEvents(t *testing.T) {
	secret, err := signing.GenerateSecret()
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cts := make(chan string, 16)
	got := make(chan ceArrival, 16)
	p, err := cehttp.New(cehttp.WithListener(ln), cehttp.WithMiddleware(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			if err := verifier.Verify(body, r.Header); err != nil {
				http.Error(w, err.Error(), http.StatusUnauthorized)
				return
			}
			cts <- r.Header.Get("Content-Type")
			r.Body = io.NopCloser(bytes.NewReader(body))
			next.ServeHTTP(w, r)
		})
	}))
	if err != nil {
		t.Fatal(err)
	}
	c, err := cloudevents.NewClient(p)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- c.StartReceiver(ctx, func(e cloudevents.Event) { got <- ceArrival{event: e, contentType: <-cts} })
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("StartReceiver: %v", err)
		}
	})

	h := start(t, setup{})
	h.app("acme")
	sub, err := h.st.CreateSubscription(context.Background(), subscription.Subscription{App: "acme", URL: "http://" + ln.Addr().String() + "/",
		EventTypes: []string{"*"}, Format: "cloudevents-binary", Secrets: []subscription.Secret{{Value: secret, Created: time.Now()}}})
	if err != nil {
		t.Fatal(err)
	}
	h.seen(sub)
	next := func(what string) ceArrival {
		t.Helper()
		select {
		case a := <-got:
			return a
		case <-time.After(time.Minute):
			t.Fatalf("%s: the sdk-go receiver accepted nothing (dead letters: %+v)", what, h.deadLetters())
		}
		return ceArrival{}
	}

	h.publish(event("ce-1", "order.paid", "acme", `{"total":42.5}`))
	a := next("binary")
	if a.event.ID() != "ce-1" || a.event.Type() != "order.paid" || a.event.Source() != "shop" || string(a.event.Data()) != `{"total":42.5}` ||
		a.event.Extensions()["application"] != "acme" || a.contentType != "application/json" {
		t.Fatalf("binary: %s (Content-Type %q)", a.event, a.contentType)
	}

	h.change(sub, func(s *subscription.Subscription) { s.Format = "cloudevents-structured" })
	h.publish(event("ce-2", "order.paid", "acme", `{"total":1}`))
	a = next("structured")
	if a.event.ID() != "ce-2" || string(a.event.Data()) != `{"total":1}` || a.contentType != "application/cloudevents+json" ||
		a.event.Extensions()["application"] != "acme" {
		t.Fatalf("structured: %s (Content-Type %q)", a.event, a.contentType)
	}
}
