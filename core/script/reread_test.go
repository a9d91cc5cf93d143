package script

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hookbus/hookbus/internal/testenv"
)

// TestGuardsReadArgumentsOnce: a size guard must hand the native built-in
// what it checked. Each argument here answers small the first time(s) it
// is read and huge afterwards; before the fix, the native code read it
// again and ran out of memory (ArrayBuffer, typed arrays, String.raw) or
// looped for hours (Array.from, concat, a generic method on an arguments
// object with a length getter). Now each one returns a small result or
// throws a RangeError, well within the timeout.
func TestGuardsReadArgumentsOnce(t *testing.T) {
	cases := []struct{ name, expr, want string }{
		{"ArrayBuffer valueOf", `(() => { let c = 0; return new ArrayBuffer({valueOf() { return c++ ? 2 ** 40 : 0 }}).byteLength; })()`, "0"},
		{"Uint8Array length getter", `(() => { let c = 0; return new Uint8Array({get length() { return c++ < 2 ? 0 : 2 ** 33 }}).length; })()`, "0"},
		{"Float64Array iterator getter", `(() => { let c = 0; return new Float64Array({get [Symbol.iterator]() { return c++ ? undefined : [1, 2][Symbol.iterator].bind([1, 2]) }, get length() { return 2 ** 33 }}).length; })()`, "2"},
		{"Uint8Array fake typed array", `(() => { let c = 0; const o = Object.create(Uint8Array.prototype, {[Symbol.iterator]: {value: undefined}, length: {get() { return c++ < 2 ? 1 : 2 ** 33 }}}); return new Uint8Array(o).length; })()`, "1"},
		{"String.raw raw getter", `(() => { let c = 0; return String.raw({get raw() { return c++ < 3 ? [] : {length: 2 ** 31} }}); })()`, ""},
		{"Array.from length getter", `(() => { let c = 0; return Array.from.call(Object, {get length() { return c++ < 2 ? 0 : 2 ** 32 - 1 }}).length; })()`, "0"},
		{"Array.from iterator getter", `(() => { let c = 0; return Array.from({get [Symbol.iterator]() { return c++ ? undefined : [7][Symbol.iterator].bind([7]) }, length: 2 ** 32 - 1}).join(); })()`, "7"},
		{"concat length getter", `(() => { let c = 0; return [].concat({[Symbol.isConcatSpreadable]: true, get length() { return c++ < 1 ? 0 : 2 ** 32 - 2 }}).length; })()`, "0"},
		{"concat flag getter", `(() => { let c = 0; return [].concat({get [Symbol.isConcatSpreadable]() { return c++ > 0 }, length: 2 ** 32 - 2}).length; })()`, "1"},
		{"concat this flag getter", `(() => { let c = 0; const o = {get [Symbol.isConcatSpreadable]() { return c++ > 0 }, length: 5}; return Array.prototype.concat.call(o).length; })()`, "1"},
		{"arguments length getter", `(function () { let c = 0; Object.defineProperty(arguments, "length", {get() { return c++ ? 2 ** 32 - 1 : 1 }}); return Array.prototype.indexOf.call(arguments, 1); })(1)`, "0"},
		{"apply arguments length getter", `(function () { let c = 0; Object.defineProperty(arguments, "length", {get() { return c++ ? 2 ** 32 - 1 : 2 }}); return Math.max.apply(null, arguments); })(3, 4)`, "4"},
	}
	var exprs []string
	for _, c := range cases {
		exprs = append(exprs, "() => "+c.expr)
	}
	s := compile(t, `
const cases = [`+strings.Join(exprs, ",\n")+`];
function transform(event) {
  let r;
  try { r = cases[event.data.i](); } catch (e) { return {type: "caught", data: {name: e.name, message: e.message}}; }
  return {type: "returned", data: String(r)};
}`, Options{MaxMemory: 8 << 20, Timeout: testenv.Timeout(20 * time.Second), PoolSize: 1})
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ev := testEvent()
			ev.Data = json.RawMessage(fmt.Sprintf(`{"i": %d}`, i))
			out, err := s.Transform(context.Background(), ev, Context{})
			if err != nil {
				t.Fatalf("%s: %v", c.expr, err)
			}
			var got string
			_ = json.Unmarshal(out[0].Data, &got)
			if out[0].Type != "returned" || got != c.want {
				t.Errorf("%s: got %s %s, want %q", c.expr, out[0].Type, out[0].Data, c.want)
			}
		})
	}
}

// TestGuardedBuiltinsKeepTheirBehaviour: the guards that read an argument
// once (and pass plain arrays through untouched) keep what the built-ins
// do: subclasses, holes, iterables, views, template literals.
func TestGuardedBuiltinsKeepTheirBehaviour(t *testing.T) {
	t.Parallel()
	runChecks(t, `
function transform(event) {
  class A extends Array {}
  const a = A.from([1,2]);
  const checks = {
    sub: a.concat([3]) instanceof A && a.concat([3]).length === 3,
    subFrom: a instanceof A && a.length === 2,
    plain: [1,2].concat(3, [4,[5]], "x").length === 6,
    obj: Array.prototype.concat.call({a:1}, 2).length === 2,
    holes: [,1].concat([,2]).length === 4 && !(0 in [,1].concat([,2])),
    from: Array.from({length: 2, 0: "a"}).join() === "a,",
    fromSet: Array.from(new Set([1,2,2])).length === 2,
    fromMap: Array.from([1,2], x => x*2).join() === "2,4",
    fromStr: Array.from("ab").join() === "a,b",
    ta: new Uint8Array([1,2,300]).join() === "1,2,44" && new Uint8Array(new Set([1])).length === 1,
    taLike: new Int16Array({length: 2, 0: 5}).join() === "5,0",
    taView: new Uint8Array(new ArrayBuffer(8), 2, 3).length === 3,
    taTA: new Float32Array(new Uint8Array([1,2])).length === 2,
    taN: new Uint8Array(4).length === 4,
    ab: new ArrayBuffer(5).byteLength === 5,
    raw: String.raw`+"`a${1}b`"+` === "a1b",
    args: (function () { return Array.prototype.slice.call(arguments).join(); })(1, 2) === "1,2",
  };
`, Options{})
}
