package browsertest

import (
	"bytes"
	"fmt"
	"image/png"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// strictCSP is the policy of the test page: no inline script, no eval.
const strictCSP = "default-src 'self'; script-src 'self'; style-src 'self'; frame-ancestors 'none'"

const testPage = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>browsertest</title>
<script src="/app.js"></script></head>
<body>
<h1 id="title">Harness page</h1>
<script>document.getElementById('title').textContent = 'inline script ran';</script>
<form id="form" method="post" action="/submit">
  <label for="name">Name</label> <input id="name" name="name">
  <button id="send" type="submit">Send</button>
</form>
<p><a id="link" href="/other">A link</a></p>
<p id="late"></p>
<p id="width"></p>
</body></html>`

// appJS is allowed by the CSP ('self'): it fills #late after a delay, logs,
// and throws one uncaught error when asked to.
const appJS = `document.addEventListener('DOMContentLoaded', function () {
  console.log('app.js loaded');
  setTimeout(function () { document.getElementById('late').textContent = 'arrived late'; }, 300);
  if (location.search.indexOf('throw') >= 0) { setTimeout(function () { throw new Error('boom from app.js'); }, 0); }
});`

// newTestServer serves the page, its script, a form target that echoes the
// posted name, and JSON that needs the session cookie.
func newTestServer(t *testing.T) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", strictCSP)
		http.SetCookie(w, &http.Cookie{Name: "session", Value: "s3cret", Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, testPage)
	})
	mux.HandleFunc("GET /app.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript")
		fmt.Fprint(w, appJS)
	})
	mux.HandleFunc("POST /submit", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", strictCSP)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><title>done</title><p id="result">hello %s</p>`, htmlEscape(r.PostFormValue("name")))
	})
	mux.HandleFunc("GET /clean", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", strictCSP)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<!doctype html><title>clean</title><script src="/app.js"></script><p id="late"></p>`)
	})
	mux.HandleFunc("GET /private", func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie("session")
		if err != nil || c.Value != "s3cret" {
			http.Error(w, "no session", http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"secret":"only with the cookie"}`)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func htmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;").Replace(s)
}

func TestBrowserHarness(t *testing.T) {
	srv := newTestServer(t)
	began := time.Now()
	b := New(t)
	t.Logf("browser started in %s", time.Since(began).Round(time.Millisecond))

	t.Run("navigate, wait and read", func(t *testing.T) {
		b.Navigate(srv.URL + "/")
		if got := b.Text("#title"); got != "Harness page" {
			t.Errorf("title text = %q, want the text of the HTML (the inline script must be blocked)", got)
		}
		b.WaitText("#late", "arrived late")
		if loc := b.Location(); loc != srv.URL+"/" {
			t.Errorf("Location() = %q, want %q", loc, srv.URL+"/")
		}
	})

	t.Run("CSP violation of the inline script is recorded", func(t *testing.T) {
		v := b.WaitCSPViolation("script-src")
		t.Logf("recorded: %v", v)
		var console, event bool
		for _, v := range b.CSPViolations() {
			switch v.From {
			case "console":
				console = console || strings.Contains(v.Message, "inline script")
			case "event":
				event = event || (v.BlockedURI == "inline" && strings.HasPrefix(v.Directive, "script-src"))
			}
		}
		if !console || !event {
			t.Errorf("want the violation from the console and from the event, got %v", b.CSPViolations())
		}
	})

	t.Run("console messages", func(t *testing.T) {
		var found bool
		for _, m := range b.Messages() {
			found = found || (m.Source == "console" && m.Text == "app.js loaded")
		}
		if !found {
			t.Errorf("console.log of app.js not recorded: %v", b.Messages())
		}
		if errs := b.JSErrors(); len(errs) != 0 {
			t.Errorf("JSErrors() = %v, want none yet", errs)
		}
	})

	t.Run("cookies, with http-only ones", func(t *testing.T) {
		c, ok := b.Cookie("session")
		if !ok {
			t.Fatalf("no session cookie in %v", b.Cookies())
		}
		if c.Value != "s3cret" || !c.HTTPOnly || c.SameSite != "Strict" || c.Path != "/" || c.Secure || !c.Session {
			t.Errorf("session cookie = %+v", c)
		}
		var fromJS string
		b.Eval(`document.cookie`, &fromJS)
		if strings.Contains(fromJS, "s3cret") {
			t.Errorf("document.cookie = %q shows the http-only cookie", fromJS)
		}
	})

	t.Run("fetch from the page carries the session", func(t *testing.T) {
		res := b.Fetch("GET", "/private", "", nil)
		if res.Status != http.StatusOK || !strings.Contains(res.Body, "only with the cookie") {
			t.Errorf("Fetch(/private) = %+v", res)
		}
		if ct := res.Headers["content-type"]; ct != "application/json" {
			t.Errorf("content-type = %q", ct)
		}
		other := b.NewIncognito()
		other.Navigate(srv.URL + "/other-page-without-cookie")
		if res := other.Fetch("GET", "/private", "", nil); res.Status != http.StatusUnauthorized {
			t.Errorf("an incognito tab reached the session's data: %+v", res)
		}
		tab := b.NewTab()
		tab.Navigate(srv.URL + "/private")
		if got := tab.Text("body"); !strings.Contains(got, "only with the cookie") {
			t.Errorf("a second tab of the same profile should share the cookie; got %q", got)
		}
	})

	t.Run("keyboard", func(t *testing.T) {
		b.Navigate(srv.URL + "/")
		b.PressKey("Tab")
		if e := b.ActiveElement(); e.Tag != "input" || e.ID != "name" {
			t.Errorf("after Tab: active %+v, want input#name", e)
		}
		b.PressKey("Tab")
		if e := b.ActiveElement(); e.Tag != "button" || e.Label != "Send" {
			t.Errorf("after 2×Tab: active %+v, want the Send button", e)
		}
		b.PressKey("Shift+Tab")
		if e := b.ActiveElement(); e.ID != "name" {
			t.Errorf("after Shift+Tab: active %+v, want input#name", e)
		}
	})

	t.Run("type and submit a form", func(t *testing.T) {
		b.Navigate(srv.URL + "/")
		b.Type("#name", "Ada <b>")
		b.Submit("#form")
		b.WaitLocation("/submit")
		if got := b.WaitText("#result", "hello"); got != "hello Ada <b>" {
			t.Errorf("result = %q", got)
		}
		b.Navigate(srv.URL + "/")
		b.SetValue("#name", "Grace")
		b.Click("#send")
		b.WaitText("#result", "hello Grace")
	})

	t.Run("uncaught exception", func(t *testing.T) {
		b.ClearRecords()
		b.Navigate(srv.URL + "/?throw")
		b.waitFor("the uncaught error", func() bool {
			for _, e := range b.JSErrors() {
				if strings.Contains(e, "boom from app.js") {
					return true
				}
			}
			return false
		}, func() string { return fmt.Sprint(b.JSErrors()) })
	})

	t.Run("phone viewport", func(t *testing.T) {
		var w int
		b.Eval(`window.innerWidth`, &w)
		if w != WindowWidth {
			t.Errorf("innerWidth = %d, want the window's %d", w, WindowWidth)
		}
		b.SetViewport(PhoneWidth, PhoneHeight)
		b.Eval(`window.innerWidth`, &w)
		if w != PhoneWidth {
			t.Errorf("innerWidth on the phone viewport = %d, want %d", w, PhoneWidth)
		}
		b.ResetViewport()
		b.Eval(`window.innerWidth`, &w)
		if w != WindowWidth {
			t.Errorf("innerWidth after ResetViewport = %d, want %d", w, WindowWidth)
		}
	})

	t.Run("screenshot", func(t *testing.T) {
		dir := t.TempDir()
		t.Setenv(EnvScreenshots, dir)
		b.Navigate(srv.URL + "/")
		path := b.Screenshot("harness-page")
		if want := filepath.Join(dir, "harness-page.png"); path != want {
			t.Errorf("path = %q, want %q", path, want)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("not a PNG: %v", err)
		}
		if got := img.Bounds().Dx(); got != WindowWidth {
			t.Errorf("width = %d, want %d", got, WindowWidth)
		}
	})
}

// TestAssertCleanPasses checks that a page with a policy it keeps gives no
// violation and no error, so that AssertClean can be the last line of tests.
func TestAssertCleanPasses(t *testing.T) {
	srv := newTestServer(t)
	b := New(t)
	b.Navigate(srv.URL + "/clean")
	b.WaitText("#late", "arrived late")
	if v := b.CSPViolations(); len(v) != 0 {
		t.Errorf("CSPViolations() = %v, want none", v)
	}
	b.AssertClean()
}

func TestScreenshotRejectsPathNames(t *testing.T) {
	for _, name := range []string{"", "../x", "a/b", "a b"} {
		if sanitize(name) == name && name != "" {
			t.Errorf("sanitize(%q) kept it", name)
		}
	}
}

func TestFindChromiumHonoursEnv(t *testing.T) {
	t.Setenv(EnvChromium, "/nonexistent/chromium-for-test")
	if _, err := findChromium(); err == nil || !strings.Contains(err.Error(), EnvChromium) {
		t.Errorf("findChromium() error = %v, want one naming %s", err, EnvChromium)
	}
}
