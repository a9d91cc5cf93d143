package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookbus/hookbus/core/pluginhost"
	"github.com/hookbus/hookbus/plugins/webhook"
	"github.com/hookbus/hookbus/sdk"
)

// The webhook benchmarks deliver b.N events (ns/op is ns per event) to a
// loopback receiver answering 204, through the in-process webhook sink and
// through the built hookbus-webhook plugin behind the supervised proxy of
// core/pluginhost, in the shapes a caller uses:
//
//   - pipeline: one event per Deliver, 64 concurrent calls (what the
//     pipeline engine does with the sink's max_in_flight of 64);
//   - batch64: batches of 64 events, 4 concurrent calls.
//
// Compare with: go test -run '^$' -bench Webhook -count 5 ./core/app/
var webhookShapes = []struct {
	name        string
	batch, conc int
}{
	{"pipeline", 1, 64},
	{"batch64", 64, 4},
}

func benchReceiver(b *testing.B) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	b.Cleanup(srv.Close)
	return srv.URL
}

func benchWebhookConfig(url string) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"url": %q, "secret": %q, "allow_private_networks": true, "max_in_flight": 64}`, url, testSecret))
}

// benchDeliver delivers b.N events through s in the given shape.
func benchDeliver(b *testing.B, s sdk.Sink, batch, conc int) {
	pool := make([]sdk.Delivery, 1024)
	for i := range pool {
		pool[i] = sdk.Delivery{
			Event: sdk.Event{
				ID: fmt.Sprintf("bench-%d", i), Type: "order.paid", Source: "bench", Time: time.Now().UTC(),
				Data: json.RawMessage(`{"order_id": 42, "amount": 19.99, "currency": "EUR", "items": ["a", "b"]}`),
			},
			Attempt: 1, Pipeline: "bench",
		}
	}
	ctx := context.Background()
	// Warm up connections (and the plugin's stream) outside the timing.
	if res := s.Deliver(ctx, pool[:conc]); len(res) != conc || res[0].Outcome != sdk.OK {
		b.Fatalf("warm-up: %+v", res)
	}
	var next atomic.Int64
	var failed atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range conc {
		wg.Go(func() {
			for {
				hi := next.Add(int64(batch))
				lo := hi - int64(batch)
				if lo >= int64(b.N) {
					return
				}
				n := int(min(hi, int64(b.N)) - lo)
				off := int(lo) % (len(pool) - batch)
				for _, r := range s.Deliver(ctx, pool[off:off+n]) {
					if r.Outcome != sdk.OK {
						failed.Add(1)
					}
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if f := failed.Load(); f > 0 {
		b.Fatalf("%d of %d deliveries failed", f, b.N)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
}

// BenchmarkWebhookInProcess delivers through webhook.Webhook in process.
func BenchmarkWebhookInProcess(b *testing.B) {
	url := benchReceiver(b)
	for _, sh := range webhookShapes {
		b.Run(sh.name, func(b *testing.B) {
			w := &webhook.Webhook{}
			if _, err := w.Init(context.Background(), benchWebhookConfig(url)); err != nil {
				b.Fatal(err)
			}
			defer w.Close(context.Background())
			benchDeliver(b, w, sh.batch, sh.conc)
		})
	}
}

// BenchmarkWebhookPlugin delivers through the hookbus-webhook plugin
// binary, started and supervised by core/pluginhost as hookbus does.
func BenchmarkWebhookPlugin(b *testing.B) {
	url := benchReceiver(b)
	bin := pluginBinary(b, "hookbus-webhook")
	for _, sh := range webhookShapes {
		b.Run(sh.name, func(b *testing.B) {
			h := pluginhost.New(nil, nil)
			defer h.Close()
			p, err := h.Start(context.Background(), "bench", pluginhost.Spec{Path: bin})
			if err != nil {
				b.Fatal(err)
			}
			s, _, err := p.Sink(context.Background(), benchWebhookConfig(url))
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close(context.Background())
			benchDeliver(b, s, sh.batch, sh.conc)
		})
	}
}
