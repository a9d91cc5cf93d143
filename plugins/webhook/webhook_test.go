package webhook

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookbus/hookbus/core/attempt"
	"github.com/hookbus/hookbus/core/signing"
	"github.com/hookbus/hookbus/internal/testenv"
	"github.com/hookbus/hookbus/sdk"
)

const testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// received is one request as the receiver saw it.
type received struct {
	header http.Header
	body   []byte
	proto  int
	sigErr error
}

// receiver is a real HTTP server that checks signatures like a Standard
// Webhooks consumer and answers with respond.
type receiver struct {
	srv      *httptest.Server
	secrets  []signing.Secret
	newConns atomic.Int64
	mu       sync.Mutex
	got      []received
	respond  func(w http.ResponseWriter, r *http.Request, n int)
}

func newReceiver(t testing.TB, respond func(w http.ResponseWriter, r *http.Request, n int), secrets ...string) *receiver {
	t.Helper()
	if len(secrets) == 0 {
		secrets = []string{testSecret}
	}
	rc := &receiver{respond: respond}
	for _, s := range secrets {
		sec, err := signing.ParseSecret(s)
		if err != nil {
			t.Fatal(err)
		}
		rc.secrets = append(rc.secrets, sec)
	}
	rc.srv = httptest.NewUnstartedServer(rc)
	rc.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			rc.newConns.Add(1)
		}
	}
	return rc
}

func (rc *receiver) start(t testing.TB) *receiver {
	rc.srv.Start()
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var sigErr error
	for _, s := range rc.secrets {
		if err := signing.Verify(s, r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp"),
			r.Header.Get("webhook-signature"), body, 5*time.Minute, time.Now()); err != nil {
			sigErr = errors.Join(sigErr, err)
		}
	}
	rc.mu.Lock()
	rc.got = append(rc.got, received{header: r.Header.Clone(), body: body, proto: r.ProtoMajor, sigErr: sigErr})
	n := len(rc.got)
	rc.mu.Unlock()
	if rc.respond != nil {
		rc.respond(w, r, n)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (rc *receiver) requests() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.got...)
}

func status(code int) func(http.ResponseWriter, *http.Request, int) {
	return func(w http.ResponseWriter, _ *http.Request, _ int) { w.WriteHeader(code) }
}

// sink builds an initialised sink from a config map, failing the test on error.
func sink(t testing.TB, cfg map[string]any) *Webhook {
	t.Helper()
	if _, ok := cfg["secret"]; !ok && cfg["secrets"] == nil {
		cfg["secret"] = testSecret
	}
	raw, _ := json.Marshal(cfg)
	w := &Webhook{}
	info, err := w.Init(context.Background(), raw)
	if err != nil {
		t.Fatalf("Init(%s): %v", raw, err)
	}
	if info.MaxInFlight != w.cfg.MaxInFlight {
		t.Fatalf("SinkInfo.MaxInFlight = %d, want %d", info.MaxInFlight, w.cfg.MaxInFlight)
	}
	t.Cleanup(func() { w.Close(context.Background()) })
	return w
}

func localSink(t testing.TB, url string, extra map[string]any) *Webhook {
	cfg := map[string]any{"url": url, "allow_private_networks": true}
	for k, v := range extra {
		cfg[k] = v
	}
	return sink(t, cfg)
}

func event(id string) sdk.Delivery {
	return sdk.Delivery{
		Event: sdk.Event{
			ID:     id,
			Type:   "order.paid",
			Source: "shop",
			Time:   time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
			Data:   json.RawMessage(`{"order":42}`),
			Extensions: map[string]json.RawMessage{
				"tenant": json.RawMessage(`"acme"`),
			},
		},
		Attempt:  1,
		Pipeline: "p",
	}
}

func TestDeliverOKSignedRequest(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t, nil).start(t)
	w := localSink(t, rc.srv.URL+"/hooks", map[string]any{
		"headers": map[string]string{"Authorization": "Bearer abc", "X-Tenant": "acme"},
	})
	d := event("evt_1")
	res := w.Deliver(context.Background(), []sdk.Delivery{d})
	if len(res) != 1 || res[0].Outcome != sdk.OK || res[0].StatusCode != http.StatusNoContent {
		t.Fatalf("results = %+v", res)
	}
	reqs := rc.requests()
	if len(reqs) != 1 {
		t.Fatalf("receiver got %d requests", len(reqs))
	}
	r := reqs[0]
	if r.sigErr != nil {
		t.Fatalf("signature does not verify: %v", r.sigErr)
	}
	for k, want := range map[string]string{
		"Content-Type":  "application/json",
		"User-Agent":    "hookbus/1",
		"Webhook-Id":    "evt_1",
		"Authorization": "Bearer abc",
		"X-Tenant":      "acme",
	} {
		if got := r.header.Get(k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
	ts, err := strconv.ParseInt(r.header.Get("Webhook-Timestamp"), 10, 64)
	if err != nil || time.Since(time.Unix(ts, 0)).Abs() > time.Minute {
		t.Errorf("webhook-timestamp = %q", r.header.Get("Webhook-Timestamp"))
	}
	want, _ := json.Marshal(d.Event)
	if string(r.body) != string(want) {
		t.Errorf("body = %s, want %s", r.body, want)
	}
	var back sdk.Event
	if err := json.Unmarshal(r.body, &back); err != nil || back.ID != "evt_1" || string(back.Extensions["tenant"]) != `"acme"` {
		t.Errorf("body does not round-trip: %v %+v", err, back)
	}
}

func TestDeliverSecretRotation(t *testing.T) {
	t.Parallel()
	second, _ := signing.GenerateSecret()
	for _, verifyWith := range []string{testSecret, second} {
		rc := newReceiver(t, nil, verifyWith).start(t)
		w := localSink(t, rc.srv.URL, map[string]any{"secrets": []string{testSecret, second}})
		if res := w.DeliverOne(context.Background(), event("evt_rot")); res.Outcome != sdk.OK {
			t.Fatalf("result = %+v", res)
		}
		r := rc.requests()[0]
		if r.sigErr != nil {
			t.Fatalf("receiver with one of the secrets: %v", r.sigErr)
		}
		if n := len(strings.Fields(r.header.Get("Webhook-Signature"))); n != 2 {
			t.Fatalf("want 2 signatures, header %q", r.header.Get("Webhook-Signature"))
		}
	}
}

func TestDeliverOutcomes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		respond    func(http.ResponseWriter, *http.Request, int)
		extra      map[string]any
		outcome    sdk.Outcome
		code       int
		reason     string // substring
		retryAfter [2]time.Duration
	}{
		{name: "200", respond: status(200), outcome: sdk.OK, code: 200},
		{name: "202", respond: status(202), outcome: sdk.OK, code: 202},
		{name: "500", respond: status(500), outcome: sdk.Retry, code: 500, reason: "HTTP 500"},
		{name: "502 with body", outcome: sdk.Retry, code: 502, reason: "HTTP 502: upstream down",
			respond: func(w http.ResponseWriter, _ *http.Request, _ int) {
				w.WriteHeader(502)
				io.WriteString(w, "upstream\ndown")
			}},
		{name: "503 Retry-After seconds", outcome: sdk.Retry, code: 503, reason: "HTTP 503",
			retryAfter: [2]time.Duration{7 * time.Second, 7 * time.Second},
			respond: func(w http.ResponseWriter, _ *http.Request, _ int) {
				w.Header().Set("Retry-After", "7")
				w.WriteHeader(503)
			}},
		{name: "503 Retry-After date", outcome: sdk.Retry, code: 503, reason: "HTTP 503",
			retryAfter: [2]time.Duration{20 * time.Second, 31 * time.Second},
			respond: func(w http.ResponseWriter, _ *http.Request, _ int) {
				w.Header().Set("Retry-After", time.Now().Add(30*time.Second).UTC().Format(http.TimeFormat))
				w.WriteHeader(503)
			}},
		{name: "429 Retry-After capped", outcome: sdk.Retry, code: 429, reason: "HTTP 429",
			extra:      map[string]any{"max_retry_after": "2m"},
			retryAfter: [2]time.Duration{2 * time.Minute, 2 * time.Minute},
			respond: func(w http.ResponseWriter, _ *http.Request, _ int) {
				w.Header().Set("Retry-After", "86400")
				w.WriteHeader(429)
			}},
		{name: "429 bad Retry-After ignored", outcome: sdk.Retry, code: 429, reason: "HTTP 429",
			respond: func(w http.ResponseWriter, _ *http.Request, _ int) {
				w.Header().Set("Retry-After", "soon")
				w.WriteHeader(429)
			}},
		{name: "408", respond: status(408), outcome: sdk.Retry, code: 408, reason: "HTTP 408"},
		{name: "400 with body", outcome: sdk.Permanent, code: 400, reason: `HTTP 400: {"error": "missing field order"}`,
			respond: func(w http.ResponseWriter, _ *http.Request, _ int) {
				w.WriteHeader(400)
				io.WriteString(w, `{"error": "missing field order"}`)
			}},
		{name: "404", respond: status(404), outcome: sdk.Permanent, code: 404, reason: "HTTP 404"},
		{name: "410", respond: status(410), outcome: sdk.Permanent, code: 410, reason: ReasonGone},
		{name: "301 not followed", outcome: sdk.Permanent, code: 301, reason: "redirect not followed (Location: /moved)",
			respond: func(w http.ResponseWriter, _ *http.Request, _ int) {
				w.Header().Set("Location", "/moved")
				w.WriteHeader(301)
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rc := newReceiver(t, tt.respond).start(t)
			w := localSink(t, rc.srv.URL, tt.extra)
			a := w.DeliverAttempt(context.Background(), event("evt_o"))
			r := a.Result
			if r.Outcome != tt.outcome || r.StatusCode != tt.code {
				t.Fatalf("result = %+v, want outcome %v code %d", r, tt.outcome, tt.code)
			}
			if !strings.Contains(r.Reason, tt.reason) || (tt.reason == "" && r.Reason != "") {
				t.Fatalf("reason = %q, want containing %q", r.Reason, tt.reason)
			}
			if r.RetryAfter < tt.retryAfter[0] || r.RetryAfter > tt.retryAfter[1] {
				t.Fatalf("RetryAfter = %v, want within %v", r.RetryAfter, tt.retryAfter)
			}
			if a.Err != nil || a.Latency <= 0 {
				t.Fatalf("attempt detail = %+v", a)
			}
			if len(rc.requests()) != 1 {
				t.Fatalf("receiver got %d requests, want exactly 1 (no retry, no redirect)", len(rc.requests()))
			}
		})
	}
}

func TestDeliverLongErrorBodyIsTruncated(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("é", 5000) // 10 000 bytes, 2-byte runes
	rc := newReceiver(t, func(w http.ResponseWriter, _ *http.Request, _ int) {
		w.WriteHeader(422)
		io.WriteString(w, "x"+long)
	}).start(t)
	w := localSink(t, rc.srv.URL, nil)
	a := w.DeliverAttempt(context.Background(), event("evt_long"))
	r := a.Result
	if r.Outcome != sdk.Permanent || !strings.HasPrefix(r.Reason, "HTTP 422: xé") {
		t.Fatalf("result = %+v", r)
	}
	if len(r.Reason) > len("HTTP 422: ")+200 || strings.Contains(r.Reason, "\uFFFD") {
		t.Fatalf("reason not cut cleanly (%d bytes): %q", len(r.Reason), r.Reason)
	}
	if len(a.ResponseBody) != attempt.MaxResponseBody {
		t.Fatalf("ResponseBody has %d bytes, want %d", len(a.ResponseBody), attempt.MaxResponseBody)
	}
}

func TestDeliverDetailedTellsRequestAndResponse(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t, func(w http.ResponseWriter, _ *http.Request, _ int) {
		w.Header().Set("X-Receiver", "yes")
		w.WriteHeader(503)
		io.WriteString(w, "busy")
	}).start(t)
	w := localSink(t, rc.srv.URL, map[string]any{"headers": map[string]any{"Authorization": "Bearer s3cret"}})
	res, d := w.DeliverDetailed(context.Background(), event("evt_detail"))
	if res.Outcome != sdk.Retry || res.StatusCode != 503 {
		t.Fatalf("result = %+v", res)
	}
	if d == nil || d.URL != rc.srv.URL || d.WebhookID != "evt_detail" || string(d.ResponseBody) != "busy" ||
		d.ResponseHeaders.Get("X-Receiver") != "yes" || d.Err != "" {
		t.Fatalf("detail = %+v", d)
	}
	if d.RequestHeaders.Get(HeaderID) != "evt_detail" || d.RequestHeaders.Get(HeaderSignature) == "" ||
		d.RequestHeaders.Get("Authorization") != "Bearer s3cret" {
		t.Fatalf("request headers = %v", d.RequestHeaders)
	}
	if got := attempt.Redact(d.RequestHeaders).Get("Authorization"); got != "[redacted]" {
		t.Fatalf("redacted Authorization = %q", got)
	}

	// No response: the transport error is the detail's.
	dead := localSink(t, "http://127.0.0.1:1/", nil)
	res, d = dead.DeliverDetailed(context.Background(), event("evt_refused"))
	if res.Outcome != sdk.Retry || d == nil || d.Err == "" || d.ResponseHeaders != nil || d.URL != "http://127.0.0.1:1/" {
		t.Fatalf("refused: result %+v, detail %+v", res, d)
	}
}

func TestDeliverTimeoutIsRetry(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request, _ int) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}).start(t)
	defer close(release)
	w := localSink(t, rc.srv.URL, map[string]any{"timeout": "100ms"})
	a := w.DeliverAttempt(context.Background(), event("evt_slow"))
	if a.Result.Outcome != sdk.Retry || a.Result.Reason != "timeout after 100ms" || a.Err == nil {
		t.Fatalf("attempt = %+v", a)
	}
}

func TestDeliverConnectionRefusedIsRetry(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	w := localSink(t, "http://"+addr+"/", nil)
	r := w.DeliverOne(context.Background(), event("evt_refused"))
	if r.Outcome != sdk.Retry || !strings.Contains(r.Reason, "connection refused") || r.StatusCode != 0 {
		t.Fatalf("result = %+v", r)
	}
	if strings.Contains(r.Reason, "Post ") {
		t.Fatalf("reason keeps the url.Error prefix: %q", r.Reason)
	}
}

func TestDeliverBlockedBySSRFGuard(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t, nil).start(t)
	_, port, _ := net.SplitHostPort(rc.srv.Listener.Addr().String())
	// A hostname passes config validation and is judged after DNS.
	w := sink(t, map[string]any{"url": "http://localhost:" + port + "/hooks"})
	r := w.DeliverOne(context.Background(), event("evt_ssrf"))
	want := "refusing to connect to 127.0.0.1:" + port + ": loopback address (set allow_private_networks to allow)"
	if r.Outcome != sdk.Permanent || r.Reason != want {
		t.Fatalf("result = %+v\nwant reason %q", r, want)
	}
	if n := len(rc.requests()); n != 0 {
		t.Fatalf("receiver got %d requests", n)
	}
	// The same URL with the flag is delivered.
	w2 := localSink(t, "http://localhost:"+port+"/hooks", nil)
	if r := w2.DeliverOne(context.Background(), event("evt_ssrf")); r.Outcome != sdk.OK {
		t.Fatalf("with allow_private_networks: %+v", r)
	}
}

func TestWebhookIDStableAcrossAttempts(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t, func(w http.ResponseWriter, _ *http.Request, n int) {
		if n == 1 {
			w.WriteHeader(500)
		}
	}).start(t)
	w := localSink(t, rc.srv.URL, nil)
	d := event("evt_same")
	if r := w.DeliverOne(context.Background(), d); r.Outcome != sdk.Retry {
		t.Fatalf("first attempt = %+v", r)
	}
	d.Attempt = 2
	if r := w.DeliverOne(context.Background(), d); r.Outcome != sdk.OK {
		t.Fatalf("second attempt = %+v", r)
	}
	reqs := rc.requests()
	if len(reqs) != 2 {
		t.Fatalf("got %d requests", len(reqs))
	}
	for i, r := range reqs {
		if id := r.header.Get("Webhook-Id"); id != "evt_same" {
			t.Fatalf("attempt %d webhook-id = %q", i+1, id)
		}
		if r.sigErr != nil {
			t.Fatalf("attempt %d: %v", i+1, r.sigErr)
		}
	}
}

func TestConnectionReuse(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t, func(w http.ResponseWriter, _ *http.Request, _ int) {
		// A body the sink must drain before the connection can be reused.
		w.WriteHeader(200)
		io.WriteString(w, strings.Repeat("ok ", 2000))
	}).start(t)
	w := localSink(t, rc.srv.URL, nil)
	for i := range 200 {
		if r := w.DeliverOne(context.Background(), event(fmt.Sprintf("evt_%d", i))); r.Outcome != sdk.OK {
			t.Fatalf("delivery %d: %+v", i, r)
		}
	}
	if n := rc.newConns.Load(); n > 2 {
		t.Fatalf("200 sequential deliveries opened %d connections, want <= 2", n)
	}
}

func TestDeliverBatchConcurrentBoundedInOrder(t *testing.T) {
	t.Parallel()
	var cur, peak atomic.Int64
	deadline := time.Now().Add(testenv.Timeout(10 * time.Second))
	rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request, _ int) {
		n := cur.Add(1)
		defer cur.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		// Hold requests until max_in_flight of them overlap (or give up at
		// the deadline, and the peak check below fails).
		for peak.Load() < 3 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if strings.HasSuffix(r.Header.Get("Webhook-Id"), "fail") {
			w.WriteHeader(500)
		}
	}).start(t)
	w := localSink(t, rc.srv.URL, map[string]any{"max_in_flight": 3})
	var batch []sdk.Delivery
	for i := range 24 {
		id := fmt.Sprintf("evt_%d", i)
		if i%3 == 1 {
			id += "_fail"
		}
		batch = append(batch, event(id))
	}
	res := w.Deliver(context.Background(), batch)
	if len(res) != len(batch) {
		t.Fatalf("%d results for %d deliveries", len(res), len(batch))
	}
	for i, r := range res {
		want := sdk.OK
		if i%3 == 1 {
			want = sdk.Retry
		}
		if r.Outcome != want {
			t.Fatalf("result %d = %+v, want %v", i, r, want)
		}
	}
	if p := peak.Load(); p != 3 {
		t.Fatalf("peak concurrency %d, want 3 (max_in_flight 3)", p)
	}
}

func TestDeliverCanceledContext(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t, nil).start(t)
	w := localSink(t, rc.srv.URL, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res := w.Deliver(ctx, []sdk.Delivery{event("a"), event("b")})
	for i, r := range res {
		if r.Outcome != sdk.Retry || !strings.Contains(r.Reason, "interrupted") {
			t.Fatalf("result %d = %+v", i, r)
		}
	}
	if n := len(rc.requests()); n != 0 {
		t.Fatalf("receiver got %d requests", n)
	}
}

func TestDeliverShutdownDuringRequestIsRetry(t *testing.T) {
	t.Parallel()
	arrived := make(chan struct{}, 1)
	rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request, _ int) {
		arrived <- struct{}{}
		<-r.Context().Done()
	}).start(t)
	w := localSink(t, rc.srv.URL, nil)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-arrived; cancel() }()
	r := w.DeliverOne(ctx, event("evt_shutdown"))
	if r.Outcome != sdk.Retry || !strings.Contains(r.Reason, "interrupted") {
		t.Fatalf("result = %+v", r)
	}
}

func TestDeliverBeforeInit(t *testing.T) {
	t.Parallel()
	var w Webhook
	res := w.Deliver(context.Background(), []sdk.Delivery{event("a"), event("b")})
	for _, r := range res {
		if r.Outcome != sdk.Permanent || !strings.Contains(r.Reason, "before Init") {
			t.Fatalf("result = %+v", r)
		}
	}
}

func TestDeliverEventWithoutID(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t, nil).start(t)
	w := localSink(t, rc.srv.URL, nil)
	if r := w.DeliverOne(context.Background(), event("")); r.Outcome != sdk.Permanent {
		t.Fatalf("result = %+v", r)
	}
}

func TestDeliverHTTPSWithHTTP2(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t, nil)
	rc.srv.EnableHTTP2 = true
	rc.srv.StartTLS()
	t.Cleanup(rc.srv.Close)
	w := localSink(t, rc.srv.URL, nil)
	pool := x509.NewCertPool()
	pool.AddCert(rc.srv.Certificate())
	w.transport.TLSClientConfig.RootCAs = pool
	for i := range 5 {
		if r := w.DeliverOne(context.Background(), event(fmt.Sprintf("evt_tls_%d", i))); r.Outcome != sdk.OK {
			t.Fatalf("result = %+v", r)
		}
	}
	for _, r := range rc.requests() {
		if r.proto != 2 || r.sigErr != nil {
			t.Fatalf("proto HTTP/%d, signature error %v", r.proto, r.sigErr)
		}
	}
	if n := rc.newConns.Load(); n != 1 {
		t.Fatalf("HTTP/2 used %d connections, want 1", n)
	}
}

func TestNewFromConfig(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t, nil).start(t)
	w, err := New(Config{URL: rc.srv.URL, Secret: testSecret, AllowPrivateNetworks: true})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close(context.Background())
	if c := w.Config(); c.Timeout != DefaultTimeout || c.MaxInFlight != DefaultMaxInFlight {
		t.Fatalf("defaults not applied: %+v", c)
	}
	if r := w.DeliverOne(context.Background(), event("evt_new")); r.Outcome != sdk.OK {
		t.Fatalf("result = %+v", r)
	}
	if _, err := New(Config{URL: "ftp://x"}); err == nil {
		t.Fatal("New accepted a bad config")
	}
}

// BenchmarkDeliver measures the sink's side of a delivery (marshal, sign,
// POST, drain) against a local server that answers 204 at once.
func BenchmarkDeliver(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	b.Cleanup(srv.Close)
	w := localSink(b, srv.URL, nil)
	d := event("evt_bench")
	d.Event.Data = json.RawMessage(`{"payload":"` + strings.Repeat("x", 1000) + `"}`)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if r := w.DeliverOne(context.Background(), d); r.Outcome != sdk.OK {
				b.Errorf("result = %+v", r)
				return
			}
		}
	})
}

// TestDeliverSendsRawWhenGiven: with Delivery.Raw set the body is those
// bytes, signed, not a fresh encoding of Event.
func TestDeliverSendsRawWhenGiven(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t, nil).start(t)
	w := localSink(t, rc.srv.URL+"/hooks", nil)
	d := event("evt_raw")
	d.Raw = []byte(`{"id":"evt_raw", "type":"t",   "data":{"kept":"as is"}}`)
	if res := w.Deliver(context.Background(), []sdk.Delivery{d}); len(res) != 1 || res[0].Outcome != sdk.OK {
		t.Fatalf("results = %+v", res)
	}
	reqs := rc.requests()
	if len(reqs) != 1 || string(reqs[0].body) != string(d.Raw) || reqs[0].sigErr != nil {
		t.Fatalf("receiver got %q (signature error %v), want the raw bytes", reqs[0].body, reqs[0].sigErr)
	}
}
