package console

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// client calls the /v1 API in process, through the same handler the
// network reaches, with the credentials of the session: the console has
// no way around the API's authentication, validation or tenancy checks.
type client struct {
	api    http.Handler
	bearer string
	// from is the browser's request: its remote address and context.
	from *http.Request
}

// APIError is a non-2xx answer of the API: its problem details.
type APIError struct {
	Status int
	Code   string `json:"code"`
	Title  string `json:"title"`
	Detail string `json:"detail"`
	Errors []struct {
		Field   string `json:"field"`
		Message string `json:"message"`
	} `json:"errors"`
}

func (e *APIError) Error() string {
	msg := e.Detail
	if msg == "" {
		msg = e.Title
	}
	if msg == "" {
		msg = http.StatusText(e.Status)
	}
	var b strings.Builder
	b.WriteString(msg)
	for _, fe := range e.Errors {
		fmt.Fprintf(&b, "; %s: %s", fe.Field, fe.Message)
	}
	return b.String()
}

// FieldErrors maps each field the API named to its message.
func (e *APIError) FieldErrors() map[string]string {
	m := map[string]string{}
	for _, fe := range e.Errors {
		m[fe.Field] = fe.Message
	}
	return m
}

// recorder is the in-process response: status, headers and body.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
}

func (r *recorder) Write(p []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	return r.body.Write(p)
}

// do calls method path (with query) and decodes a 2xx JSON answer into
// out (when non-nil). A non-2xx answer is an *APIError.
func (c *client) do(ctx context.Context, method, path string, query url.Values, body, out any) error {
	var rd io.Reader = http.NoBody
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("console: encode request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	target := path
	if len(query) > 0 {
		target += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return fmt.Errorf("console: request %s %s: %w", method, path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.bearer != "" {
		req.Header.Set("Authorization", "Bearer "+c.bearer)
	}
	if c.from != nil {
		req.RemoteAddr = c.from.RemoteAddr
		req.Host = c.from.Host
		req.TLS = c.from.TLS
	}
	rec := &recorder{header: http.Header{}}
	c.api.ServeHTTP(rec, req)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	data := rec.body.Bytes()
	if rec.status < 200 || rec.status > 299 {
		e := &APIError{Status: rec.status}
		_ = json.Unmarshal(data, e)
		e.Status = rec.status
		return e
	}
	if out == nil || len(data) == 0 {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("console: decode answer of %s %s: %w", method, path, err)
	}
	return nil
}

func (c *client) get(ctx context.Context, path string, query url.Values, out any) error {
	return c.do(ctx, http.MethodGet, path, query, nil, out)
}

func (c *client) post(ctx context.Context, path string, body, out any) error {
	return c.do(ctx, http.MethodPost, path, nil, body, out)
}

// esc escapes one path segment of an API route.
func esc(s string) string { return url.PathEscape(s) }
