package browsertest

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// cspBinding is the name of the binding through which the page reports
// securitypolicyviolation events.
const cspBinding = "__hookbusBrowsertestCSP"

// cspListenerJS runs first in every document (scripts added over the
// DevTools protocol are not subject to the page's CSP).
const cspListenerJS = `document.addEventListener('securitypolicyviolation', function (e) {
  try {
    ` + cspBinding + `(JSON.stringify({
      directive: e.effectiveDirective || e.violatedDirective || '',
      blockedURI: e.blockedURI || '',
      sourceFile: e.sourceFile || '',
      line: e.lineNumber || 0,
      disposition: e.disposition || '',
      sample: e.sample || ''
    }));
  } catch (_) {}
}, true);`

// Message is one entry of the browser console: a console API call
// (console.log …), an uncaught exception, or a message of the browser itself
// (Log domain: network errors, CSP reports, deprecations).
type Message struct {
	// Source is "console" for console API calls, "exception" for uncaught
	// exceptions and unhandled rejections, else the Log domain's source
	// ("security", "network", "javascript", "other", …).
	Source string
	// Level is the console type or log level: "log", "info", "warning", "error", …
	Level string
	Text  string
	URL   string
	Line  int64 // 1-based when known, else 0
}

// String formats the message as one log line.
func (m Message) String() string {
	s := fmt.Sprintf("[%s %s] %s", m.Source, m.Level, m.Text)
	if m.URL != "" {
		s += fmt.Sprintf(" (%s:%d)", m.URL, m.Line)
	}
	return s
}

// CSPViolation is one Content-Security-Policy violation seen by the browser.
// A violation is usually recorded twice: once from the browser's console
// message ("Refused to execute inline script because it violates …", From
// "console") and once from the page's securitypolicyviolation event (From
// "event", with Directive and BlockedURI set).
type CSPViolation struct {
	From       string // "console" or "event"
	Message    string // the console text; for an event, a summary
	Directive  string // effective directive, e.g. "script-src-elem" (events only)
	BlockedURI string // "inline", "eval" or the blocked URL (events only)
	SourceFile string
	Line       int64
}

// String formats the violation as one log line.
func (v CSPViolation) String() string {
	if v.From == "event" {
		return fmt.Sprintf("CSP event: %s blocked %q at %s:%d", v.Directive, v.BlockedURI, v.SourceFile, v.Line)
	}
	return "CSP console: " + v.Message
}

// recorder keeps what a tab reported. Its listen method runs on chromedp's
// reading goroutine, before the reply of any later command is delivered, so
// after a round trip to the page everything sent before it is recorded.
type recorder struct {
	mu         sync.Mutex
	messages   []Message
	exceptions []string
	csp        []CSPViolation
	internal   []string
	started    time.Duration
}

// listen is the chromedp listener of the tab; it must return fast.
func (r *recorder) listen(ev any) {
	switch e := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		m := Message{Source: "console", Level: string(e.Type), Text: argsText(e.Args)}
		if st := e.StackTrace; st != nil && len(st.CallFrames) > 0 {
			m.URL, m.Line = st.CallFrames[0].URL, st.CallFrames[0].LineNumber+1
		}
		r.add(m)
	case *runtime.EventExceptionThrown:
		d := e.ExceptionDetails
		text := d.Text
		if d.Exception != nil && d.Exception.Description != "" {
			text += " " + d.Exception.Description
		}
		r.add(Message{Source: "exception", Level: "error", Text: text, URL: d.URL, Line: d.LineNumber + 1})
	case *log.EventEntryAdded:
		if e.Entry == nil {
			return
		}
		r.add(Message{Source: string(e.Entry.Source), Level: string(e.Entry.Level),
			Text: e.Entry.Text, URL: e.Entry.URL, Line: e.Entry.LineNumber + 1})
	case *runtime.EventBindingCalled:
		if e.Name == cspBinding {
			r.addEvent(e.Payload)
		}
	}
}

// add records a message, and a CSP violation when its text is the
// browser's report of one.
func (r *recorder) add(m Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.messages = append(r.messages, m)
	if m.Source == "exception" {
		r.exceptions = append(r.exceptions, m.Text)
	}
	if isCSPText(m.Text) {
		r.csp = append(r.csp, CSPViolation{From: "console", Message: m.Text, SourceFile: m.URL, Line: m.Line})
	}
}

// isCSPText reports whether a console text is Chromium's report of a CSP
// violation. The wording changes between versions ("Refused to execute inline
// script because it violates the following Content Security Policy directive"
// before, "Executing inline script violates the following Content Security
// Policy directive … The action has been blocked." in Chromium 156); both
// name the policy.
func isCSPText(text string) bool {
	return strings.Contains(text, "Content Security Policy directive") ||
		(strings.HasPrefix(text, "Refused to") && strings.Contains(text, "Content Security Policy"))
}

// addEvent records a securitypolicyviolation event sent by cspListenerJS.
func (r *recorder) addEvent(payload string) {
	var e struct {
		Directive   string `json:"directive"`
		BlockedURI  string `json:"blockedURI"`
		SourceFile  string `json:"sourceFile"`
		Line        int64  `json:"line"`
		Disposition string `json:"disposition"`
	}
	v := CSPViolation{From: "event"}
	if err := json.Unmarshal([]byte(payload), &e); err != nil {
		v.Message = "undecodable securitypolicyviolation payload: " + payload
	} else {
		v.Directive, v.BlockedURI, v.SourceFile, v.Line = e.Directive, e.BlockedURI, e.SourceFile, e.Line
		v.Message = fmt.Sprintf("securitypolicyviolation (%s): %s blocked %s", e.Disposition, e.Directive, e.BlockedURI)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.csp = append(r.csp, v)
}

// internalError keeps chromedp's own error reports (decoding problems and the like).
func (r *recorder) internalError(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.internal = append(r.internal, s)
}

// argsText joins console arguments the way the console shows them, roughly:
// strings as they are, other values as JSON or their description.
func argsText(args []*runtime.RemoteObject) string {
	parts := make([]string, 0, len(args))
	for _, a := range args {
		switch {
		case a == nil:
		case a.Type == "string" && len(a.Value) > 0:
			var s string
			if json.Unmarshal(a.Value, &s) == nil {
				parts = append(parts, s)
			} else {
				parts = append(parts, string(a.Value))
			}
		case len(a.Value) > 0:
			parts = append(parts, string(a.Value))
		case a.Description != "":
			parts = append(parts, a.Description)
		default:
			parts = append(parts, string(a.Type))
		}
	}
	return strings.Join(parts, " ")
}

// settle makes a round trip to the page after its pending tasks have run, so
// that the events of violations and errors that happened before the call are
// recorded. It is best effort: a page in the middle of a navigation has no
// document to ask, and then what has arrived so far is returned.
func (b *Browser) settle() {
	ctx, cancel := context.WithTimeout(b.ctx, b.Timeout)
	defer cancel()
	// Two task turns: the securitypolicyviolation event is queued as a task.
	const js = `new Promise(r => setTimeout(() => setTimeout(r, 0), 0))`
	_ = chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](js, chromedp.EvalAwaitPromise))
}

// Messages returns every console message the tab has recorded so far.
func (b *Browser) Messages() []Message {
	b.settle()
	b.rec.mu.Lock()
	defer b.rec.mu.Unlock()
	return append([]Message(nil), b.rec.messages...)
}

// JSErrors returns the text of every uncaught exception and unhandled
// promise rejection of the tab's pages so far.
func (b *Browser) JSErrors() []string {
	b.settle()
	b.rec.mu.Lock()
	defer b.rec.mu.Unlock()
	return append([]string(nil), b.rec.exceptions...)
}

// CSPViolations returns every Content-Security-Policy violation of the tab's
// pages so far (see [CSPViolation] for why one usually appears twice).
func (b *Browser) CSPViolations() []CSPViolation {
	b.settle()
	b.rec.mu.Lock()
	defer b.rec.mu.Unlock()
	return append([]CSPViolation(nil), b.rec.csp...)
}

// ClearRecords forgets the messages, errors and violations recorded so far,
// so that a test can check one page at a time.
func (b *Browser) ClearRecords() {
	b.settle()
	b.rec.mu.Lock()
	defer b.rec.mu.Unlock()
	b.rec.messages, b.rec.exceptions, b.rec.csp = nil, nil, nil
}

// WaitCSPViolation waits until a recorded violation's message, directive or
// blocked URI contains substr, and returns it. It fails the test after Timeout.
func (b *Browser) WaitCSPViolation(substr string) CSPViolation {
	b.t.Helper()
	var found CSPViolation
	b.waitFor(fmt.Sprintf("a CSP violation containing %q", substr), func() bool {
		for _, v := range b.CSPViolations() {
			if strings.Contains(v.Message, substr) || strings.Contains(v.Directive, substr) || strings.Contains(v.BlockedURI, substr) {
				found = v
				return true
			}
		}
		return false
	}, func() string { return fmt.Sprintf("recorded: %v", b.CSPViolations()) })
	return found
}

// AssertClean fails the test when the tab has recorded a CSP violation or an
// uncaught exception: the usual last check of a page test.
func (b *Browser) AssertClean() {
	b.t.Helper()
	for _, v := range b.CSPViolations() {
		b.t.Errorf("browsertest: %v", v)
	}
	for _, e := range b.JSErrors() {
		b.t.Errorf("browsertest: uncaught JS error: %s", e)
	}
}

// dumpOnFailure logs what the tab recorded and saves a screenshot, for the
// reader of a failed test.
func (b *Browser) dumpOnFailure() {
	b.rec.mu.Lock()
	msgs := append([]Message(nil), b.rec.messages...)
	internal := append([]string(nil), b.rec.internal...)
	b.rec.mu.Unlock()
	for _, m := range msgs {
		b.t.Logf("browser console: %v", m)
	}
	for _, s := range internal {
		b.t.Logf("chromedp: %s", s)
	}
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	if url, err := chromedp.Run(ctx, chromedp.Location()); err == nil {
		b.t.Logf("browser was at %s", url)
	}
	name := "FAILED-" + sanitize(b.t.Name())
	if b.number > 1 {
		name += fmt.Sprintf("-tab%d", b.number)
	}
	if path, err := b.screenshot(ctx, name); err != nil {
		b.t.Logf("browsertest: screenshot of the failure: %v", err)
	} else {
		b.t.Logf("browsertest: screenshot of the failure: %s", path)
	}
}
