package queue

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
)

// BenchmarkJetStreamPublish measures one durable publish of a 300-byte
// event, as the ingest endpoint does it, with and without a producer id.
func BenchmarkJetStreamPublish(b *testing.B) {
	q, err := NewJetStream(context.Background(), JetStreamOptions{DataDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	payload := make([]byte, 300)
	var n atomic.Int64
	for _, tc := range []struct {
		name  string
		topic string
		dedup bool
	}{{"out", SinkTopic("x"), false}, {"ingest-with-id", SourceTopic("x"), true}} {
		b.Run(tc.name, func(b *testing.B) {
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					m := message.NewMessage(strconv.FormatInt(n.Add(1), 10), payload)
					if tc.dedup {
						m.Metadata.Set(MetaDedupID, "id-"+m.UUID)
					}
					if err := q.Publish(tc.topic, m); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
