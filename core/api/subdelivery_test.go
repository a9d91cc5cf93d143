package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hookbus/hookbus/core/store"
)

// A subscription's delivery options through the API: given on create,
// answered back, replaced and cleared by PATCH, stored, and refused with
// a 422 naming the field (down to the item) when out of bounds.
func TestSubscriptionDeliveryOptionsAPI(t *testing.T) {
	eachStore(t, func(t *testing.T, st *store.Store) {
		p := newPlatform(t, st, &Options{APIKeys: []string{adminKey}, SubscriptionMaxTimeout: func() time.Duration { return 30 * time.Second }})
		p.createApp("acme")
		path := "/v1/applications/acme/subscriptions"

		plain := p.createSub("acme", map[string]any{})
		var raw map[string]json.RawMessage
		p.must(http.StatusOK, "GET", path+"/"+plain.ID, adminKey, nil).json(t, &raw)
		for _, k := range []string{"timeout", "retry_schedule", "retry_on", "permanent_on", "compression", "batch"} {
			if string(raw[k]) != "null" {
				t.Fatalf("unset %s answered %s, want null", k, raw[k])
			}
		}

		sub := p.createSub("acme", map[string]any{"timeout": "2s", "retry_schedule": []string{"1s", "1m"},
			"retry_on": []any{401, "5xx"}, "permanent_on": []any{503}, "compression": "gzip",
			"batch": map[string]any{"max_events": 20, "max_wait": "250ms"}})
		p.must(http.StatusOK, "GET", path+"/"+sub.ID, adminKey, nil).json(t, &raw)
		for k, want := range map[string]string{"timeout": `"2s"`, "retry_schedule": `["1s","1m0s"]`, "retry_on": `[401,"5xx"]`, "permanent_on": `[503]`,
			"compression": `"gzip"`, "batch": `{"max_events":20,"max_bytes":1048576,"max_wait":"250ms"}`} {
			if compact(raw[k]) != want {
				t.Errorf("%s answered %s, want %s", k, raw[k], want)
			}
		}
		stored, err := st.GetSubscription(t.Context(), "acme", sub.ID)
		if err != nil {
			t.Fatal(err)
		}
		if stored.Delivery.Timeout != 2*time.Second || len(stored.Delivery.RetrySchedule) != 2 || len(stored.Delivery.RetryOn) != 2 ||
			stored.Delivery.Compression != "gzip" || stored.Delivery.Batch.MaxEvents != 20 || stored.Delivery.Batch.MaxWait != 250*time.Millisecond {
			t.Fatalf("stored options %+v", stored.Delivery)
		}

		// PATCH replaces one member and leaves the others; null clears; [] is no retry.
		p.must(http.StatusOK, "PATCH", path+"/"+sub.ID, adminKey, map[string]any{"timeout": nil, "retry_schedule": []string{}}).json(t, &raw)
		if string(raw["timeout"]) != "null" || compact(raw["retry_schedule"]) != "[]" || compact(raw["retry_on"]) != `[401,"5xx"]` ||
			compact(raw["compression"]) != `"gzip"` {
			t.Fatalf("after PATCH: timeout %s retry_schedule %s retry_on %s compression %s", raw["timeout"], raw["retry_schedule"], raw["retry_on"], raw["compression"])
		}
		// "none" is the default, answered as null; batch null turns batching off.
		p.must(http.StatusOK, "PATCH", path+"/"+sub.ID, adminKey, map[string]any{"compression": "none", "batch": nil}).json(t, &raw)
		if string(raw["compression"]) != "null" || string(raw["batch"]) != "null" {
			t.Fatalf("compression none answered %s, batch null %s", raw["compression"], raw["batch"])
		}
		// {} batches with every default.
		p.must(http.StatusOK, "PATCH", path+"/"+sub.ID, adminKey, map[string]any{"batch": map[string]any{}}).json(t, &raw)
		if compact(raw["batch"]) != `{"max_events":100,"max_bytes":1048576,"max_wait":"1s"}` {
			t.Fatalf("batch {} answered %s", raw["batch"])
		}

		for _, tt := range []struct {
			name  string
			body  map[string]any
			field string
			msg   string
		}{
			{"timeout above the sink's max", map[string]any{"timeout": "31s"}, "timeout", "at most 30s"},
			{"timeout not a duration", map[string]any{"timeout": "soon"}, "timeout", "invalid duration"},
			{"timeout a number", map[string]any{"timeout": 5}, "timeout", "duration string"},
			{"timeout zero", map[string]any{"timeout": "0s"}, "timeout", "positive"},
			{"schedule too long", map[string]any{"retry_schedule": strings.Split(strings.Repeat("1s,", 21)[:3*21-1], ",")}, "retry_schedule", "at most 20"},
			{"schedule item", map[string]any{"retry_schedule": []string{"1s", "later"}}, "retry_schedule[1]", "invalid duration"},
			{"schedule wait zero", map[string]any{"retry_schedule": []string{"0s"}}, "retry_schedule[0]", "above 0"},
			{"schedule wait too long", map[string]any{"retry_schedule": []string{"49h"}}, "retry_schedule[0]", "at most 48h"},
			{"schedule not a list", map[string]any{"retry_schedule": "1s"}, "retry_schedule", "list of durations"},
			{"code in both lists", map[string]any{"retry_on": []any{401}, "permanent_on": []any{404, 401}}, "permanent_on[1]", "in retry_on too"},
			{"2xx listed", map[string]any{"retry_on": []any{204}}, "retry_on[0]", "400 to 599"},
			{"bad class", map[string]any{"permanent_on": []any{"6xx"}}, "permanent_on[0]", `"4xx" or "5xx"`},
			{"list not a list", map[string]any{"retry_on": "5xx"}, "retry_on", "must be a list"},
			{"unknown compression", map[string]any{"compression": "br"}, "compression", "must be none or gzip"},
			{"compression not a string", map[string]any{"compression": true}, "compression", `must be "gzip" or "none"`},
			{"batch max_events", map[string]any{"batch": map[string]any{"max_events": 0}}, "batch.max_events", "must be 1 to 1000"},
			{"batch max_wait", map[string]any{"batch": map[string]any{"max_wait": "5m"}}, "batch.max_wait", "must be 0s to 10s"},
			{"batch max_wait not a duration", map[string]any{"batch": map[string]any{"max_wait": 5}}, "batch.max_wait", "duration string"},
			{"batch unknown key", map[string]any{"batch": map[string]any{"events": 5}}, "batch.events", "unknown key"},
			{"batch binary", map[string]any{"batch": map[string]any{}, "format": "cloudevents-binary"}, "batch", "cloudevents-binary carries one event"},
		} {
			t.Run(tt.name, func(t *testing.T) {
				for _, req := range []struct{ method, path string }{{"POST", path}, {"PATCH", path + "/" + plain.ID}} {
					body := map[string]any{}
					if req.method == "POST" {
						body["url"], body["event_types"] = "https://receiver.example/hooks", []string{"*"}
					}
					for k, v := range tt.body {
						body[k] = v
					}
					pr := p.must(http.StatusUnprocessableEntity, req.method, req.path, adminKey, body).problem(t)
					if msg := fieldError(t, pr, tt.field); !strings.Contains(msg, tt.msg) {
						t.Errorf("%s %s: %q, want it to say %q", req.method, tt.field, msg, tt.msg)
					}
				}
			})
		}
		// The refused PATCHes changed nothing.
		p.must(http.StatusOK, "GET", path+"/"+plain.ID, adminKey, nil).json(t, &raw)
		if string(raw["timeout"]) != "null" || string(raw["retry_on"]) != "null" {
			t.Fatalf("refused PATCHes changed the subscription: %s %s", raw["timeout"], raw["retry_on"])
		}
	})
}

// compact is raw without its indentation.
func compact(raw json.RawMessage) string {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return string(raw)
	}
	return b.String()
}
