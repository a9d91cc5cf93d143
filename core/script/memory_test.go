package script

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hookbus/hookbus/internal/testenv"
)

// TestBuiltinsThatAllocateAreBounded: each built-in that builds a large
// value from a number or by repetition throws a catchable RangeError
// naming the bound, computed before it allocates (so this test stays
// small: without the guards each case takes gigabytes). It does not run in
// parallel with other tests: the heap watch sees the whole process.
func TestBuiltinsThatAllocateAreBounded(t *testing.T) {
	exprs := []string{
		`"x".repeat(1e9)`,
		`"ab".repeat(event.data.n)`,
		`"x".padStart(1e9)`,
		`"x".padEnd(1e9, "yz")`,
		`"x".concat(big(), big())`,
		`big().split("")`,
		`Array(1e9)`,
		`new Array(1e9)`,
		`Array.from({length: 1e9})`,
		`sparse().fill(0)`,
		`sparse().join(",")`,
		`[].concat(sparse())`,
		`new ArrayBuffer(1e9)`,
		`new Uint8Array(1e9)`,
		`new Float64Array(1e8)`,
		`new Int32Array(sparse())`,
		`JSON.stringify(sparse())`,
		`JSON.stringify(sparse(), null, 2)`,
		`JSON.stringify(dag(40))`,
		`JSON.stringify(Array(50).fill(0), (k, v) => k === "" ? v : big())`,
		`JSON.stringify(wide(100), null, 10)`,
		`JSON.stringify(wide(100), null, "\t\t\t\t")`,
		`Array(100001).fill("x".repeat(200)).join("")`,
		`Array(1000).fill(Array(1000).fill("x".repeat(100))).join()`,
		`String(Array(1000).fill(Array(1000).fill("x".repeat(100))))`,
		`Array(100001).fill("x".repeat(200)).toLocaleString()`,
		`Array(2000).fill(Array(10000).fill(0)).flat()`,
		`[[Array(2000).fill(Array(10000).fill(0))]].flat(3)`,
		`Array(2000).fill(Array(10000).fill(0)).flatMap(x => x)`,
		`new (ArrayBuffer[Symbol.species])(3e8)`,
		`new (Array[Symbol.species])(1e9)`,
		`new ([].constructor)(1e9)`,
		`new (new ArrayBuffer(1)).constructor(3e8)`,
		`new (new Uint8Array(1).buffer.constructor)(3e8)`,
		`new (Object.getPrototypeOf(new Uint8Array(1)).constructor)(1e9)`,
		`new (Uint8Array[Symbol.species])(1e9)`,
		`new Uint8Array(1).constructor.from({length: 1e9})`,
	}
	s := compile(t, `
function big() { return "x".repeat(3e6); }
function sparse() { const a = []; a.length = 1e9; return a; }
function wide(n) { let x = 0; for (let i = 0; i < n; i++) x = [x, Array(1000).fill(0)]; return x; }
function dag(n) { let x = [1]; for (let i = 0; i < n; i++) x = [x, x]; return x; }
const cases = [`+"(event) => "+strings.Join(exprs, ", (event) => ")+`];
function transform(event) {
  try { cases[event.data.i](event); } catch (e) { return {type: "caught", data: {name: e.name, message: e.message}}; }
  return {type: "no error"};
}`, Options{MaxMemory: 8 << 20, Timeout: testenv.Timeout(30 * time.Second), PoolSize: 1})
	for i, expr := range exprs {
		ev := testEvent()
		ev.Data = json.RawMessage(fmt.Sprintf(`{"n": 1000000000, "i": %d}`, i))
		out, err := s.Transform(context.Background(), ev, Context{})
		if err != nil {
			t.Errorf("%s: %v", expr, err)
			continue
		}
		var got struct{ Name, Message string }
		_ = json.Unmarshal(out[0].Data, &got)
		if out[0].Type != "caught" || got.Name != "RangeError" || !strings.Contains(got.Message, "scripts.max_memory") {
			t.Errorf("%s: got %s %s, want a RangeError naming scripts.max_memory", expr, out[0].Type, out[0].Data)
		}
	}
}

// TestGuardedBuiltinsStillWork: below the bound the guarded built-ins
// behave as before.
func TestGuardedBuiltinsStillWork(t *testing.T) {
	t.Parallel()
	runChecks(t, `
class Stack extends Array {}
function transform(event) {
  const checks = {
    repeat: "ab".repeat(3) === "ababab",
    pad: "7".padStart(3, "0") + "7".padEnd(2) === "007" + "7 ",
    concat: "a".concat(1, null) === "a1null",
    split: "a,b,,c".split(",").length === 4 && "abc".split("").join("-") === "a-b-c" && "a1b2".split(/\d/).length === 3,
    array: Array(3).length === 3 && new Array(1, 2).length === 2 && Array.of(1).length === 1,
    ctor: [].constructor === Array && [] instanceof Array && Array.isArray(Array(2)) && [1, 2].map(x => x).constructor === Array,
    subclass: new Stack().push(1) === 1 && new Stack() instanceof Stack && new Stack() instanceof Array,
    fill: Array(3).fill(7).join("") === "777" && [1, 2, 3].fill(0, 1).join() === "1,0,0",
    from: Array.from("abc").length === 3 && Array.from(new Set([1, 2])).length === 2 && Array.from({length: 2}, (_, i) => i)[1] === 1,
    buffer: new ArrayBuffer(8).byteLength === 8 && new Uint8Array(new ArrayBuffer(4)).length === 4 && new Uint8Array([1, 2, 3])[2] === 3,
    typed: new Float64Array(2).length === 2 && new Uint8Array(2) instanceof Uint8Array,
    json: JSON.stringify({a: [1, "x", null, undefined, new Date(0)], b: undefined}) === '{"a":[1,"x",null,null,"1970-01-01T00:00:00.000Z"]}',
    jsonSpace: JSON.stringify({a: 1}, null, 2) === '{\n  "a": 1\n}' && JSON.stringify({a: 1, b: 2}, ["a"]) === '{"a":1}',
    species: Array[Symbol.species] === Array && ArrayBuffer[Symbol.species] === ArrayBuffer && Uint8Array[Symbol.species] === Uint8Array &&
      [].constructor === Array && new ArrayBuffer(1).constructor === ArrayBuffer && new Uint8Array(1).buffer.constructor === ArrayBuffer &&
      Object.getPrototypeOf(new Uint8Array(1)).constructor === Uint8Array && new Uint8Array([1, 2]).map(x => x * 2)[1] === 4 &&
      new ArrayBuffer(4).slice(1).byteLength === 3 && new Stack(1, 2).map(x => x) instanceof Stack,
    abstractTyped: (() => { try { new (Object.getPrototypeOf(Uint8Array))(4); return false; } catch (e) { return e instanceof TypeError; } })(),
    flat: [1, [2, [3, [4]]]].flat().length === 3 && [1, [2, [3, [4]]]].flat(Infinity).join() === "1,2,3,4" && [1, , 3].flat().length === 2 &&
      [1, 2].flatMap(x => [x, [x * 10]]).length === 4 && [[1], 2].flatMap(x => x).join() === "1,2",
    joinNested: [1, [2, [3]], null, undefined, "x"].join("-") === "1-2,3---x" && String([1, [2]]) === "1,2" && [1234.5].toLocaleString() === (1234.5).toLocaleString(),
    plainMembers: ["hasOwnProperty", "isPrototypeOf", "propertyIsEnumerable"].every(k => "value" in Object.getOwnPropertyDescriptor(Object.prototype, k)),
    jsonUndefined: JSON.stringify(undefined) === undefined && JSON.stringify(() => 1) === undefined,
  };
`, Options{Timeout: testenv.Timeout(10 * time.Second)})
}

// TestHeapWatchInterruptsRunawayCalls: allocation by many small steps in
// a loop (no single built-in call is large) is interrupted by the heap
// watch with ErrMemory, well before the loops' own ends.
func TestHeapWatchInterruptsRunawayCalls(t *testing.T) {
	for _, tc := range []struct{ name, body string }{
		// The busy loop gives the watch time to sample between doublings,
		// as a real script's work would; without the watch the string ends
		// at 256 MiB.
		{"doubling a string", `let s = "x"; while (s.length < 1 << 28) { s = s + s; for (let i = 0; i < 2e5; i++) {} } return {type: "done", data: s.length};`},
		{"growing an array", `const a = []; while (a.length < 2e6) { a.push({n: a.length, s: "v" + a.length}); } return {type: "done", data: a.length};`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := compile(t, "function transform(event) {\n  if (event.type === 'small') return {type: 'small'}; "+tc.body+"\n}\n", Options{MaxMemory: 16 << 20, Timeout: testenv.Timeout(60 * time.Second), PoolSize: 1})
			_, err := s.Transform(context.Background(), testEvent(), Context{})
			se := wantScriptError(t, err, 2, 0, ErrMemory, `^test\.js:2:\d+: script exceeded its memory bound: the process heap grew by \d+ bytes during the call, over the 16777216-byte bound \(scripts\.max_memory\)$`)
			if se != nil && !se.broken {
				t.Error("the runtime that ran out of memory is kept")
			}
			if !errors.Is(err, ErrMemory) {
				t.Fatalf("%v", err)
			}
			// The pool (of one runtime) serves the next call of the same
			// script: the interrupted runtime's slot is not lost.
			ctx, cancel := context.WithTimeout(context.Background(), testenv.Timeout(30*time.Second))
			defer cancel()
			ev := testEvent()
			ev.Type = "small"
			if _, err := s.Transform(ctx, ev, Context{}); err != nil {
				t.Fatalf("next call (the pool lost its runtime?): %v", err)
			}
		})
	}
}

// TestGuardErrorsPointAtTheScript: an uncaught RangeError from a guarded
// built-in is located at the script's line, not inside hookbus' wrapper.
func TestGuardErrorsPointAtTheScript(t *testing.T) {
	t.Parallel()
	s := compile(t, "function transform(event) {\n  return {type: 't', data: 'x'.repeat(1e9)};\n}\n", Options{})
	_, err := s.Transform(context.Background(), testEvent(), Context{})
	wantScriptError(t, err, 2, 0, ErrException, `^test\.js:2:\d+: RangeError: String\.prototype\.repeat would need about 2000000000 bytes, over the script memory bound of 67108864 bytes \(scripts\.max_memory\)$`)
}

// runChecks compiles src, a script whose transform defines
// `const checks = {name: boolean, ...}` and ends there, completes the
// transform and calls it: the test fails naming every check that is false.
func runChecks(t *testing.T, src string, opts Options) {
	t.Helper()
	s := compile(t, src+`
  const bad = Object.keys(checks).filter(k => !checks[k]);
  if (bad.length) throw new Error("failed checks " + bad.join(","));
  return {type: "ok"};
}`, opts)
	if _, err := s.Transform(context.Background(), testEvent(), Context{}); err != nil {
		t.Fatal(err)
	}
}
