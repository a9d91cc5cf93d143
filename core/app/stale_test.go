package app

import (
	"bytes"
	"context"
	"maps"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookbus/hookbus/core/queue"
	"github.com/hookbus/hookbus/internal/testenv"
)

// syncBuffer is a log destination tests can read while the app writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestRemovedSinkConsumer removes a sink that holds an undelivered event
// from the configuration and restarts: on the embedded queue its durable
// consumer is deleted with a warning that counts the discarded message; on
// a shared NATS server it is kept and reported.
func TestRemovedSinkConsumer(t *testing.T) {
	for _, d := range queueDrivers {
		if d.name != "embedded" && d.name != "nats" {
			continue
		}
		t.Run(d.name, func(t *testing.T) {
			testenv.NeedService(t, d.port)
			rcv := newReceiver(t)
			// The archive endpoint fails, so its event waits an hour for
			// the retry.
			archive := newReceiver(t)
			archive.answer("e1", response{status: 503})
			extra := `  archive:
    type: webhook
    config: {url: "` + archive.srv.URL + `", secret: ` + testSecret + `, allow_private_networks: true, retry: {schedule: [1h]}}
`
			cfg := driverConfig(t, d.name, d.url, rcv.srv.URL, "      []", extra)
			p := cfg.Pipelines["orders"]
			p.To = []string{"partner", "archive"}
			cfg.Pipelines["orders"] = p

			var first syncBuffer
			a := runApp(t, cfg, &first)
			if status, body := post(t, a, "shop", "application/json", `{"id":"e1","type":"order.paid"}`); status != http.StatusAccepted {
				t.Fatalf("ingest: %d %v", status, body)
			}
			testenv.Eventually(t, 10*time.Second, "delivery to partner and a failed one to archive", func() bool {
				return len(rcv.attempts("e1")) == 1 && len(archive.attempts("e1")) == 1
			})
			stopApp(t, a)
			if strings.Contains(first.String(), "durable consumer") {
				t.Fatalf("first start reported stale consumers:\n%s", first.String())
			}

			cfg.Sinks = maps.Clone(cfg.Sinks)
			delete(cfg.Sinks, "archive")
			p.To = []string{"partner"}
			cfg.Pipelines["orders"] = p
			var second syncBuffer
			b := runApp(t, cfg, &second)
			defer stopApp(t, b)
			js := b.Queue.(queue.GroupLister)
			stale, err := js.StaleGroups(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			logs := second.String()
			switch d.name {
			case "embedded":
				if !strings.Contains(logs, "deleted the durable consumer") || !strings.Contains(logs, "sink-archive") || !strings.Contains(logs, "discarded=1") {
					t.Errorf("no warning about the deleted consumer with its discarded message:\n%s", logs)
				}
				if len(stale) != 0 {
					t.Errorf("stale consumers left: %+v", stale)
				}
			case "nats":
				if !strings.Contains(logs, "keeps its messages") || !strings.Contains(logs, "nats consumer rm") || !strings.Contains(logs, "undelivered=1") {
					t.Errorf("no warning about the unused consumer:\n%s", logs)
				}
				if len(stale) != 1 || !strings.Contains(stale[0].Name, "sink-archive") {
					t.Errorf("stale consumers %+v, want the archive sink's kept", stale)
				}
			}
			// The sinks still configured keep working.
			if status, body := post(t, b, "shop", "application/json", `{"id":"e2","type":"order.paid"}`); status != http.StatusAccepted {
				t.Fatalf("ingest: %d %v", status, body)
			}
			testenv.Eventually(t, 10*time.Second, "e2 delivered after the restart", func() bool { return len(rcv.attempts("e2")) == 1 })
		})
	}
}
