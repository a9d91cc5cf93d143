package api

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hookbus/hookbus/core/problem"
	"github.com/hookbus/hookbus/core/store"
)

type nopAdmin struct{}

func (nopAdmin) AdminReload(context.Context) (any, []problem.FieldError, error) {
	return map[string]any{"changed": []string{}}, nil, nil
}
func (nopAdmin) AdminStatus() any { return map[string]any{"version": 1} }

// TestOpenAPIDocumentsEveryRoute: the committed document is valid OpenAPI
// 3.1, every route the mux registers (with every option on) is in it, and
// every operation in it is a registered route.
func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	t.Parallel()
	d := openAPIDoc(t)
	if !d.IsOpenAPI31OrLater() {
		t.Fatalf("openapi: %s, want 3.1", d.OpenAPI)
	}
	srv := New(Options{
		Ingest:        http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}),
		Admin:         nopAdmin{},
		Registry:      prometheus.NewRegistry(),
		Subscriptions: (*store.Store)(nil),
		Attempts:      (*store.Store)(nil),
		Resender:      &testResender{},
	})
	registered := map[string]bool{}
	for _, rt := range srv.routes() {
		key := rt.method + " " + rt.path
		if registered[key] {
			t.Errorf("route %s twice in the table", key)
		}
		registered[key] = true
	}
	documented := map[string]bool{}
	for path, item := range d.Paths.Map() {
		for method := range item.Operations() {
			documented[method+" "+path] = true
		}
	}
	for key := range registered {
		if !documented[key] {
			t.Errorf("route %s is served but not in openapi.yaml", key)
		}
	}
	for key := range documented {
		if !registered[key] {
			t.Errorf("openapi.yaml documents %s, which is not served", key)
		}
	}
	// Operations with credentials document 401; public ones say security: [].
	for _, rt := range srv.routes() {
		op := d.Paths.Value(rt.path).GetOperation(rt.method)
		isPublic := op.Security != nil && len(*op.Security) == 0
		if isPublic != (rt.access == public) {
			t.Errorf("%s %s: public in the document = %v, in the table = %v", rt.method, rt.path, isPublic, rt.access == public)
		}
		if rt.access != public && op.Responses.Status(http.StatusUnauthorized) == nil {
			t.Errorf("%s %s: no 401 documented", rt.method, rt.path)
		}
		if rt.access == adminOnly && rt.path != "/v1/sources/{source}/events" && op.Responses.Status(http.StatusForbidden) == nil {
			t.Errorf("%s %s: admin only, but no 403 documented", rt.method, rt.path)
		}
	}
}

// TestOpenAPIServed: GET /v1/openapi.json answers the document as JSON,
// without credentials.
func TestOpenAPIServed(t *testing.T) {
	eachStore(t, func(t *testing.T, st *store.Store) {
		p := newPlatform(t, st, nil)
		a := p.must(http.StatusOK, "GET", "/v1/openapi.json", "", nil)
		if ct := a.header.Get("Content-Type"); ct != "application/json" {
			t.Fatalf("Content-Type %q", ct)
		}
		var d struct {
			OpenAPI string         `json:"openapi"`
			Paths   map[string]any `json:"paths"`
		}
		a.json(t, &d)
		if d.OpenAPI != "3.1.0" || d.Paths["/v1/applications/{app}/subscriptions"] == nil {
			t.Fatalf("served document: openapi %q, %d paths", d.OpenAPI, len(d.Paths))
		}
	})
}

// TestProblemCodes: answers of no route, a method a route does not take
// and the ingest endpoint are problem details with their code.
func TestProblemCodes(t *testing.T) {
	eachStore(t, func(t *testing.T, st *store.Store) {
		ingest := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			problem.Write(w, problem.New(http.StatusBadRequest, "invalid events").WithErrors(problem.FieldError{Field: "[0].type", Message: "is required"}))
		})
		p := newPlatform(t, st, &Options{APIKeys: []string{adminKey}, Ingest: ingest, Registry: prometheus.NewRegistry()})
		for _, tt := range []struct {
			method, path, key string
			status            int
			code              string
		}{
			{"GET", "/v1/nothing-here", adminKey, 404, "not_found"},
			{"GET", "/elsewhere", "", 404, "not_found"},
			{"DELETE", "/v1/applications", adminKey, 405, "method_not_allowed"},
			{"PUT", "/v1/applications/acme/subscriptions/sub_1", adminKey, 405, "method_not_allowed"},
			{"GET", "/v1/sources/shop/events", adminKey, 405, "method_not_allowed"},
			{"POST", "/healthz", "", 405, "method_not_allowed"},
			{"POST", "/v1/sources/shop/events", "", 401, "unauthorized"},
			{"POST", "/v1/sources/shop/events", adminKey, 400, "invalid_request"},
			{"GET", "/v1/applications/none", adminKey, 404, "not_found"},
			{"GET", "/v1/dead-letters/none", adminKey, 404, "not_found"},
		} {
			a := p.do(tt.method, tt.path, tt.key, nil)
			if a.status != tt.status {
				t.Errorf("%s %s: %d, want %d: %s", tt.method, tt.path, a.status, tt.status, a.body)
				continue
			}
			pr := a.problem(t)
			if pr.Code != tt.code {
				t.Errorf("%s %s: code %q, want %q", tt.method, tt.path, pr.Code, tt.code)
			}
			if tt.status == 405 && a.header.Get("Allow") == "" {
				t.Errorf("%s %s: 405 without Allow", tt.method, tt.path)
			}
		}
		a := p.must(http.StatusMethodNotAllowed, "DELETE", "/v1/applications", adminKey, nil)
		if allow := a.header.Get("Allow"); !strings.Contains(allow, "GET") || !strings.Contains(allow, "POST") {
			t.Errorf("Allow %q", allow)
		}
		var raw map[string]any
		_ = json.Unmarshal(p.must(http.StatusNotFound, "GET", "/v1/nothing", adminKey, nil).body, &raw)
		keys := make([]string, 0, len(raw))
		for k := range raw {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		if !slices.Contains(keys, "code") || !slices.Contains(keys, "detail") {
			t.Errorf("404 members %v", keys)
		}
		p.must(http.StatusOK, "GET", "/metrics", "", nil)
		p.must(http.StatusOK, "GET", "/healthz", "", nil)
		p.must(http.StatusServiceUnavailable, "GET", "/readyz", "", nil)
		p.srv.SetReady(true)
		p.must(http.StatusOK, "GET", "/readyz", "", nil)
		p.must(http.StatusOK, "GET", "/v1/dead-letters", adminKey, nil)
	})
}
