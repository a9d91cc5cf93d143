package script

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/hookbus/hookbus/internal/testenv"
	"github.com/hookbus/hookbus/sdk"
)

var (
	fuzzScriptOnce sync.Once
	fuzzScript     *Script
)

// fuzzTransform is one script for every input of a fuzz worker: it
// returns either the value of a JavaScript expression (evaluated in the
// global scope, so an input may also tamper with the runtime, which later
// inputs must survive) or the event's data as parsed JSON.
func fuzzTransform(t *testing.T) *Script {
	fuzzScriptOnce.Do(func() {
		var err error
		fuzzScript, err = CompileSource("fuzz.js", `
function transform(event) {
  if (event.type === "json") return event.data;
  return (0, eval)(event.data.src);
}`, Options{Timeout: 200 * time.Millisecond, PoolSize: 2, MaxMemory: 16 << 20})
		if err != nil {
			t.Fatal(err)
		}
	})
	return fuzzScript
}

// FuzzTransformResult: whatever a transform returns (a fuzzed expression,
// or fuzzed JSON) comes out as well-formed events or as a *script.Error,
// never a panic or a hang.
func FuzzTransformResult(f *testing.F) {
	for _, seed := range []string{
		`({type: "t", data: {a: [1, 2]}})`,
		`[{type: "a"}, {type: "b", id: "x", metadata: {k: "v"}}]`,
		`null`, `42`, `"s"`, `[1]`, `({type: 1})`, `({type: "t", time: new Date(NaN)})`,
		`({get type() { throw Object.create(null) }})`,
		`({type: "t", data: {toJSON() { for (;;) {} }}})`,
		`(() => { const o = {type: "t"}; o.data = o; return o; })()`,
		`new Proxy({}, {ownKeys() { throw 1 }})`,
		`({type: "t", data: "x".repeat(1e9)})`,
		`Object.prototype.type = "p", {}`,
		`{"type":"t","data":{"a":1e700}}`, `[{"type":"a"},{"type":"b","x":[1,{}]}]`, `{"type":"t","time":"not a time"}`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, src string) {
		s := fuzzTransform(t)
		ev := testEvent()
		if json.Valid([]byte(src)) {
			ev.Type, ev.Data = "json", json.RawMessage(src)
		} else {
			data, _ := json.Marshal(map[string]string{"src": src})
			ev.Type, ev.Data = "expr", data
		}
		done := make(chan struct{})
		var out []sdk.Event
		var err error
		go func() {
			defer close(done)
			out, err = s.Transform(context.Background(), ev, Context{})
		}()
		select {
		case <-done:
		case <-time.After(testenv.Timeout(30 * time.Second)):
			t.Fatalf("%q: transform did not return", src)
		}
		if err != nil {
			if !isScriptError(err) {
				t.Fatalf("%q: error %v (%T) is not a *script.Error", src, err, err)
			}
			return
		}
		for i, e := range out {
			if e.Type == "" {
				t.Fatalf("%q: event %d has no type", src, i)
			}
			if len(e.Data) > 0 && !json.Valid(e.Data) {
				t.Fatalf("%q: event %d data %q is not JSON", src, i, e.Data)
			}
			for k, v := range e.Extensions {
				if !json.Valid(v) {
					t.Fatalf("%q: event %d member %s %q is not JSON", src, i, k, v)
				}
			}
		}
	})
}

var (
	casesScriptOnce sync.Once
	casesScript     *Script
)

// FuzzLoadCases: a .cases.json file is either refused with an error or
// gives cases that every hold a name, an event and at most one
// expectation, and that run without a panic.
func FuzzLoadCases(f *testing.F) {
	for _, seed := range []string{
		`[{"name": "a", "event": {"type": "t"}, "expect": [{"type": "t"}]}]`,
		`[{"name": "b", "event": {"type": "t", "data": {"x": 1}}, "expect_filtered": true, "ctx": {"pipeline": "p", "attempt": 2}}]`,
		`[{"name": "c", "event": {"type": "t"}, "expect_error": "fuzz\\.js:\\d+"}]`,
		`[{"name": "d", "event": 1}]`, `[{"name": "e", "event": {"type": "t"}, "expect_error": "("}]`,
		`[{"name": "f", "event": {}, "unknown": 1}]`, `{}`, `[]`, `[null]`, `[{"name": "g", "event": {"type": "t"}, "expect": 3}]`,
	} {
		f.Add([]byte(seed))
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, doc []byte) {
		casesScriptOnce.Do(func() {
			var err error
			casesScript, err = CompileSource("fuzz.js", "function transform(e) { if (e.data && e.data.x) throw new Error('x'); return e.type === 'drop' ? null : e; }", Options{})
			if err != nil {
				t.Fatal(err)
			}
		})
		path := filepath.Join(dir, "fuzz.cases.json")
		if err := os.WriteFile(path, doc, 0o600); err != nil {
			t.Fatal(err)
		}
		cases, err := LoadCases(path)
		if err != nil {
			return
		}
		for i, c := range cases {
			n := 0
			if len(c.Expect) > 0 {
				n++
			}
			if c.ExpectFiltered {
				n++
			}
			if c.ExpectError != "" {
				n++
				if _, err := regexp.Compile(c.ExpectError); err != nil {
					t.Fatalf("case %d: expect_error %q accepted but does not compile", i, c.ExpectError)
				}
			}
			if c.Name == "" || len(c.Event) == 0 || n > 1 {
				t.Fatalf("case %d accepted: %+v", i, c)
			}
			r := casesScript.Check(context.Background(), c)
			if r.Pass && r.Problem != "" {
				t.Fatalf("case %d passes with a problem: %s", i, r.Problem)
			}
			if !r.Pass && r.Problem == "" {
				t.Fatalf("case %d fails without saying why", i)
			}
		}
	})
}
