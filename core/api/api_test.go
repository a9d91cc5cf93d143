package api

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestAuthBearerSchemeIsCaseInsensitive: RFC 7235 makes the auth scheme
// case-insensitive, so "bearer <key>" must be accepted like "Bearer <key>".
func TestAuthBearerSchemeIsCaseInsensitive(t *testing.T) {
	ingest := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusAccepted) })
	srv := httptest.NewServer(New(Options{Ingest: ingest, APIKeys: []string{"k1", "s3cret"}}))
	defer srv.Close()

	for _, tt := range []struct {
		header string
		want   int
	}{
		{"Bearer s3cret", http.StatusAccepted},
		{"bearer s3cret", http.StatusAccepted},
		{"BEARER k1", http.StatusAccepted},
		{"bEaReR   s3cret ", http.StatusAccepted},
		{"", http.StatusUnauthorized},
		{"Bearer", http.StatusUnauthorized},
		{"Bearer ", http.StatusUnauthorized},
		{"Basic s3cret", http.StatusUnauthorized},
		{"Bearer wrong", http.StatusUnauthorized},
		{"Bearers3cret", http.StatusUnauthorized},
	} {
		req, err := http.NewRequest(http.MethodPost, srv.URL+"/v1/sources/web/events", nil)
		if err != nil {
			t.Fatal(err)
		}
		if tt.header != "" {
			req.Header.Set("Authorization", tt.header)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("Authorization %q: status %d, want %d", tt.header, resp.StatusCode, tt.want)
		}
		if tt.want == http.StatusUnauthorized && resp.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("Authorization %q: 401 without WWW-Authenticate", tt.header)
		}
	}
}
