package httpsource_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hookbus/hookbus/core/problem"
	httpsource "github.com/hookbus/hookbus/plugins/http"
)

// FuzzParse feeds arbitrary bodies and content types to Parse: it must
// never panic, must answer a 4xx problem on failure, and on success return
// events that have a type and encode to valid JSON.
func FuzzParse(f *testing.F) {
	seeds := []struct {
		contentType, ceType string
		body                string
	}{
		{"application/json", "", `{"type":"order.paid","data":{"a":1}}`},
		{"application/json", "", `[{"type":"a"},{"id":"x","type":"b","time":"2024-05-01T12:00:00Z"}]`},
		{"", "", `[{"type":"a"},{"id":"x"}]`},
		{"application/json", "", "[\n {\"type\": }\n]"},
		{"application/json", "", `[]`},
		{"application/json", "", `null`},
		{"application/json", "", `[null, 1, "s", {"type":{}}]`},
		{"application/cloudevents+json", "", `{"specversion":"1.0","id":"1","type":"t","source":"s","data_base64":"AAEC"}`},
		{"application/cloudevents+json", "", `{"specversion":"1.0","type":"t","data":1,"data_base64":"AA=="}`},
		{"application/cloudevents-batch+json", "", `[{"specversion":"1.0","type":"t","source":"s"}]`},
		{"application/json", "order.paid", `{"total":1}`},
		{"image/png", "blob", "\x89PNG\xff\x00"},
		{"text/plain; charset=utf-8", "note", "hello"},
		{"text/plain", "", "hello"},
		{"application/json; charset=latin1", "", `{"type":"t"}`},
		{"application/", "", `{}`},
		{"application/json", "", `{"type":"t","data":{"items":[1,{"price":1e700}]}}`},
		{"application/cloudevents+json", "", `{"specversion":"1.0","type":"t","ext":-1e400}`},
		{"application/json", "big", `[1, 2e999]`},
	}
	for _, s := range seeds {
		f.Add(s.contentType, s.ceType, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, contentType, ceType string, body []byte) {
		req := httptest.NewRequest(http.MethodPost, "/v1/sources/shop/events", bytes.NewReader(body))
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		if ceType != "" {
			req.Header.Set("Ce-Specversion", "1.0")
			req.Header.Set("Ce-Type", ceType)
		}
		const maxBatch = 50
		events, err := httpsource.Parse(req, maxBatch)
		if err != nil {
			p := problem.From(err)
			if p.Status < 400 || p.Status > 499 {
				t.Fatalf("status %d for %v", p.Status, err)
			}
			if events != nil {
				t.Fatalf("events returned with an error")
			}
			return
		}
		if len(events) == 0 || len(events) > maxBatch {
			t.Fatalf("%d events", len(events))
		}
		httpsource.Fill(events, "shop", time.Now())
		for i, ev := range events {
			if ev.Type == "" || ev.ID == "" || ev.Source == "" {
				t.Fatalf("[%d] incomplete event %+v", i, ev)
			}
			b, err := json.Marshal(ev)
			if err != nil || !json.Valid(b) {
				t.Fatalf("[%d] does not encode: %v %s", i, err, b)
			}
			// Every number must fit a float64, as scripts read them.
			var v any
			if err := json.Unmarshal(b, &v); err != nil {
				t.Fatalf("[%d] accepted an event that does not decode: %v %s", i, err, b)
			}
		}
	})
}

func TestParseDefaultsAndTooManyErrors(t *testing.T) {
	t.Parallel()
	// 1001 events exceed the default batch limit.
	body := "[" + strings.TrimSuffix(strings.Repeat(`{"type":"t"},`, 1001), ",") + "]"
	_, err := httpsource.Parse(httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body)), 0)
	if p := problem.From(err); p.Status != http.StatusRequestEntityTooLarge {
		t.Errorf("1001 events with default limit: %v", err)
	}
	// 300 invalid events: the answer lists the first 100 and says how many there are.
	body = "[" + strings.TrimSuffix(strings.Repeat(`{},`, 300), ",") + "]"
	_, err = httpsource.Parse(httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body)), 0)
	p := problem.From(err)
	if p.Status != 400 || len(p.Errors) != 100 || !strings.Contains(p.Detail, "300 errors") || p.Errors[99].Field != "[99].type" {
		t.Errorf("got %d errors, detail %q", len(p.Errors), p.Detail)
	}
}

// BenchmarkIngestParse parses a request carrying one 1 KB event.
func BenchmarkIngestParse(b *testing.B) {
	payload := fmt.Sprintf(`{"type":"order.paid","subject":"o-123","metadata":{"tenant":"t1"},"data":{"order":"o-123","note":%q}}`,
		strings.Repeat("x", 900))
	body := []byte(payload)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, "/v1/sources/shop/events", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		events, err := httpsource.Parse(req, 0)
		if err != nil || len(events) != 1 {
			b.Fatal(err)
		}
	}
}

// BenchmarkIngestHandler runs the whole handler (parse, ids, answer) for one
// 1 KB event with a publisher that accepts at once.
func BenchmarkIngestHandler(b *testing.B) {
	body := []byte(fmt.Sprintf(`{"type":"order.paid","data":{"note":%q}}`, strings.Repeat("x", 980)))
	h := httpsource.NewHandler(&recorderNop{}, httpsource.Options{})
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, "/v1/sources/shop/events", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusAccepted {
			b.Fatal(w.Code, w.Body.String())
		}
	}
}
