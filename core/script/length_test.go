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

// TestGenericMethodsRefuseHugeLengths: the generic built-ins loop natively
// up to an array-like's length, which no interrupt stops; each one throws
// a RangeError naming itself at once for {length: 2**53-1}, for a length
// taken from producer data, and for a length getter that lies to the check
// (the method sees the checked value). Without the guard the first case
// never ends (the test's own timeout would fire).
func TestGenericMethodsRefuseHugeLengths(t *testing.T) {
	methods := []string{"indexOf", "lastIndexOf", "includes", "reverse", "copyWithin", "fill", "map", "filter",
		"forEach", "some", "every", "find", "findIndex", "findLast", "findLastIndex", "reduce", "reduceRight",
		"flat", "flatMap", "join", "toLocaleString", "toString", "slice", "splice", "sort", "shift", "unshift",
		"keys", "values", "entries", "at", "toReversed", "toSorted", "toSpliced", "with"}
	type tc struct{ name, expr, label string }
	var cases []tc
	for _, m := range methods {
		args := "(x) => x"
		switch m {
		case "reduce", "reduceRight":
			args = "(a, b) => a, 0"
		case "sort", "toSorted":
			args = "undefined"
		case "with":
			args = "0, 1"
		}
		cases = append(cases, tc{m, "Array.prototype." + m + ".call(huge, " + args + ")", "Array.prototype." + m})
	}
	cases = append(cases,
		tc{"iterator", "[...Array.prototype[Symbol.iterator].call(huge)]", "Array.prototype.values"},
		tc{"concat spreadable", "[].concat(Object.assign({[Symbol.isConcatSpreadable]: true}, huge))", "Array.prototype.concat"},
		tc{"from", "Array.from(huge)", "Array.from"},
		tc{"apply", "Math.max.apply(null, huge)", "Function.prototype.apply"},
		tc{"fromCharCode", "String.fromCharCode.apply(null, huge)", "Function.prototype.apply"},
		tc{"Reflect.apply", "Reflect.apply(Math.min, null, huge)", "Reflect.apply"},
		tc{"Reflect.construct", "Reflect.construct(Array, huge)", "Reflect.construct"},
		tc{"String.raw", "String.raw({raw: huge})", "String.raw"},
		tc{"producer data", "Array.prototype.includes.call(event.data.tags, 'x')", "Array.prototype.includes"},
		tc{"lying getter", "Array.prototype.indexOf.call(liar(), 1)", ""},
	)
	var exprs []string
	for _, c := range cases {
		exprs = append(exprs, "(event) => "+c.expr)
	}
	s := compile(t, `
const huge = {length: 2 ** 53 - 1};
function liar() { let n = 0; return {get length() { return n++ === 0 ? 3 : 2 ** 53 - 1; }}; }
const cases = [`+strings.Join(exprs, ", ")+`];
function transform(event) {
  let r;
  try { r = cases[event.data.i](event); } catch (e) { return {type: "caught", data: {name: e.name, message: e.message}}; }
  return {type: "returned", data: String(r)};
}`, Options{MaxMemory: 8 << 20, Timeout: testenv.Timeout(30 * time.Second), PoolSize: 1})
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ev := testEvent()
			ev.Data = json.RawMessage(fmt.Sprintf(`{"i": %d, "tags": {"length": 9e15}}`, i))
			out, err := s.Transform(context.Background(), ev, Context{})
			if err != nil {
				t.Fatalf("%s: %v", c.expr, err)
			}
			if c.label == "" { // the method ran on the checked length
				if out[0].Type != "returned" || string(out[0].Data) != `"-1"` {
					t.Errorf("%s: got %s %s, want -1", c.expr, out[0].Type, out[0].Data)
				}
				return
			}
			var got struct{ Name, Message string }
			_ = json.Unmarshal(out[0].Data, &got)
			if out[0].Type != "caught" || got.Name != "RangeError" || !strings.Contains(got.Message, c.label) || !strings.Contains(got.Message, "scripts.max_memory") {
				t.Errorf("%s: got %s %s, want a RangeError naming %s and scripts.max_memory", c.expr, out[0].Type, out[0].Data, c.label)
			}
		})
	}
}

// TestGenericMethodsOnArrayLikes: below the bound the guarded generic
// methods still work on array-likes, and those that return their receiver
// return the object itself.
func TestGenericMethodsOnArrayLikes(t *testing.T) {
	t.Parallel()
	runChecks(t, `
function transform(event) {
  const o = {length: 3, 0: "c", 1: "a", 2: "b"};
  let n = 0;
  const g = {get length() { n++; return 2; }, 0: 1, 1: 2};
  const checks = {
    indexOf: Array.prototype.indexOf.call(o, "a") === 1,
    sortSelf: Array.prototype.sort.call(o) === o && o[0] === "a",
    reverseSelf: Array.prototype.reverse.call(o) === o && o[0] === "c",
    join: Array.prototype.join.call(g, "-") === "1-2",
    map: Array.prototype.map.call("ab", c => c + c).join() === "aa,bb",
    args: (function () { return Array.prototype.slice.call(arguments).length; })(1, 2, 3) === 3,
    apply: Math.max.apply(null, [1, 5, 2]) === 5 && Math.max.apply(null, {length: 2, 0: 1, 1: 7}) === 7,
    reflect: Reflect.apply(Math.min, null, [3, 2]) === 2 && Reflect.construct(Date, [0]).getTime() === 0,
    fromCharCode: String.fromCharCode.apply(null, [104, 105]) === "hi",
    iter: [...[1, 2, 3].values()].length === 3 && [][Symbol.iterator] === [].values,
    concat: [1].concat([2], {length: 1, 0: 3, [Symbol.isConcatSpreadable]: true}).join() === "1,2,3",
    raw: String.raw({raw: ["a", "b"]}, 1) === "a1b",
  };
`, Options{Timeout: testenv.Timeout(10 * time.Second)})
}
