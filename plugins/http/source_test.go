package httpsource_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	httpsource "github.com/hookbus/hookbus/plugins/http"
	"github.com/hookbus/hookbus/sdk"
	"github.com/hookbus/hookbus/sdk/plugintest"
)

// sourceBin builds the hookbus-http-source plugin (once per test run).
func sourceBin(t testing.TB) string { return plugintest.Build(t, "./cmd/hookbus-http-source") }

// freeAddr returns a loopback address with a port nobody listens on. The
// conformance suite makes a fresh source (a fresh process for the binary)
// for each check with the same config, so the port is fixed up front.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// postEvents POSTs body to the source at addr, as a producer would:
// connection errors (the source is still starting) and 503 (hookbus did not
// queue the batch) are retried with the same body until 202.
func postEvents(t testing.TB, addr, source string, body []byte) []string {
	t.Helper()
	url := "http://" + addr + "/v1/sources/" + source + "/events"
	deadline := time.Now().Add(plugintest.Timeout)
	for {
		resp, err := http.Post(url, "application/json", bytes.NewReader(body))
		if err == nil {
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			switch resp.StatusCode {
			case http.StatusAccepted:
				var a struct{ IDs []string }
				if err := json.Unmarshal(raw, &a); err != nil {
					t.Fatalf("202 body %s: %v", raw, err)
				}
				return a.IDs
			case http.StatusServiceUnavailable:
				if resp.Header.Get("Retry-After") == "" {
					t.Errorf("503 without Retry-After")
				}
			default:
				t.Fatalf("POST %s: %d %s", url, resp.StatusCode, raw)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("POST %s: no 202 within %s (last error %v)", url, plugintest.Timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func sourceOptions(t *testing.T) plugintest.SourceOptions {
	addr := freeAddr(t)
	var n atomic.Int64
	return plugintest.SourceOptions{
		Config:    json.RawMessage(fmt.Sprintf(`{"listen": %q, "max_batch": 10}`, addr)),
		BadConfig: json.RawMessage(`{"listen": "no-port", "max_body": -1}`),
		Feed: func(t testing.TB, count int) {
			evs := make([]map[string]any, count)
			for i := range evs {
				k := n.Add(1)
				// Producer-given ids: a retried request is the same events.
				evs[i] = map[string]any{"id": fmt.Sprintf("feed-%d", k), "type": "http.test", "data": map[string]any{"n": k}}
			}
			body, _ := json.Marshal(evs)
			postEvents(t, addr, "shop", body)
		},
	}
}

func TestSourceConformance(t *testing.T) {
	plugintest.RunSource(t, func() sdk.Source {
		return &httpsource.Source{Logger: slog.New(slog.DiscardHandler)}
	}, sourceOptions(t))
}

func TestSourceBinaryConformance(t *testing.T) {
	plugintest.RunSourceBinary(t, sourceBin(t), sourceOptions(t))
}

func TestSourceBinaryDescribe(t *testing.T) {
	m := plugintest.Describe(t, sourceBin(t))
	if m.Name != httpsource.SourceName || len(m.Kinds) != 1 || m.Kinds[0] != sdk.KindSource || !json.Valid(m.ConfigSchema) {
		t.Fatalf("manifest = %+v", m)
	}
}

// emitter records batches and fails them while fail is set.
type emitter struct {
	mu      sync.Mutex
	fail    error
	batches [][]sdk.Event
}

func (e *emitter) Emit(_ context.Context, events []sdk.Event) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.fail != nil {
		return e.fail
	}
	e.batches = append(e.batches, events)
	return nil
}

func runSource(t *testing.T, cfg string, em sdk.Emitter) *httpsource.Source {
	t.Helper()
	s := &httpsource.Source{Logger: slog.New(slog.DiscardHandler)}
	if err := s.Init(context.Background(), json.RawMessage(cfg)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, em) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		if err := s.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func TestSourceAnswersAfterEmit(t *testing.T) {
	t.Parallel()
	em := &emitter{fail: errors.New("queue down")}
	s := runSource(t, `{"listen": "127.0.0.1:0", "max_batch": 2}`, em)
	url := "http://" + s.Addr().String() + "/v1/sources/crm/events"
	body := []byte(`[{"type": "a"}, {"id": "x", "type": "b"}]`)

	resp := do(t, http.MethodPost, url, "application/json", nil, body)
	if resp.status != http.StatusServiceUnavailable || resp.header.Get("Retry-After") == "" {
		t.Fatalf("with a failing Emit: %d %s, want 503 with Retry-After", resp.status, resp.raw)
	}

	em.mu.Lock()
	em.fail = nil
	em.mu.Unlock()
	resp = do(t, http.MethodPost, url, "application/json", nil, body)
	if resp.status != http.StatusAccepted || len(resp.ids) != 2 || resp.ids[1] != "x" {
		t.Fatalf("after Emit recovered: %d %s", resp.status, resp.raw)
	}
	em.mu.Lock()
	defer em.mu.Unlock()
	if len(em.batches) != 1 || len(em.batches[0]) != 2 {
		t.Fatalf("emitted %v, want one batch of 2", em.batches)
	}
	for i, ev := range em.batches[0] {
		if ev.ID != resp.ids[i] || ev.Source != "crm" || ev.Time.IsZero() {
			t.Errorf("event %d = %+v, want id %s, source crm and a time", i, ev, resp.ids[i])
		}
	}

	if r := do(t, http.MethodPost, url, "application/json", nil, []byte(`[{"type":"a"},{"type":"b"},{"type":"c"}]`)); r.status != http.StatusRequestEntityTooLarge {
		t.Errorf("3 events with max_batch 2: %d %s, want 413", r.status, r.raw)
	}
}

func TestSourceConfigErrors(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	tests := []struct {
		name, config string
		want         []string
	}{
		{"missing listen", `{}`, []string{"listen: required"}},
		{"bad listen", `{"listen": "8080"}`, []string{`listen: "8080" is not a host:port address`}},
		{"negatives", `{"listen": ":0", "max_body": -1, "max_batch": -2}`, []string{"max_body: must not be negative", "max_batch: must not be negative"}},
		{"unknown key", `{"listen": ":0", "port": 1}`, []string{`unknown field "port"`}},
		{"port in use", fmt.Sprintf(`{"listen": %q}`, busy.Addr()), []string{"listen: ", "address already in use"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &httpsource.Source{}
			err := s.Init(context.Background(), json.RawMessage(tt.config))
			if err == nil {
				_ = s.Close(context.Background())
				t.Fatalf("Init(%s) accepted it", tt.config)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Init(%s) = %v, want it to contain %q", tt.config, err, w)
				}
			}
			var ce *sdk.ConfigError
			if !errors.As(err, &ce) {
				t.Errorf("error %v holds no *sdk.ConfigError", err)
			}
		})
	}
}
