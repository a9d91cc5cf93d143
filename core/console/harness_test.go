package console_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookbus/hookbus/core/app"
	"github.com/hookbus/hookbus/core/config"
)

const (
	adminKey   = "console-admin-key-for-tests"
	testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
)

// receiver is an endpoint on loopback that answers with a status the test
// sets and keeps what it received.
type receiver struct {
	srv    *httptest.Server
	status atomic.Int32
	// body is what it answers with.
	body atomic.Pointer[string]
	mu   sync.Mutex
	got  []string
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{}
	r.status.Store(http.StatusOK)
	empty := ""
	r.body.Store(&empty)
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.got = append(r.got, string(b))
		r.mu.Unlock()
		w.WriteHeader(int(r.status.Load()))
		_, _ = io.WriteString(w, *r.body.Load())
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// answer sets the status and body of the next answers.
func (r *receiver) answer(status int, body string) {
	r.status.Store(int32(status))
	r.body.Store(&body)
}

func (r *receiver) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got)
}

// env is a running hookbus with a webhook sink (partner → rcv) and a
// subscriptions sink (partners), and admin key adminKey.
type env struct {
	a    *app.App
	base string
	rcv  *receiver
	dir  string
}

const envConfig = `version: 1
server: {listen: "127.0.0.1:0", shutdown_timeout: 5s, api_keys: [` + adminKey + `]}
data_dir: DIR/data
queue: {driver: embedded}
reload: {watch: false}
sources:
  shop: {type: http}
  apps: {type: http}
sinks:
  partner:
    type: webhook
    config: {url: "PARTNER/hooks", secret: ` + testSecret + `, allow_private_networks: true, timeout: 2s, retry: {schedule: [50ms]}}
  partners:
    type: subscriptions
    config: {allow_private_networks: true, timeout: 2s, retry: {schedule: [50ms]}}
pipelines:
  orders: {from: [shop], to: [partner]}
  platform: {from: [apps], to: [partners]}
`

// newEnv starts an instance with envConfig (extra is appended to it).
func newEnv(t *testing.T, extra string) *env {
	t.Helper()
	e := &env{rcv: newReceiver(t), dir: t.TempDir()}
	y := strings.ReplaceAll(strings.ReplaceAll(envConfig, "PARTNER", e.rcv.srv.URL), "DIR", e.dir) + extra
	path := filepath.Join(e.dir, "config.yaml")
	if err := os.WriteFile(path, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path, config.LoadOptions{Env: []string{}, Checkers: app.Checkers(app.ScriptOptions(config.Default(), nil))})
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	a, err := app.New(context.Background(), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := a.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	e.a, e.base = a, "http://"+a.Addr()
	return e
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// visitor is a browser without a browser: a cookie jar, and the CSRF
// token of the last page it read, for the forms it posts. Redirects are
// not followed (the test sees them).
type visitor struct {
	t    *testing.T
	e    *env
	c    *http.Client
	csrf string
}

func (e *env) visitor(t *testing.T) *visitor {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &visitor{t: t, e: e, c: &http.Client{Jar: jar, Timeout: 60 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// page is one answer.
type page struct {
	status   int
	body     string
	location string
	header   http.Header
}

func (v *visitor) do(req *http.Request) page {
	v.t.Helper()
	resp, err := v.c.Do(req)
	if err != nil {
		v.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	p := page{status: resp.StatusCode, body: string(b), location: resp.Header.Get("Location"), header: resp.Header}
	if m := csrfField.FindStringSubmatch(p.body); m != nil {
		v.csrf = m[1]
	}
	return p
}

// get reads a page (a path of the instance).
func (v *visitor) get(path string) page {
	v.t.Helper()
	req, err := http.NewRequest(http.MethodGet, v.e.base+path, nil)
	if err != nil {
		v.t.Fatal(err)
	}
	return v.do(req)
}

// post submits a form with the CSRF token of the last page read (unless
// form has one), as a same-origin browser would.
func (v *visitor) post(path string, form url.Values) page {
	v.t.Helper()
	if form == nil {
		form = url.Values{}
	}
	if !form.Has("csrf") {
		form.Set("csrf", v.csrf)
	}
	req, err := http.NewRequest(http.MethodPost, v.e.base+path, strings.NewReader(form.Encode()))
	if err != nil {
		v.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", v.e.base)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	return v.do(req)
}

// login signs in to the console with key.
func (v *visitor) login(key string) page {
	v.t.Helper()
	if p := v.get("/console/login"); p.status != http.StatusOK {
		v.t.Fatalf("GET /console/login: %d", p.status)
	}
	return v.post("/console/login", url.Values{"key": {key}, "next": {"/console/"}})
}

// mustLogin signs in with the admin key and checks it worked.
func (v *visitor) mustLogin() {
	v.t.Helper()
	p := v.login(adminKey)
	if p.status != http.StatusSeeOther || p.location != "/console/" {
		v.t.Fatalf("sign-in: %d to %q: %s", p.status, p.location, p.body)
	}
}

// portalLink is a portal link made through the API (with the admin key):
// its address on the instance (path and query) and its token.
type portalLink struct {
	// path is /portal/login?app=…&token=…, to get from the instance.
	path, token, tokenID string
	expires              time.Time
}

// portalLink makes a portal link of app through the API (POST
// /v1/applications/{app}/portal); ttl is the body's (empty: the default).
func (e *env) portalLink(t *testing.T, app, ttl string) portalLink {
	t.Helper()
	var body any
	if ttl != "" {
		body = map[string]any{"ttl": ttl}
	}
	var out struct {
		URL       string `json:"url"`
		ExpiresAt string `json:"expires_at"`
		TokenID   string `json:"token_id"`
	}
	if code := e.apiCall(t, http.MethodPost, "/v1/applications/"+url.PathEscape(app)+"/portal", adminKey, body, &out); code != http.StatusCreated {
		t.Fatalf("portal link of %s: %d", app, code)
	}
	u, err := url.Parse(out.URL)
	if err != nil {
		t.Fatal(err)
	}
	exp, err := time.Parse(time.RFC3339Nano, out.ExpiresAt)
	if err != nil || u.Query().Get("token") == "" {
		t.Fatalf("portal link %q expiring %q: %v", out.URL, out.ExpiresAt, err)
	}
	return portalLink{path: u.RequestURI(), token: u.Query().Get("token"), tokenID: out.TokenID, expires: exp}
}

// openPortal opens a portal link and checks it lands on the portal.
func (v *visitor) openPortal(l portalLink) page {
	v.t.Helper()
	p := v.get(l.path)
	if p.status != http.StatusSeeOther || p.location != "/portal/" {
		v.t.Fatalf("portal login: %d to %q: %s", p.status, p.location, p.body)
	}
	return p
}
