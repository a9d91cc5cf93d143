package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookbus/hookbus/core/queue"
	"github.com/hookbus/hookbus/internal/testenv"
)

// scrape reads one series from an instance's /metrics (0 when absent).
func scrape(addr, series string) float64 {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f
		}
	}
	return 0
}

// TestTwoInstancesShareWorkOnNATS runs two hookbus processes on the same
// NATS JetStream server: they share the work, and when one is killed the
// other finishes it.
func TestTwoInstancesShareWorkOnNATS(t *testing.T) {
	testenv.NeedService(t, "127.0.0.1:4222")
	const total, batch = 10000, 20
	rcv := newSink(t)
	ns := fmt.Sprintf("two%d", time.Now().UnixNano()%1e9)
	t.Cleanup(func() {
		if err := queue.DropNamespace(context.Background(), "nats", "nats://127.0.0.1:4222", ns); err != nil {
			t.Logf("cleanup of NATS namespace %s: %v", ns, err)
		}
	})
	conf := func(addr string) string {
		dir := t.TempDir()
		return writeConfig(t, dir, `version: 1
server: {listen: "`+addr+`", shutdown_timeout: 10s}
data_dir: `+filepath.Join(dir, "data")+`
log: {level: warn}
queue: {driver: nats, url: "nats://127.0.0.1:4222", namespace: `+ns+`}
sources:
  shop: {type: http}
sinks:
  partner:
    type: webhook
    config:
      url: `+rcv.srv.URL+`
      secret: `+testSecret+`
      allow_private_networks: true
      max_in_flight: 16
pipelines:
  all:
    from: [shop]
    to: [partner]
`)
	}
	addrA, addrB := freeAddr(t), freeAddr(t)
	a := startHookbus(t, conf(addrA), addrA)
	b := startHookbus(t, conf(addrB), addrB)

	var accepted atomic.Int64
	var aDown atomic.Bool
	var next atomic.Int64
	var ids sync.Map
	client := &http.Client{Timeout: 10 * time.Second}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for {
				first := next.Add(batch) - batch
				if first >= total {
					return
				}
				body := eventBatch("two", first, batch)
				for try := 0; ; try++ {
					addr := addrB
					if (w+try)%2 == 0 && !aDown.Load() {
						addr = addrA
					}
					if postEvents(client, addr, "shop", body) == http.StatusAccepted {
						for i := first; i < first+batch; i++ {
							ids.Store(fmt.Sprintf("two-%d", i), true)
						}
						accepted.Add(batch)
						break
					}
					if try > 200 {
						t.Errorf("batch %d never accepted", first)
						return
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
		})
	}
	testenv.Eventually(t, time.Minute, "half accepted", func() bool { return accepted.Load() >= total/2 })
	// Both instances consume from the shared durable consumer.
	testenv.Eventually(t, 30*time.Second, "both instances delivering", func() bool {
		return scrape(addrA, `hookbus_events_delivered_total{pipeline="all",sink="partner"}`) > 0 &&
			scrape(addrB, `hookbus_events_delivered_total{pipeline="all",sink="partner"}`) > 0
	})
	aDown.Store(true)
	a.kill()
	t.Logf("killed instance A after %d accepted events", accepted.Load())
	wg.Wait()
	dups := rcv.awaitAll(t, &ids, total, 2*time.Minute)
	t.Logf("two instances: %d events delivered, %d duplicates after killing one instance", total, dups)
	b.stop()
}
