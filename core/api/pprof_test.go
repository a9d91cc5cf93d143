package api

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestPprof: with Pprof the runtime profiles answer behind the API keys
// (401 without one, 200 with one, 200 when no keys are set, like /v1/*);
// without it /debug/pprof/ does not exist.
func TestPprof(t *testing.T) {
	t.Parallel()
	get := func(t *testing.T, srv *httptest.Server, method, path, key string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	keyed := httptest.NewServer(New(Options{APIKeys: []string{"s3cret"}, Pprof: true}))
	defer keyed.Close()
	open := httptest.NewServer(New(Options{Pprof: true}))
	defer open.Close()
	off := httptest.NewServer(New(Options{APIKeys: []string{"s3cret"}}))
	defer off.Close()
	for _, tt := range []struct {
		name         string
		srv          *httptest.Server
		method, path string
		key          string
		want         int
		body         string // a part the answer must hold
	}{
		{"index without key", keyed, http.MethodGet, "/debug/pprof/", "", http.StatusUnauthorized, ""},
		{"heap without key", keyed, http.MethodGet, "/debug/pprof/heap", "", http.StatusUnauthorized, ""},
		{"heap wrong key", keyed, http.MethodGet, "/debug/pprof/heap?debug=1", "wrong", http.StatusUnauthorized, ""},
		{"symbol without key", keyed, http.MethodPost, "/debug/pprof/symbol", "", http.StatusUnauthorized, ""},
		{"index with key", keyed, http.MethodGet, "/debug/pprof/", "s3cret", http.StatusOK, "goroutine"},
		{"heap with key", keyed, http.MethodGet, "/debug/pprof/heap?debug=1", "s3cret", http.StatusOK, "HeapAlloc"},
		{"cmdline with key", keyed, http.MethodGet, "/debug/pprof/cmdline", "s3cret", http.StatusOK, ""},
		{"symbol with key", keyed, http.MethodPost, "/debug/pprof/symbol", "s3cret", http.StatusOK, "num_symbols"},
		{"no keys set", open, http.MethodGet, "/debug/pprof/goroutine?debug=1", "", http.StatusOK, "goroutine profile"},
		{"off", off, http.MethodGet, "/debug/pprof/", "s3cret", http.StatusNotFound, ""},
		{"off heap", off, http.MethodGet, "/debug/pprof/heap", "s3cret", http.StatusNotFound, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, body := get(t, tt.srv, tt.method, tt.path, tt.key)
			if code != tt.want {
				t.Fatalf("%s %s: status %d, want %d: %.200s", tt.method, tt.path, code, tt.want, body)
			}
			if !strings.Contains(body, tt.body) {
				t.Errorf("%s %s: answer lacks %q: %.200s", tt.method, tt.path, tt.body, body)
			}
		})
	}
}
