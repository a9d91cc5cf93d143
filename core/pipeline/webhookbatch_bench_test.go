package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookbus/hookbus/core/attempt"
	"github.com/hookbus/hookbus/core/queue"
	"github.com/hookbus/hookbus/plugins/webhook"
	"github.com/hookbus/hookbus/sdk"
)

// BenchmarkWebhookBatching delivers events from the embedded queue to a
// loopback receiver one request per event, and in batches of 100, with
// and without gzip, to a receiver that answers at once and to one that
// takes 50ms a request: events/s and requests per event, measured in the
// same run (ns/op is per 2,000 events).
//
//	go test -run '^$' -bench WebhookBatching -benchtime 5x -count 5 ./core/pipeline
func BenchmarkWebhookBatching(b *testing.B) {
	const perOp = 2000
	batch := map[string]any{"max_events": 100, "max_wait": "50ms"}
	for _, bc := range []struct {
		name    string
		cfg     map[string]any
		latency time.Duration
	}{
		{"single", nil, 0},
		{"batch100", map[string]any{"batch": batch}, 0},
		{"batch100-gzip", map[string]any{"batch": batch, "compression": "gzip"}, 0},
		{"single-receiver50ms", nil, 50 * time.Millisecond},
		{"batch100-receiver50ms", map[string]any{"batch": batch}, 50 * time.Millisecond},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var events, requests atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				requests.Add(1)
				time.Sleep(bc.latency)
				w.WriteHeader(http.StatusNoContent)
			}))
			b.Cleanup(srv.Close)
			cfg := map[string]any{"url": srv.URL, "secret": batchSecret, "allow_private_networks": true}
			for k, v := range bc.cfg {
				cfg[k] = v
			}
			raw, _ := json.Marshal(cfg)
			w := &webhook.Webhook{}
			info, err := w.Init(context.Background(), raw)
			if err != nil {
				b.Fatal(err)
			}
			counted := &countingSink{Webhook: w, n: &events}
			q, err := queue.NewJetStream(context.Background(), queue.JetStreamOptions{DataDir: b.TempDir(), CloseGrace: 50 * time.Millisecond})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = q.Close() })
			e, err := New(Options{Queue: q, DeadLetters: &deadLetters{}, CloseTimeout: time.Second,
				Pipelines: []Pipeline{{Name: "p", From: []string{"src"}, To: []string{"out"}}},
				Sinks:     map[string]Sink{"out": {Name: "out", Sink: counted, MaxInFlight: info.MaxInFlight, Schedule: w.Schedule()}}})
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			b.Cleanup(cancel)
			if err := e.Start(ctx); err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = e.Close() })
			evs := make([]sdk.Event, perOp)
			data := json.RawMessage(`{"order":"1001","total":42.5,"items":[{"sku":"a-1","qty":2},{"sku":"b-7","qty":1}],"note":"leave at the door"}`)
			round := 0
			b.ResetTimer()
			for b.Loop() {
				round++
				for i := range evs {
					evs[i] = sdk.Event{ID: fmt.Sprintf("r%d-%d", round, i), Type: "order.paid", Source: "shop", Data: data}
				}
				want := events.Load() + perOp
				for i := 0; i < perOp; i += 500 {
					if err := e.Publish(ctx, "src", evs[i:i+500]); err != nil {
						b.Fatal(err)
					}
				}
				deadline := time.Now().Add(2 * time.Minute)
				for events.Load() < want {
					if time.Now().After(deadline) {
						b.Fatalf("%d of %d delivered", events.Load()-want+perOp, perOp)
					}
					time.Sleep(time.Millisecond)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(events.Load())/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(float64(requests.Load())/float64(events.Load()), "requests/event")
		})
	}
}

// countingSink counts the events its webhook delivered.
type countingSink struct {
	*webhook.Webhook
	n *atomic.Int64
}

func (c *countingSink) Deliver(ctx context.Context, ds []sdk.Delivery) []sdk.Result {
	res := c.Webhook.Deliver(ctx, ds)
	c.count(res)
	return res
}

func (c *countingSink) DeliverBatchDetailed(ctx context.Context, ds []sdk.Delivery) ([]sdk.Result, []*attempt.Detail) {
	res, d := c.Webhook.DeliverBatchDetailed(ctx, ds)
	c.count(res)
	return res, d
}

func (c *countingSink) count(res []sdk.Result) {
	for _, r := range res {
		if r.Outcome == sdk.OK {
			c.n.Add(1)
		}
	}
}
