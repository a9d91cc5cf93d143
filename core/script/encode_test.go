package script

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/dop251/goja"

	"github.com/hookbus/hookbus/internal/testenv"
)

// TestEncodeMatchesJSONStringify compares the encoder with goja's own JSON.stringify.
func TestEncodeMatchesJSONStringify(t *testing.T) {
	t.Parallel()
	exprs := []string{
		`({a: 1, b: "x", c: null, d: true, e: [1, "2", null]})`,
		`({z: 1, a: 2, m: 3})`,
		`({u: undefined, f: function() {}, s: Symbol("x"), keep: 1})`,
		`[undefined, function() {}, Symbol("y"), 1]`,
		`[NaN, Infinity, -Infinity, -0, 0.1 + 0.2, 1e21, 1e-7, 123456789012345, 2 ** 53 + 2, -5]`,
		`({d: new Date(Date.UTC(2024, 1, 3, 4, 5, 6, 789))})`,
		`({custom: {toJSON(k) { return "key=" + k }}})`,
		`[{toJSON() { return undefined }}]`,
		`({x: {toJSON() { return undefined }}, y: 2})`,
		`({boxed: [new String("s"), new Number(4.5), new Boolean(false)]})`,
		"({s: \"quote \\\" back \\\\ nl \\n cr \\r tab \\t bs \\b ff \\f ctl \\u0001 \\u001f del \\u007f é ☃ 😀 </script> \\u2028\"})",
		`({"": "empty key", "with space": 1, "é": 2})`,
		`[[[[]]], {}, [{}]]`,
		`"top-level string"`, `42`, `null`, `true`,
		`(function() { const a = [1, 2]; a.extra = "ignored"; return a })()`,
		`(function() { const o = Object.create({inherited: 1}); o.own = 2; return o })()`,
		`(function() { const o = {}; Object.defineProperty(o, "hidden", {value: 1, enumerable: false}); o.shown = 2; return o })()`,
	}
	vm := goja.New()
	stringify, _ := goja.AssertFunction(vm.Get("JSON").ToObject(vm).Get("stringify"))
	for _, expr := range exprs {
		v, err := vm.RunString(expr)
		if err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
		want, err := stringify(goja.Undefined(), v)
		if err != nil {
			t.Fatalf("%s: stringify: %v", expr, err)
		}
		got, ok, err := encodeJSON(vm, v, 1<<20)
		if err != nil || !ok {
			t.Errorf("%s: %v, %v", expr, ok, err)
			continue
		}
		if string(got) != want.String() {
			t.Errorf("%s:\n got  %s\n want %s", expr, got, want.String())
		}
	}
	for _, expr := range []string{`undefined`, `(function() {})`, `Symbol("z")`} {
		v, _ := vm.RunString(expr)
		if out, ok, err := encodeJSON(vm, v, 100); ok || err != nil || out != nil {
			t.Errorf("%s: got %s, %v, %v; want nothing", expr, out, ok, err)
		}
	}
}

func TestEncodeLimits(t *testing.T) {
	t.Parallel()
	vm := goja.New()
	tests := []struct {
		expr string
		want error
	}{
		{`(function() { let a = {}; for (let i = 0; i < 5000; i++) a = {a}; return a })()`, errEncodeTooDeep},
		{`(function() { const a = {}; a.self = a; return a })()`, errEncodeTooDeep},
		{`(function() { const a = []; a.push(a); return a })()`, errEncodeTooDeep},
		{`"x".repeat(2000)`, errEncodeTooLarge},
		{`Array.from({length: 1000}, (_, i) => i)`, errEncodeTooLarge},
	}
	for _, tc := range tests {
		v, err := vm.RunString(tc.expr)
		if err != nil {
			t.Fatal(err)
		}
		// Strings are written whole before the check: allow that much slack.
		limit := 1000
		if tc.want == errEncodeTooDeep {
			limit = 1 << 20
		}
		_, _, err = encodeJSON(vm, v, limit)
		if tc.want == errEncodeTooLarge && strings.HasPrefix(tc.expr, `"x"`) {
			if err != nil {
				t.Errorf("%s: a single string is checked by the caller's size total, got %v", tc.expr, err)
			}
			continue
		}
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.expr, err, tc.want)
		}
	}
	// BigInt cannot be encoded, like in JSON.stringify.
	v, _ := vm.RunString(`({n: 10n})`)
	if _, _, err := encodeJSON(vm, v, 1000); err == nil {
		t.Error("BigInt encoded without error")
	}
}

func TestDeepAndCyclicResultsFailFast(t *testing.T) {
	t.Parallel()
	for _, src := range []string{
		`function transform(e) { let a = {}; for (let i = 0; i < 5000; i++) a = {a}; return {type: "x", data: a} }`,
		`function transform(e) { const a = {}; a.self = a; console.log(a); return {type: "x", data: a} }`,
		`function transform(e) { let a = []; for (let i = 0; i < 5000; i++) a = [a]; return {type: "x", ext: a} }`,
	} {
		s := compile(t, src, Options{Timeout: 10e9, Logger: slog.New(slog.DiscardHandler)})
		_, err := s.Transform(context.Background(), testEvent(), Context{})
		wantScriptError(t, err, 1, 1, ErrBadReturn, `nested deeper than 500 levels \(or cyclic\)`)
	}
}

// TestStringifyReplacerAndSpace: the bounded JSON.stringify that scripts
// get writes what goja's own JSON.stringify writes, replacer (function or
// property list) and space (number or string) included.
func TestStringifyReplacerAndSpace(t *testing.T) {
	t.Parallel()
	exprs := []string{
		`JSON.stringify({a: [1, {b: 2, c: [], d: {}}], e: "x"}, null, 2)`,
		`JSON.stringify([1, [2, [3]]], null, 20)`,
		`JSON.stringify({a: 1, b: [1, 2]}, null, "--")`,
		`JSON.stringify({a: 1, b: [1]}, null, "0123456789abc")`,
		`JSON.stringify({a: 1}, null, 0)`,
		`JSON.stringify({a: 1}, null, "")`,
		`JSON.stringify({a: 1, b: 2}, null, new Number(3))`,
		`JSON.stringify({a: 1, b: 2}, null, new String("ab"))`,
		`JSON.stringify({a: 1, b: 2, c: {a: 3, z: 4}}, ["a", "c", "a", 1])`,
		`JSON.stringify({1: "one", a: 1}, [1, new String("a"), {}])`,
		`JSON.stringify([{a: 1, b: 2}], ["b"])`,
		`JSON.stringify({a: 1, b: "x", c: [1, "y"]}, (k, v) => typeof v === "number" ? v * 10 : v)`,
		`JSON.stringify({a: 1, b: 2}, function (k, v) { return k === "a" ? undefined : v; })`,
		`JSON.stringify({a: {b: 1}}, function (k, v) { return k === "" ? [this[""] === v, v] : v; })`,
		`JSON.stringify([1, 2], function (k, v) { return k === "0" ? Array.isArray(this) : v; })`,
		`JSON.stringify({d: new Date(0)}, (k, v) => typeof v === "string" ? "s:" + v : v)`,
		`JSON.stringify(5, (k, v) => k === "" ? {k, v} : v)`,
		`JSON.stringify({a: [], b: {}}, null, 4)`,
		`JSON.stringify({a: undefined, b: () => 1, c: 1}, null, 1)`,
		`JSON.stringify({a: 1}, "not a replacer", 2)`,
		`JSON.stringify({a: 1}, null, true)`,
	}
	src := "const results = [" + strings.Join(exprs, ",\n") + "];"
	plain := goja.New()
	want, err := plain.RunString(src + "\nJSON.stringify(results)")
	if err != nil {
		t.Fatal(err)
	}
	s := compile(t, src+"\nfunction transform(event) { return {type: 'r', data: results}; }", Options{})
	out, err := s.Transform(context.Background(), testEvent(), Context{})
	if err != nil {
		t.Fatal(err)
	}
	var got, exp []any
	if err := json.Unmarshal(out[0].Data, &got); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(want.String()), &exp); err != nil {
		t.Fatal(err)
	}
	for i := range exprs {
		if fmt.Sprint(got[i]) != fmt.Sprint(exp[i]) {
			t.Errorf("%s\n = %q\nwant %q", exprs[i], got[i], exp[i])
		}
	}
}

// TestStringifyBoundsWorkNotOnlyOutput: JSON.stringify can visit millions
// of members while writing almost nothing (members left out by a replacer
// array, or undefined); each visit counts against the bound, so these end
// in a RangeError at once instead of looping natively for minutes. A hole
// in a replacer array is skipped (it used to panic in Go).
func TestStringifyBoundsWorkNotOnlyOutput(t *testing.T) {
	s := compile(t, `
const cases = [
  () => { const keys = []; for (let i = 0; i < 20000; i++) keys.push("k" + i); return JSON.stringify(Array(20000).fill({}), keys); },
  () => { const o = {}; for (let i = 0; i < 20000; i++) o["k" + i] = undefined; return JSON.stringify(Array(20000).fill(o)); },
  () => JSON.stringify({a: 1, b: 2}, [, "a", undefined, null]),
];
function transform(event) {
  let r;
  try { r = cases[event.data.i](); } catch (e) { return {type: "caught", data: {name: e.name, message: e.message}}; }
  return {type: "returned", data: r};
}`, Options{MaxMemory: 8 << 20, Timeout: testenv.Timeout(20 * time.Second), PoolSize: 1})
	for i, want := range []string{"RangeError", "RangeError", `"{\"a\":1}"`} {
		ev := testEvent()
		ev.Data = json.RawMessage(fmt.Sprintf(`{"i": %d}`, i))
		start := time.Now()
		out, err := s.Transform(context.Background(), ev, Context{})
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		got := string(out[0].Data)
		if want == "RangeError" {
			if out[0].Type != "caught" || !strings.Contains(got, `"RangeError"`) || !strings.Contains(got, "scripts.max_memory") {
				t.Errorf("case %d: got %s %s, want a RangeError naming scripts.max_memory", i, out[0].Type, got)
			}
		} else if out[0].Type != "returned" || got != want {
			t.Errorf("case %d: got %s %s, want %s", i, out[0].Type, got, want)
		}
		t.Logf("case %d took %v", i, time.Since(start))
	}
}
