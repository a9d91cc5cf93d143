package webhook_test

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/hookbus/hookbus/plugins/webhook"
	"github.com/hookbus/hookbus/sdk"
)

// With compression gzip, a body of 1 KiB or more goes with
// Content-Encoding gzip and a smaller one as it is; the signature covers
// the decoded body, so the Standard Webhooks library verifies what a
// receiver reads after its gzip middleware.
func TestGzipDeliveryVerifiesAfterDecoding(t *testing.T) {
	t.Parallel()
	verifier, err := standardwebhooks.NewWebhook(ceSecret)
	if err != nil {
		t.Fatal(err)
	}
	type got struct {
		encoding string
		wire     int64
		body     string
		err      error
	}
	seen := make(chan got, 2)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g := got{encoding: r.Header.Get("Content-Encoding"), wire: r.ContentLength}
		var body io.Reader = r.Body
		if g.encoding == "gzip" {
			zr, err := gzip.NewReader(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			body = zr
		}
		b, _ := io.ReadAll(body)
		g.body, g.err = string(b), verifier.Verify(b, r.Header)
		seen <- g
		if g.err != nil {
			w.WriteHeader(http.StatusUnauthorized)
		}
	}))
	t.Cleanup(srv.Close)
	w, err := webhook.New(webhook.Config{URL: srv.URL, Secret: ceSecret, AllowPrivateNetworks: true, Compression: "gzip"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		pad     int
		encoded bool
	}{{2000, true}, {10, false}} {
		data, _ := json.Marshal(map[string]string{"pad": strings.Repeat("y", tt.pad)})
		ev := sdk.Event{ID: "ev1", Type: "t", Data: data}
		res := w.Deliver(context.Background(), []sdk.Delivery{{Event: ev, Attempt: 1}})
		g := <-seen
		if res[0].Outcome != sdk.OK || g.err != nil {
			t.Fatalf("pad %d: %+v, verify: %v", tt.pad, res[0], g.err)
		}
		if (g.encoding == "gzip") != tt.encoded || !strings.Contains(g.body, `"ev1"`) {
			t.Fatalf("pad %d: encoding %q, body %q", tt.pad, g.encoding, g.body)
		}
		if tt.encoded && g.wire >= int64(len(g.body)) {
			t.Fatalf("gzip body of %d bytes for %d decoded", g.wire, len(g.body))
		}
	}
}
