package app

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hookbus/hookbus/internal/testenv"
)

// TestSlowBodyIsCutOffAfterReadTimeout: a client that trickles its body is
// disconnected once server.read_timeout has passed, and nothing is queued.
func TestSlowBodyIsCutOffAfterReadTimeout(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t)
	cfg := testConfig(t, "memory", rcv.srv.URL, "", "")
	const readTimeout = 500 * time.Millisecond
	cfg.Server.ReadTimeout = readTimeout
	a := startApp(t, cfg)

	start := time.Now() // before the server can see the connection
	c, err := net.Dial("tcp", a.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "POST /v1/sources/shop/events HTTP/1.1\r\nHost: hookbus\r\nContent-Type: application/json\r\n"+
		"Content-Length: 100000\r\n\r\n{\"type\":\"slow\",\"data\":\""); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() { // one byte every 100ms, far slower than the body needs
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if _, err := c.Write([]byte("x")); err != nil {
					return
				}
			}
		}
	}()
	// Without a body deadline the server waits for the client forever; give
	// it far longer than read_timeout before calling it a failure.
	limit := testenv.Timeout(15 * time.Second)
	_ = c.SetReadDeadline(time.Now().Add(limit))
	_, err = io.Copy(io.Discard, c)
	elapsed := time.Since(start)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the trickling connection was still open after %s (read_timeout %s)", elapsed.Round(time.Millisecond), readTimeout)
	}
	if elapsed < readTimeout {
		t.Errorf("connection closed after %s, before read_timeout %s", elapsed, readTimeout)
	}
	if n := metricValue(t, a, `hookbus_events_received_total{source="shop"}`); n != 0 {
		t.Errorf("received = %v, want 0: the cut-off request must queue nothing", n)
	}
}

// TestConnectionLimitAnswers503: with server.max_connections N and N
// connections open, the next one is answered 503 with Retry-After and
// nothing of it is queued; once the N close, requests succeed again.
func TestConnectionLimitAnswers503(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t)
	cfg := testConfig(t, "memory", rcv.srv.URL, "", "")
	const limit = 3
	cfg.Server.MaxConnections = limit
	a := startApp(t, cfg)

	// Each held connection finishes one keep-alive request, so it is known
	// to be accepted and held by the server, not waiting in the backlog.
	var held []net.Conn
	for i := range limit {
		c, err := net.Dial("tcp", a.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		resp := rawRequest(t, c, "GET /healthz HTTP/1.1\r\nHost: hookbus\r\n\r\n")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("held connection %d: status %d", i, resp.StatusCode)
		}
		held = append(held, c)
	}

	over, err := net.Dial("tcp", a.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer over.Close()
	body := `{"id":"over-limit","type":"a"}`
	resp := rawRequest(t, over, "POST /v1/sources/shop/events HTTP/1.1\r\nHost: hookbus\r\nContent-Type: application/json\r\nContent-Length: "+
		strconv.Itoa(len(body))+"\r\n\r\n"+body)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("connection %d of %d allowed: status %d, want 503", limit+1, limit, resp.StatusCode)
	}
	if resp.Header.Get("Retry-After") == "" {
		t.Errorf("503 without Retry-After: %v", resp.Header)
	}
	if resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("503 Content-Type %q, want application/problem+json", resp.Header.Get("Content-Type"))
	}

	for _, c := range held {
		c.Close()
	}
	// The slots come back as the server notices the closes.
	testenv.Eventually(t, testenv.Timeout(10*time.Second), "a request to succeed after the held connections closed", func() bool {
		resp, err := http.Post("http://"+a.Addr()+"/v1/sources/shop/events", "application/json", strings.NewReader(`{"id":"after","type":"a"}`))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusAccepted
	})
	testenv.Eventually(t, testenv.Timeout(10*time.Second), "the accepted event delivered", func() bool { return len(rcv.attempts("after")) == 1 })
	if n := len(rcv.attempts("over-limit")); n != 0 {
		t.Errorf("the event sent over the connection limit was delivered")
	}
	if n := metricValue(t, a, `hookbus_events_received_total{source="shop"}`); n != 1 {
		t.Errorf("received = %v, want 1", n)
	}
	// At least the one above; the waits for the slots may have met the cap too.
	if n := metricValue(t, a, `hookbus_http_connections_rejected_total`); n < 1 {
		t.Errorf("hookbus_http_connections_rejected_total = %v, want at least 1", n)
	}
}

// rawRequest writes req on c and reads one response.
func rawRequest(t *testing.T, c net.Conn, req string) *http.Response {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(testenv.Timeout(10 * time.Second)))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	_ = c.SetDeadline(time.Time{})
	return resp
}

// TestWarnsWhenExposedWithoutAPIKeys: listening beyond loopback without
// server.api_keys logs a warning naming the address and what is exposed.
func TestWarnsWhenExposedWithoutAPIKeys(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t)
	for _, tt := range []struct {
		name, listen string
		keys         []string
		warn         bool
	}{
		{"all interfaces without keys", "0.0.0.0:0", nil, true},
		{"all interfaces with keys", "0.0.0.0:0", []string{"k"}, false},
		{"loopback without keys", "127.0.0.1:0", nil, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t, "memory", rcv.srv.URL, "", "")
			cfg.Server.Listen = tt.listen
			cfg.Server.APIKeys = tt.keys
			var logs syncBuffer
			a := runApp(t, cfg, &logs)
			stopApp(t, a)
			out := logs.String()
			warned := strings.Contains(out, "level=WARN") && strings.Contains(out, "server.api_keys")
			if warned != tt.warn {
				t.Fatalf("warned = %v, want %v; log:\n%s", warned, tt.warn, out)
			}
			if tt.warn {
				for _, want := range []string{a.Addr(), "dead letters", "replay"} {
					if !strings.Contains(out, want) {
						t.Errorf("warning does not mention %q:\n%s", want, out)
					}
				}
			}
		})
	}
}
