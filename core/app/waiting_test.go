package app

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hookbus/hookbus/internal/testenv"
)

const waitingConfig = `version: 1
server: {listen: "127.0.0.1:0", shutdown_timeout: 5s}
data_dir: DIR/data
queue: {driver: embedded}
reload: {watch: false}
sources:
  shop: {type: http}
sinks:
  partner:
    type: webhook
    config: {url: "FAILING", secret: ` + testSecret + `, allow_private_networks: true, retry: {schedule: [1h]}}
  archive:
    type: webhook
    config: {url: "OK", secret: ` + testSecret + `, allow_private_networks: true}
pipelines:
  orders: {from: [shop], to: [partner, archive]}
`

// hookbus_oldest_waiting_seconds is 0 for every configured sink before
// traffic; an event whose attempt was a retry makes its sink's gauge the
// event's age, growing while it waits; a sink that delivered stays at 0.
func TestOldestWaitingGauge(t *testing.T) {
	failing, ok := newReceiver(t), newReceiver(t)
	failing.answer("w1", response{status: http.StatusServiceUnavailable})
	y := strings.NewReplacer("FAILING", failing.srv.URL, "OK", ok.srv.URL).Replace(waitingConfig)
	r := startWithScripts(t, y)
	s, _ := scrapeMetrics(t, r.a)
	s.mustBe(t, "hookbus_oldest_waiting_seconds", `sink="partner"`, 0)
	s.mustBe(t, "hookbus_oldest_waiting_seconds", `sink="archive"`, 0)

	posted := time.Now()
	mustPost(t, r.a, "shop", "w1")
	var first float64
	testenv.Eventually(t, 30*time.Second, "partner's gauge shows w1 waiting", func() bool {
		s, _ := scrapeMetrics(t, r.a)
		first, _ = s.value("hookbus_oldest_waiting_seconds", `sink="partner"`)
		return first > 0
	})
	s, _ = scrapeMetrics(t, r.a)
	s.mustBe(t, "hookbus_oldest_waiting_seconds", `sink="archive"`, 0)
	if limit := time.Since(posted).Seconds(); first > limit {
		t.Errorf("oldest waiting = %vs, but w1 was posted %vs ago", first, limit)
	}
	if n := len(ok.attempts("w1")); n != 1 {
		t.Errorf("archive got w1 %d times, want 1", n)
	}
	testenv.Eventually(t, 30*time.Second, "partner's gauge grows while w1 waits", func() bool {
		s, _ := scrapeMetrics(t, r.a)
		v, _ := s.value("hookbus_oldest_waiting_seconds", `sink="partner"`)
		return v > first
	})
}

// Without the delivery log (store.attempt_log: false) nothing tells how
// long events wait: the gauge is not exported, rather than stuck at 0.
func TestOldestWaitingGaugeWithoutAttemptLog(t *testing.T) {
	rcv := newReceiver(t)
	y := strings.NewReplacer("FAILING", rcv.srv.URL, "OK", rcv.srv.URL).Replace(waitingConfig) + "store: {attempt_log: false}\n"
	r := startWithScripts(t, y)
	s, _ := scrapeMetrics(t, r.a)
	if got, ok := s["hookbus_oldest_waiting_seconds"]; ok {
		t.Fatalf("hookbus_oldest_waiting_seconds = %v without the delivery log", got)
	}
	s.mustBe(t, "hookbus_delivery_retries_total", `sink="partner"`, 0)
}
