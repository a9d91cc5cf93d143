package api

import (
	"net/http"
	"strings"
	"testing"

	"github.com/hookbus/hookbus/core/store"
)

// TestSubscriptionFormat: format is optional (json by default), stored,
// changed by PATCH and validated with errors naming the field.
func TestSubscriptionFormat(t *testing.T) {
	eachStore(t, func(t *testing.T, st *store.Store) {
		p := newPlatform(t, st, nil)
		p.createApp("acme")
		path := "/v1/applications/acme/subscriptions"

		plain := p.createSub("acme", map[string]any{})
		if plain.Format != "json" {
			t.Fatalf("default format %q, want json", plain.Format)
		}
		s := p.createSub("acme", map[string]any{"format": "cloudevents-binary"})
		var got SubscriptionJSON
		p.must(http.StatusOK, "GET", path+"/"+s.ID, adminKey, nil).json(t, &got)
		if s.Format != "cloudevents-binary" || got.Format != "cloudevents-binary" {
			t.Fatalf("created %q, read back %q", s.Format, got.Format)
		}
		p.must(http.StatusOK, "PATCH", path+"/"+s.ID, adminKey, map[string]any{"format": "cloudevents-structured"}).json(t, &got)
		if got.Format != "cloudevents-structured" {
			t.Fatalf("after PATCH: %q", got.Format)
		}
		p.must(http.StatusOK, "PATCH", path+"/"+s.ID, adminKey, map[string]any{"description": "x"}).json(t, &got)
		if got.Format != "cloudevents-structured" {
			t.Fatalf("a PATCH without format changed it: %q", got.Format)
		}
		p.must(http.StatusOK, "PATCH", path+"/"+s.ID, adminKey, map[string]any{"format": "json"}).json(t, &got)
		if got.Format != "json" {
			t.Fatalf("after PATCH to json: %q", got.Format)
		}

		for _, tt := range []struct {
			name  string
			body  map[string]any
			field string
			msg   string
		}{
			{"unknown format", map[string]any{"format": "cloudevents"}, "format", "must be one of json, cloudevents-structured or cloudevents-binary"},
			{"not a string", map[string]any{"format": 1}, "format", "a string"},
			{"ce header in binary mode", map[string]any{"format": "cloudevents-binary", "headers": map[string]string{"ce-source": "x"}},
				"headers.ce-source", "ce-* headers"},
		} {
			body := map[string]any{"url": "https://receiver.example/hooks", "event_types": []string{"*"}}
			for k, v := range tt.body {
				body[k] = v
			}
			pr := p.must(http.StatusUnprocessableEntity, "POST", path, adminKey, body).problem(t)
			if msg := fieldError(t, pr, tt.field); !strings.Contains(msg, tt.msg) {
				t.Errorf("%s: %s = %q, want it to say %q", tt.name, tt.field, msg, tt.msg)
			}
		}
		// Switching to binary mode is checked against the stored headers.
		h := p.createSub("acme", map[string]any{"headers": map[string]string{"Ce-Custom": "1"}})
		pr := p.must(http.StatusUnprocessableEntity, "PATCH", path+"/"+h.ID, adminKey, map[string]any{"format": "cloudevents-binary"}).problem(t)
		if msg := fieldError(t, pr, "headers.Ce-Custom"); msg == "" {
			t.Fatalf("PATCH to binary with a ce-* header: %+v", pr)
		}
	})
}
