package problem_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/hookbus/hookbus/core/problem"
)

func TestWrite(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		p    *problem.Problem
		want problem.Problem
	}{
		{
			name: "with field errors",
			p: problem.New(http.StatusBadRequest, "invalid events").WithErrors(
				problem.FieldError{Field: "[1].type", Message: "is required"}),
			want: problem.Problem{Type: "about:blank", Title: "Bad Request", Status: 400, Code: "invalid_request", Detail: "invalid events",
				Errors: []problem.FieldError{{Field: "[1].type", Message: "is required"}}},
		},
		{
			name: "defaults filled",
			p:    &problem.Problem{Status: http.StatusNotFound, Detail: "no such source"},
			want: problem.Problem{Type: "about:blank", Title: "Not Found", Status: 404, Code: "not_found", Detail: "no such source"},
		},
		{
			name: "custom type and instance kept",
			p:    &problem.Problem{Type: "https://hookbus.dev/problems/x", Title: "X", Status: 409, Instance: "/v1/x"},
			want: problem.Problem{Type: "https://hookbus.dev/problems/x", Title: "X", Status: 409, Code: "conflict", Instance: "/v1/x"},
		},
		{
			name: "specific code kept",
			p:    &problem.Problem{Status: 409, Code: "sink_busy"},
			want: problem.Problem{Type: "about:blank", Title: "Conflict", Status: 409, Code: "sink_busy"},
		},
		{
			name: "validation",
			p:    problem.Validation("invalid subscription", problem.FieldError{Field: "url", Message: "is required"}),
			want: problem.Problem{Type: "about:blank", Title: "Unprocessable Entity", Status: 422, Code: "validation_failed",
				Detail: "invalid subscription", Errors: []problem.FieldError{{Field: "url", Message: "is required"}}},
		},
		{
			name: "nil",
			p:    nil,
			want: problem.Problem{Type: "about:blank", Title: "Internal Server Error", Status: 500, Code: "internal"},
		},
		{
			name: "invalid status",
			p:    &problem.Problem{Status: 200, Detail: "oops"},
			want: problem.Problem{Type: "about:blank", Title: "Internal Server Error", Status: 500, Code: "internal", Detail: "oops"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				problem.Write(w, tt.p)
			}))
			defer srv.Close()
			resp, err := http.Get(srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tt.want.Status {
				t.Errorf("status = %d, want %d", resp.StatusCode, tt.want.Status)
			}
			if ct := resp.Header.Get("Content-Type"); ct != problem.ContentType {
				t.Errorf("content type = %q", ct)
			}
			body, _ := io.ReadAll(resp.Body)
			var got problem.Problem
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatalf("body %s: %v", body, err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("body = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestCodeFor(t *testing.T) {
	t.Parallel()
	for status, want := range map[int]string{
		400: "invalid_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
		409: "conflict", 413: "payload_too_large", 415: "unsupported_media_type", 422: "validation_failed",
		429: "rate_limited", 500: "internal", 503: "unavailable", 418: "invalid_request", 502: "internal",
	} {
		if got := problem.CodeFor(status); got != want {
			t.Errorf("CodeFor(%d) = %q, want %q", status, got, want)
		}
	}
}

func TestErrorAndFrom(t *testing.T) {
	t.Parallel()
	p := problem.New(http.StatusBadRequest, "invalid events").WithErrors(
		problem.FieldError{Field: "[0].type", Message: "is required"},
		problem.FieldError{Field: "[1].id", Message: "is too long"})
	if got, want := p.Error(), "400 invalid events: [0].type is required; [1].id is too long"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	wrapped := fmt.Errorf("parse: %w", p)
	if got := problem.From(wrapped); got != p {
		t.Errorf("From(wrapped) = %v, want the same problem", got)
	}
	internal := problem.From(errors.New("dial tcp 10.0.0.1: secret detail"))
	if internal.Status != 500 || internal.Detail != "internal error" {
		t.Errorf("From(plain error) = %+v", internal)
	}
	if problem.From(nil) != nil {
		t.Error("From(nil) != nil")
	}
	if got := (&problem.Problem{Status: 404}).Error(); got != "404 Not Found" {
		t.Errorf("Error() = %q", got)
	}
}
