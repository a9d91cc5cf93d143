package pipeline

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/hookbus/hookbus/core/attempt"
	"github.com/hookbus/hookbus/core/batching"
	"github.com/hookbus/hookbus/internal/testenv"
	"github.com/hookbus/hookbus/plugins/webhook"
	"github.com/hookbus/hookbus/sdk"
)

const batchSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// batchRequest is one request a batchReceiver took.
type batchRequest struct {
	webhookID   string
	contentType string
	encoding    string
	wireBytes   int // as sent
	bodyBytes   int // decoded
	ids         []string
}

// batchReceiver is a receiver on loopback as a typical one is written: a
// middleware decodes Content-Encoding gzip, then the official Standard
// Webhooks library verifies the decoded body (401 when it does not) and
// the handler reads the JSON array of events. fail, when set, picks the
// status of a verified request (0: 204).
type batchReceiver struct {
	url  string
	mu   sync.Mutex
	reqs []batchRequest
	bad  []string
	fail func(n int, r batchRequest) int
}

func newBatchReceiver(t *testing.T) *batchReceiver {
	t.Helper()
	verifier, err := standardwebhooks.NewWebhook(batchSecret)
	if err != nil {
		t.Fatal(err)
	}
	rc := &batchReceiver{}
	decode := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Content-Encoding") == "gzip" {
				zr, err := gzip.NewReader(r.Body)
				if err != nil {
					http.Error(w, err.Error(), http.StatusBadRequest)
					return
				}
				r.Body = zr
			}
			next.ServeHTTP(w, r)
		})
	}
	srv := httptest.NewServer(decode(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rc.mu.Lock()
		defer rc.mu.Unlock()
		if err := verifier.Verify(body, r.Header); err != nil {
			rc.bad = append(rc.bad, "signature: "+err.Error())
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		var evs []struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(body, &evs); err != nil {
			rc.bad = append(rc.bad, "body: "+err.Error())
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		req := batchRequest{webhookID: r.Header.Get("webhook-id"), contentType: r.Header.Get("Content-Type"),
			encoding: r.Header.Get("Content-Encoding"), wireBytes: int(r.ContentLength), bodyBytes: len(body)}
		for _, ev := range evs {
			req.ids = append(req.ids, ev.ID)
		}
		rc.reqs = append(rc.reqs, req)
		status := http.StatusNoContent
		if rc.fail != nil {
			if s := rc.fail(len(rc.reqs), req); s != 0 {
				status = s
			}
		}
		w.WriteHeader(status)
	})))
	t.Cleanup(srv.Close)
	rc.url = srv.URL + "/hook"
	return rc
}

func (rc *batchReceiver) requests() []batchRequest {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.reqs)
}

// carried counts the events the requests so far carried.
func (rc *batchReceiver) carried() int {
	n := 0
	for _, r := range rc.requests() {
		n += len(r.ids)
	}
	return n
}

func (rc *batchReceiver) checkVerified(t *testing.T) {
	t.Helper()
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.bad) > 0 {
		t.Fatalf("requests refused by the receiver: %v", rc.bad)
	}
}

// runBatchEngine runs pipeline "p" from "src" to a webhook sink "out"
// whose config block is cfg (url and secret added) on the embedded queue.
func runBatchEngine(t *testing.T, cfg map[string]any, opts Options) *Engine {
	t.Helper()
	raw, _ := json.Marshal(cfg)
	w := &webhook.Webhook{}
	info, err := w.Init(context.Background(), raw)
	if err != nil {
		t.Fatal(err)
	}
	q := testDrivers[1].open(t) // embedded JetStream
	closeQueue(t, q)
	opts.Queue = q
	opts.CloseTimeout = time.Second
	if opts.DeadLetters == nil {
		opts.DeadLetters = &deadLetters{}
	}
	opts.Pipelines = []Pipeline{{Name: "p", From: []string{"src"}, To: []string{"out"}}}
	opts.Sinks = map[string]Sink{"out": {Name: "out", Sink: w, MaxInFlight: info.MaxInFlight, Schedule: w.Schedule()}}
	e, _ := runEngine(t, opts)
	return e
}

func batchEvents(prefix string, n, dataBytes int) []sdk.Event {
	evs := make([]sdk.Event, n)
	for i := range evs {
		data, _ := json.Marshal(map[string]string{"pad": strings.Repeat("x", dataBytes)})
		evs[i] = sdk.Event{ID: fmt.Sprintf("%s-%03d", prefix, i), Type: "order.paid", Source: "shop", Data: data}
	}
	return evs
}

func sinkConfig(url string, batch map[string]any, more ...any) map[string]any {
	cfg := map[string]any{"url": url, "secret": batchSecret, "allow_private_networks": true, "batch": batch}
	for i := 0; i+1 < len(more); i += 2 {
		cfg[more[i].(string)] = more[i+1]
	}
	return cfg
}

// A batch closes at max_events, at max_bytes or at max_wait: each request
// is one JSON array, signed once over the whole body (verified by the
// Standard Webhooks library), its webhook-id the digest of the ids it
// carries.
func TestWebhookBatchCloses(t *testing.T) {
	t.Parallel()
	t.Run("max_events", func(t *testing.T) {
		t.Parallel()
		rc := newBatchReceiver(t)
		// Two batches of 5 of the 10 events: max_events closed them (the
		// long max_wait would have sent one of 10).
		e := runBatchEngine(t, sinkConfig(rc.url, map[string]any{"max_events": 5, "max_wait": "10s"}), Options{})
		evs := batchEvents("ev", 10, 10)
		if err := e.Publish(context.Background(), "src", evs); err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, 30*time.Second, "10 events in 2 requests", func() bool { return rc.carried() == 10 })
		rc.checkVerified(t)
		reqs := rc.requests()
		var all []string
		for _, r := range reqs {
			if len(r.ids) != 5 {
				t.Errorf("request %s carried %d events, want 5", r.webhookID, len(r.ids))
			}
			if r.webhookID != batching.ID(r.ids) || !strings.HasPrefix(r.webhookID, "batch_") || r.contentType != "application/json" || r.encoding != "" {
				t.Errorf("request: webhook-id %q (want %q), content-type %q, encoding %q", r.webhookID, batching.ID(r.ids), r.contentType, r.encoding)
			}
			all = append(all, r.ids...)
		}
		slices.Sort(all)
		if len(reqs) != 2 || !slices.Equal(all, ids(evs)) {
			t.Fatalf("%d requests carried %v", len(reqs), all)
		}
	})
	t.Run("max_bytes", func(t *testing.T) {
		t.Parallel()
		rc := newBatchReceiver(t)
		e := runBatchEngine(t, sinkConfig(rc.url, map[string]any{"max_bytes": 2048, "max_wait": "2s"}), Options{})
		evs := batchEvents("big", 20, 300) // ~380 bytes each: 5 fit in 2 KiB
		if err := e.Publish(context.Background(), "src", evs); err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, 30*time.Second, "20 events delivered", func() bool { return rc.carried() == 20 })
		rc.checkVerified(t)
		reqs := rc.requests()
		if len(reqs) < 4 {
			t.Fatalf("20 events of ~380 bytes in %d requests of at most 2048 bytes", len(reqs))
		}
		full := 0
		for _, r := range reqs {
			if r.bodyBytes > 2048 {
				t.Errorf("a request of %d bytes, over max_bytes", r.bodyBytes)
			}
			if len(r.ids) == 5 {
				full++
			}
		}
		if full < 3 {
			t.Errorf("only %d of %d requests hold 5 events: %v", full, len(reqs), reqs)
		}
	})
	t.Run("max_wait", func(t *testing.T) {
		t.Parallel()
		rc := newBatchReceiver(t)
		e := runBatchEngine(t, sinkConfig(rc.url, map[string]any{"max_events": 100, "max_wait": "500ms"}), Options{})
		evs := batchEvents("few", 3, 10)
		if err := e.Publish(context.Background(), "src", evs); err != nil {
			t.Fatal(err)
		}
		// 3 of max_events 100: only max_wait sends it.
		testenv.Eventually(t, 30*time.Second, "3 events delivered", func() bool { return rc.carried() == 3 })
		rc.checkVerified(t)
		if reqs := rc.requests(); len(reqs) != 1 || len(reqs[0].ids) != 3 {
			t.Fatalf("requests %+v, want one of 3 events", reqs)
		}
	})
}

func ids(evs []sdk.Event) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = ev.ID
	}
	slices.Sort(out)
	return out
}

// A batch the receiver fails is retried whole: its events come back
// together (one delay for the batch) and go again as the same batch, with
// the same webhook-id; the attempt log has an attempt per event and
// request, each naming the batch's webhook-id. Bodies over 1 KiB go
// gzipped, signed over the decoded body.
func TestWebhookBatchRetriedWhole(t *testing.T) {
	t.Parallel()
	rc := newBatchReceiver(t)
	rc.fail = func(n int, _ batchRequest) int {
		if n == 1 {
			return http.StatusServiceUnavailable
		}
		return 0
	}
	log := &attemptLog{}
	e := runBatchEngine(t, sinkConfig(rc.url, map[string]any{"max_events": 4, "max_wait": "2s"},
		"compression", "gzip", "retry", map[string]any{"schedule": []string{"200ms"}}), Options{Attempts: log})
	evs := batchEvents("r", 4, 400)
	if err := e.Publish(context.Background(), "src", evs); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, "the batch sent twice", func() bool { return len(rc.requests()) >= 2 })
	testenv.Eventually(t, 30*time.Second, "8 attempts recorded", func() bool { return log.count() >= 8 })
	rc.checkVerified(t)
	reqs := rc.requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests, want the batch and its retry: %+v", len(reqs), reqs)
	}
	for _, r := range reqs {
		got := slices.Clone(r.ids)
		slices.Sort(got)
		if !slices.Equal(got, ids(evs)) || r.webhookID != batching.ID(got) {
			t.Errorf("request carried %v as %s", r.ids, r.webhookID)
		}
		if r.encoding != "gzip" || r.wireBytes >= r.bodyBytes {
			t.Errorf("request of %d bytes sent as %d, encoding %q", r.bodyBytes, r.wireBytes, r.encoding)
		}
	}
	for _, ev := range evs {
		got := log.of(ev.ID, "")
		if len(got) != 2 {
			t.Fatalf("%s: %d attempts recorded, want 2", ev.ID, len(got))
		}
		for i, want := range []attempt.Outcome{attempt.Retry, attempt.Delivered} {
			a := got[i].Attempt
			if a.Outcome != want || a.WebhookID != reqs[0].webhookID || a.RequestHeaders.Get("Webhook-Id") != reqs[0].webhookID ||
				a.RequestHeaders.Get("Content-Encoding") != "gzip" {
				t.Errorf("%s attempt %d: outcome %s webhook-id %q headers %v", ev.ID, i+1, a.Outcome, a.WebhookID, a.RequestHeaders)
			}
		}
	}
}

// A cloudevents-structured batch is a CloudEvents batch
// (application/cloudevents-batch+json): an array of structured events.
func TestWebhookBatchCloudEvents(t *testing.T) {
	t.Parallel()
	rc := newBatchReceiver(t)
	e := runBatchEngine(t, sinkConfig(rc.url, map[string]any{"max_events": 3, "max_wait": "10s"}, "format", "cloudevents-structured"), Options{})
	if err := e.Publish(context.Background(), "src", batchEvents("ce", 3, 10)); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, "3 events delivered", func() bool { return rc.carried() == 3 })
	rc.checkVerified(t)
	if r := rc.requests()[0]; r.contentType != "application/cloudevents-batch+json" {
		t.Fatalf("content-type %q", r.contentType)
	}
}
