package pluginhost_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/hookbus/hookbus/sdk"
)

const benchBatch = 64

// okSink is the in-process twin of crashsink with crashes off.
type okSink struct{}

func (okSink) Init(context.Context, json.RawMessage) (sdk.SinkInfo, error) {
	return sdk.SinkInfo{}, nil
}
func (okSink) Close(context.Context) error { return nil }
func (okSink) Deliver(_ context.Context, batch []sdk.Delivery) []sdk.Result {
	return make([]sdk.Result, len(batch))
}

func benchSink(b *testing.B, s sdk.Sink) {
	batch := events("bench", benchBatch)
	ctx := context.Background()
	b.SetParallelism(8) // 8 x GOMAXPROCS concurrent Deliver calls, as a pipeline would
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if res := s.Deliver(ctx, batch); len(res) != benchBatch || res[0].Outcome != sdk.OK {
				b.Errorf("results: %v", res)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N*benchBatch)/time.Since(start).Seconds(), "events/s")
}

// BenchmarkSinkInProcess delivers batches of 64 to an in-process sink.
func BenchmarkSinkInProcess(b *testing.B) {
	benchSink(b, okSink{})
}

// BenchmarkSinkPlugin delivers batches of 64 through the supervised proxy
// to a plugin process (gRPC stream, pipelined).
func BenchmarkSinkPlugin(b *testing.B) {
	h, _, _ := newHost(b)
	p, err := h.Start(context.Background(), "bench", fastSpec(crashsink))
	if err != nil {
		b.Fatal(err)
	}
	s, _, err := p.Sink(context.Background(), json.RawMessage(`{}`))
	if err != nil {
		b.Fatal(err)
	}
	benchSink(b, s)
}
