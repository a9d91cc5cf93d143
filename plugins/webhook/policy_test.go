package webhook

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/hookbus/hookbus/sdk"
)

// TestStatusPolicyThroughReceivers delivers to real receivers on loopback
// answering each status, with and without retry_on / permanent_on, and
// checks the verdict: the default table unchanged, and the lists' overrides.
func TestStatusPolicyThroughReceivers(t *testing.T) {
	t.Parallel()
	type row struct {
		name   string
		answer int
		keys   map[string]any
		want   sdk.Outcome
	}
	def := map[string]any{}
	rows := []row{
		// The default table.
		{"default 400", 400, def, sdk.Permanent},
		{"default 401", 401, def, sdk.Permanent},
		{"default 404", 404, def, sdk.Permanent},
		{"default 408", 408, def, sdk.Retry},
		{"default 410", 410, def, sdk.Permanent},
		{"default 422", 422, def, sdk.Permanent},
		{"default 429", 429, def, sdk.Retry},
		{"default 500", 500, def, sdk.Retry},
		{"default 503", 503, def, sdk.Retry},
		{"default 599", 599, def, sdk.Retry},
		{"default 301", 301, def, sdk.Permanent},
		{"default 204", 204, def, sdk.OK},
		// Overrides.
		{"401 retried with retry_on [401]", 401, map[string]any{"retry_on": []any{401}}, sdk.Retry},
		{"403 still permanent with retry_on [401]", 403, map[string]any{"retry_on": []any{401}}, sdk.Permanent},
		{"503 permanent with permanent_on [503]", 503, map[string]any{"permanent_on": []any{503}}, sdk.Permanent},
		{"502 still retried with permanent_on [503]", 502, map[string]any{"permanent_on": []any{503}}, sdk.Retry},
		{"404 retried with retry_on [4xx]", 404, map[string]any{"retry_on": []any{"4xx"}}, sdk.Retry},
		{"410 retried with retry_on [4xx]", 410, map[string]any{"retry_on": []any{"4xx"}}, sdk.Retry},
		{"500 permanent with permanent_on [5xx]", 500, map[string]any{"permanent_on": []any{"5xx"}}, sdk.Permanent},
		{"exact code beats class", 503, map[string]any{"retry_on": []any{503}, "permanent_on": []any{"5xx"}}, sdk.Retry},
		{"class applies beside exact", 500, map[string]any{"retry_on": []any{503}, "permanent_on": []any{"5xx"}}, sdk.Permanent},
		{"429 permanent with permanent_on [\"429\"]", 429, map[string]any{"permanent_on": []any{"429"}}, sdk.Permanent},
		{"2xx unaffected by retry_on [5xx]", 200, map[string]any{"retry_on": []any{"5xx"}}, sdk.OK},
	}
	for _, tt := range rows {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rc := newReceiver(t, func(w http.ResponseWriter, _ *http.Request, _ int) {
				w.Header().Set("Retry-After", "7")
				w.WriteHeader(tt.answer)
			}).start(t)
			w := localSink(t, rc.srv.URL, tt.keys)
			r := w.DeliverOne(context.Background(), event("evt_policy"))
			if r.Outcome != tt.want || r.StatusCode != tt.answer {
				t.Fatalf("answer %d with %v: outcome %v status %d (%s), want %v", tt.answer, tt.keys, r.Outcome, r.StatusCode, r.Reason, tt.want)
			}
			if len(rc.requests()) != 1 {
				t.Fatalf("receiver got %d requests, want 1", len(rc.requests()))
			}
			if r.Outcome == sdk.Retry && r.RetryAfter.Seconds() != 7 {
				t.Fatalf("Retry-After of a retried answer not kept: %v", r.RetryAfter)
			}
		})
	}
}

func TestStatusPolicyConfigErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		keys  string
		field string
		msg   string
	}{
		{`"retry_on": [401], "permanent_on": [404, 401]`, "permanent_on[1]", "401 is in retry_on too"},
		{`"retry_on": ["5xx"], "permanent_on": ["5XX"]`, "permanent_on[0]", "5xx is in retry_on too"},
		{`"retry_on": [401, 401]`, "retry_on[1]", "listed twice"},
		{`"retry_on": [200]`, "retry_on[0]", "only 400 to 599"},
		{`"permanent_on": [302]`, "permanent_on[0]", "only 400 to 599"},
		{`"retry_on": ["3xx"]`, "retry_on[0]", `"4xx" or "5xx"`},
		{`"retry_on": [true]`, "retry_on[0]", "status code"},
		{`"permanent_on": "5xx"`, "permanent_on", "must be a list"},
	}
	for _, c := range cases {
		raw := `{"url": "https://partner.example/hooks", "secret": "` + testSecret + `", ` + c.keys + `}`
		_, err := ParseConfig(json.RawMessage(raw))
		got := configErrors(t, err)
		if msg, ok := got[c.field]; !ok || !strings.Contains(msg, c.msg) {
			t.Errorf("%s: errors %v, want %s: …%s…", c.keys, got, c.field, c.msg)
		}
	}
	c, err := ParseConfig(json.RawMessage(`{"url": "https://partner.example/hooks", "secret": "` + testSecret + `", "retry_on": [408, 429, "5xx", 401], "permanent_on": ["4xx"]}`))
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := json.Marshal(c.RetryOn); string(b) != `[408,429,"5xx",401]` {
		t.Fatalf("retry_on = %s", b)
	}
	var schema map[string]any
	if err := json.Unmarshal(configSpec.Schema(), &schema); err != nil {
		t.Fatal(err)
	}
	props := schema["properties"].(map[string]any)
	if ro, ok := props["retry_on"].(map[string]any); !ok || ro["type"] != "array" || ro["description"] == nil {
		t.Fatalf("schema of retry_on: %v", props["retry_on"])
	}
}
