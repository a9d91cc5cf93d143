package main

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookbus/hookbus/internal/testenv"
)

func embeddedConfig(t *testing.T, addr, sinkURL string, extra string) string {
	dir := t.TempDir()
	return writeConfig(t, dir, `version: 1
server: {listen: "`+addr+`", shutdown_timeout: 10s}
data_dir: `+filepath.Join(dir, "data")+`
log: {level: warn}
sources:
  shop: {type: http}
sinks:
  partner:
    type: webhook
    config:
      url: `+sinkURL+`
      secret: `+testSecret+`
      allow_private_networks: true
      max_in_flight: 16
      timeout: 5s
`+extra+`
pipelines:
  all:
    from: [shop]
    to: [partner]
`)
}

// TestCrashLosesNothing streams 20,000 events into the embedded queue
// while the receiver is slow, kills hookbus with SIGKILL twice and restarts
// it: every event that got a 202 must reach the receiver.
func TestCrashLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("long crash test")
	}
	const total, batch, producers = 20000, 20, 8
	rcv := newSink(t)
	rcv.delay = 2 * time.Millisecond
	addr := freeAddr(t)
	cfgPath := embeddedConfig(t, addr, rcv.srv.URL, "      retry: {schedule: [100ms, 500ms, 1s, 2s, 5s]}")
	p := startHookbus(t, cfgPath, addr)

	var accepted sync.Map
	var acceptedN atomic.Int64
	var next atomic.Int64
	client := &http.Client{Timeout: 10 * time.Second}
	var wg sync.WaitGroup
	for range producers {
		wg.Go(func() {
			for {
				first := next.Add(batch) - batch
				if first >= total {
					return
				}
				body := eventBatch("c", first, batch)
				deadline := time.Now().Add(2 * time.Minute)
				for {
					st := postEvents(client, addr, "shop", body)
					if st == http.StatusAccepted {
						for i := first; i < first+batch; i++ {
							accepted.Store(fmt.Sprintf("c-%d", i), true)
						}
						acceptedN.Add(batch)
						break
					}
					if time.Now().After(deadline) {
						t.Errorf("batch at %d never accepted (last status %d)", first, st)
						return
					}
					// hookbus is down or restarting: the producer retries the
					// same batch with the same ids.
					time.Sleep(50 * time.Millisecond)
				}
			}
		})
	}
	kills := 0
	for _, at := range []int64{6000, 13000} {
		testenv.Eventually(t, 2*time.Minute, fmt.Sprintf("%d accepted", at), func() bool { return acceptedN.Load() >= at })
		p.kill()
		kills++
		t.Logf("killed hookbus with SIGKILL after %d accepted events", acceptedN.Load())
		p = startHookbus(t, cfgPath, addr)
	}
	wg.Wait()
	dups := rcv.awaitAll(t, &accepted, total, 3*time.Minute)
	t.Logf("crash test: %d events accepted, all delivered, %d kills, %d duplicate deliveries (at-least-once)", total, kills, dups)
	if rcv.bad != 0 {
		t.Errorf("%d deliveries with bad signatures", rcv.bad)
	}
	p.stop()
}

// TestRetryScheduleSurvivesRestart: an event that failed twice resumes at
// attempt 3 after a restart, and the schedule's last attempt still counts.
func TestRetryScheduleSurvivesRestart(t *testing.T) {
	rcv := newSink(t)
	rcv.status = func(id string, n int) int { return http.StatusServiceUnavailable }
	addr := freeAddr(t)
	// 3 attempts in all: the third is 3s after the second.
	cfgPath := embeddedConfig(t, addr, rcv.srv.URL, "      retry: {schedule: [100ms, 3s]}")
	p := startHookbus(t, cfgPath, addr)
	if st := postEvents(http.DefaultClient, addr, "shop", `{"id":"rs-1","type":"a"}`); st != http.StatusAccepted {
		t.Fatal(st)
	}
	testenv.Eventually(t, 20*time.Second, "two failed attempts", func() bool { return rcv.seen("rs-1") == 2 })
	// A graceful restart; after SIGKILL the queue may repeat the attempt
	// that was running (at-least-once).
	p.stop()
	p = startHookbus(t, cfgPath, addr)
	testenv.Eventually(t, 30*time.Second, "third attempt after restart", func() bool { return rcv.seen("rs-1") == 3 })
	// Attempt 3 was the last: the event is dead-lettered, not started over.
	out := runCLI(t, "dead-letters", "list", "--url", "http://"+addr, "--json")
	testenv.Eventually(t, 20*time.Second, "dead letter", func() bool {
		out = runCLI(t, "dead-letters", "list", "--url", "http://"+addr, "--json")
		return strings.Contains(out, "rs-1")
	})
	if !strings.Contains(out, `"attempts": 3`) || !strings.Contains(out, `"kind": "exhausted"`) {
		t.Errorf("dead letter: %s", out)
	}
	// The dead letter is recorded after the last attempt was answered and
	// before the message is acknowledged, so no attempt can follow it.
	if n := rcv.seen("rs-1"); n != 3 {
		t.Errorf("attempts = %d, want exactly 3 across the restart", n)
	}
	p.stop()
}

// TestDuplicateProducerIDsDeliveredOnce: a repeated producer id is accepted
// and delivered once, also across a restart.
func TestDuplicateProducerIDsDeliveredOnce(t *testing.T) {
	rcv := newSink(t)
	addr := freeAddr(t)
	cfgPath := embeddedConfig(t, addr, rcv.srv.URL, "")
	p := startHookbus(t, cfgPath, addr)
	for range 3 {
		if st := postEvents(http.DefaultClient, addr, "shop", `[{"id":"dup-1","type":"a"},{"id":"dup-2","type":"a"}]`); st != http.StatusAccepted {
			t.Fatal(st)
		}
	}
	testenv.Eventually(t, 20*time.Second, "delivery", func() bool { return rcv.seen("dup-1") == 1 && rcv.seen("dup-2") == 1 })
	p.stop()
	p = startHookbus(t, cfgPath, addr)
	if st := postEvents(http.DefaultClient, addr, "shop", `[{"id":"dup-1","type":"a"},{"id":"dup-3","type":"a"}]`); st != http.StatusAccepted {
		t.Fatal(st)
	}
	// dup-3 came in the same request as the repeated dup-1, after it: once
	// dup-3 arrived, the repeat has been through the pipeline too.
	testenv.Eventually(t, 20*time.Second, "dup-3", func() bool { return rcv.seen("dup-3") == 1 })
	if rcv.seen("dup-1") != 1 || rcv.seen("dup-2") != 1 {
		t.Errorf("dup-1 delivered %d times, dup-2 %d times; want once each", rcv.seen("dup-1"), rcv.seen("dup-2"))
	}
	p.stop()
}

// TestGracefulShutdownDrainsInFlight: SIGTERM during a slow delivery lets
// it finish and records it, so a restart does not deliver it again.
func TestGracefulShutdownDrainsInFlight(t *testing.T) {
	rcv := newSink(t)
	rcv.delay = 1500 * time.Millisecond
	addr := freeAddr(t)
	cfgPath := embeddedConfig(t, addr, rcv.srv.URL, "")
	p := startHookbus(t, cfgPath, addr)
	if st := postEvents(http.DefaultClient, addr, "shop", `{"id":"slow-1","type":"a"}`); st != http.StatusAccepted {
		t.Fatal(st)
	}
	// Ask hookbus to stop while the receiver holds the delivery.
	testenv.Eventually(t, 20*time.Second, "delivery in flight", func() bool { return rcv.inFlight("slow-1") == 1 })
	start := time.Now()
	p.stop()
	if p.cmd.ProcessState.ExitCode() != 0 {
		t.Errorf("exit code %d after SIGTERM", p.cmd.ProcessState.ExitCode())
	}
	if rcv.seen("slow-1") != 1 {
		t.Fatalf("in-flight delivery was not finished before exit (seen %d)", rcv.seen("slow-1"))
	}
	t.Logf("drained and stopped in %s", time.Since(start).Round(time.Millisecond))
	rcv.delay = 0
	p = startHookbus(t, cfgPath, addr)
	if st := postEvents(http.DefaultClient, addr, "shop", `{"id":"after","type":"a"}`); st != http.StatusAccepted {
		t.Fatal(st)
	}
	testenv.Eventually(t, 20*time.Second, "next event", func() bool { return rcv.seen("after") == 1 })
	if n := rcv.seen("slow-1"); n != 1 {
		t.Errorf("drained event delivered %d times", n)
	}
	p.stop()
}
