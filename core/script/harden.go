package script

import (
	"errors"
	"fmt"

	"github.com/dop251/goja"
)

// hardenSource is run in every new runtime after the hookbus globals and
// before the script's own code. It is a function of the memory bound and
// of a size-bounded JSON.stringify written in Go, and it
//
//  1. wraps the built-ins that build a large value from a number or by
//     repetition, so that they throw a RangeError, computed from their
//     arguments before any allocation, when the result would be over the
//     bound (goja's built-ins are native loops that an interrupt cannot
//     stop, so a deadline alone does not bound them);
//  2. turns the data properties of the built-in prototypes that scripts
//     commonly shadow (toString, constructor, name, message...) into
//     accessors whose setter defines an own property on the receiver, so
//     that `err.name = "X"` keeps working once the prototypes are frozen
//     (the "override mistake" of frozen prototypes);
//  3. freezes every built-in object reachable from the global object
//     (constructors, prototypes, JSON, Math, Reflect, the iterator and
//     generator prototypes...), so that a call cannot pollute what later
//     calls in the same runtime see. The global object itself stays
//     writable: top-level declarations live there.
//
// Sizes are estimates: a string counts two bytes per UTF-16 code unit, an
// array element sixteen bytes.
const hardenSource = `(function (max, boundedStringify, lengthGuard, classOf) {
"use strict";
const G = globalThis;
const { defineProperty, getOwnPropertyDescriptor, getPrototypeOf, freeze, isFrozen } = Object;
const { ownKeys, apply, construct } = Reflect;
const trunc = Math.trunc, isArray = Array.isArray, StringC = String, NumberC = Number;
const ObjectC = Object, ProxyC = Proxy, RangeErrorC = RangeError, TypeErrorC = TypeError;
const call = (f, self, ...args) => apply(f, self, args);

function toInt(v) {
	const n = NumberC(v);
	return n !== n ? 0 : trunc(n);
}
function check(what, bytes) {
	if (bytes > max) {
		throw new RangeErrorC(what + " would need about " + bytes + " bytes, over the script memory bound of " + max + " bytes (scripts.max_memory)");
	}
}
function thisString(self, what) {
	if (self === null || self === undefined) throw new TypeErrorC(what + " called on null or undefined");
	return StringC(self);
}
function replace(obj, name, impl) {
	const d = getOwnPropertyDescriptor(obj, name);
	defineProperty(impl, "name", { value: name });
	defineProperty(obj, name, { value: impl, writable: d.writable, enumerable: d.enumerable, configurable: d.configurable });
}

// 1. Size guards.
const SP = String.prototype;
const repeat = SP.repeat, padStart = SP.padStart, padEnd = SP.padEnd, sconcat = SP.concat, split = SP.split;
replace(SP, "repeat", function (count) {
	const s = thisString(this, "String.prototype.repeat");
	const n = toInt(count);
	if (n > 0 && s.length > 0) check("String.prototype.repeat", 2 * s.length * n);
	return call(repeat, s, n);
});
for (const [name, orig] of [["padStart", padStart], ["padEnd", padEnd]]) {
	replace(SP, name, function (maxLength, fill) {
		const s = thisString(this, "String.prototype." + name);
		const n = toInt(maxLength);
		if (n > s.length) check("String.prototype." + name, 2 * n);
		return call(orig, s, n, fill);
	});
}
replace(SP, "concat", function (...parts) {
	const s = thisString(this, "String.prototype.concat");
	let n = s.length;
	for (let i = 0; i < parts.length; i++) {
		parts[i] = StringC(parts[i]);
		n += parts[i].length;
	}
	check("String.prototype.concat", 2 * n);
	return apply(sconcat, s, parts);
});
replace(SP, "split", function (sep, limit) {
	const s = thisString(this, "String.prototype.split");
	let parts = s.length + 1;
	if (sep !== null && sep !== undefined && typeof sep !== "object" && typeof sep !== "function") {
		sep = StringC(sep);
		if (sep.length > 0) parts = trunc(s.length / sep.length) + 1;
	}
	if (limit !== undefined) parts = Math.min(parts, NumberC(limit) >>> 0);
	check("String.prototype.split", 48 * parts);
	return call(split, s, sep, limit);
});

const AP = Array.prototype;
const fill = AP.fill, join = AP.join, aconcat = AP.concat;
const lengthOf = o => {
	const n = toInt(o.length);
	return n > 0 ? n : 0;
};
// fixedLength(o, n, spread) is a Proxy of o whose length reads n and, when
// spread is a boolean, whose Symbol.isConcatSpreadable reads spread: what
// a guard checked is what the native built-in then sees (a getter or a
// valueOf may answer differently the second time).
const isConcatSpreadable = Symbol.isConcatSpreadable;
const fixedLength = (o, n, spread) => new ProxyC(o, { get(t, k) {
	if (k === "length") return n;
	if (k === isConcatSpreadable && spread !== undefined) return spread;
	return t[k];
} });
const relIdx = (rel, len) => rel < 0 ? Math.max(len + rel, 0) : Math.min(rel, len);
replace(AP, "fill", function (value, start, end) {
	const len = lengthOf(this);
	const k = relIdx(toInt(start), len);
	const final = end === undefined ? len : relIdx(toInt(end), len);
	if (final > k) check("Array.prototype.fill", 16 * (final - k));
	return call(fill, this, value, k, final);
});
// join and toLocaleString turn every element into a string themselves
// first, counting the result as they go, so that they stop at the bound
// (elements may be long strings, or arrays that join in turn); the
// original join then glues strings that exist already.
function joined(self, sep, what, str) {
	const len = lengthOf(self);
	let bytes = len * 16 + 2 * (len > 0 ? len - 1 : 0) * sep.length;
	check(what, bytes);
	const parts = [];
	for (let i = 0; i < len; i++) {
		const v = self[i];
		const p = v === null || v === undefined ? "" : str(v);
		bytes += 2 * p.length;
		check(what, bytes);
		parts[i] = p;
	}
	return call(join, parts, sep);
}
replace(AP, "join", function (sep) {
	return joined(this, sep === undefined ? "," : StringC(sep), "Array.prototype.join", StringC);
});
const toLocale = v => StringC(v.toLocaleString());
replace(AP, "toLocaleString", function () {
	return joined(this, ",", "Array.prototype.toLocaleString", toLocale);
});
// flat and flatMap are written here rather than guarded: the size of
// their result depends on elements (and mapper results) that a getter can
// change between a check and the native call. Pushing in JavaScript is
// interruptible, and the count stops at the bound.
function flatten(out, src, depth, what) {
	// A first walk counts, so that a large result is refused before any
	// of it is built; the second builds it, counting again (a getter may
	// answer differently the second time).
	check(what, 16 * (out.length + flatWalk(src, depth, what, null)));
	flatWalk(src, depth, what, out);
	return out;
}
function flatWalk(src, depth, what, out) {
	let n = 0;
	const stack = [[src, 0, lengthOf(src), depth]];
	while (stack.length > 0) {
		const top = stack[stack.length - 1];
		if (top[1] >= top[2]) { stack.length--; continue; }
		const a = top[0], i = top[1]++;
		if (!(i in a)) continue;
		const v = a[i];
		if (top[3] > 0 && isArray(v)) {
			const len = lengthOf(v);
			if (out === null && top[3] === 1) { // its elements are all leaves: count them at once
				n += len;
				check(what, 16 * n);
				continue;
			}
			n += 1; // visiting costs too: nested empty arrays
			check(what, 16 * n);
			stack[stack.length] = [v, 0, len, top[3] - 1];
			continue;
		}
		n++;
		check(what, 16 * (out === null ? n : out.length + 1));
		if (out !== null) out[out.length] = v;
	}
	return n;
}
replace(AP, "flat", function (depth) {
	if (this === null || this === undefined) throw new TypeErrorC("Array.prototype.flat called on null or undefined");
	const d = depth === undefined ? 1 : toInt(depth);
	return flatten([], ObjectC(this), d, "Array.prototype.flat");
});
replace(AP, "flatMap", function (fn, thisArg) {
	if (this === null || this === undefined) throw new TypeErrorC("Array.prototype.flatMap called on null or undefined");
	if (typeof fn !== "function") throw new TypeErrorC("Array.prototype.flatMap: " + StringC(typeof fn) + " is not a function");
	// The mapper's results first, then one flattening of depth 1 that
	// refuses a large result before building it.
	const o = ObjectC(this), len = lengthOf(o), results = [];
	for (let i = 0; i < len; i++) {
		if (i in o) results[results.length] = call(fn, thisArg, o[i], i, o);
	}
	return flatten([], results, 1, "Array.prototype.flatMap");
});
// concat reads each item's flag and length once: a plain array (not a
// Proxy, Array.prototype its prototype, no own flag or iterator) has a data length and
// an undefined flag; every other object is handed to the native concat as
// a fixed-length, fixed-flag Proxy (of [o] when o is not spread).
const plainArray = o => classOf(o) === "Array" && getPrototypeOf(o) === AP &&
	getOwnPropertyDescriptor(o, isConcatSpreadable) === undefined && getOwnPropertyDescriptor(o, Symbol.iterator) === undefined;
function concatItem(o, count, isThis) {
	if (o === null || (typeof o !== "object" && typeof o !== "function")) { count.n++; return o; }
	if (plainArray(o)) { count.n += lengthOf(o); return o; }
	const f = o[isConcatSpreadable];
	if (f !== undefined ? !!f : isArray(o)) {
		const n = lengthOf(o);
		count.n += n;
		return fixedLength(o, n, true);
	}
	count.n++;
	if (isThis && isArray(o)) { // an array not spread: its species still decides the result's kind
		return new ProxyC([o], { get(t, k) { return k === "length" ? 1 : k === isConcatSpreadable ? true : k === "constructor" ? o.constructor : t[k]; } });
	}
	return fixedLength([o], 1, true);
}
replace(AP, "concat", function (...items) {
	if (this === null || this === undefined) throw new TypeErrorC("Array.prototype.concat called on null or undefined");
	const count = { n: 0 };
	const self = concatItem(ObjectC(this), count, true);
	for (let i = 0; i < items.length; i++) items[i] = concatItem(items[i], count, false);
	check("Array.prototype.concat", 16 * count.n);
	return apply(aconcat, self, items);
});

// guardConstructor replaces the global constructor name by a function
// that checks the arguments first, then calls or constructs the original
// (with the caller's new.target, so subclasses keep working). The wrapper
// shares the original's prototype and static members, and
// C.prototype.constructor points to it, so that instanceof and
// x.constructor === C still hold. (A Proxy would be simpler, but goja's
// instanceof does not accept one.)
function guardConstructor(name, size, needsNew) {
	const C = G[name];
	if (typeof C !== "function") return;
	const W = function (...args) {
		if (new.target === undefined) {
			if (needsNew) throw new TypeErrorC("Constructor " + name + " requires 'new'");
			check(name, size(args));
			return apply(C, undefined, args);
		}
		check(name, size(args));
		return construct(C, args, new.target === W ? C : new.target);
	};
	defineProperty(W, "prototype", { value: C.prototype, writable: false });
	defineProperty(W, "name", { value: name, configurable: true });
	defineProperty(W, "length", { value: C.length, configurable: true });
	for (const k of ownKeys(C)) {
		if (k === "length" || k === "name" || k === "prototype") continue;
		// The Symbol.species getter returns its receiver, W: the original
		// constructor must not be reachable from scripts.
		defineProperty(W, k, getOwnPropertyDescriptor(C, k));
	}
	Object.setPrototypeOf(W, getPrototypeOf(C));
	defineProperty(C.prototype, "constructor", { value: W, writable: true, enumerable: false, configurable: true });
	const d = getOwnPropertyDescriptor(G, name);
	defineProperty(G, name, { value: W, writable: d.writable, enumerable: d.enumerable, configurable: d.configurable });
}
const arrayFrom = Array.from;
const iteratorSym = Symbol.iterator;
defineProperty(Array, "from", { value: function from(items, mapFn, thisArg) {
	if (plainArray(items)) {
		check("Array.from", 16 * lengthOf(items)); // a data length, the built-in iterator
	} else if (items !== null && (typeof items === "object" || typeof items === "function")) {
		// The iterator method and the length are read once; the native
		// code gets an object whose answers cannot change.
		const it = items[iteratorSym];
		if (it !== undefined && it !== null) {
			if (items.size !== undefined) check("Array.from", 16 * toInt(items.size));
			const orig = items;
			items = { [iteratorSym]() { return call(it, orig); } };
		} else {
			const n = lengthOf(items);
			check("Array.from", 16 * n);
			items = fixedLength(items, n);
		}
	}
	return apply(arrayFrom, this, [items, mapFn, thisArg]);
}, writable: true, enumerable: false, configurable: true });
guardConstructor("Array", args => args.length === 1 && typeof args[0] === "number" ? 16 * args[0] : 16 * args.length, false);
const ArrayBufferC = ArrayBuffer;
guardConstructor("ArrayBuffer", args => {
	args[0] = toInt(args[0]); // converted once: the native code gets the checked number
	return args[0];
}, true);
// A genuine ArrayBuffer or typed array (not an object that merely
// inherits from one's prototype): the getters throw on anything else.
const bufferByteLength = getOwnPropertyDescriptor(ArrayBuffer.prototype, "byteLength").get;
const typedLength = getOwnPropertyDescriptor(getPrototypeOf(Int8Array.prototype), "length").get;
const genuine = (getter, o) => { try { call(getter, o); return true; } catch (e) { return false; } };
for (const name of ["Int8Array", "Uint8Array", "Uint8ClampedArray", "Int16Array", "Uint16Array", "Int32Array", "Uint32Array",
	"Float32Array", "Float64Array", "BigInt64Array", "BigUint64Array"]) {
	const per = G[name] ? G[name].BYTES_PER_ELEMENT : 1;
	guardConstructor(name, args => {
		const a = args[0];
		if (a === null || a === undefined) return 0;
		if (typeof a !== "object") return per * toInt(a);
		if (genuine(bufferByteLength, a)) return 0; // a view: no new memory
		if (genuine(typedLength, a)) return per * call(typedLength, a);
		if (plainArray(a)) return per * lengthOf(a); // a data length, the built-in iterator
		// An iterable or array-like: copied here into a plain array, its
		// iterator method and length read once, counting as it goes.
		const copy = [];
		const it = a[iteratorSym];
		if (it !== undefined && it !== null) {
			const iter = call(it, a);
			for (;;) {
				const r = iter.next();
				if (r.done) break;
				check(name, (16 + per) * (copy.length + 1));
				copy[copy.length] = r.value;
			}
		} else {
			const n = lengthOf(a);
			check(name, (16 + per) * n);
			for (let i = 0; i < n; i++) copy[i] = a[i];
		}
		args[0] = copy;
		return per * copy.length;
	}, true);
}
defineProperty(JSON, "stringify", { value: function stringify_(value, replacer, space) {
	return boundedStringify(value, replacer, space); // throws RangeError over the bound
}, writable: true, enumerable: false, configurable: true });
defineProperty(JSON.stringify, "name", { value: "stringify" });

// Generic methods loop natively up to ToLength(this.length) (or of an
// argument list), which an interrupt cannot stop: {length: 2**53-1} would
// pin the runtime forever. lengthGuard (in Go) wraps each so that it
// throws a RangeError when that length is over the number of elements the
// memory bound allows. push and pop do not loop.
const guarded = new Map();
function guardLength(obj, k, label, argIdx) {
	const d = getOwnPropertyDescriptor(obj, k);
	let w = guarded.get(d.value); // values and [Symbol.iterator] stay one function
	if (w === undefined) {
		w = lengthGuard(d.value, label, argIdx);
		defineProperty(w, "name", { value: d.value.name, configurable: true });
		defineProperty(w, "length", { value: d.value.length, configurable: true });
		guarded.set(d.value, w);
	}
	defineProperty(obj, k, { value: w, writable: d.writable, enumerable: d.enumerable, configurable: d.configurable });
}
for (const k of ownKeys(AP)) {
	if (k === "constructor" || k === "push" || k === "pop" || typeof AP[k] !== "function") continue;
	guardLength(AP, k, "Array.prototype." + (typeof k === "symbol" ? "[" + k.description + "]" : k), -1);
}
guardLength(Function.prototype, "apply", "Function.prototype.apply", 1);
guardLength(Reflect, "apply", "Reflect.apply", 2);
guardLength(Reflect, "construct", "Reflect.construct", 1);
const raw = String.raw;
defineProperty(String, "raw", { value: function raw_(template, ...subs) {
	if (template !== null && template !== undefined) {
		const r = template.raw; // read once, and its length once
		if (r !== null && (typeof r === "object" || typeof r === "function")) {
			const n = lengthOf(r);
			check("String.raw", 16 * n);
			template = { raw: fixedLength(r, n) };
		} else {
			template = { raw: r };
		}
	}
	return apply(raw, this, [template, ...subs]);
}, writable: true, enumerable: false, configurable: true });
defineProperty(String.raw, "name", { value: "raw" });

// 2. Shadowable prototype members become accessors.
function tame(proto, names) {
	for (const k of names) {
		const d = getOwnPropertyDescriptor(proto, k);
		if (!d || !("value" in d) || !d.writable) continue;
		const v = d.value;
		defineProperty(proto, k, {
			get() { return v; },
			set(nv) {
				if (this === proto) throw new TypeErrorC("Cannot assign to read only property '" + StringC(k) + "' of a built-in prototype");
				defineProperty(this, k, { value: nv, writable: true, enumerable: true, configurable: true });
			},
			enumerable: d.enumerable, configurable: false,
		});
	}
}
// Only the members that scripts commonly assign on ordinary objects: an
// accessor is slower to read than a data property (o.hasOwnProperty...).
tame(Object.prototype, ["toString", "toLocaleString", "valueOf", "constructor"]);
for (const name of ["Error", "TypeError", "RangeError", "SyntaxError", "ReferenceError", "EvalError", "URIError", "AggregateError"]) {
	if (typeof G[name] === "function") tame(G[name].prototype, ["constructor", "name", "message", "toString"]);
}

// 3. Freeze the built-ins: every constructor and namespace on the global
// object, its prototype, and the intrinsics that no global names (the
// iterator, generator and %TypedArray% objects). A fixed list rather than
// a walk of everything reachable: walking the built-ins makes goja build
// every one of their lazily created members, which cost milliseconds per
// runtime. The methods themselves are not frozen: setting a property on
// one changes no built-in's behaviour.
function freezeOne(o) {
	if (((typeof o === "object" && o !== null) || typeof o === "function") && o !== G && !isFrozen(o)) freeze(o);
}
function freezeWithProto(o) {
	freezeOne(o);
	if (typeof o === "function") {
		const d = getOwnPropertyDescriptor(o, "prototype");
		if (d !== undefined && "value" in d) freezeOne(d.value);
	}
}
for (const k of ownKeys(G)) {
	const d = getOwnPropertyDescriptor(G, k);
	if ("value" in d) freezeWithProto(d.value);
}
const arrayIterProto = getPrototypeOf([][Symbol.iterator]());
const generatorFn = getPrototypeOf(function* () {});
for (const o of [
	getPrototypeOf(arrayIterProto), arrayIterProto, getPrototypeOf(new Map().entries()), getPrototypeOf(new Set().values()),
	getPrototypeOf(""[Symbol.iterator]()), getPrototypeOf("a".matchAll(/a/g)),
	generatorFn, generatorFn.prototype, getPrototypeOf(generatorFn.prototype), getPrototypeOf(async function () {}),
	getPrototypeOf(Int8Array), getPrototypeOf(Int8Array.prototype),
	AP[Symbol.unscopables], // the only object-valued well-known-symbol member of a prototype
]) freezeWithProto(o);
})`

// hardenProgram is hardenSource compiled once for all runtimes.
var hardenProgram = goja.MustCompile("hookbus-harden.js", hardenSource, true)

// harden runs hardenProgram in slot's runtime, before the script's code.
func (slot *vmSlot) harden() error {
	vm := slot.vm
	v, err := vm.RunProgram(hardenProgram)
	if err != nil {
		return err
	}
	fn, ok := goja.AssertFunction(v)
	if !ok {
		return errors.New("harden: not a function")
	}
	slot.rangeErrorC = vm.Get("RangeError").ToObject(vm)
	max := slot.s.opts.MaxMemory
	_, err = fn(goja.Undefined(), vm.ToValue(max), vm.ToValue(slot.boundedStringify), vm.ToValue(slot.lengthGuard), vm.ToValue(slot.classOf))
	return err
}

// lengthGuard(fn, label, argIdx) returns fn wrapped so that it throws a
// RangeError naming label when the length of its receiver (argIdx < 0) or
// of its argument argIdx (an argument list) is over MaxMemory/16 elements.
// A receiver whose length could read differently the next time (a getter,
// a Proxy) is handed to fn as a Proxy whose length stays the checked
// value, so that fn's own read agrees with the check.
func (slot *vmSlot) lengthGuard(call goja.FunctionCall) goja.Value {
	vm := slot.vm
	fnObj, _ := call.Argument(0).(*goja.Object)
	var orig func(goja.FunctionCall) goja.Value
	if fnObj != nil {
		orig, _ = fnObj.Export().(func(goja.FunctionCall) goja.Value)
	}
	if orig == nil {
		panic(vm.NewTypeError("lengthGuard: not a function"))
	}
	label := call.Argument(1).String()
	argIdx := int(call.Argument(2).ToInteger())
	limit := float64(slot.s.opts.MaxMemory / 16)
	return vm.ToValue(func(c goja.FunctionCall) goja.Value {
		var v goja.Value
		if argIdx < 0 {
			v = c.This
		} else {
			v = c.Argument(argIdx)
		}
		o, isObj := v.(*goja.Object)
		if !isObj {
			return orig(c) // a primitive: a string's length is real, the rest throw or have none
		}
		n := o.Get("length")
		if n == nil {
			return orig(c)
		}
		l := n.ToNumber().ToFloat()
		if l > limit {
			panic(slot.rangeError(fmt.Sprintf("%s: a length of %.0f is over the %.0f elements the script memory bound of %d bytes allows (scripts.max_memory)",
				label, l, limit, slot.s.opts.MaxMemory)))
		}
		switch o.ClassName() {
		case "Array", "String": // length is a data property: no script code runs until fn reads it
			return orig(c)
		}
		fixed := vm.ToValue(l)
		p := vm.ToValue(vm.NewProxy(o, &goja.ProxyTrapConfig{
			Get: func(target *goja.Object, prop string, receiver goja.Value) goja.Value {
				if prop == "length" {
					return fixed
				}
				return target.Get(prop)
			},
		})).(*goja.Object)
		args := c.Arguments
		if argIdx < 0 {
			c.This = p
		} else {
			args = append([]goja.Value(nil), args...)
			args[argIdx] = p
		}
		r := orig(goja.FunctionCall{This: c.This, Arguments: args})
		if r == goja.Value(p) {
			return o // reverse, fill, sort, copyWithin return their receiver
		}
		return r
	})
}

// classOf(v) is v's class name ("Array" for a genuine array, "Object" for a
// Proxy), or "" for a primitive.
func (slot *vmSlot) classOf(call goja.FunctionCall) goja.Value {
	o, ok := call.Argument(0).(*goja.Object)
	if !ok {
		return slot.vm.ToValue("")
	}
	return slot.vm.ToValue(o.ClassName())
}

// boundedStringify is JSON.stringify(value, replacer, space) through
// jsonEncoder: it stops at the memory bound instead of building a
// huge string (a sparse array, or an object referenced many times, can
// stringify to gigabytes) and throws a RangeError there.
func (slot *vmSlot) boundedStringify(call goja.FunctionCall) goja.Value {
	vm := slot.vm
	max := slot.s.opts.MaxMemory
	// A quarter of the bound: the buffer grows by doubling and the result
	// is copied into a string, so the peak is about three times the
	// output, which must stay below the heap watch's view of the bound.
	e := jsonEncoder{vm: vm, limit: int(max / 4)}
	err := e.setReplacer(call.Argument(1), max/16)
	e.setSpace(call.Argument(2))
	var out []byte
	ok := false
	if err == nil {
		out, ok, err = e.encode(call.Argument(0))
	}
	switch {
	case err == errEncodeTooLarge:
		panic(slot.rangeError(fmt.Sprintf("JSON.stringify would need more than %d bytes, over the script memory bound of %d bytes (scripts.max_memory)", max, max)))
	case err == errEncodeTooDeep:
		panic(vm.NewTypeError("JSON.stringify: %v", err))
	case err != nil:
		if isEngineError(err) {
			panic(err)
		}
		panic(vm.NewTypeError("JSON.stringify: %v", err))
	case !ok:
		return goja.Undefined()
	}
	return vm.ToValue(string(out))
}

// rangeError builds a RangeError with the runtime's own constructor (as it
// was before the script's code ran: a script may shadow the global).
func (slot *vmSlot) rangeError(msg string) *goja.Object {
	o, err := slot.vm.New(slot.rangeErrorC, slot.vm.ToValue(msg))
	if err != nil {
		panic(err)
	}
	return o
}
