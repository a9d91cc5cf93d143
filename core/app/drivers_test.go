package app

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hookbus/hookbus/core/api"
	"github.com/hookbus/hookbus/core/config"
	"github.com/hookbus/hookbus/core/queue"
	"github.com/hookbus/hookbus/internal/testenv"
)

// queueDrivers lists the drivers of the driver suite with what each needs.
// External ones use this machine's real services on their standard ports;
// in CI a missing service fails the test.
var queueDrivers = []struct {
	name, url, port string
}{
	{"memory", "", ""},
	{"embedded", "", ""},
	{"nats", "nats://127.0.0.1:4222", "127.0.0.1:4222"},
	{"redis", "redis://127.0.0.1:6379/0", "127.0.0.1:6379"},
	{"postgres", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable", "127.0.0.1:5432"},
}

// driverConfig is testConfig on the given driver, in a namespace of its own.
func driverConfig(t *testing.T, d string, url string, rcvURL, steps, extraSink string) *config.Config {
	driver := d
	if url != "" {
		driver += `, url: "` + url + `"`
	}
	cfg := testConfig(t, driver, rcvURL, steps, extraSink)
	cfg.Queue.Namespace = fmt.Sprintf("t%d", time.Now().UnixNano()%1e12)
	// Registered first, so it runs after the app has shut down.
	if url != "" {
		t.Cleanup(func() {
			if err := queue.DropNamespace(context.Background(), d, url, cfg.Queue.Namespace); err != nil {
				t.Logf("cleanup of %s namespace %s: %v", d, cfg.Queue.Namespace, err)
			}
		})
	}
	return cfg
}

// TestDriverSuite runs the same end-to-end scenarios on every queue driver.
func TestDriverSuite(t *testing.T) {
	for _, d := range queueDrivers {
		t.Run(d.name, func(t *testing.T) {
			testenv.NeedService(t, d.port)
			t.Run("deliver-retry-deadletter", func(t *testing.T) {
				rcv := newReceiver(t)
				rcv.answer("retry-me", response{status: 503}, response{status: 500})
				rcv.answer("bad", response{status: 422})
				a := startApp(t, driverConfig(t, d.name, d.url, rcv.srv.URL, pipelineSteps, ""))
				var body strings.Builder
				body.WriteString("[")
				for i := range 50 {
					fmt.Fprintf(&body, `{"id":"e%d","type":"order.paid","data":{"order_id":%d,"amount":1.5}},`, i, i)
				}
				body.WriteString(`{"id":"retry-me","type":"order.paid","data":{"order_id":1,"amount":1}},`)
				body.WriteString(`{"id":"bad","type":"order.paid","data":{"order_id":1,"amount":1}},`)
				body.WriteString(`{"id":"skip","type":"order.created","data":{}}]`)
				if st, b := post(t, a, "shop", "application/json", body.String()); st != http.StatusAccepted {
					t.Fatal(st, b)
				}
				testenv.Eventually(t, 30*time.Second, "50 events + retried one delivered", func() bool {
					n := 0
					for i := range 50 {
						if len(rcv.attempts(fmt.Sprintf("e%d", i))) > 0 {
							n++
						}
					}
					return n == 50 && len(rcv.attempts("retry-me")) == 3
				})
				var list struct {
					DeadLetters []api.DeadLetterJSON `json:"dead_letters"`
				}
				testenv.Eventually(t, 30*time.Second, "dead letter", func() bool {
					getJSON(t, a, "/v1/dead-letters", &list)
					return len(list.DeadLetters) == 1
				})
				if dl := list.DeadLetters[0]; dl.Kind != "permanent" || !strings.Contains(dl.Reason, "422") {
					t.Errorf("dead letter = %+v", dl)
				}
				if n := len(rcv.attempts("skip")); n != 0 {
					t.Errorf("filtered event delivered %d times", n)
				}
			})
			t.Run("dead-endpoint-does-not-delay-healthy-sink", func(t *testing.T) {
				rcv := newReceiver(t)
				// A port nobody listens on: every attempt fails at once, and
				// the next one is an hour away.
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				deadURL := "http://" + ln.Addr().String() + "/"
				ln.Close()
				dead := `  dead:
    type: webhook
    config:
      url: ` + deadURL + `
      secret: ` + testSecret + `
      allow_private_networks: true
      retry: {schedule: [1h]}
      circuit: {enabled: false}
`
				// The circuit off: every dead event is attempted once, and
				// its retry waits in the queue (the circuit's own tests are
				// in core/pipeline).
				cfg := driverConfig(t, d.name, d.url, rcv.srv.URL, "", dead)
				p := cfg.Pipelines["orders"]
				p.To = []string{"dead", "partner"}
				cfg.Pipelines["orders"] = p
				a := startApp(t, cfg)
				for i := range 200 {
					if st, b := post(t, a, "shop", "application/json", fmt.Sprintf(`{"id":"h%d","type":"a"}`, i)); st != http.StatusAccepted {
						t.Fatal(st, b)
					}
				}
				testenv.Eventually(t, 30*time.Second, "healthy sink got all 200", func() bool { return len(rcv.all()) == 200 })
				testenv.Eventually(t, 30*time.Second, "dead sink attempted all 200 once", func() bool {
					return metricValue(t, a, `hookbus_delivery_retries_total{sink="dead"}`) == 200
				})
				// On Redis and PostgreSQL the retries wait in the driver's
				// delay store, not cycling through a retry topic.
				if dq, ok := a.Queue.(interface {
					Delayed(context.Context) (int64, error)
				}); ok {
					testenv.Eventually(t, 10*time.Second, "200 retries waiting in the delay store", func() bool {
						n, err := dq.Delayed(context.Background())
						return err == nil && n == 200
					})
				} else if d.name == "redis" || d.name == "postgres" {
					t.Errorf("%s queue has no delay store", d.name)
				}
			})
		})
	}
}

// TestQueueBacklogMetric: with a dead endpoint, events waiting for their
// retry show as unacked on the sink's consumer group.
func TestQueueBacklogMetric(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String() + "/"
	ln.Close()
	cfg := driverConfig(t, "embedded", "", dead, "", "")
	cfg.Sinks["partner"].Config["retry"] = map[string]any{"schedule": []any{"1h"}}
	a := startApp(t, cfg)
	for i := range 5 {
		post(t, a, "shop", "application/json", fmt.Sprintf(`{"id":"b%d","type":"a"}`, i))
	}
	series := `hookbus_queue_unacked{group="sink-partner",topic="hookbus.out.partner"}`
	testenv.Eventually(t, 20*time.Second, "5 unacked retries on the sink", func() bool { return metricValue(t, a, series) == 5 })
}
