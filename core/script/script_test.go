package script

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookbus/hookbus/sdk"
)

func compile(t *testing.T, src string, opts Options) *Script {
	t.Helper()
	s, err := CompileSource("test.js", src, opts)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	return s
}

func testEvent() sdk.Event {
	return sdk.Event{
		ID:       "ev1",
		Type:     "order.paid",
		Source:   "shop",
		Subject:  "order-42",
		Time:     time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC),
		Data:     json.RawMessage(`{"order_id":"o-42","amount":12.5,"qty":3,"big":9007199254740991,"items":[{"sku":"a"},{"sku":"b"}],"nested":{"z":1,"a":2}}`),
		Metadata: map[string]string{"tenant": "t1"},
		Extensions: map[string]json.RawMessage{
			"traceparent": json.RawMessage(`"00-abc-01"`),
		},
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// wantScriptError checks err is a *Error at line:col carrying cause and a message matching re.
func wantScriptError(t *testing.T, err error, line, col int, cause error, re string) *Error {
	t.Helper()
	var se *Error
	if !errors.As(err, &se) {
		t.Fatalf("error = %v (%T), want *script.Error", err, err)
	}
	if se.Line != line || (col > 0 && se.Column != col) {
		t.Errorf("position = %d:%d, want %d:%d (%v)", se.Line, se.Column, line, col, se)
	}
	if cause != nil && !errors.Is(err, cause) {
		t.Errorf("error %v is not %v", err, cause)
	}
	if !regexp.MustCompile(re).MatchString(se.Error()) {
		t.Errorf("error %q does not match %q", se.Error(), re)
	}
	return se
}

func TestFilter(t *testing.T) {
	t.Parallel()
	s := compile(t, `function filter(event, ctx) { return event.type === "order.paid" && ctx.pipeline === "p" && ctx.attempt === 2 }`, Options{})
	if !s.HasFilter() || s.HasTransform() {
		t.Fatalf("HasFilter=%v HasTransform=%v", s.HasFilter(), s.HasTransform())
	}
	for _, tc := range []struct {
		name string
		typ  string
		want bool
	}{{"keep", "order.paid", true}, {"drop", "order.created", false}} {
		t.Run(tc.name, func(t *testing.T) {
			ev := testEvent()
			ev.Type = tc.typ
			keep, err := s.Filter(context.Background(), ev, Context{Pipeline: "p", Attempt: 2})
			if err != nil || keep != tc.want {
				t.Fatalf("Filter = %v, %v; want %v", keep, err, tc.want)
			}
		})
	}
	// Without a transform, Transform passes the event through.
	out, err := s.Transform(context.Background(), testEvent(), Context{})
	if err != nil || len(out) != 1 || out[0].ID != "ev1" {
		t.Fatalf("Transform without transform = %v, %v", out, err)
	}
}

func TestEventShapeAndRoundTrip(t *testing.T) {
	t.Parallel()
	// The script sees every member, numbers keep their type, and an untouched
	// event comes back equal, with data members in their original order.
	s := compile(t, `
function transform(event, ctx) {
  const checks = [
    event.id === "ev1", event.type === "order.paid", event.source === "shop", event.subject === "order-42",
    event.time === "2025-03-04T05:06:07Z", event.metadata.tenant === "t1", event.traceparent === "00-abc-01",
    event.data.amount * 2 === 25, event.data.qty + 1 === 4, Array.isArray(event.data.items), event.data.items.length === 2,
    ctx.pipeline === "p" && ctx.sink === "s" && ctx.attempt === 1,
  ];
  const bad = checks.map((ok, i) => ok ? -1 : i).filter(i => i >= 0);
  if (bad.length) throw new Error("failed checks " + bad.join(","));
  return event;
}`, Options{})
	ev := testEvent()
	out, err := s.Transform(context.Background(), ev, Context{Pipeline: "p", Sink: "s", Attempt: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 1 {
		t.Fatalf("got %d events", len(out))
	}
	if got, want := string(out[0].Data), string(ev.Data); got != want {
		t.Errorf("data = %s\nwant   %s", got, want)
	}
	if got, want := mustJSON(t, out[0]), mustJSON(t, ev); got != want {
		t.Errorf("event = %s\nwant    %s", got, want)
	}
}

func TestTransform(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tests := []struct {
		name string
		src  string
		want string // JSON array of events
	}{
		{
			name: "reshape",
			src: `function transform(e) {
				return {type: "partner." + e.type, time: e.time, data: {ref: e.data.order_id, cents: Math.round(e.data.amount * 100)}, metadata: {x: "y"}, partner: {v: 2}};
			}`,
			want: `[{"id":"ev1","type":"partner.order.paid","time":"2025-03-04T05:06:07Z","data":{"ref":"o-42","cents":1250},"metadata":{"x":"y"},"partner":{"v":2}}]`,
		},
		{
			name: "mutate in place, keep nested references",
			src:  `function transform(e) { const extra = {}; e.data.extra = extra; extra.added = true; delete e.data.items; delete e.traceparent; e.id = "new"; return e; }`,
			want: `[{"id":"new","type":"order.paid","source":"shop","subject":"order-42","time":"2025-03-04T05:06:07Z","data":{"order_id":"o-42","amount":12.5,"qty":3,"big":9007199254740991,"nested":{"z":1,"a":2},"extra":{"added":true}},"metadata":{"tenant":"t1"}}]`,
		},
		{
			name: "split assigns ids when missing",
			src:  `function transform(e) { return e.data.items.map((it, i) => i === 1 ? {id: "own", type: "item", data: it} : {type: "item", data: it}); }`,
			want: `[{"id":"ev1-0","type":"item","data":{"sku":"a"}},{"id":"own","type":"item","data":{"sku":"b"}}]`,
		},
		{
			name: "date objects and undefined members",
			src:  `function transform(e) { return {type: "t", time: new Date(Date.UTC(2024, 0, 2, 3, 4, 5)), data: {when: new Date(0), gone: undefined}, subject: undefined}; }`,
			want: `[{"id":"ev1","type":"t","time":"2024-01-02T03:04:05Z","data":{"when":"1970-01-01T00:00:00.000Z"}}]`,
		},
		{name: "null drops", src: `function transform(e) { return null }`, want: `[]`},
		{name: "undefined drops", src: `function transform(e) { }`, want: `[]`},
		{name: "empty array drops", src: `function transform(e) { return [] }`, want: `[]`},
		{
			name: "__proto__ in data stays data",
			src:  `function transform(e) { e.data = JSON.parse('{"__proto__": {"polluted": 1}}'); e.data.ok = ({}).polluted === undefined; return {type: "t", data: e.data}; }`,
			want: `[{"id":"ev1","type":"t","data":{"__proto__":{"polluted":1},"ok":true}}]`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := compile(t, tc.src, Options{})
			out, err := s.Transform(ctx, testEvent(), Context{})
			if err != nil {
				t.Fatal(err)
			}
			if out == nil {
				t.Fatal("Transform returned a nil slice, want empty")
			}
			if got := mustJSON(t, out); got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestLazyData(t *testing.T) {
	t.Parallel()
	raw := `{ "big": 9007199254740993, "s": "caf\u00e9" }`
	tests := []struct{ name, src, want string }{
		{"untouched data passes through byte for byte", `function transform(e) { e.type = "x"; return e }`, raw},
		{"assigned without reading", `function transform(e) { e.data = {a: 1}; return e }`, `{"a":1}`},
		{"read then returned", `function transform(e) { e.data.s += "!"; return e }`, `{"big":9007199254740992,"s":"café!"}`},
		{"spread copies the data", `function transform(e) { return {...e, type: "y"} }`, `{"big":9007199254740992,"s":"café"}`},
		{"data moved to a new event", `function transform(e) { return {type: "y", data: e.data} }`, `{"big":9007199254740992,"s":"café"}`},
		{"keys and stringify see data", `function transform(e) { return {type: "y", data: [Object.keys(e).includes("data"), JSON.stringify(e).includes('"s":"café"')]} }`, `[true,true]`},
		{"deleted", `function transform(e) { delete e.data; return e }`, ``},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := compile(t, tc.src, Options{})
			ev := testEvent()
			ev.Data = json.RawMessage(raw)
			out, err := s.Transform(context.Background(), ev, Context{})
			if err != nil {
				t.Fatal(err)
			}
			if got := string(out[0].Data); got != tc.want {
				t.Errorf("data = %s, want %s", got, tc.want)
			}
		})
	}
	// Invalid data surfaces as an exception where the script reads it.
	s := compile(t, "function filter(e) {\n  return e.data.x\n}", Options{})
	ev := testEvent()
	ev.Data = json.RawMessage(`{"x": tru}`)
	_, err := s.Filter(context.Background(), ev, Context{})
	wantScriptError(t, err, 2, 0, ErrException, `TypeError: event.data is not valid JSON`)
}

func TestProtoKeyFromInputIsOwnProperty(t *testing.T) {
	t.Parallel()
	s := compile(t, `function filter(e) { return Object.keys(e.data).includes("__proto__") && e.data.polluted === undefined && ({}).polluted === undefined }`, Options{})
	ev := testEvent()
	ev.Data = json.RawMessage(`{"__proto__":{"polluted":true}}`)
	keep, err := s.Filter(context.Background(), ev, Context{})
	if err != nil || !keep {
		t.Fatalf("Filter = %v, %v", keep, err)
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		src       string
		line, col int
		cause     error
		re        string
	}{
		{
			name: "throw",
			src:  "function transform(e) {\n  if (e.type) {\n    throw new Error(\"boom\");\n  }\n}",
			line: 3, col: 11, cause: ErrException, re: `^test\.js:3:11: Error: boom$`, // goja locates an Error where it is constructed
		},
		{
			name: "type error in nested function",
			src:  "function helper(e) {\n  return e.data.missing.x;\n}\nfunction transform(e) { return helper(e) }",
			line: 2, cause: ErrException, re: `^test\.js:2:\d+: TypeError: .*missing|x`,
		},
		{
			name: "throw a string",
			src:  "function transform(e) {\n throw 'plain'\n}",
			line: 2, col: 2, cause: ErrException, re: `test\.js:2:2: plain$`,
		},
		{
			name: "timeout in empty loop points at the function",
			src:  "\nfunction transform(e) {\n  while (true) {}\n}",
			line: 2, col: 1, cause: ErrTimeout, re: `^test\.js:2:1: script timed out after 50ms$`,
		},
		{
			name: "timeout in loop body",
			src:  "function transform(e) {\n  let n = 0;\n  while (true) { n++; }\n}",
			line: 3, cause: ErrTimeout, re: `^test\.js:3:\d+: script timed out after 50ms$`,
		},
		{
			name: "stack overflow",
			src:  "function f(n) { return f(n + 1) + 1 }\nfunction transform(e) { return f(0) }",
			line: 1, cause: ErrStackOverflow, re: `maximum call stack size exceeded`,
		},
		{
			name: "returns a number",
			src:  "var x = 1;\n  function transform(e) { return 42 }",
			line: 2, col: 3, cause: ErrBadReturn, re: `^test\.js:2:3: transform must return .* got number$`,
		},
		{
			name: "returns a string",
			src:  "function transform(e) { return 'x' }",
			line: 1, col: 1, cause: ErrBadReturn, re: `got string`,
		},
		{
			name: "arrow function declared with const",
			src:  "// header\nconst transform = (e) => true;",
			line: 2, col: 19, cause: ErrBadReturn, re: `got boolean`,
		},
		{
			name: "missing type",
			src:  "function transform(e) { return {data: 1} }",
			line: 1, col: 1, cause: ErrBadReturn, re: `transform result\.type must be a non-empty string`,
		},
		{
			name: "type not a string",
			src:  "function transform(e) { return {type: 5} }",
			line: 1, cause: ErrBadReturn, re: `transform result\.type must be a string, got number`,
		},
		{
			name: "array element not an object",
			src:  "function transform(e) { return [{type: 'a'}, 7] }",
			line: 1, cause: ErrBadReturn, re: `transform result\[1\] must be an event object, got number`,
		},
		{
			name: "array element is an array",
			src:  "function transform(e) { return [[{type: 'a'}]] }",
			line: 1, cause: ErrBadReturn, re: `transform result\[0\] must be an event object, got array`,
		},
		{
			name: "bad time",
			src:  "function transform(e) { e.time = 'yesterday'; return e }",
			line: 1, cause: ErrBadReturn, re: `transform result\.time must be an RFC 3339 timestamp`,
		},
		{
			name: "invalid date",
			src:  "function transform(e) { e.time = new Date('nope'); return e }",
			line: 1, cause: ErrBadReturn, re: `transform result\.time is an invalid Date`,
		},
		{
			name: "type is an object",
			src:  "function transform(e) { return {type: {name: 'x'}} }",
			line: 1, cause: ErrBadReturn, re: `transform result\.type must be a string, got object`,
		},
		{
			name: "metadata value not a string",
			src:  "function transform(e) { e.metadata.n = 1; return e }",
			line: 1, cause: ErrBadReturn, re: `transform result\.metadata\.n must be a string, got number`,
		},
		{
			name: "cyclic data",
			src:  "function transform(e) { const a = {}; a.self = a; e.data = a; return e }",
			line: 1, cause: ErrBadReturn, re: `encoding transform result\.data as JSON`,
		},
		{
			name: "returns a function",
			src:  "function transform(e) { return transform }",
			line: 1, cause: ErrBadReturn, re: `got function`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := compile(t, tc.src, Options{Timeout: 50 * time.Millisecond, MaxStack: 200})
			_, err := s.Transform(context.Background(), testEvent(), Context{})
			wantScriptError(t, err, tc.line, tc.col, tc.cause, tc.re)
		})
	}
}

func TestFilterThrowPosition(t *testing.T) {
	t.Parallel()
	s := compile(t, "function filter(e) {\n\n    return e.nope.deeper;\n}", Options{})
	_, err := s.Filter(context.Background(), testEvent(), Context{})
	wantScriptError(t, err, 3, 0, ErrException, `^test\.js:3:\d+: TypeError`)
}

func TestCompileErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, src string
		line      int
		cause     error
		re        string
	}{
		{"syntax", "function filter(e) {\n  return e.type ===\n}", 3, ErrSyntax, `^test\.js:3:\d+: SyntaxError`},
		{"neither function", "var x = 1;", 0, ErrNoFunction, `^test\.js: defines none of filter\(event, ctx\), transform\(event, ctx\) and aggregate\(events, ctx\)$`},
		{"filter not a function", "var y;\nvar filter = 3;", 2, ErrNoFunction, `^test\.js:2:\d+: filter must be a function, got number$`},
		{"top-level throw", "\nthrow new Error('init');", 2, ErrException, `^test\.js:2:7: Error: init$`},
		{"top-level loop", "for (;;) {}\nfunction filter() {}", 1, ErrTimeout, `timed out`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := CompileSource("test.js", tc.src, Options{Timeout: 50 * time.Millisecond})
			wantScriptError(t, err, tc.line, 0, tc.cause, tc.re)
		})
	}
}

func TestCompileFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "f.js")
	if err := os.WriteFile(path, []byte("function filter(e) {\n  throw new TypeError('x')\n}"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Compile(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Name() != path {
		t.Errorf("Name = %q, want %q", s.Name(), path)
	}
	_, err = s.Filter(context.Background(), testEvent(), Context{})
	wantScriptError(t, err, 2, 9, ErrException, `^`+regexp.QuoteMeta(path)+`:2:9: TypeError: x$`)

	if _, err := Compile(filepath.Join(t.TempDir(), "missing.js"), Options{}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestTimeoutThenPoolKeepsWorking(t *testing.T) {
	t.Parallel()
	// 300ms: long enough for the calls that must not time out (a fresh
	// runtime runs the top-level code) on a busy machine under -race.
	s := compile(t, `
var calls = 0;
function transform(e) {
  calls++;
  if (e.type === "loop") { while (true) {} }
  return {type: "ok", data: {calls: calls}};
}`, Options{Timeout: 300 * time.Millisecond, PoolSize: 1})
	for i := range 3 {
		ev := testEvent()
		ev.Type = "loop"
		_, err := s.Transform(context.Background(), ev, Context{})
		wantScriptError(t, err, 5, 0, ErrTimeout, `timed out after 300ms`)
		out, err := s.Transform(context.Background(), testEvent(), Context{})
		if err != nil {
			t.Fatalf("round %d: call after timeout: %v", i, err)
		}
		// The interrupted runtime was replaced by a fresh one.
		if got := string(out[0].Data); got != `{"calls":1}` {
			t.Errorf("round %d: data = %s, want a fresh runtime", i, got)
		}
	}
}

func TestThrowKeepsRuntime(t *testing.T) {
	t.Parallel()
	s := compile(t, `var calls = 0; function transform(e) { calls++; if (e.type === "bad") throw new Error("x"); return {type: "ok", data: calls} }`, Options{PoolSize: 1})
	ev := testEvent()
	ev.Type = "bad"
	if _, err := s.Transform(context.Background(), ev, Context{}); !errors.Is(err, ErrException) {
		t.Fatal(err)
	}
	out, err := s.Transform(context.Background(), testEvent(), Context{})
	if err != nil || string(out[0].Data) != "2" {
		t.Fatalf("out = %v, %v; want the same runtime (calls = 2)", out, err)
	}
}

// signalHandler is a slog handler that closes ch on its first record.
type signalHandler struct {
	slog.Handler
	once *sync.Once
	ch   chan struct{}
}

func (signalHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h signalHandler) Handle(context.Context, slog.Record) error {
	h.once.Do(func() { close(h.ch) })
	return nil
}

func TestContextCanceled(t *testing.T) {
	t.Parallel()
	started := make(chan struct{})
	logger := slog.New(signalHandler{Handler: slog.DiscardHandler, once: new(sync.Once), ch: started})
	s := compile(t, "function filter(e) {\n  if (e.type !== 'loop') return true; console.log('started');\n  let i = 0; while (true) { i++; }\n}", Options{Timeout: time.Minute, PoolSize: 1, Logger: logger})
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-started // the script is running: cancel interrupts it
		cancel()
	}()
	loop := testEvent()
	loop.Type = "loop"
	_, err := s.Filter(ctx, loop, Context{})
	se := wantScriptError(t, err, 3, 0, context.Canceled, `^test\.js:3:\d+: script call canceled: context canceled$`)
	if errors.Is(se, ErrTimeout) {
		t.Error("a canceled call is not a timeout")
	}
	// The interrupted runtime was replaced; the script still works.
	if keep, err := s.Filter(context.Background(), sdk.Event{ID: "x", Type: "t"}, Context{}); err != nil || !keep {
		t.Fatalf("after cancel: %v, %v", keep, err)
	}

	// Waiting for a runtime also honours ctx.
	s2 := compile(t, "function filter(e) { return true }", Options{PoolSize: 1})
	s2.sem <- struct{}{} // occupy the only slot
	ctx2, cancel2 := context.WithCancel(context.Background())
	cancel2()
	if _, err := s2.Filter(ctx2, testEvent(), Context{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("waiting: err = %v", err)
	}
	<-s2.sem
	if keep, err := s2.Filter(context.Background(), testEvent(), Context{}); err != nil || !keep {
		t.Fatalf("after: %v %v", keep, err)
	}
}

func TestDeepRecursionDoesNotCrash(t *testing.T) {
	t.Parallel()
	s := compile(t, "function f(n) { return n === 0 ? 0 : 1 + f(n - 1) }\nfunction filter(e) { return f(e.data.n) > 0 }", Options{MaxStack: 500, PoolSize: 1})
	ev := testEvent()
	ev.Data = json.RawMessage(`{"n":100000}`)
	_, err := s.Filter(context.Background(), ev, Context{})
	wantScriptError(t, err, 1, 0, ErrStackOverflow, `maximum call stack size exceeded \(500\)`)
	ev.Data = json.RawMessage(`{"n":100}`)
	if keep, err := s.Filter(context.Background(), ev, Context{}); err != nil || !keep {
		t.Fatalf("after overflow: %v, %v", keep, err)
	}
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a slog handler.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.b.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

func TestLogging(t *testing.T) {
	t.Parallel()
	var buf syncBuffer
	logger := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s := compile(t, `function filter(e, ctx) {
  console.log("seen", e.type, {n: 1}, 2);
  console.warn("careful");
  console.error("bad");
  console.debug("dbg");
  hookbus.log("structured", {order: e.data.order_id, amount: e.data.amount});
  return true;
}`, Options{Logger: logger})
	if _, err := s.Filter(context.Background(), testEvent(), Context{Pipeline: "pl", Sink: "sk"}); err != nil {
		t.Fatal(err)
	}
	lines := buf.lines(t)
	want := []struct{ level, msg string }{
		{"INFO", `seen order.paid {"n":1} 2`}, {"WARN", "careful"}, {"ERROR", "bad"}, {"DEBUG", "dbg"}, {"INFO", "structured"},
	}
	if len(lines) != len(want) {
		t.Fatalf("got %d log lines, want %d: %v", len(lines), len(want), lines)
	}
	for i, w := range want {
		l := lines[i]
		if l["level"] != w.level || l["msg"] != w.msg || l["script"] != "test.js" || l["pipeline"] != "pl" || l["sink"] != "sk" || l["event_id"] != "ev1" {
			t.Errorf("line %d = %v, want level %s msg %q with script/pipeline/sink/event_id", i, l, w.level, w.msg)
		}
	}
	if l := lines[4]; l["order"] != "o-42" || l["amount"] != 12.5 {
		t.Errorf("hookbus.log fields = %v", l)
	}
}

func TestHookbusHelpers(t *testing.T) {
	t.Parallel()
	s := compile(t, `
function transform(e) {
  const out = {};
  out.uuid = hookbus.uuid();
  out.uuid2 = hookbus.uuid();
  out.now = hookbus.now();
  out.b64 = hookbus.base64.encode("héllo");
  out.back = hookbus.base64.decode(out.b64);
  out.unpadded = hookbus.base64.decode("aGk");
  out.hmac = hookbus.hmacSHA256("key", "The quick brown fox jumps over the lazy dog");
  out.frozen = Object.isFrozen(hookbus) && Object.isFrozen(hookbus.base64) && Object.isFrozen(console);
  "use strict";
  hookbus.uuid = () => "hacked";
  hookbus.base64.encode = () => "hacked";
  globalThis.hookbus = {};
  hookbus = 1;
  console = null;
  out.stillIntact = hookbus.uuid() !== "hacked" && hookbus.base64.encode("a") === "YQ==" && typeof console.log === "function";
  try { hookbus.base64.decode("!!!"); out.decodeThrows = false } catch (err) { out.decodeThrows = err instanceof TypeError }
  out.sandbox = [typeof require, typeof process, typeof fetch, typeof XMLHttpRequest, typeof setTimeout, typeof module].join(",");
  return {type: "t", data: out};
}`, Options{})
	out, err := s.Transform(context.Background(), testEvent(), Context{})
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UUID, UUID2, Now, B64, Back, Unpadded, Hmac, Sandbox string
		Frozen, StillIntact, DecodeThrows                    bool
	}
	if err := json.Unmarshal(out[0].Data, &d); err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(d.UUID) || d.UUID == d.UUID2 {
		t.Errorf("uuid = %q, %q", d.UUID, d.UUID2)
	}
	if _, err := time.Parse(time.RFC3339, d.Now); err != nil {
		t.Errorf("now = %q: %v", d.Now, err)
	}
	if d.B64 != "aMOpbGxv" || d.Back != "héllo" || d.Unpadded != "hi" {
		t.Errorf("base64 = %q, %q, %q", d.B64, d.Back, d.Unpadded)
	}
	// Known HMAC-SHA256 test vector.
	if d.Hmac != "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8" {
		t.Errorf("hmac = %q", d.Hmac)
	}
	if !d.Frozen || !d.StillIntact || !d.DecodeThrows {
		t.Errorf("frozen=%v intact=%v decodeThrows=%v", d.Frozen, d.StillIntact, d.DecodeThrows)
	}
	if d.Sandbox != "undefined,undefined,undefined,undefined,undefined,undefined" {
		t.Errorf("sandbox globals: %s", d.Sandbox)
	}
}

func TestStrictModeCannotReplaceHookbus(t *testing.T) {
	t.Parallel()
	s := compile(t, "'use strict';\nfunction filter(e) {\n  hookbus.now = null;\n  return true;\n}", Options{})
	_, err := s.Filter(context.Background(), testEvent(), Context{})
	wantScriptError(t, err, 3, 0, ErrException, `TypeError`)
}

func TestPayloadCap(t *testing.T) {
	t.Parallel()
	s := compile(t, `function transform(e) { return {type: "big", data: "x".repeat(e.data.n)} }`, Options{MaxPayload: 2000})
	ev := testEvent()
	ev.Data = json.RawMessage(`{"n":10}`)
	if _, err := s.Transform(context.Background(), ev, Context{}); err != nil {
		t.Fatalf("small: %v", err)
	}
	ev.Data = json.RawMessage(`{"n":5000}`)
	_, err := s.Transform(context.Background(), ev, Context{})
	wantScriptError(t, err, 1, 1, ErrPayloadTooLarge, `over the 2000-byte payload limit`)

	ev.Data = json.RawMessage(`{"n":1,"pad":"` + strings.Repeat("y", 3000) + `"}`)
	_, err = s.Transform(context.Background(), ev, Context{})
	wantScriptError(t, err, 0, 0, ErrPayloadTooLarge, `^test\.js: event "ev1" is about \d+ bytes, over the 2000-byte payload limit$`)

	f := compile(t, `function filter(e) { return true }`, Options{MaxPayload: 2000})
	if _, err := f.Filter(context.Background(), ev, Context{}); !errors.Is(err, ErrPayloadTooLarge) {
		t.Errorf("filter: %v", err)
	}
}

func TestConcurrency(t *testing.T) {
	t.Parallel()
	s := compile(t, `
var seen = 0;
function filter(e) { return e.data.i % 2 === 0 }
function transform(e, ctx) { seen++; return {type: "out", data: {i: e.data.i, attempt: ctx.attempt}} }`,
		// 400 calls on 2 runtimes of a busy machine under -race: the call
		// deadline is not what is tested here.
		Options{PoolSize: 2, Timeout: 30 * time.Second})
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			ev := testEvent()
			ev.Data = json.RawMessage(`{"i":` + jsonInt(i) + `}`)
			keep, err := s.Filter(context.Background(), ev, Context{Attempt: i})
			if err != nil {
				errs <- err
				return
			}
			if keep != (i%2 == 0) {
				errs <- errors.New("wrong filter result for " + jsonInt(i))
			}
			out, err := s.Transform(context.Background(), ev, Context{Attempt: i})
			if err != nil {
				errs <- err
				return
			}
			if want := `{"i":` + jsonInt(i) + `,"attempt":` + jsonInt(i) + `}`; len(out) != 1 || string(out[0].Data) != want {
				errs <- errors.New("got " + mustJSONNoT(out) + " want " + want)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := len(s.idle); got > 2 {
		t.Errorf("%d idle runtimes, pool size is 2", got)
	}
}

func jsonInt(i int) string { b, _ := json.Marshal(i); return string(b) }

func mustJSONNoT(v any) string { b, _ := json.Marshal(v); return string(b) }

func TestRunFileAndResultJSON(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "s.js")
	src := `function filter(e) { return e.type !== "skip" }
function transform(e) { return e.data.drop ? null : {type: "x", data: e.data} }`
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, event, want string
	}{
		{"kept", `{"id":"a","type":"t","data":{"v":1}}`, `{"kept":true,"events":[{"id":"a","type":"x","data":{"v":1}}]}`},
		{"filtered by filter", `{"id":"a","type":"skip"}`, `{"kept":false,"filtered_by":"filter","events":[]}`},
		{"dropped by transform", `{"id":"a","type":"t","data":{"drop":true}}`, `{"kept":false,"filtered_by":"transform","events":[]}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := RunFile(context.Background(), path, []byte(tc.event), Context{}, Options{})
			if err != nil {
				t.Fatal(err)
			}
			out := r.JSON()
			if !bytes.HasSuffix(out, []byte("}\n")) || !bytes.Contains(out, []byte("\n  ")) {
				t.Errorf("not pretty JSON: %s", out)
			}
			var compact bytes.Buffer
			if err := json.Compact(&compact, out); err != nil {
				t.Fatal(err)
			}
			if compact.String() != tc.want {
				t.Errorf("got  %s\nwant %s", compact.String(), tc.want)
			}
		})
	}
	if _, err := RunFile(context.Background(), path, []byte(`{"type": 1}`), Context{}, Options{}); err == nil || !strings.Contains(err.Error(), `"type"`) {
		t.Errorf("bad event: %v", err)
	}
	if _, err := RunFile(context.Background(), path, []byte(`{"id":"x"}`), Context{}, Options{}); err == nil || !strings.Contains(err.Error(), `"type"`) {
		t.Errorf("event without type: %v", err)
	}
}

// The top-level code gets at least MinTopLevelTimeout whatever the call
// deadline: a slow but finite top level compiles (a starved CPU must not
// fail a sound script), an endless one is stopped and named.
func TestTopLevelDeadline(t *testing.T) {
	t.Parallel()
	slow := "var t0 = Date.now(); while (Date.now() - t0 < 150) {}\nfunction transform(e) { return e }\n"
	if _, err := CompileSource("slow.js", slow, Options{Timeout: 20 * time.Millisecond}); err != nil {
		t.Fatalf("a top level of 150ms with a 20ms call deadline: %v", err)
	}
	_, err := CompileSource("endless.js", "while (true) {}\nfunction transform(e) { return e }\n", Options{Timeout: 20 * time.Millisecond})
	if err == nil || !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "top-level code timed out after "+MinTopLevelTimeout.String()) {
		t.Fatalf("endless top level: %v, want a timeout after %s", err, MinTopLevelTimeout)
	}
}
