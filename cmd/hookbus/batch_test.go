package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/hookbus/hookbus/internal/testenv"
)

// batchSink is a receiver of batched, gzipped deliveries as a typical one
// is written: it decodes gzip, verifies with the Standard Webhooks
// library, and reads the array. While held, requests wait (the batches
// stay in flight) until released or the client gives up.
type batchSink struct {
	url  string
	std  *standardwebhooks.Webhook
	mu   sync.Mutex
	got  map[string]int // event id -> times delivered (answered 204)
	held int            // requests that arrived while held
	bad  []string
	hold chan struct{} // closed: answer
}

func newBatchSink(t *testing.T) *batchSink {
	t.Helper()
	std, err := standardwebhooks.NewWebhook(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	s := &batchSink{std: std, got: map[string]int{}, hold: make(chan struct{})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(s.serve)}
	go srv.Serve(ln)
	t.Cleanup(func() { s.release(); srv.Close() })
	s.url = "http://" + ln.Addr().String() + "/hooks"
	return s
}

func (s *batchSink) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.hold:
	default:
		close(s.hold)
	}
}

func (s *batchSink) serve(w http.ResponseWriter, r *http.Request) {
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	b, _ := io.ReadAll(body)
	fail := func(msg string) {
		s.mu.Lock()
		s.bad = append(s.bad, msg)
		s.mu.Unlock()
		http.Error(w, msg, http.StatusUnauthorized)
	}
	if err := s.std.Verify(b, r.Header); err != nil {
		fail("signature: " + err.Error())
		return
	}
	var evs []struct{ ID string }
	if err := json.Unmarshal(b, &evs); err != nil || !strings.HasPrefix(r.Header.Get("webhook-id"), "batch_") {
		fail(fmt.Sprintf("not a batch: %s (%v)", r.Header.Get("webhook-id"), err))
		return
	}
	s.mu.Lock()
	hold := s.hold
	select {
	case <-hold:
	default:
		s.held++
	}
	s.mu.Unlock()
	select {
	case <-hold:
	case <-r.Context().Done():
		return
	}
	s.mu.Lock()
	for _, ev := range evs {
		s.got[ev.ID]++
	}
	s.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// Through the real binary: gzip ingest, batches in flight and filling
// when hookbus is killed with SIGKILL; after the restart every accepted
// event reaches the receiver, in verified gzip batches (at least once).
func TestBatchesSurviveKill(t *testing.T) {
	rcv := newBatchSink(t)
	addr := freeAddr(t)
	cfgPath := embeddedConfig(t, addr, rcv.url,
		"      compression: gzip\n      batch: {max_events: 25, max_wait: 1s}\n      retry: {schedule: [200ms, 500ms, 1s, 2s, 5s]}")
	p := startHookbus(t, cfgPath, addr)
	client := httpClient()
	const total = 400
	for first := int64(0); first < total; first += 100 {
		var zb bytes.Buffer
		zw := gzip.NewWriter(&zb)
		_, _ = zw.Write([]byte(eventBatch("k", first, 100)))
		_ = zw.Close()
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/sources/shop/events", &zb)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Content-Encoding", "gzip")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("gzip ingest: %d", resp.StatusCode)
		}
	}
	// Up to 4 batches in requests at once (max_in_flight 16 / 25 events):
	// the rest of the window fills the next batch meanwhile.
	testenv.Eventually(t, 30*time.Second, "batches in flight", func() bool {
		rcv.mu.Lock()
		defer rcv.mu.Unlock()
		return rcv.held >= 1
	})
	p.kill()
	rcv.release()
	p = startHookbus(t, cfgPath, addr)
	defer p.stop()
	testenv.Eventually(t, 2*time.Minute, "every accepted event delivered", func() bool {
		rcv.mu.Lock()
		defer rcv.mu.Unlock()
		return len(rcv.got) == total
	})
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	if len(rcv.bad) > 0 {
		t.Fatalf("refused requests: %v", rcv.bad)
	}
	dups := 0
	for _, n := range rcv.got {
		dups += n - 1
	}
	t.Logf("%d events delivered in batches after a SIGKILL with batches in flight, %d repeated (at least once)", total, dups)
}
