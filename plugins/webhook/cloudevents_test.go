package webhook_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/hookbus/hookbus/core/batching"
	httpsource "github.com/hookbus/hookbus/plugins/http"
	"github.com/hookbus/hookbus/plugins/webhook"
	"github.com/hookbus/hookbus/sdk"
)

const ceSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// ceDelivery is what the CloudEvents SDK receiver handed over, with the
// raw request it came in.
type ceDelivery struct {
	event  cloudevents.Event
	header http.Header
	body   []byte
}

// ceReceiver is a CloudEvents sdk-go receiver (StartReceiver) on loopback.
// A middleware in front of it checks the Standard Webhooks signature over
// the exact body with the official library and answers 401 when it does
// not verify, so an accepted delivery is both a valid CloudEvent and a
// signed one.
type ceReceiver struct {
	url string
	got chan ceDelivery
}

func newCEReceiver(t *testing.T) *ceReceiver {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := standardwebhooks.NewWebhook(ceSecret)
	if err != nil {
		t.Fatal(err)
	}
	rc := &ceReceiver{url: "http://" + ln.Addr().String() + "/", got: make(chan ceDelivery, 16)}
	raw := make(chan ceDelivery, 16)
	verify := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			if err := verifier.Verify(body, r.Header); err != nil {
				http.Error(w, "signature: "+err.Error(), http.StatusUnauthorized)
				return
			}
			raw <- ceDelivery{header: r.Header.Clone(), body: body}
			r.Body = io.NopCloser(bytes.NewReader(body))
			next.ServeHTTP(w, r)
		})
	}
	p, err := cehttp.New(cehttp.WithListener(ln), cehttp.WithMiddleware(verify))
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
		done <- c.StartReceiver(ctx, func(_ context.Context, e cloudevents.Event) {
			d := <-raw // the middleware ran first, for this request
			d.event = e
			rc.got <- d
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("StartReceiver: %v", err)
		}
	})
	return rc
}

func ceSink(t *testing.T, url, format string) *webhook.Webhook {
	t.Helper()
	w, err := webhook.New(webhook.Config{URL: url, Secret: ceSecret, AllowPrivateNetworks: true, Format: format})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close(context.Background()) })
	return w
}

// TestCloudEventsSDKReceiver delivers events in both CloudEvents modes to a
// real sdk-go receiver: JSON data, text data and binary data (data_base64),
// with extension attributes and metadata, signed over the body sent.
func TestCloudEventsSDKReceiver(t *testing.T) {
	t.Parallel()
	png := []byte{0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0x00, 0xff, 0xfe}
	when := time.Date(2026, 5, 1, 12, 0, 0, 123456789, time.UTC)
	str := func(s string) json.RawMessage { b, _ := json.Marshal(s); return b }
	events := []struct {
		name     string
		ev       sdk.Event
		wantData []byte
		wantCT   string
	}{
		{name: "json data", ev: sdk.Event{ID: "ce-json", Type: "order.paid", Source: "/shop", Subject: "orders/1001", Time: when,
			Data: json.RawMessage(`{"total": 42.5, "items": [1, 2]}`), Metadata: map[string]string{"tenant": "t 1 é"},
			Extensions: map[string]json.RawMessage{"specversion": str("1.0"), "traceparent": str("00-abc-01"),
				"application": str("acme"), "priority": json.RawMessage(`3`), "urgent": json.RawMessage(`true`)}},
			wantData: []byte(`{"total":42.5,"items":[1,2]}`), wantCT: "application/json"},
		{name: "text data", ev: sdk.Event{ID: "ce-text", Type: "note", Source: "/notes", Time: when,
			DataContentType: "text/plain; charset=utf-8", Data: str("héllo \"world\"\n")},
			wantData: []byte("héllo \"world\"\n"), wantCT: "text/plain; charset=utf-8"},
		{name: "binary data_base64", ev: sdk.Event{ID: "ce-bin", Type: "image", Source: "/img", Time: when, DataContentType: "image/png",
			Extensions: map[string]json.RawMessage{"data_base64": str(base64.StdEncoding.EncodeToString(png))}},
			wantData: png, wantCT: "image/png"},
		{name: "no data", ev: sdk.Event{ID: "ce-none", Type: "ping", Time: when}},
	}
	for _, format := range []string{"cloudevents-structured", "cloudevents-binary"} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			rc := newCEReceiver(t)
			sink := ceSink(t, rc.url, format)
			for _, tt := range events {
				a := sink.DeliverAttempt(context.Background(), sdk.Delivery{Event: tt.ev, Attempt: 1})
				if a.Result.Outcome != sdk.OK {
					t.Fatalf("%s: outcome %v (%s), status %d, body %q", tt.name, a.Result.Outcome, a.Result.Reason, a.Result.StatusCode, a.ResponseBody)
				}
				d := <-rc.got
				e := d.event
				if e.SpecVersion() != "1.0" || e.ID() != tt.ev.ID || e.Type() != tt.ev.Type || !e.Time().Equal(when) {
					t.Fatalf("%s: got %s", tt.name, e)
				}
				wantSource := tt.ev.Source
				if wantSource == "" {
					wantSource = "hookbus"
				}
				if e.Source() != wantSource || e.Subject() != tt.ev.Subject {
					t.Fatalf("%s: source %q subject %q", tt.name, e.Source(), e.Subject())
				}
				if got := e.Data(); string(compactJSON(got, tt.wantCT)) != string(tt.wantData) {
					t.Fatalf("%s: data %q, want %q", tt.name, got, tt.wantData)
				}
				if e.DataContentType() != tt.wantCT {
					t.Fatalf("%s: datacontenttype %q, want %q", tt.name, e.DataContentType(), tt.wantCT)
				}
				if d.header.Get("Webhook-Id") != tt.ev.ID {
					t.Fatalf("%s: webhook-id %q", tt.name, d.header.Get("Webhook-Id"))
				}
				switch format {
				case "cloudevents-structured":
					if ct := d.header.Get("Content-Type"); ct != "application/cloudevents+json" {
						t.Fatalf("%s: Content-Type %q", tt.name, ct)
					}
					if tt.name == "binary data_base64" && !bytes.Contains(d.body, []byte(`"data_base64":"`+base64.StdEncoding.EncodeToString(png)+`"`)) {
						t.Fatalf("%s: body %s has no data_base64", tt.name, d.body)
					}
				case "cloudevents-binary":
					if !bytes.Equal(d.body, e.Data()) {
						t.Fatalf("%s: body %q is not the data %q", tt.name, d.body, e.Data())
					}
					if ct := d.header.Get("Content-Type"); ct != tt.wantCT {
						t.Fatalf("%s: Content-Type %q, want %q", tt.name, ct, tt.wantCT)
					}
				}
				if tt.name == "json data" {
					ext := e.Extensions()
					if ext["traceparent"] != "00-abc-01" || ext["application"] != "acme" {
						t.Fatalf("extensions %v", ext)
					}
					if format == "cloudevents-structured" {
						// Typed in the JSON format; strings in headers.
						if ext["priority"] != int32(3) || ext["urgent"] != true || ext["tenant"] != "t 1 é" {
							t.Fatalf("extensions %v (%T %T)", ext, ext["priority"], ext["urgent"])
						}
					} else if ext["priority"] != "3" || ext["urgent"] != "true" || ext["tenant"] != "t%201%20%C3%A9" {
						// sdk-go hands header values over as sent; the binding
						// percent-encodes space and non-ASCII.
						t.Fatalf("extensions %v", ext)
					}
				}
			}
		})
	}
	// The default format is hookbus' envelope: not a CloudEvent, which is
	// why the CloudEvents formats exist.
	t.Run("json", func(t *testing.T) {
		t.Parallel()
		rc := newCEReceiver(t)
		a := ceSink(t, rc.url, "").DeliverAttempt(context.Background(), sdk.Delivery{Event: events[0].ev, Attempt: 1})
		if a.Result.Outcome == sdk.OK || a.Result.StatusCode != http.StatusUnsupportedMediaType {
			t.Fatalf("json body: outcome %v, status %d", a.Result.Outcome, a.Result.StatusCode)
		}
	})
}

// compactJSON compacts JSON data so two spellings compare equal.
func compactJSON(b []byte, ct string) []byte {
	if ct != "application/json" {
		return b
	}
	var buf bytes.Buffer
	if json.Compact(&buf, b) != nil {
		return b
	}
	return buf.Bytes()
}

// TestCloudEventsRoundTrip sends CloudEvents with the sdk-go client to the
// http source's parser and delivers what it made with the webhook sink to
// an sdk-go receiver: data, data_base64 and datacontenttype come out as
// they went in, in both modes each way.
func TestCloudEventsRoundTrip(t *testing.T) {
	t.Parallel()
	parsed := make(chan sdk.Event, 1)
	ingest := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		evs, err := httpsource.Parse(r, 0)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		parsed <- evs[0]
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(ingest.Close)

	bin := []byte{0, 1, 2, 0xfe, 0xff}
	inputs := []struct {
		name string
		data []byte
		ct   string
	}{
		{"json", []byte(`{"a":1}`), "application/json"},
		{"text", []byte("plain text"), "text/plain"},
		{"binary", bin, "application/octet-stream"},
	}
	for _, in := range []string{"structured", "binary"} {
		for _, out := range []string{"cloudevents-structured", "cloudevents-binary"} {
			t.Run(in+" to "+out, func(t *testing.T) {
				t.Parallel()
				rc := newCEReceiver(t)
				sink := ceSink(t, rc.url, out)
				p, err := cloudevents.NewHTTP(cloudevents.WithTarget(ingest.URL))
				if err != nil {
					t.Fatal(err)
				}
				client, err := cloudevents.NewClient(p)
				if err != nil {
					t.Fatal(err)
				}
				for _, tt := range inputs {
					e := cloudevents.NewEvent()
					e.SetID("rt-" + tt.name)
					e.SetType("round.trip")
					e.SetSource("/rt")
					e.SetExtension("traceparent", "00-rt")
					if err := e.SetData(tt.ct, tt.data); err != nil {
						t.Fatal(err)
					}
					ctx := context.Background()
					if in == "structured" {
						ctx = cloudevents.WithEncodingStructured(ctx)
					} else {
						ctx = cloudevents.WithEncodingBinary(ctx)
					}
					if res := client.Send(ctx, e); !cloudevents.IsACK(res) {
						t.Fatalf("%s: send to ingest: %v", tt.name, res)
					}
					var ev sdk.Event
					select {
					case ev = <-parsed:
					case <-time.After(time.Minute):
						t.Fatal("nothing parsed")
					}
					a := sink.DeliverAttempt(context.Background(), sdk.Delivery{Event: ev, Attempt: 1})
					if a.Result.Outcome != sdk.OK {
						t.Fatalf("%s: outcome %v (%s), status %d, body %q", tt.name, a.Result.Outcome, a.Result.Reason, a.Result.StatusCode, a.ResponseBody)
					}
					got := (<-rc.got).event
					if !bytes.Equal(compactJSON(got.Data(), tt.ct), tt.data) || !strings.HasPrefix(got.DataContentType(), tt.ct) {
						t.Fatalf("%s: data %q (%s), want %q (%s); hookbus held %s", tt.name, got.Data(), got.DataContentType(), tt.data, tt.ct, mustJSON(ev))
					}
					if got.ID() != e.ID() || got.Source() != "/rt" || got.Extensions()["traceparent"] != "00-rt" {
						t.Fatalf("%s: got %s", tt.name, got)
					}
				}
			})
		}
	}
}

func mustJSON(ev sdk.Event) string {
	b, _ := json.Marshal(ev)
	return string(b)
}

// An event CloudEvents cannot carry is a permanent failure naming the
// member, and nothing is sent.
func TestCloudEventsRefusedEventIsNotSent(t *testing.T) {
	t.Parallel()
	hits := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { hits <- struct{}{} }))
	t.Cleanup(srv.Close)
	ev := sdk.Event{ID: "bad-1", Type: "t", Extensions: map[string]json.RawMessage{"x-ext": json.RawMessage(`"v"`)}}
	for _, format := range []string{"cloudevents-structured", "cloudevents-binary"} {
		a := ceSink(t, srv.URL, format).DeliverAttempt(context.Background(), sdk.Delivery{Event: ev, Attempt: 1})
		if a.Result.Outcome != sdk.Permanent || !strings.Contains(a.Result.Reason, format+": x-ext is not a CloudEvents attribute name") {
			t.Fatalf("%s: %+v", format, a.Result)
		}
	}
	select {
	case <-hits:
		t.Fatal("a request was sent")
	default:
	}
}

// A cloudevents-structured batch is read by the CloudEvents SDK as a
// batch (NewEventsFromHTTPRequest), after the Standard Webhooks library
// verified its one signature.
func TestCloudEventsBatchReadBySDK(t *testing.T) {
	t.Parallel()
	verifier, err := standardwebhooks.NewWebhook(ceSecret)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan []cloudevents.Event, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := verifier.Verify(body, r.Header); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		evs, err := cehttp.NewEventsFromHTTPRequest(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		got <- evs
	}))
	t.Cleanup(srv.Close)
	cfg := webhook.Config{URL: srv.URL, Secret: ceSecret, AllowPrivateNetworks: true, Format: "cloudevents-structured"}
	cfg.Batch = batchingOn(t)
	w, err := webhook.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ds := []sdk.Delivery{
		{Event: sdk.Event{ID: "a", Type: "order.paid", Source: "/shop", Data: json.RawMessage(`{"n":1}`)}},
		{Event: sdk.Event{ID: "b", Type: "order.paid", Source: "/shop", Data: json.RawMessage(`{"n":2}`)}},
	}
	res := w.Deliver(context.Background(), ds)
	if res[0].Outcome != sdk.OK || res[1].Outcome != sdk.OK {
		t.Fatalf("results %+v", res)
	}
	evs := <-got
	if len(evs) != 2 || evs[0].ID() != "a" || evs[1].ID() != "b" || string(evs[1].Data()) != `{"n":2}` {
		t.Fatalf("the SDK read %v", evs)
	}
}

func batchingOn(t *testing.T) batching.Policy {
	t.Helper()
	var p batching.Policy
	if err := p.UnmarshalJSON([]byte(`{"max_events": 10}`)); err != nil {
		t.Fatal(err)
	}
	return p
}
