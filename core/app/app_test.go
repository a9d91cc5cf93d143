package app

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hookbus/hookbus/core/api"
	"github.com/hookbus/hookbus/internal/testenv"
)

const pipelineSteps = `      - filter: only_paid.js
      - transform: reshape.js`

func TestEndToEndDeliveryFilterTransformSplit(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t)
	a := startApp(t, testConfig(t, "memory", rcv.srv.URL+"/hooks", pipelineSteps, ""))

	status, body := post(t, a, "shop", "application/json",
		`[{"id":"paid-1","type":"order.paid","data":{"order_id":7,"amount":19.99}},
		  {"id":"created-1","type":"order.created","data":{"order_id":8,"amount":1}},
		  {"id":"drop-1","type":"order.paid","data":{"order_id":9,"amount":1,"drop":true}}]`)
	if status != http.StatusAccepted {
		t.Fatalf("ingest: %d %v", status, body)
	}
	if ids, _ := body["ids"].([]any); len(ids) != 3 || ids[0] != "paid-1" {
		t.Fatalf("ids = %v", body["ids"])
	}
	testenv.Eventually(t, 10*time.Second, "paid-1 delivered", func() bool { return len(rcv.attempts("paid-1")) == 1 })
	d := rcv.attempts("paid-1")[0]
	if d.WebhookID != "paid-1" {
		t.Errorf("webhook-id = %q, want the event id", d.WebhookID)
	}
	if got := string(d.Event.Data); !strings.Contains(got, `"cents":1999`) || !strings.Contains(got, `"pipeline":"orders"`) {
		t.Errorf("transformed data = %s", got)
	}
	// Filtered (created-1) and dropped by transform (drop-1) never arrive.
	testenv.Eventually(t, 5*time.Second, "filtered metric", func() bool {
		return metricValue(t, a, `hookbus_events_filtered_total{pipeline="orders",sink="partner"}`) == 2
	})
	if n := len(rcv.attempts("created-1")) + len(rcv.attempts("drop-1")); n != 0 {
		t.Errorf("filtered events were delivered %d times", n)
	}
	if rcv.badSig != 0 {
		t.Errorf("%d deliveries had bad signatures", rcv.badSig)
	}
}

func TestSplitTransform(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t)
	a := startApp(t, testConfig(t, "memory", rcv.srv.URL, "      - transform: reshape.js", ""))
	status, _ := post(t, a, "shop", "application/json", `{"id":"b1","type":"order.bundle","data":{"items":["a","b","c"]}}`)
	if status != http.StatusAccepted {
		t.Fatal(status)
	}
	testenv.Eventually(t, 10*time.Second, "3 split events", func() bool { return len(rcv.all()) == 3 })
	for i, sku := range []string{"a", "b", "c"} {
		got := rcv.attempts(fmt.Sprintf("b1-%d", i))
		if len(got) != 1 || !strings.Contains(string(got[0].Event.Data), `"sku":"`+sku+`"`) || !strings.Contains(string(got[0].Event.Data), `"sink":"partner"`) {
			t.Errorf("split event %d = %+v", i, got)
		}
	}
}

func TestRetryAfterServerErrorsThenSuccess(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t)
	rcv.answer("r1", response{status: 500}, response{status: 503})
	a := startApp(t, testConfig(t, "memory", rcv.srv.URL, pipelineSteps, ""))
	post(t, a, "shop", "application/json", `{"id":"r1","type":"order.paid","data":{"order_id":1,"amount":1}}`)
	testenv.Eventually(t, 10*time.Second, "third attempt", func() bool { return len(rcv.attempts("r1")) == 3 })
	got := rcv.attempts("r1")
	for _, d := range got {
		if d.WebhookID != "r1" {
			t.Errorf("webhook-id changed across retries: %q", d.WebhookID)
		}
	}
	testenv.Eventually(t, 5*time.Second, "delivered metric", func() bool {
		return metricValue(t, a, `hookbus_events_delivered_total{pipeline="orders",sink="partner"}`) == 1
	})
	if n := metricValue(t, a, `hookbus_delivery_retries_total{sink="partner"}`); n != 2 {
		t.Errorf("retries = %v, want 2", n)
	}
}

func TestRetryAfterHeaderHonoured(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t)
	rcv.answer("ra", response{status: 429, retryAfter: "1"})
	a := startApp(t, testConfig(t, "memory", rcv.srv.URL, pipelineSteps, ""))
	post(t, a, "shop", "application/json", `{"id":"ra","type":"order.paid","data":{"order_id":1,"amount":1}}`)
	testenv.Eventually(t, 10*time.Second, "second attempt", func() bool { return len(rcv.attempts("ra")) == 2 })
	got := rcv.attempts("ra")
	// The schedule says 50ms; Retry-After says 1s (jitter may shorten it by 20%).
	if gap := got[1].At.Sub(got[0].At); gap < 750*time.Millisecond {
		t.Errorf("retried after %s, before the server's Retry-After of 1s", gap)
	}
}

func TestPermanentFailureDeadLettersAndReplay(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t)
	rcv.answer("p1", response{status: 400})
	a := startApp(t, testConfig(t, "memory", rcv.srv.URL, pipelineSteps, ""))
	if st, b := post(t, a, "shop", "application/json", `{"id":"p1","type":"order.paid","data":{"order_id":1,"amount":1}}`); st != 202 {
		t.Fatal(st, b)
	}
	var list struct {
		DeadLetters []api.DeadLetterJSON `json:"dead_letters"`
	}
	testenv.Eventually(t, 10*time.Second, "dead letter recorded", func() bool {
		getJSON(t, a, "/v1/dead-letters", &list)
		return len(list.DeadLetters) == 1
	})
	dl := list.DeadLetters[0]
	if dl.Sink != "partner" || dl.Kind != "permanent" || !strings.Contains(dl.Reason, "400") || dl.Attempts != 1 {
		t.Errorf("dead letter = %+v", dl)
	}
	if n := len(rcv.attempts("p1")); n != 1 {
		t.Errorf("a 400 was retried: %d attempts", n)
	}
	// Replay: the receiver now accepts it.
	resp, err := http.Post("http://"+a.Addr()+"/v1/dead-letters/"+dl.ID+"/replay", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("replay: %d", resp.StatusCode)
	}
	testenv.Eventually(t, 10*time.Second, "replayed delivery", func() bool { return len(rcv.attempts("p1")) == 2 })
	getJSON(t, a, "/v1/dead-letters", &list)
	if len(list.DeadLetters) != 0 {
		t.Errorf("replayed dead letter still listed: %+v", list.DeadLetters)
	}
}

func TestExhaustedRetriesDeadLetter(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t)
	rcv.answer("x1", response{status: 500}, response{status: 500}, response{status: 500}, response{status: 500}, response{status: 500})
	a := startApp(t, testConfig(t, "memory", rcv.srv.URL, pipelineSteps, ""))
	post(t, a, "shop", "application/json", `{"id":"x1","type":"order.paid","data":{"order_id":1,"amount":1}}`)
	var list struct {
		DeadLetters []api.DeadLetterJSON `json:"dead_letters"`
	}
	testenv.Eventually(t, 10*time.Second, "dead letter", func() bool {
		getJSON(t, a, "/v1/dead-letters?sink=partner", &list)
		return len(list.DeadLetters) == 1
	})
	// Schedule of 3 retries: 4 attempts in all.
	if n := len(rcv.attempts("x1")); n != 4 {
		t.Errorf("attempts = %d, want 4", n)
	}
	if dl := list.DeadLetters[0]; dl.Kind != "exhausted" || dl.Attempts != 4 || !strings.Contains(dl.Reason, "500") {
		t.Errorf("dead letter = %+v", dl)
	}
}

func TestScriptErrorsDeadLetterWithLineAndOthersFlow(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t)
	a := startApp(t, testConfig(t, "memory", rcv.srv.URL, "      - transform: faulty.js", ""))
	post(t, a, "shop", "application/json", `[{"id":"t1","type":"a","data":{"mode":"throw"}},
		{"id":"l1","type":"a","data":{"mode":"loop"}},
		{"id":"ok1","type":"a","data":{"mode":"fine"}}]`)
	testenv.Eventually(t, 10*time.Second, "ok1 delivered", func() bool { return len(rcv.attempts("ok1")) == 1 })
	var list struct {
		DeadLetters []api.DeadLetterJSON `json:"dead_letters"`
	}
	testenv.Eventually(t, 10*time.Second, "two dead letters", func() bool {
		getJSON(t, a, "/v1/dead-letters", &list)
		return len(list.DeadLetters) == 2
	})
	reasons := map[string]string{}
	for _, dl := range list.DeadLetters {
		b := fmt.Sprint(dl.Event)
		if strings.Contains(b, "t1") {
			reasons["throw"] = dl.Reason
		} else {
			reasons["loop"] = dl.Reason
		}
		if dl.Kind != "script" {
			t.Errorf("kind = %q", dl.Kind)
		}
	}
	if r := reasons["throw"]; !strings.Contains(r, "faulty.js:3:") || !strings.Contains(r, "boom for t1") {
		t.Errorf("throw reason = %q, want file:line:column and message", r)
	}
	if r := reasons["loop"]; !strings.Contains(r, "faulty.js:") || !strings.Contains(r, "timed out") {
		t.Errorf("loop reason = %q", r)
	}
	// The engine keeps working after the interrupted runtime.
	post(t, a, "shop", "application/json", `{"id":"ok2","type":"a","data":{"mode":"fine"}}`)
	testenv.Eventually(t, 10*time.Second, "ok2 delivered", func() bool { return len(rcv.attempts("ok2")) == 1 })

	// Replaying a script dead letter runs the steps again (here the script
	// still throws), rather than sending the untransformed event.
	var throwID string
	for _, dl := range list.DeadLetters {
		if strings.Contains(dl.Reason, "boom") {
			throwID = dl.ID
			if dl.Source != "shop" {
				t.Errorf("dead letter source = %q", dl.Source)
			}
		}
	}
	resp, err := http.Post("http://"+a.Addr()+"/v1/dead-letters/"+throwID+"/replay", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	testenv.Eventually(t, 10*time.Second, "the replay dead-lettered again", func() bool {
		getJSON(t, a, "/v1/dead-letters", &list)
		for _, dl := range list.DeadLetters {
			if dl.ID != throwID && strings.Contains(dl.Reason, "boom for t1") {
				return true
			}
		}
		return false
	})
	if n := len(rcv.attempts("t1")); n != 0 {
		t.Errorf("replayed script dead letter reached the sink unscripted %d times", n)
	}
}

func TestSSRFGuardRefusesLoopbackWithoutFlag(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t)
	guarded := `  guarded:
    type: webhook
    config:
      url: ` + strings.Replace(rcv.srv.URL, "127.0.0.1", "localhost", 1) + `
      secret: ` + testSecret + `
      retry: {schedule: [50ms]}
`
	cfg := testConfig(t, "memory", rcv.srv.URL, "", guarded)
	p := cfg.Pipelines["orders"]
	p.To = []string{"partner", "guarded"}
	cfg.Pipelines["orders"] = p
	a := startApp(t, cfg)
	post(t, a, "shop", "application/json", `{"id":"s1","type":"a"}`)
	var list struct {
		DeadLetters []api.DeadLetterJSON `json:"dead_letters"`
	}
	testenv.Eventually(t, 10*time.Second, "guarded dead letter", func() bool {
		getJSON(t, a, "/v1/dead-letters?sink=guarded", &list)
		return len(list.DeadLetters) == 1
	})
	if r := list.DeadLetters[0].Reason; !strings.Contains(r, "loopback") || !strings.Contains(r, "allow_private_networks") {
		t.Errorf("reason = %q", r)
	}
	// The same receiver, through the sink that allows private networks, got it once.
	testenv.Eventually(t, 10*time.Second, "allowed delivery", func() bool { return len(rcv.attempts("s1")) == 1 })
}

func TestBadIngestQueuesNothing(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t)
	a := startApp(t, testConfig(t, "memory", rcv.srv.URL, "", ""))
	cases := []struct {
		name, source, ct, body string
		want                   int
	}{
		{"missing type in batch", "shop", "application/json", `[{"id":"ok-a","type":"a"},{"id":"bad"}]`, 400},
		{"malformed", "shop", "application/json", `{"type":`, 400},
		{"content type", "shop", "text/plain", `hello`, 415},
		{"unknown source", "nope", "application/json", `{"type":"a"}`, 404},
		{"too big", "shop", "application/json", `{"type":"a","data":"` + strings.Repeat("x", 2<<20) + `"}`, 413},
	}
	for _, c := range cases {
		status, body := post(t, a, c.source, c.ct, c.body)
		if status != c.want {
			t.Errorf("%s: status %d, want %d (%v)", c.name, status, c.want, body)
		}
	}
	// A good event after the bad ones is the only one delivered.
	post(t, a, "shop", "application/json", `{"id":"good","type":"a"}`)
	testenv.Eventually(t, 10*time.Second, "good delivered", func() bool { return len(rcv.attempts("good")) == 1 })
	if n := metricValue(t, a, `hookbus_events_received_total{source="shop"}`); n != 1 {
		t.Errorf("received = %v, want 1 (rejected requests must queue nothing)", n)
	}
	if n := len(rcv.attempts("ok-a")); n != 0 {
		t.Errorf("event of a rejected batch was delivered")
	}
}
