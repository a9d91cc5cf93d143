package httpsource_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/hookbus/hookbus/core/problem"
	httpsource "github.com/hookbus/hookbus/plugins/http"
	"github.com/hookbus/hookbus/sdk"
)

// recorder is a Publisher that keeps every batch it is given, or fails with err.
type recorder struct {
	mu      sync.Mutex
	err     error
	batches []batch
}

type batch struct {
	source string
	events []sdk.Event
}

func (r *recorder) Publish(ctx context.Context, source string, events []sdk.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return r.err
	}
	r.batches = append(r.batches, batch{source: source, events: append([]sdk.Event(nil), events...)})
	return nil
}

// recorderNop accepts every batch and keeps nothing.
type recorderNop struct{}

func (recorderNop) Publish(context.Context, string, []sdk.Event) error { return nil }

func (r *recorder) all() []batch {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]batch(nil), r.batches...)
}

// server starts the handler behind a real ServeMux on loopback.
func server(t *testing.T, pub httpsource.Publisher, opts httpsource.Options) string {
	t.Helper()
	if opts.Sources == nil {
		opts.Sources = func(name string) bool { return name == "shop" || name == "crm" }
	}
	opts.Logger = slog.New(slog.DiscardHandler)
	mux := http.NewServeMux()
	mux.Handle(httpsource.Pattern, httpsource.NewHandler(pub, opts))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

type response struct {
	status  int
	header  http.Header
	ids     []string
	problem problem.Problem
	raw     string
}

func do(t *testing.T, method, url, contentType string, headers map[string]string, body []byte) response {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	out := response{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	if resp.StatusCode == http.StatusAccepted {
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("202 content type = %q", ct)
		}
		var a struct{ IDs []string }
		if err := json.Unmarshal(raw, &a); err != nil {
			t.Fatalf("202 body %s: %v", raw, err)
		}
		out.ids = a.IDs
	} else {
		if ct := resp.Header.Get("Content-Type"); ct != problem.ContentType {
			t.Errorf("%d content type = %q, body %s", resp.StatusCode, ct, raw)
		}
		if err := json.Unmarshal(raw, &out.problem); err != nil {
			t.Fatalf("%d body %s: %v", resp.StatusCode, raw, err)
		}
		if out.problem.Status != resp.StatusCode {
			t.Errorf("problem status %d != response status %d", out.problem.Status, resp.StatusCode)
		}
	}
	return out
}

func TestAccepted(t *testing.T) {
	t.Parallel()
	png := []byte{0x89, 'P', 'N', 'G', 0xff, 0x00, 0xfe}
	tests := []struct {
		name        string
		contentType string
		headers     map[string]string
		body        string
		rawBody     []byte
		want        []sdk.Event // ID "" means "a generated ULID"; zero Time means "now"
	}{
		{
			name:        "single envelope",
			contentType: "application/json",
			body:        `{"type":"order.paid","subject":"o-1","data":{"total":12.5},"metadata":{"tenant":"t1"}}`,
			want: []sdk.Event{{Type: "order.paid", Source: "shop", Subject: "o-1",
				Data: json.RawMessage(`{"total":12.5}`), Metadata: map[string]string{"tenant": "t1"}}},
		},
		{
			name: "no content type, producer id and time kept",
			body: `{"id":"idem-1","type":"order.paid","source":"shop-eu","time":"2024-05-01T12:00:00Z"}`,
			want: []sdk.Event{{ID: "idem-1", Type: "order.paid", Source: "shop-eu",
				Time: time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)}},
		},
		{
			name:        "array",
			contentType: "application/json; charset=utf-8",
			body:        `[{"type":"a"},{"id":"keep","type":"b","data":[1,2]},{"type":"c","x-ext":"v"}]`,
			want: []sdk.Event{
				{Type: "a", Source: "shop"},
				{ID: "keep", Type: "b", Source: "shop", Data: json.RawMessage(`[1,2]`)},
				{Type: "c", Source: "shop", Extensions: map[string]json.RawMessage{"x-ext": json.RawMessage(`"v"`)}},
			},
		},
		{
			name:        "cloudevents structured",
			contentType: "application/cloudevents+json",
			body: `{"specversion":"1.0","id":"ce-1","type":"com.example.created","source":"/crm","subject":"c-9",
				"time":"2024-05-01T12:00:00.5+02:00","datacontenttype":"application/json","data":{"a":1},"traceparent":"00-x"}`,
			want: []sdk.Event{{ID: "ce-1", Type: "com.example.created", Source: "/crm", Subject: "c-9",
				Time: time.Date(2024, 5, 1, 12, 0, 0, 5e8, time.FixedZone("", 2*3600)), DataContentType: "application/json",
				Data:       json.RawMessage(`{"a":1}`),
				Extensions: map[string]json.RawMessage{"specversion": json.RawMessage(`"1.0"`), "traceparent": json.RawMessage(`"00-x"`)}}},
		},
		{
			name:        "cloudevents structured data_base64",
			contentType: "application/cloudevents+json",
			body:        `{"specversion":"1.0","id":"b64","type":"blob","source":"s","data_base64":"iVBORw=="}`,
			// Kept as CloudEvents has it (issue 15): not rewritten into data.
			want: []sdk.Event{{ID: "b64", Type: "blob", Source: "s",
				Extensions: map[string]json.RawMessage{"specversion": json.RawMessage(`"1.0"`), "data_base64": json.RawMessage(`"iVBORw=="`)}}},
		},
		{
			name:        "cloudevents batch",
			contentType: "application/cloudevents-batch+json",
			body:        `[{"specversion":"1.0","id":"1","type":"t1","source":"s"},{"specversion":"1.0","type":"t2","source":"s"}]`,
			want: []sdk.Event{
				{ID: "1", Type: "t1", Source: "s", Extensions: map[string]json.RawMessage{"specversion": json.RawMessage(`"1.0"`)}},
				{Type: "t2", Source: "s", Extensions: map[string]json.RawMessage{"specversion": json.RawMessage(`"1.0"`)}},
			},
		},
		{
			name:        "binary mode JSON data",
			contentType: "application/json",
			headers: map[string]string{"ce-specversion": "1.0", "ce-id": "bin-1", "ce-type": "order.paid",
				"ce-source": "/shop", "ce-subject": "o-2", "ce-time": "2024-05-01T12:00:00Z", "ce-traceparent": "00-abc",
				"ce-comment": "caf%C3%A9"},
			body: `{"total": 3}`,
			want: []sdk.Event{{ID: "bin-1", Type: "order.paid", Source: "/shop", Subject: "o-2",
				Time: time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC), DataContentType: "application/json", Data: json.RawMessage(`{"total": 3}`),
				Extensions: map[string]json.RawMessage{"specversion": json.RawMessage(`"1.0"`),
					"traceparent": json.RawMessage(`"00-abc"`), "comment": json.RawMessage(`"café"`)}}},
		},
		{
			name:        "binary mode +json data",
			contentType: "application/vnd.shop+json",
			headers:     map[string]string{"ce-specversion": "1.0", "ce-type": "order.paid"},
			body:        `[1]`,
			want: []sdk.Event{{Type: "order.paid", Source: "shop", DataContentType: "application/vnd.shop+json",
				Data: json.RawMessage(`[1]`), Extensions: map[string]json.RawMessage{"specversion": json.RawMessage(`"1.0"`)}}},
		},
		{
			name:        "binary mode text data",
			contentType: "text/plain; charset=utf-8",
			headers:     map[string]string{"ce-specversion": "1.0", "ce-type": "note", "ce-id": "n1"},
			body:        "hello \"world\"\n",
			want: []sdk.Event{{ID: "n1", Type: "note", Source: "shop", DataContentType: "text/plain; charset=utf-8",
				Data: json.RawMessage(`"hello \"world\"\n"`), Extensions: map[string]json.RawMessage{"specversion": json.RawMessage(`"1.0"`)}}},
		},
		{
			name:        "binary mode binary data",
			contentType: "image/png",
			headers:     map[string]string{"ce-specversion": "1.0", "ce-type": "image"},
			rawBody:     png,
			want: []sdk.Event{{Type: "image", Source: "shop", DataContentType: "image/png",
				Extensions: map[string]json.RawMessage{"specversion": json.RawMessage(`"1.0"`),
					"data_base64": json.RawMessage(`"` + base64.StdEncoding.EncodeToString(png) + `"`)}}},
		},
		{
			name:    "binary mode empty body",
			headers: map[string]string{"ce-specversion": "1.0", "ce-type": "ping"},
			want:    []sdk.Event{{Type: "ping", Source: "shop", Extensions: map[string]json.RawMessage{"specversion": json.RawMessage(`"1.0"`)}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := &recorder{}
			url := server(t, rec, httpsource.Options{}) + "/v1/sources/shop/events"
			body := tt.rawBody
			if body == nil {
				body = []byte(tt.body)
			}
			before := time.Now().UTC()
			resp := do(t, http.MethodPost, url, tt.contentType, tt.headers, body)
			if resp.status != http.StatusAccepted {
				t.Fatalf("status %d, body %s", resp.status, resp.raw)
			}
			got := rec.all()
			if len(got) != 1 || got[0].source != "shop" {
				t.Fatalf("published %+v, want one batch for shop", got)
			}
			events := got[0].events
			if len(events) != len(tt.want) || len(resp.ids) != len(tt.want) {
				t.Fatalf("published %d events, answered %d ids, want %d", len(events), len(resp.ids), len(tt.want))
			}
			for i, want := range tt.want {
				ev := events[i]
				if resp.ids[i] != ev.ID {
					t.Errorf("[%d] answered id %q, published %q", i, resp.ids[i], ev.ID)
				}
				if want.ID == "" {
					if _, err := ulid.ParseStrict(ev.ID); err != nil {
						t.Errorf("[%d] id %q is not a ULID: %v", i, ev.ID, err)
					}
					want.ID = ev.ID
				}
				if want.Time.IsZero() {
					if ev.Time.Before(before) || ev.Time.After(time.Now().UTC()) {
						t.Errorf("[%d] time %v is not the time of the request", i, ev.Time)
					}
					want.Time = ev.Time
				}
				gotJSON, _ := json.Marshal(ev)
				wantJSON, _ := json.Marshal(want)
				if !equalJSON(gotJSON, wantJSON) {
					t.Errorf("[%d] event\n got %s\nwant %s", i, gotJSON, wantJSON)
				}
			}
		})
	}
}

func equalJSON(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return bytes.Equal(xa, ya)
}

func TestRejected(t *testing.T) {
	t.Parallel()
	big := `{"type":"t","data":"` + strings.Repeat("x", 600) + `"}`
	tests := []struct {
		name        string
		method      string
		path        string
		contentType string
		headers     map[string]string
		body        string
		opts        httpsource.Options
		status      int
		detail      string // substring of detail
		errors      []problem.FieldError
	}{
		{
			name: "missing type in batch names the index", contentType: "application/json",
			body:   `[{"type":"ok"},{"id":"x"},{"type":"ok2"}]`,
			status: 400, errors: []problem.FieldError{{Field: "[1].type", Message: "is required"}},
		},
		{
			name: "several errors at once", contentType: "application/json",
			body: `[{"type":""},{"type":"t","time":"yesterday"},{"type":"t","id":"` + strings.Repeat("a", 257) + `"},` +
				`{"type":"t","id":"a\u0007b"},{"type":"` + strings.Repeat("t", 257) + `"},{"type":"t","metadata":{"a":1}},7]`,
			status: 400, errors: []problem.FieldError{
				{Field: "[0].type", Message: "is required"},
				{Field: "[1].time", Message: "must be an RFC 3339 time, e.g. 2024-05-01T12:00:00Z"},
				{Field: "[2].id", Message: "is longer than 256 bytes"},
				{Field: "[3].id", Message: "must not contain control characters"},
				{Field: "[4].type", Message: "is longer than 256 bytes"},
				{Field: "[5].metadata", Message: "must be an object of string values"},
				{Field: "[6]", Message: "must be a JSON object (an event)"},
			},
		},
		{
			name: "single event field has no index", body: `{"type":42}`,
			status: 400, errors: []problem.FieldError{{Field: "type", Message: "must be a string"}},
		},
		{
			name: "malformed JSON gives the position", contentType: "application/json",
			body:   "[\n  {\"type\": \"a\"},\n  {\"type\": }\n]",
			status: 400, detail: "malformed JSON at line 3, column 12 (byte offset 30)",
		},
		{
			name: "truncated JSON", body: `{"type":"a"`,
			status: 400, detail: "malformed JSON at line 1, column 12",
		},
		{
			name: "trailing garbage", body: `{"type":"a"} x`,
			status: 400, detail: "malformed JSON at line 1, column 14",
		},
		{name: "scalar body", body: `"order.paid"`, status: 400, detail: "must be a JSON object"},
		{name: "empty body", contentType: "application/json", status: 400, detail: "request body is empty"},
		{name: "empty array", body: `[]`, status: 400, detail: "array of events is empty"},
		{
			name: "specversion must be 1.0", contentType: "application/cloudevents+json",
			body:   `{"specversion":"0.3","type":"t","source":"s","id":"1"}`,
			status: 400, errors: []problem.FieldError{{Field: "specversion", Message: `must be "1.0"`}},
		},
		{
			name: "data and data_base64", contentType: "application/cloudevents+json",
			body:   `{"specversion":"1.0","type":"t","data":1,"data_base64":"AA=="}`,
			status: 400, errors: []problem.FieldError{{Field: "data_base64", Message: "must not be given together with data"}},
		},
		{
			name: "bad data_base64", contentType: "application/cloudevents-batch+json",
			body:   `[{"specversion":"1.0","type":"t","data_base64":"!!"}]`,
			status: 400, errors: []problem.FieldError{{Field: "[0].data_base64", Message: "must be standard base64"}},
		},
		{
			name: "structured single rejects array", contentType: "application/cloudevents+json",
			body: `[{"type":"t"}]`, status: 400, detail: "application/cloudevents-batch+json",
		},
		{
			name: "batch rejects object", contentType: "application/cloudevents-batch+json",
			body: `{"type":"t"}`, status: 400, detail: "JSON array",
		},
		{
			name: "binary mode missing type and bad time", contentType: "text/plain",
			headers: map[string]string{"ce-specversion": "1.0", "ce-id": "1", "ce-time": "noon"},
			body:    "hi", status: 400, errors: []problem.FieldError{
				{Field: "ce-time", Message: "must be an RFC 3339 time, e.g. 2024-05-01T12:00:00Z"},
				{Field: "ce-type", Message: "is required"},
			},
		},
		{
			name: "binary mode bad specversion", contentType: "text/plain",
			headers: map[string]string{"ce-specversion": "2.0", "ce-type": "t"},
			body:    "hi", status: 400, errors: []problem.FieldError{{Field: "ce-specversion", Message: `must be "1.0"`}},
		},
		{
			name: "binary mode invalid JSON data", contentType: "application/json",
			headers: map[string]string{"ce-specversion": "1.0", "ce-type": "t"},
			body:    `{"a":`, status: 400, detail: "data: malformed JSON at line 1, column 6",
			errors: []problem.FieldError{{Field: "data", Message: `must be valid JSON for content type "application/json"`}},
		},
		{
			name: "wrong content type", contentType: "text/plain", body: `{"type":"t"}`,
			status: 415, detail: `content type "text/plain" is not accepted; send application/json, application/cloudevents+json`,
		},
		{
			name: "form content type (curl -d without -H)", contentType: "application/x-www-form-urlencoded", body: `{"type":"t"}`,
			status: 415, detail: `"application/x-www-form-urlencoded" is not accepted`,
		},
		{
			name: "unparsable content type", contentType: "application/", body: `{"type":"t"}`,
			status: 415, detail: "cannot be parsed",
		},
		{
			name: "other charset", contentType: "application/json; charset=latin1", body: `{"type":"t"}`,
			status: 415, detail: "utf-8",
		},
		{
			name: "body over MaxBody", body: big, opts: httpsource.Options{MaxBody: 512},
			status: 413, detail: "larger than the limit of 512 bytes",
		},
		{
			name: "3 MiB body over the default 1 MiB", body: "[" + strings.Repeat(`{"type":"t"},`, 3<<20/13) + `{"type":"t"}]`,
			status: 413, detail: "larger than the limit of 1048576 bytes",
		},
		{
			name: "batch over MaxBatch", body: `[{"type":"a"},{"type":"b"},{"type":"c"}]`, opts: httpsource.Options{MaxBatch: 2},
			status: 413, detail: "the batch has 3 events, more than the limit of 2",
		},
		{name: "unknown source", path: "/v1/sources/nope/events", body: `{"type":"t"}`, status: 404, detail: `unknown source "nope"`},
		{name: "GET", method: http.MethodGet, status: 405, detail: "method GET is not allowed"},
		{name: "PUT", method: http.MethodPut, body: `{"type":"t"}`, status: 405},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := &recorder{}
			base := server(t, rec, tt.opts)
			path := tt.path
			if path == "" {
				path = "/v1/sources/shop/events"
			}
			method := tt.method
			if method == "" {
				method = http.MethodPost
			}
			resp := do(t, method, base+path, tt.contentType, tt.headers, []byte(tt.body))
			if resp.status != tt.status {
				t.Fatalf("status %d, want %d; body %s", resp.status, tt.status, resp.raw)
			}
			if !strings.Contains(resp.problem.Detail, tt.detail) {
				t.Errorf("detail %q does not contain %q", resp.problem.Detail, tt.detail)
			}
			if resp.problem.Instance != path {
				t.Errorf("instance %q, want %q", resp.problem.Instance, path)
			}
			if tt.errors != nil && fmt.Sprint(resp.problem.Errors) != fmt.Sprint(tt.errors) {
				t.Errorf("errors\n got %+v\nwant %+v", resp.problem.Errors, tt.errors)
			}
			if tt.status == 405 && resp.header.Get("Allow") != "POST" {
				t.Errorf("Allow = %q", resp.header.Get("Allow"))
			}
			if got := rec.all(); len(got) != 0 {
				t.Errorf("a rejected request published %+v", got)
			}
		})
	}
}

func TestPublishErrorIs503(t *testing.T) {
	t.Parallel()
	rec := &recorder{err: errors.New("nats: no responders")}
	url := server(t, rec, httpsource.Options{}) + "/v1/sources/shop/events"
	resp := do(t, http.MethodPost, url, "application/json", nil, []byte(`[{"type":"a"},{"type":"b"}]`))
	if resp.status != http.StatusServiceUnavailable {
		t.Fatalf("status %d, body %s", resp.status, resp.raw)
	}
	if resp.problem.Detail != "queue unavailable, nothing accepted; retry" {
		t.Errorf("detail %q", resp.problem.Detail)
	}
	if strings.Contains(resp.raw, "nats") {
		t.Errorf("the internal error leaked to the client: %s", resp.raw)
	}
	if resp.header.Get("Retry-After") == "" {
		t.Error("no Retry-After header")
	}
}

// waitError is a publish error with a retry hint, as core/queue's
// UnavailableError has.
type waitError struct{ wait time.Duration }

func (e waitError) Error() string             { return "queue unavailable: nats: no responders" }
func (e waitError) RetryAfter() time.Duration { return e.wait }

// TestUnavailableQueueIs503WithItsRetryAfter: a queue that is unavailable
// for now (a stream without a leader) answers 503 with the queue's retry
// hint, rounded up to whole seconds, and no broker text.
func TestUnavailableQueueIs503WithItsRetryAfter(t *testing.T) {
	t.Parallel()
	rec := &recorder{err: fmt.Errorf("queue: publish to hookbus.in.shop: %w", waitError{2500 * time.Millisecond})}
	url := server(t, rec, httpsource.Options{}) + "/v1/sources/shop/events"
	resp := do(t, http.MethodPost, url, "application/json", nil, []byte(`[{"type":"a"},{"type":"b"}]`))
	if resp.status != http.StatusServiceUnavailable {
		t.Fatalf("status %d, body %s", resp.status, resp.raw)
	}
	if got := resp.header.Get("Retry-After"); got != "3" {
		t.Errorf("Retry-After %q, want 3", got)
	}
	if resp.problem.Code != "unavailable" || !strings.Contains(resp.problem.Detail, "nothing accepted; retry after 3s") {
		t.Errorf("problem %+v", resp.problem)
	}
	if strings.Contains(resp.raw, "nats") {
		t.Errorf("the internal error leaked to the client: %s", resp.raw)
	}
}

// TestOnePublishPerRequest checks that a batch reaches the publisher in a
// single call, so the publisher can make it all-or-nothing.
func TestOnePublishPerRequest(t *testing.T) {
	t.Parallel()
	var calls []int
	var mu sync.Mutex
	pub := httpsource.PublisherFunc(func(ctx context.Context, source string, events []sdk.Event) error {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, len(events))
		return nil
	})
	url := server(t, pub, httpsource.Options{}) + "/v1/sources/crm/events"
	var body strings.Builder
	body.WriteString("[")
	for i := range 1000 {
		if i > 0 {
			body.WriteString(",")
		}
		fmt.Fprintf(&body, `{"type":"t%d"}`, i)
	}
	body.WriteString("]")
	resp := do(t, http.MethodPost, url, "application/json", nil, []byte(body.String()))
	if resp.status != http.StatusAccepted || len(resp.ids) != 1000 {
		t.Fatalf("status %d, %d ids", resp.status, len(resp.ids))
	}
	mu.Lock()
	defer mu.Unlock()
	if len(calls) != 1 || calls[0] != 1000 {
		t.Errorf("publish calls %v, want one call with 1000 events", calls)
	}
}

func TestConcurrentPosts(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	url := server(t, rec, httpsource.Options{}) + "/v1/sources/shop/events"
	const posts = 50
	var wg sync.WaitGroup
	idsCh := make(chan []string, posts)
	for i := range posts {
		wg.Go(func() {
			body := fmt.Sprintf(`[{"type":"a","subject":"%d"},{"type":"b"}]`, i)
			req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			var a struct{ IDs []string }
			if resp.StatusCode != http.StatusAccepted || json.NewDecoder(resp.Body).Decode(&a) != nil {
				t.Errorf("post %d: status %d", i, resp.StatusCode)
				return
			}
			idsCh <- a.IDs
		})
	}
	wg.Wait()
	close(idsCh)
	seen := map[string]bool{}
	for ids := range idsCh {
		for _, id := range ids {
			if seen[id] {
				t.Errorf("id %s assigned twice", id)
			}
			seen[id] = true
		}
	}
	if len(seen) != 2*posts {
		t.Errorf("%d distinct ids, want %d", len(seen), 2*posts)
	}
	if n := len(rec.all()); n != posts {
		t.Errorf("%d batches published, want %d", n, posts)
	}
}

// TestPathFallback serves the handler without a ServeMux pattern, so the
// source comes from the path.
func TestPathFallback(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	h := httpsource.NewHandler(rec, httpsource.Options{Logger: slog.New(slog.DiscardHandler)})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	for path, want := range map[string]int{
		"/v1/sources/orders/events":      http.StatusAccepted,
		"/api/v1/sources/orders/events/": http.StatusAccepted,
		"/v1/sources//events":            http.StatusNotFound,
		"/v1/orders/events":              http.StatusNotFound,
	} {
		resp := do(t, http.MethodPost, srv.URL+path, "application/json", nil, []byte(`{"type":"t"}`))
		if resp.status != want {
			t.Errorf("%s: status %d, want %d (%s)", path, resp.status, want, resp.raw)
		}
	}
	for _, b := range rec.all() {
		if b.source != "orders" || b.events[0].Source != "orders" {
			t.Errorf("published to %q with event source %q", b.source, b.events[0].Source)
		}
	}
}

// TestNumbersOutOfFloat64RangeRejected: a number no float64 can hold
// (1e700) is refused with 400 naming its path, in every ingest format, and
// nothing of the request is published: scripts could never read it.
func TestNumbersOutOfFloat64RangeRejected(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	base := server(t, rec, httpsource.Options{}) + "/v1/sources/shop/events"
	ce := map[string]string{"Ce-Specversion": "1.0", "Ce-Type": "t", "Ce-Id": "1", "Ce-Source": "s"}
	for _, tt := range []struct {
		name, contentType string
		headers           map[string]string
		body, field       string
	}{
		{"envelope", "application/json", nil, `{"type":"t","data":{"items":[{},{},{"price":1e700}]}}`, "data.items[2].price"},
		{"negative", "application/json", nil, `{"type":"t","data":-1e400}`, "data"},
		{"array", "application/json", nil, `[{"type":"ok","data":1},{"type":"t","data":{"n":[0,1E999]}}]`, "[1].data.n[1]"},
		{"extension member", "application/json", nil, `{"type":"t","total":{"sum":2e308}}`, "total.sum"},
		{"structured", "application/cloudevents+json", nil, `{"specversion":"1.0","id":"1","source":"s","type":"t","data":{"price":1e700}}`, "data.price"},
		{"batch", "application/cloudevents-batch+json", nil, `[{"specversion":"1.0","id":"1","source":"s","type":"t"},{"specversion":"1.0","id":"2","source":"s","type":"t","data":[1e700]}]`, "[1].data[0]"},
		{"binary JSON body", "application/json", ce, `{"order":{"price":1e700}}`, "data.order.price"},
		{"binary +json body", "application/vnd.shop+json", ce, `[1e700]`, "data[0]"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp := do(t, http.MethodPost, base, tt.contentType, tt.headers, []byte(tt.body))
			if resp.status != http.StatusBadRequest {
				t.Fatalf("status %d, want 400; body %s", resp.status, resp.raw)
			}
			if len(resp.problem.Errors) != 1 || resp.problem.Errors[0].Field != tt.field ||
				!strings.Contains(resp.problem.Errors[0].Message, "out of the float64 range") {
				t.Errorf("errors %+v, want one for %s saying the number is out of range", resp.problem.Errors, tt.field)
			}
		})
	}
	if got := rec.all(); len(got) != 0 {
		t.Errorf("a rejected request published %+v", got)
	}
	// The largest float64 and an underflow (read as 0) are fine.
	if resp := do(t, http.MethodPost, base, "application/json", nil, []byte(`{"type":"t","data":[1.7976931348623157e308,1e-400]}`)); resp.status != http.StatusAccepted {
		t.Errorf("in-range numbers: status %d, body %s", resp.status, resp.raw)
	}
}

// idsPublisher records which events the handler says came with their
// producer's id.
type idsPublisher struct {
	recorderNop
	mu         sync.Mutex
	producerID map[string]bool
}

func (p *idsPublisher) PublishProducerIDs(_ context.Context, _ string, events []sdk.Event, producerID []bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, ev := range events {
		p.producerID[ev.Type] = producerID[i]
	}
	return nil
}

// A Publisher that can take it is told which ids the producer gave and
// which Fill generated.
func TestProducerIDsTold(t *testing.T) {
	t.Parallel()
	pub := &idsPublisher{producerID: map[string]bool{}}
	url := server(t, pub, httpsource.Options{}) + "/v1/sources/crm/events"
	resp := do(t, http.MethodPost, url, "application/json", nil, []byte(`[{"id":"p-1","type":"given"},{"type":"generated"}]`))
	if resp.status != http.StatusAccepted || len(resp.ids) != 2 || resp.ids[1] == "" {
		t.Fatalf("status %d, ids %v", resp.status, resp.ids)
	}
	pub.mu.Lock()
	defer pub.mu.Unlock()
	if !pub.producerID["given"] || pub.producerID["generated"] || len(pub.producerID) != 2 {
		t.Fatalf("producer ids told: %v, want given: true, generated: false", pub.producerID)
	}
}
