// Package browsertest starts a headless Chromium for end-to-end tests of
// hookbus's web pages and gives tests small, patient helpers to drive it.
//
// Every helper waits on a condition (an element, a text, a navigation) for at
// most [Browser.Timeout], 30 s by default, because CI runs on a busy two-core
// machine; none sleeps a fixed time. A helper that fails calls t.Fatal with the
// action and the selector, and when the test fails the browser's console, its
// uncaught exceptions and a screenshot of the page are left for the reader.
//
// The browser is found through HOOKBUS_CHROMIUM, else chromium,
// chromium-browser or google-chrome on PATH. Without one, [New] skips the test,
// except when CI=true: in CI a missing dependency is a failure.
package browsertest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/hookbus/hookbus/internal/testenv"
)

// DefaultTimeout bounds each action of a [Browser]: generous, for busy CI
// machines. New tabs start with it stretched by [testenv.Timeout] (doubled under -race).
const DefaultTimeout = 30 * time.Second

// startTimeout bounds the start of the browser process and of its first tab.
var startTimeout = testenv.Timeout(60 * time.Second)

// Window size of a new browser, the console's desktop target.
const (
	WindowWidth  = 1280
	WindowHeight = 800
)

// Phone viewport, for [Browser.SetViewport] in tests of the narrow layout.
const (
	PhoneWidth  = 390
	PhoneHeight = 844
)

// EnvChromium names the browser executable, overriding the search on PATH.
const EnvChromium = "HOOKBUS_CHROMIUM"

// candidates are the executables looked up on PATH, in order.
var candidates = []string{"chromium", "chromium-browser", "google-chrome"}

// Browser is one tab of a headless Chromium. The first Browser of a test,
// from [New], owns the process; [Browser.NewTab] and [Browser.NewIncognito]
// open more tabs in it. A Browser is used from the test's goroutine only.
type Browser struct {
	t   testing.TB
	ctx context.Context // the tab's chromedp context
	// Timeout bounds each action; tests may raise it, never need to lower it.
	Timeout time.Duration

	rec    *recorder
	tabs   *atomic.Int32 // tabs opened in this process, shared by its Browsers
	number int32         // this tab's number in the process, from 1

	emulatedWidth int // the width of SetViewport, 0 when none is emulated
}

// New starts a headless Chromium with a blank tab of 1280×800 and its own
// temporary profile; t.Cleanup stops it and removes the profile. It skips the
// test when no browser is installed, or fails it when CI=true.
func New(t testing.TB) *Browser {
	t.Helper()
	path, err := findChromium()
	if err != nil {
		if testenv.CI() {
			t.Fatalf("browsertest: %v (CI=true: a missing browser is a failure)", err)
		}
		t.Skipf("browsertest: %v", err)
	}
	profile := t.TempDir()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox, // CI runs as root, where the sandbox cannot start
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-dev-shm-usage", true), // /dev/shm is small in containers
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("metrics-recording-only", true),
		chromedp.Flag("password-store", "basic"),
		chromedp.Flag("use-mock-keychain", true),
		chromedp.WindowSize(WindowWidth, WindowHeight),
		chromedp.UserDataDir(profile),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	// Cleanups run last-in first-out: registered first, the process is
	// stopped after the tab's cleanup (in newTab) has dumped and closed it.
	t.Cleanup(cancelAlloc)
	return newTab(t, allocCtx, new(atomic.Int32))
}

// NewTab opens another tab in the same browser and the same profile: it
// shares cookies and storage with b, like a second tab of one user.
func (b *Browser) NewTab() *Browser {
	b.t.Helper()
	return newTab(b.t, b.ctx, b.tabs)
}

// NewIncognito opens a tab in a new browser context of the same process,
// sharing no cookies, storage or cache with b: a second, independent user
// (another tenant, an attacker without the session).
func (b *Browser) NewIncognito() *Browser {
	b.t.Helper()
	return newTab(b.t, b.ctx, b.tabs, chromedp.WithNewBrowserContext())
}

// newTab creates a tab from parent (an allocator or a tab context), waits
// until it runs and installs the recorders; t.Cleanup closes it.
func newTab(t testing.TB, parent context.Context, tabs *atomic.Int32, opts ...chromedp.ContextOption) *Browser {
	t.Helper()
	number := tabs.Add(1)
	rec := &recorder{}
	opts = append(opts, chromedp.WithListener(rec.listen))
	if chromedp.FromContext(parent) == nil { // a new browser: its logs are ours to route
		opts = append(opts,
			chromedp.WithLogf(t.Logf),
			chromedp.WithErrorf(func(format string, args ...any) { rec.internalError(fmt.Sprintf(format, args...)) }),
		)
	}
	ctx, cancel := chromedp.NewContext(parent, opts...)
	b := &Browser{t: t, ctx: ctx, Timeout: testenv.Timeout(DefaultTimeout), rec: rec, tabs: tabs, number: number}

	began := time.Now()
	// The first run binds the tab (and, for the first tab, the process) to
	// ctx itself, so its deadline comes from a timer stopped once it is up.
	timer := time.AfterFunc(startTimeout, cancel)
	err := chromedp.Do(ctx, chromedp.Func(b.install))
	stopped := timer.Stop()
	if err != nil {
		cancel()
		if !stopped {
			err = fmt.Errorf("not up after %s: %w", startTimeout, err)
		}
		t.Fatalf("browsertest: starting the browser tab: %v", err)
	}
	rec.started = time.Since(began)
	t.Cleanup(func() {
		if t.Failed() {
			b.dumpOnFailure()
		}
		// Closing the tab with a deadline: a hung browser must not hang the test binary.
		closeCtx, cancelClose := context.WithTimeout(ctx, 10*time.Second)
		defer cancelClose()
		if err := chromedp.Cancel(closeCtx); err != nil && !errors.Is(err, context.Canceled) {
			t.Logf("browsertest: closing the tab: %v", err)
		}
		cancel()
	})
	return b
}

// install adds, in every document the tab will load, a listener that reports
// securitypolicyviolation events through a binding, so that violations whose
// console text changes between browser versions are still recorded.
func (b *Browser) install(ctx context.Context, t *chromedp.Target) error {
	if _, err := cdp.Call(ctx, t, runtime.AddBinding, runtime.AddBindingParams{Name: cspBinding}); err != nil {
		return fmt.Errorf("adding the CSP binding: %w", err)
	}
	_, err := cdp.Call(ctx, t, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{
		Source: cspListenerJS,
	})
	if err != nil {
		return fmt.Errorf("adding the CSP listener: %w", err)
	}
	return nil
}

// StartupTime is how long the tab took to start (for the first tab, the
// process too), for reports about the cost of browser tests.
func (b *Browser) StartupTime() time.Duration { return b.rec.started }

// Context returns the tab's chromedp context, for an action no helper covers.
// Bound it with a timeout: chromedp.Run(ctx, …) with b.Context() itself waits forever.
func (b *Browser) Context() context.Context { return b.ctx }

// findChromium returns the browser executable: HOOKBUS_CHROMIUM if set (a
// path or a name on PATH), else the first candidate on PATH.
func findChromium() (string, error) {
	if v := strings.TrimSpace(os.Getenv(EnvChromium)); v != "" {
		p, err := exec.LookPath(v)
		if err != nil {
			return "", fmt.Errorf("%s=%q: %w", EnvChromium, v, err)
		}
		return p, nil
	}
	for _, name := range candidates {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("no browser found: set %s or install one of %s on PATH (Debian: apt-get install chromium)",
		EnvChromium, strings.Join(candidates, ", "))
}

// run runs actions on the tab with the per-action timeout and fails the test
// with what (the action, the selector) on error.
func (b *Browser) run(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, b.Timeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("browsertest: %s: %v", what, b.explain(ctx, err))
	}
}

// runValue is run for an action with a result.
func runValue[T any](b *Browser, what string, action chromedp.Action[T]) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, b.Timeout)
	defer cancel()
	v, err := chromedp.Run(ctx, action)
	if err != nil {
		b.t.Fatalf("browsertest: %s: %v", what, b.explain(ctx, err))
	}
	return v
}

// explain says that a deadline was the per-action timeout, the usual cause of
// a failed wait.
func (b *Browser) explain(ctx context.Context, err error) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("not done within %s (Browser.Timeout): %w", b.Timeout, err)
	}
	return err
}
