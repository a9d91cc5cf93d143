package browsertest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// Selectors are CSS selectors (document.querySelector) throughout.

// Navigate loads url and waits for its load event.
func (b *Browser) Navigate(url string) {
	b.t.Helper()
	b.run("navigate to "+url, chromedp.Navigate(url))
}

// Location returns the URL of the current page.
func (b *Browser) Location() string {
	b.t.Helper()
	return runValue(b, "read the location", chromedp.Location())
}

// WaitLocation waits until the page's URL contains substr (after a form
// post or a redirect) and returns it.
func (b *Browser) WaitLocation(substr string) string {
	b.t.Helper()
	var url string
	b.waitFor(fmt.Sprintf("a location containing %q", substr), func() bool {
		ctx, cancel := context.WithTimeout(b.ctx, b.Timeout)
		defer cancel()
		u, err := chromedp.Run(ctx, chromedp.Location())
		url = u
		return err == nil && strings.Contains(u, substr)
	}, func() string { return "last location: " + url })
	return url
}

// Click waits until the element is visible and clicks it with the mouse.
func (b *Browser) Click(sel string) {
	b.t.Helper()
	b.run("click "+sel, chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible))
}

// SetValue waits for the input and sets its value at once (no key events;
// the input and change events are dispatched so that scripts notice).
func (b *Browser) SetValue(sel, value string) {
	b.t.Helper()
	b.run("set the value of "+sel,
		chromedp.SetValue(chromedp.CSS(sel), value, chromedp.NodeReady),
		chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`(() => { const el = document.querySelector(%s);
  el.dispatchEvent(new Event('input', {bubbles: true})); el.dispatchEvent(new Event('change', {bubbles: true})); })()`, jsString(sel))),
	)
}

// Type waits until the input is visible, empties it and types text with key
// events, as a user does.
func (b *Browser) Type(sel, text string) {
	b.t.Helper()
	b.run("type into "+sel,
		chromedp.Clear(chromedp.CSS(sel), chromedp.NodeVisible),
		chromedp.SendKeys(chromedp.CSS(sel), text, chromedp.NodeVisible),
	)
}

// Submit submits the form sel names, or the form of the element sel names,
// with requestSubmit: validation and submit handlers run, as for a click on
// its submit button. Prefer Click on the button when the button is the subject.
func (b *Browser) Submit(sel string) {
	b.t.Helper()
	js := fmt.Sprintf(`(() => { const el = document.querySelector(%s);
  const form = el && (el.tagName === 'FORM' ? el : (el.form || el.closest('form')));
  if (!form) return false; form.requestSubmit(); return true; })()`, jsString(sel))
	b.WaitReady(sel)
	if !runValue(b, "submit "+sel, chromedp.Evaluate[bool](js)) {
		b.t.Fatalf("browsertest: submit %s: no form there", sel)
	}
}

// WaitReady waits until an element matching sel is in the document.
func (b *Browser) WaitReady(sel string) {
	b.t.Helper()
	b.run("wait for "+sel, chromedp.WaitReady(chromedp.CSS(sel)))
}

// WaitVisible waits until an element matching sel is visible.
func (b *Browser) WaitVisible(sel string) {
	b.t.Helper()
	b.run("wait until "+sel+" is visible", chromedp.WaitVisible(chromedp.CSS(sel)))
}

// WaitNotPresent waits until no element matches sel.
func (b *Browser) WaitNotPresent(sel string) {
	b.t.Helper()
	b.run("wait until "+sel+" is gone", chromedp.WaitNotPresent(chromedp.CSS(sel)))
}

// Text waits for the element and returns its visible text (innerText).
func (b *Browser) Text(sel string) string {
	b.t.Helper()
	return runValue(b, "read the text of "+sel, chromedp.Text(chromedp.CSS(sel), chromedp.NodeReady))
}

// WaitText polls until the visible text of the first element matching sel
// contains substr (the element may appear late too) and returns the text.
func (b *Browser) WaitText(sel, substr string) string {
	b.t.Helper()
	js := fmt.Sprintf(`(() => { const el = document.querySelector(%s); return el ? el.innerText : null; })()`, jsString(sel))
	var last *string
	b.waitFor(fmt.Sprintf("%s to contain %q", sel, substr), func() bool {
		ctx, cancel := context.WithTimeout(b.ctx, b.Timeout)
		defer cancel()
		text, err := chromedp.Run(ctx, chromedp.Evaluate[*string](js))
		last = text
		return err == nil && text != nil && strings.Contains(*text, substr)
	}, func() string {
		if last == nil {
			return "no element matched"
		}
		return fmt.Sprintf("last text: %q", *last)
	})
	return *last
}

// Eval evaluates a JavaScript expression in the page (a promise is awaited)
// and decodes its JSON value into out, which may be nil to ignore it. The
// expression is not subject to the page's CSP; what it calls (fetch, eval) is.
func (b *Browser) Eval(js string, out any) {
	b.t.Helper()
	raw := runValue(b, "evaluate "+abbrev(js), chromedp.Evaluate[[]byte](js, chromedp.EvalAwaitPromise))
	if out == nil {
		return
	}
	if len(raw) == 0 {
		raw = []byte("null") // undefined
	}
	if err := json.Unmarshal(raw, out); err != nil {
		b.t.Fatalf("browsertest: evaluate %s: decoding %s into %T: %v", abbrev(js), abbrev(string(raw)), out, err)
	}
}

// FetchResult is the answer to a [Browser.Fetch].
type FetchResult struct {
	Status  int               `json:"status"`
	Headers map[string]string `json:"headers"` // lower-case names
	Body    string            `json:"body"`
	URL     string            `json:"url"` // after redirects
}

// Fetch runs fetch() inside the current page, with the page's cookies
// (credentials: 'same-origin') and origin: what a script of the page, or a
// user editing requests by hand, could do with the session. body may be
// empty; headers may be nil. A network error fails the test.
func (b *Browser) Fetch(method, url, body string, headers map[string]string) FetchResult {
	b.t.Helper()
	if headers == nil {
		headers = map[string]string{}
	}
	h, err := json.Marshal(headers)
	if err != nil {
		b.t.Fatalf("browsertest: fetch %s %s: encoding headers: %v", method, url, err)
	}
	bodyJS := "undefined"
	if body != "" {
		bodyJS = jsString(body)
	}
	js := fmt.Sprintf(`(async () => {
  const r = await fetch(%s, {method: %s, body: %s, headers: %s, credentials: 'same-origin'});
  return {status: r.status, headers: Object.fromEntries(r.headers.entries()), body: await r.text(), url: r.url};
})()`, jsString(url), jsString(method), bodyJS, h)
	var res FetchResult
	b.Eval(js, &res)
	return res
}

// Cookie is a cookie of the current page, as the browser holds it.
type Cookie struct {
	Name     string
	Value    string
	Domain   string
	Path     string
	HTTPOnly bool
	Secure   bool
	SameSite string // "Strict", "Lax", "None" or "" when not set
	Session  bool   // no expiry: gone when the browser closes
	Expires  time.Time
}

// Cookies returns the cookies the browser would send to the current page,
// http-only ones included.
func (b *Browser) Cookies() []Cookie {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, b.Timeout)
	defer cancel()
	r, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{})
	if err != nil {
		b.t.Fatalf("browsertest: read cookies: %v", b.explain(ctx, err))
	}
	out := make([]Cookie, 0, len(r.Cookies))
	for _, c := range r.Cookies {
		k := Cookie{Name: c.Name, Value: c.Value, Domain: c.Domain, Path: c.Path, HTTPOnly: c.HTTPOnly,
			Secure: c.Secure, SameSite: string(c.SameSite), Session: c.Session}
		if !c.Session && c.Expires > 0 {
			k.Expires = time.Unix(int64(c.Expires), 0)
		}
		out = append(out, k)
	}
	return out
}

// Cookie returns the current page's cookie with this name, and whether there is one.
func (b *Browser) Cookie(name string) (Cookie, bool) {
	b.t.Helper()
	for _, c := range b.Cookies() {
		if c.Name == name {
			return c, true
		}
	}
	return Cookie{}, false
}

// SetViewport emulates a viewport of w×h CSS pixels, e.g.
// SetViewport(PhoneWidth, PhoneHeight), and waits until the page sees it
// (window.innerWidth == w). Call ResetViewport to return to the window's size.
func (b *Browser) SetViewport(w, h int) {
	b.t.Helper()
	b.run(fmt.Sprintf("set the viewport to %d×%d", w, h), chromedp.EmulateViewport(int64(w), int64(h)))
	b.emulatedWidth = w
	b.waitInnerWidth(fmt.Sprintf("window.innerWidth to be %d", w), func(iw int) bool { return iw == w })
}

// ResetViewport ends the emulation of SetViewport and waits until the page
// has left the emulated width: the browser applies the change asynchronously.
func (b *Browser) ResetViewport() {
	b.t.Helper()
	// chromedp.ResetViewport sets a 0×0 override, which keeps the emulated
	// width in Chromium 156; clearing the override restores the window's.
	ctx, cancel := context.WithTimeout(b.ctx, b.Timeout)
	defer cancel()
	if _, err := chromedp.Call(ctx, emulation.ClearDeviceMetricsOverride, cdp.Empty{}); err != nil {
		b.t.Fatalf("browsertest: reset the viewport: %v", b.explain(ctx, err))
	}
	if w := b.emulatedWidth; w != 0 && w != WindowWidth {
		b.waitInnerWidth(fmt.Sprintf("window.innerWidth to leave %d", w), func(iw int) bool { return iw != w })
	}
	b.emulatedWidth = 0
}

// waitInnerWidth polls window.innerWidth until ok accepts it.
func (b *Browser) waitInnerWidth(what string, ok func(int) bool) {
	b.t.Helper()
	var last int
	b.waitFor(what, func() bool {
		ctx, cancel := context.WithTimeout(b.ctx, b.Timeout)
		defer cancel()
		iw, err := chromedp.Run(ctx, chromedp.Evaluate[int](`window.innerWidth`))
		last = iw
		return err == nil && ok(iw)
	}, func() string { return fmt.Sprintf("last innerWidth: %d", last) })
}

// keys maps the names of PressKey to chromedp's key strings.
var keys = map[string]string{
	"Tab": kb.Tab, "Enter": kb.Enter, "Escape": kb.Escape, "Backspace": kb.Backspace, "Delete": kb.Delete,
	"Space": " ", "ArrowUp": kb.ArrowUp, "ArrowDown": kb.ArrowDown, "ArrowLeft": kb.ArrowLeft,
	"ArrowRight": kb.ArrowRight, "Home": kb.Home, "End": kb.End, "PageUp": kb.PageUp, "PageDown": kb.PageDown,
}

// modifiers maps the prefixes of PressKey ("Shift+Tab") to key modifiers.
var modifiers = map[string]chromedp.Modifier{
	"Shift": chromedp.ModifierShift, "Ctrl": chromedp.ModifierCtrl, "Control": chromedp.ModifierCtrl,
	"Alt": chromedp.ModifierAlt, "Meta": chromedp.ModifierMeta,
}

// PressKey presses a key on the focused element: a name ("Tab", "Enter",
// "Escape", "Space", "ArrowDown", …), a single character, optionally with
// modifiers ("Shift+Tab", "Ctrl+a").
func (b *Browser) PressKey(key string) {
	b.t.Helper()
	parts := strings.Split(key, "+")
	name := parts[len(parts)-1]
	if name == "" && len(parts) > 1 { // "Ctrl++"
		name = "+"
		parts = parts[:len(parts)-1]
	}
	var mods []chromedp.Modifier
	for _, p := range parts[:len(parts)-1] {
		m, ok := modifiers[p]
		if !ok {
			b.t.Fatalf("browsertest: press %q: unknown modifier %q (Shift, Ctrl, Alt, Meta)", key, p)
		}
		mods = append(mods, m)
	}
	k, ok := keys[name]
	if !ok {
		if len([]rune(name)) != 1 {
			b.t.Fatalf("browsertest: press %q: unknown key %q", key, name)
		}
		k = name
	}
	var opts []chromedp.KeyOption
	if len(mods) > 0 {
		opts = append(opts, chromedp.KeyModifiers(mods...))
	}
	b.run("press "+key, chromedp.KeyEvent(k, opts...))
}

// Element describes a DOM element for assertions.
type Element struct {
	Tag   string `json:"tag"` // lower case: "button", "a", "input", "body"
	ID    string `json:"id"`
	Name  string `json:"name"`
	Label string `json:"label"` // aria-label, else the visible text, trimmed and cut at 200 characters
	Href  string `json:"href"`
}

// ActiveElement returns the focused element (body when none has focus).
func (b *Browser) ActiveElement() Element {
	b.t.Helper()
	const js = `(() => { const el = document.activeElement || document.body;
  const text = (el.getAttribute('aria-label') || el.innerText || el.value || '').trim().slice(0, 200);
  return {tag: el.tagName.toLowerCase(), id: el.id || '', name: el.getAttribute('name') || '',
          label: text, href: el.getAttribute('href') || ''}; })()`
	var e Element
	b.Eval(js, &e)
	return e
}

// EnvScreenshots names the directory Screenshot writes to.
const EnvScreenshots = "HOOKBUS_SCREENSHOTS"

// Screenshot writes a full-page PNG of the current page to
// $HOOKBUS_SCREENSHOTS/<name>.png (default <repo>/test-artifacts/screenshots)
// and returns its path.
func (b *Browser) Screenshot(name string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, b.Timeout)
	defer cancel()
	path, err := b.screenshot(ctx, name)
	if err != nil {
		b.t.Fatalf("browsertest: screenshot %q: %v", name, b.explain(ctx, err))
	}
	return path
}

// screenshot captures and writes the PNG.
func (b *Browser) screenshot(ctx context.Context, name string) (string, error) {
	if name == "" || sanitize(name) != name {
		return "", fmt.Errorf("name %q: use letters, digits, '-', '_' and '.' only", name)
	}
	dir, err := ScreenshotDir()
	if err != nil {
		return "", err
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // quality 100 means PNG
	if err != nil {
		return "", fmt.Errorf("capturing: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("creating the directory: %w", err)
	}
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		return "", fmt.Errorf("writing: %w", err)
	}
	return path, nil
}

// ScreenshotDir returns where screenshots go: $HOOKBUS_SCREENSHOTS, else
// test-artifacts/screenshots at the root of the module (found by walking up
// to go.mod from the test's working directory).
func ScreenshotDir() (string, error) {
	if d := os.Getenv(EnvScreenshots); d != "" {
		return filepath.Abs(d)
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("finding the module root: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "test-artifacts", "screenshots"), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory; set %s", EnvScreenshots)
		}
		dir = parent
	}
}

// sanitize keeps the characters of a safe file name and replaces the others with '_'.
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		}
		return '_'
	}, s)
}

// waitFor polls cond until it holds or Timeout passes, then fails the test
// with what and detail(). The pause between polls grows from 10 ms to 250 ms:
// a poll, not a fixed wait.
func (b *Browser) waitFor(what string, cond func() bool, detail func() string) {
	b.t.Helper()
	deadline := time.Now().Add(b.Timeout)
	pause := 10 * time.Millisecond
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("browsertest: waited %s for %s; %s", b.Timeout, what, detail())
		}
		select {
		case <-time.After(pause):
		case <-b.ctx.Done():
			b.t.Fatalf("browsertest: waiting for %s: the browser went away: %v", what, context.Cause(b.ctx))
		}
		pause = min(2*pause, 250*time.Millisecond)
	}
}

// jsString quotes s as a JavaScript string literal (JSON is valid JavaScript).
func jsString(s string) string {
	q, _ := json.Marshal(s) // a string always encodes
	return string(q)
}

// abbrev cuts s for error messages.
func abbrev(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 80 {
		return s[:77] + "..."
	}
	return s
}
