package api

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"

	"github.com/hookbus/hookbus/core/attempt"
	"github.com/hookbus/hookbus/core/problem"
	"github.com/hookbus/hookbus/core/store"
	"github.com/hookbus/hookbus/core/subscription"
	"github.com/hookbus/hookbus/internal/testenv"
)

const (
	pgAddr    = "127.0.0.1:5432"
	pgURL     = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	adminKey  = "admin-key-for-tests"
	otherKey  = "second-admin-key"
	testWhsec = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
)

var schemaSeq atomic.Int64

// eachStore runs fn once on a fresh SQLite store and once on a fresh
// schema of the machine's PostgreSQL (skipped, or failed in CI, when it
// does not run).
func eachStore(t *testing.T, fn func(t *testing.T, st *store.Store)) {
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		st, err := store.Open(t.Context(), "sqlite", "", t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		fn(t, st)
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		fn(t, postgresStore(t))
	})
}

// postgresStore opens a store on a schema of its own, dropped at the end.
func postgresStore(t *testing.T) *store.Store {
	t.Helper()
	testenv.NeedService(t, pgAddr)
	schema := fmt.Sprintf("hbapi_%d_%d", time.Now().UnixNano(), schemaSeq.Add(1))
	admin, err := sql.Open("pgx", pgURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	if _, err := admin.Exec(`CREATE SCHEMA ` + schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := admin.Exec(`DROP SCHEMA ` + schema + ` CASCADE`); err != nil {
			t.Logf("drop schema %s: %v", schema, err)
		}
	})
	st, err := store.Open(context.Background(), "postgres", pgURL+"&search_path="+schema, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// platform is a running API server on a real store, every answer checked
// against the OpenAPI document.
type platform struct {
	t   *testing.T
	url string
	st  *store.Store
	srv *Server
	// att is the delivery log the server reads (st's); res the Resender
	// it calls, when the test did not give one.
	att attempt.Store
	res *testResender
}

// newPlatform serves the API on st over loopback HTTP. opts may be nil;
// Subscriptions, Store, Attempts, a testResender (unless opts has a
// Resender) and (unless opts is given) the admin keys are filled in.
func newPlatform(t *testing.T, st *store.Store, opts *Options) *platform {
	t.Helper()
	o := Options{APIKeys: []string{adminKey, otherKey}}
	if opts != nil {
		o = *opts
	}
	o.Subscriptions = st
	o.Store = st
	o.Attempts = st
	var res *testResender
	if o.Resender == nil {
		res = &testResender{st: o.Attempts}
		o.Resender = res
	}
	srv := New(o)
	hs := httptest.NewServer(validating(t, srv))
	t.Cleanup(hs.Close)
	return &platform{t: t, url: hs.URL, st: st, srv: srv, att: o.Attempts, res: res}
}

// answer is an HTTP answer.
type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(a.body, v); err != nil {
		t.Fatalf("answer %d %s: %v", a.status, a.body, err)
	}
}

// problem decodes a problem answer and checks its media type and code.
func (a answer) problem(t *testing.T) problem.Problem {
	t.Helper()
	if ct := a.header.Get("Content-Type"); ct != problem.ContentType {
		t.Fatalf("answer %d has Content-Type %q, want %s: %s", a.status, ct, problem.ContentType, a.body)
	}
	var p problem.Problem
	a.json(t, &p)
	if p.Code != problem.CodeFor(a.status) || p.Status != a.status {
		t.Fatalf("problem %+v does not match status %d", p, a.status)
	}
	return p
}

// fieldError returns the message of the problem's error on field, failing
// the test when there is none.
func fieldError(t *testing.T, p problem.Problem, field string) string {
	t.Helper()
	for _, e := range p.Errors {
		if e.Field == field {
			return e.Message
		}
	}
	t.Fatalf("problem %q has no error on %q: %+v", p.Detail, field, p.Errors)
	return ""
}

// do sends a request with key as bearer (none when empty); body is sent
// as JSON unless it is a string (sent as is) or nil.
func (p *platform) do(method, path, key string, body any) answer {
	p.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			p.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, p.url+path, rd)
	if err != nil {
		p.t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		p.t.Fatal(err)
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: b}
}

// must sends the request and fails the test unless the status is want.
func (p *platform) must(want int, method, path, key string, body any) answer {
	p.t.Helper()
	a := p.do(method, path, key, body)
	if a.status != want {
		p.t.Fatalf("%s %s: status %d, want %d: %s", method, path, a.status, want, a.body)
	}
	return a
}

// createApp creates an application with the admin key.
func (p *platform) createApp(id string) ApplicationJSON {
	p.t.Helper()
	var a ApplicationJSON
	p.must(http.StatusCreated, "POST", "/v1/applications", adminKey, map[string]any{"id": id, "name": "App " + id}).json(p.t, &a)
	return a
}

// createSub creates a subscription of app with the admin key.
func (p *platform) createSub(app string, body map[string]any) SubscriptionJSON {
	p.t.Helper()
	if _, ok := body["url"]; !ok {
		body["url"] = "https://receiver.example/hooks"
	}
	if _, ok := body["event_types"]; !ok {
		body["event_types"] = []string{"*"}
	}
	var s SubscriptionJSON
	p.must(http.StatusCreated, "POST", "/v1/applications/"+app+"/subscriptions", adminKey, body).json(p.t, &s)
	return s
}

// createToken makes an application token with the admin key.
func (p *platform) createToken(app string) TokenJSON {
	p.t.Helper()
	var tok TokenJSON
	p.must(http.StatusCreated, "POST", "/v1/applications/"+app+"/tokens", adminKey, map[string]any{"name": "ci"}).json(p.t, &tok)
	return tok
}

var (
	docOnce sync.Once
	doc     *openapi3.T
	docErr  error
)

// openAPIDoc loads and validates the committed OpenAPI document.
func openAPIDoc(t *testing.T) *openapi3.T {
	t.Helper()
	docOnce.Do(func() {
		loader := openapi3.NewLoader()
		doc, docErr = loader.LoadFromData(openAPIYAML)
		if docErr == nil {
			docErr = doc.Validate(loader.Context)
		}
	})
	if docErr != nil {
		t.Fatalf("openapi.yaml: %v", docErr)
	}
	return doc
}

// validating checks every answer h gives against the OpenAPI document:
// the operation the mux routed to must be documented, and the status, the
// media type and the body must be what it says. Answers of no route (the
// 404 and 405 fallbacks) must be problem details.
func validating(t *testing.T, srv *Server) http.Handler {
	d := openAPIDoc(t)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		_, pattern := srv.mux.Handler(r)
		srv.ServeHTTP(rec, r)
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())

		if pattern == "" {
			if ct := rec.Header().Get("Content-Type"); ct != problem.ContentType {
				t.Errorf("%s %s: fallback answer %d has Content-Type %q", r.Method, r.URL.Path, rec.Code, ct)
			}
			return
		}
		method, path, _ := strings.Cut(pattern, " ")
		if strings.HasPrefix(path, "/debug/pprof/") {
			return
		}
		item := d.Paths.Value(path)
		if item == nil || item.GetOperation(method) == nil {
			t.Errorf("%s: routed, but not in the OpenAPI document", pattern)
			return
		}
		params := map[string]string{}
		for _, seg := range strings.Split(path, "/") {
			if strings.HasPrefix(seg, "{") {
				name := strings.Trim(seg, "{}")
				params[name] = r.PathValue(name)
			}
		}
		route := &routers.Route{Spec: d, Path: path, PathItem: item, Method: method, Operation: item.GetOperation(method)}
		opts := &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true}
		in := &openapi3filter.ResponseValidationInput{
			RequestValidationInput: &openapi3filter.RequestValidationInput{Request: r, PathParams: params, Route: route, Options: opts},
			Status:                 rec.Code,
			Header:                 rec.Header(),
			Options:                opts,
		}
		in.SetBodyBytes(rec.Body.Bytes())
		if err := openapi3filter.ValidateResponse(r.Context(), in); err != nil {
			t.Errorf("%s %s: answer %d does not match the OpenAPI document: %v\n%s", r.Method, r.URL.Path, rec.Code, err, rec.Body.Bytes())
		}
	})
}

var _ subscription.Store = (*store.Store)(nil)
