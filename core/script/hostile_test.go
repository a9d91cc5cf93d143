package script

import (
	"context"
	"errors"
	"log/slog"
	"regexp"
	"testing"
	"time"

	"github.com/hookbus/hookbus/internal/testenv"
)

// hostileCases are scripts whose thrown value or returned event runs
// script code that throws or loops where hookbus reads it. Each one
// answers a normal event ("ok") normally, so the test can check that the
// pool still serves calls after the hostile ones.
var hostileCases = []struct {
	name string
	body string // the hostile branch of transform, on line 3
	line int
	want string // regexp the error text must match
	loop bool   // ends with the timeout
}{
	{name: "throw a null-prototype object", body: `throw Object.create(null);`, line: 3,
		want: `^test\.js:3:\d+: uncaught exception: a thrown Object object that cannot be converted to a string$`},
	{name: "throw an object whose toString throws", body: `throw {toString() { throw 1 }};`, line: 3,
		want: `^test\.js:3:\d+: uncaught exception: .* cannot be converted to a string$`},
	{name: "throw an object whose toString loops", body: `throw {toString() { for (;;) {} }};`, line: 3, loop: true,
		want: `^test\.js:3:\d+: script timed out`},
	{name: "err.message getter throws", body: `const err = new Error("x"); Object.defineProperty(err, "message", {get() { throw 1 }}); throw err;`, line: 3,
		want: `^test\.js:3:\d+: uncaught exception: a thrown Error object`},
	{name: "err.message getter loops", body: `const err = new Error("x"); Object.defineProperty(err, "message", {get() { for (;;) {} }}); throw err;`, line: 3, loop: true,
		want: `^test\.js:3:\d+: script timed out`},
	{name: "throw a proxy whose traps throw", body: `throw new Proxy({}, {get() { throw new Error("trap") }});`, line: 3,
		want: `^test\.js:3:\d+: uncaught exception: .*cannot be converted to a string$`},
	{name: "throw a revoked proxy", body: `const r = Proxy.revocable({}, {}); r.revoke(); throw r.proxy;`, line: 3,
		want: `^test\.js:3:\d+: uncaught exception: a thrown value that cannot be converted to a string$`},
	{name: "throw a proxy with a getPrototypeOf trap", body: `throw new Proxy(new Error("e"), {getPrototypeOf() { throw new Error("proto") }});`, line: 3,
		want: `^test\.js:3:\d+: `},
	// No script frame raises the error: it is located at transform.
	{name: "return a revoked proxy", body: `const r = Proxy.revocable({type: "t"}, {}); r.revoke(); return r.proxy;`, line: 1,
		want: `^test\.js:1:1: reading the transform result: TypeError: .*revoked$`},
	{name: "type getter throws", body: `return {get type() { throw new Error("no type") }};`, line: 3,
		want: `^test\.js:3:\d+: reading the transform result: Error: no type$`},
	{name: "type getter loops", body: `return {get type() { for (;;) {} }};`, line: 3, loop: true,
		want: `^test\.js:3:\d+: script timed out`},
	{name: "data getter throws", body: `return {type: "t", get data() { throw new TypeError("no data") }};`, line: 3,
		want: `^test\.js:3:\d+: reading the transform result: TypeError: no data$`},
	{name: "data getter loops", body: `return {type: "t", get data() { while (true) {} }};`, line: 3, loop: true,
		want: `^test\.js:3:\d+: script timed out`},
	{name: "nested data getter throws", body: `return {type: "t", data: {a: [1, {get b() { throw new Error("deep") }}]}};`, line: 3,
		want: `^test\.js:3:\d+: .*Error: deep$`},
	{name: "metadata getter throws", body: `return {type: "t", metadata: {get tenant() { throw new Error("no tenant") }}};`, line: 3,
		want: `^test\.js:3:\d+: reading the transform result: Error: no tenant$`},
	{name: "split element getter throws", body: `return [{type: "a"}, {get type() { throw new Error("second") }}];`, line: 3,
		want: `^test\.js:3:\d+: reading the transform result: Error: second$`},
	{name: "split element getter loops", body: `return [{type: "a"}, {get type() { for (;;) {} }}];`, line: 3, loop: true,
		want: `^test\.js:3:\d+: script timed out`},
	{name: "array index getter throws", body: `const a = [{type: "a"}]; Object.defineProperty(a, 0, {get() { throw new Error("idx") }}); return a;`, line: 3,
		want: `^test\.js:3:\d+: reading the transform result: Error: idx$`},
	{name: "proxy ownKeys trap throws", body: `return new Proxy({type: "t"}, {ownKeys() { throw new Error("keys") }});`, line: 3,
		want: `^test\.js:3:\d+: reading the transform result: Error: keys$`},
	{name: "toJSON throws an unprintable value", body: `return {type: "t", data: {toJSON() { throw Object.create(null) }}};`, line: 3,
		want: `^test\.js:3:\d+: .*cannot be converted to a string$`},
}

// hostileSource wraps body as the hostile branch of a transform.
func hostileSource(body string) string {
	return "function transform(e) {\n  if (e.type === \"ok\") return {type: \"fine\"};\n  " + body + "\n}\n"
}

// callWithin runs fn and fails the test when it has not returned within a
// generous deadline (a lost runtime slot makes the next call wait forever).
func callWithin(t *testing.T, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); fn() }()
	select {
	case <-done:
	case <-time.After(testenv.Timeout(60 * time.Second)):
		t.Fatalf("%s: still running after the deadline (a runtime slot was lost?)", what)
	}
}

// TestHostileValuesNeverLeakARuntime runs each hostile script more times
// than the pool has runtimes: every call must come back as a located
// *Error, and a normal call must still be served afterwards.
func TestHostileValuesNeverLeakARuntime(t *testing.T) {
	t.Parallel()
	for _, tc := range hostileCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			opts := Options{PoolSize: 2, Timeout: testenv.Timeout(5 * time.Second)}
			if tc.loop {
				opts.Timeout = 200 * time.Millisecond
			}
			s := compile(t, hostileSource(tc.body), opts)
			for i := range 2*opts.PoolSize + 1 {
				ev := testEvent()
				callWithin(t, "hostile call", func() {
					_, err := s.Transform(context.Background(), ev, Context{Pipeline: "p"})
					se := wantScriptError(t, err, tc.line, 0, nil, tc.want)
					if se.Column <= 0 {
						t.Errorf("call %d: no column in %v", i, se)
					}
					if tc.loop && !errors.Is(err, ErrTimeout) {
						t.Errorf("call %d: %v is not a timeout", i, err)
					}
				})
			}
			ev := testEvent()
			ev.Type = "ok"
			callWithin(t, "normal call after the hostile ones", func() {
				out, err := s.Transform(context.Background(), ev, Context{})
				if err != nil || len(out) != 1 || out[0].Type != "fine" {
					t.Errorf("normal call: %v, %v", out, err)
				}
			})
		})
	}
}

// TestHostileFilterAndTopLevel covers the same values thrown by a filter
// and met while compiling (a getter on the global transform).
func TestHostileFilterAndTopLevel(t *testing.T) {
	t.Parallel()
	s := compile(t, "function filter(e) {\n  if (e.type !== \"ok\") throw Object.create(null);\n  return true;\n}\n", Options{PoolSize: 1})
	for range 3 {
		callWithin(t, "filter", func() {
			_, err := s.Filter(context.Background(), testEvent(), Context{})
			wantScriptError(t, err, 2, 0, ErrException, `^test\.js:2:\d+: uncaught exception`)
		})
	}
	ok := testEvent()
	ok.Type = "ok"
	if keep, err := s.Filter(context.Background(), ok, Context{}); err != nil || !keep {
		t.Fatalf("normal filter call: %v, %v", keep, err)
	}

	for _, src := range []string{
		"Object.defineProperty(globalThis, 'transform', {get() { throw Object.create(null) }});",
		"throw {toString() { throw 1 }};",
	} {
		callWithin(t, "compile", func() {
			_, err := CompileSource("top.js", src, Options{})
			if !isScriptError(err) || !regexp.MustCompile(`^top\.js:1:\d+: uncaught exception`).MatchString(err.Error()) {
				t.Errorf("%s: compile error %v", src, err)
			}
		})
	}
	callWithin(t, "compile", func() {
		_, err := CompileSource("top.js", "Object.defineProperty(globalThis, 'filter', {get() { for (;;) {} }});", Options{Timeout: 100 * time.Millisecond})
		if !errors.Is(err, ErrTimeout) {
			t.Errorf("looping global getter: %v, want a timeout", err)
		}
	})
}

// TestHostileRunJSON goes through RunJSON, which `hookbus script run` and
// `hookbus test` use.
func TestHostileRunJSON(t *testing.T) {
	t.Parallel()
	s := compile(t, hostileSource(hostileCases[0].body), Options{PoolSize: 1})
	for range 3 {
		callWithin(t, "RunJSON", func() {
			_, err := s.RunJSON(context.Background(), []byte(`{"id":"a","type":"t"}`), Context{})
			wantScriptError(t, err, 3, 0, nil, `uncaught exception`)
		})
	}
	r := s.Check(context.Background(), Case{Name: "hostile", Event: []byte(`{"type":"t"}`), ExpectError: "test\\.js:3:"})
	if !r.Pass {
		t.Errorf("case with expect_error: %s", r.Problem)
	}
}

// TestEnginePanicsBecomeErrors: a panic out of the engine that is not one
// of goja's own failures (here a native function panicking with a plain Go
// value, as a bug in goja or in hookbus' globals would) ends the call with
// an *Error of its own kind, located in the script, and discards the
// runtime; the process keeps running and the pool serves the next call.
func TestEnginePanicsBecomeErrors(t *testing.T) {
	t.Parallel()
	s := compile(t, `function transform(event) {
  if (event.type === "direct") boom();
  if (event.type === "getter") return {get type() { boom(); return "t"; }};
  return {type: "fine"};
}`, Options{PoolSize: 1, Logger: slog.New(slog.DiscardHandler)})
	for _, typ := range []string{"direct", "getter"} {
		// The pool's only runtime gets a native function that panics; a
		// replacement runtime does not have it.
		slot := <-s.idle
		if err := slot.vm.Set("boom", func() { panic(struct{ N int }{42}) }); err != nil {
			t.Fatal(err)
		}
		s.idle <- slot
		ev := testEvent()
		ev.Type = typ
		_, err := s.Transform(context.Background(), ev, Context{})
		se := wantScriptError(t, err, 1, 0, ErrEngine, `^test\.js:1:\d+: internal error in the script engine: \{42\}$`)
		if se != nil && !se.broken {
			t.Errorf("%s: the runtime is kept after an engine panic", typ)
		}
		ev.Type = "after"
		ctx, cancel := context.WithTimeout(context.Background(), testenv.Timeout(30*time.Second))
		out, err := s.Transform(ctx, ev, Context{})
		cancel()
		if err != nil || len(out) != 1 || out[0].Type != "fine" {
			t.Fatalf("%s: next call = %v, %v", typ, out, err)
		}
	}
}
