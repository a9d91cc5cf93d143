package app

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/hookbus/hookbus/core/config"
	"github.com/hookbus/hookbus/internal/testenv"
)

// Through the app, on the embedded queue and SQLite: a gzip ingest
// request is accepted; its events go to a batching, compressing webhook
// sink as one request (verified by the Standard Webhooks library after
// the receiver decoded gzip); the delivery log lists the events the batch
// carried under its webhook-id, and each event's record shows it.
func TestBatchedDeliveryThroughTheApp(t *testing.T) {
	verifier, err := standardwebhooks.NewWebhook(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	type request struct {
		webhookID, encoding string
		ids                 []string
	}
	var got []request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req := request{webhookID: r.Header.Get("webhook-id"), encoding: r.Header.Get("Content-Encoding")}
		var body io.Reader = r.Body
		if req.encoding == "gzip" {
			zr, err := gzip.NewReader(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			body = zr
		}
		b, _ := io.ReadAll(body)
		if err := verifier.Verify(b, r.Header); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		var evs []struct{ ID string }
		if err := json.Unmarshal(b, &evs); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for _, ev := range evs {
			req.ids = append(req.ids, ev.ID)
		}
		mu.Lock()
		got = append(got, req)
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)

	dir := t.TempDir()
	y := `version: 1
server: {listen: "127.0.0.1:0", shutdown_timeout: 5s}
data_dir: ` + filepath.Join(dir, "data") + `
sources:
  shop: {type: http}
sinks:
  partner:
    type: webhook
    config:
      url: ` + srv.URL + `
      secret: ` + testSecret + `
      allow_private_networks: true
      compression: gzip
      batch: {max_events: 5, max_wait: 10s}
pipelines:
  orders: {from: [shop], to: [partner]}
`
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path, config.LoadOptions{Env: []string{}, Checkers: Checkers(ScriptOptions(config.Default(), nil))})
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	a := startApp(t, cfg)

	var events []string
	var ids []string
	for i := range 5 {
		id := fmt.Sprintf("ord-%d", i)
		ids = append(ids, id)
		events = append(events, fmt.Sprintf(`{"id":%q,"type":"order.paid","data":{"note":%q}}`, id, strings.Repeat("n", 300)))
	}
	var zbody bytes.Buffer
	zw := gzip.NewWriter(&zbody)
	_, _ = zw.Write([]byte("[" + strings.Join(events, ",") + "]"))
	_ = zw.Close()
	req, _ := http.NewRequest(http.MethodPost, "http://"+a.Addr()+"/v1/sources/shop/events", &zbody)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Content-Encoding", "gzip")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("gzip ingest: %d", resp.StatusCode)
	}

	testenv.Eventually(t, 30*time.Second, "the batch delivered", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) > 0
	})
	mu.Lock()
	first := got[0]
	mu.Unlock()
	carried := slices.Sorted(slices.Values(first.ids))
	if !slices.Equal(carried, ids) || first.encoding != "gzip" || !strings.HasPrefix(first.webhookID, "batch_") {
		t.Fatalf("request %+v, want the 5 events gzipped under a batch_ webhook-id", first)
	}

	var list struct {
		Data []struct {
			EventID   string `json:"event_id"`
			WebhookID string `json:"webhook_id"`
			Outcome   string `json:"outcome"`
		} `json:"data"`
	}
	testenv.Eventually(t, 30*time.Second, "5 attempts under the batch's webhook-id", func() bool {
		getJSON(t, a, "/v1/attempts?webhook_id="+first.webhookID, &list)
		return len(list.Data) == 5
	})
	var listed []string
	for _, at := range list.Data {
		if at.WebhookID != first.webhookID || at.Outcome != "delivered" {
			t.Errorf("attempt %+v", at)
		}
		listed = append(listed, at.EventID)
	}
	if slices.Sort(listed); !slices.Equal(listed, ids) {
		t.Fatalf("the batch's attempts name %v", listed)
	}
	var rec map[string]any
	getJSON(t, a, "/v1/events/ord-3", &rec)
	if b, _ := json.Marshal(rec); !strings.Contains(string(b), first.webhookID) {
		t.Fatalf("event record %s does not name its batch %s", b, first.webhookID)
	}
}
