// Package script runs hookbus' JavaScript filter and transform scripts with goja.
//
// A script file defines filter(event, ctx) and/or transform(event, ctx) as
// plain functions (DESIGN.md "Scripts"). filter returns truthy to keep the
// event. transform returns an event object (changed or new), an array of
// events (a split) or null/undefined (drop). event is the envelope as plain
// JavaScript objects: id, type, source, subject, time (RFC 3339 string),
// datacontenttype, data (the parsed JSON payload), metadata, and extension
// members at the top level; ctx is {pipeline, sink, attempt}.
//
// Compile parses and compiles the file once into a *goja.Program; each
// Script keeps a bounded pool of *goja.Runtime that ran the program once and
// are reused call after call.
//
// Globals: a frozen hookbus object (log, uuid, now, base64.encode/decode,
// hmacSHA256 returning lower-case hex; see installGlobals) and a frozen
// console whose log/info/debug/warn/error go to the slog logger with the
// script name, pipeline, sink and event id. There is no require, no network
// and no file system: only the ECMAScript built-ins.
//
// Isolation: runtimes are not shared between scripts and a runtime serves
// one call at a time. Top-level variables of a script persist per runtime
// (a cache is fine; counting events is not, since calls are spread over
// several runtimes that come and go).
//
// Limits: every call runs under Options.Timeout, a wall-clock deadline (the
// runtime is interrupted, then discarded and replaced), at most
// Options.MaxStack nested calls, and at most Options.MaxPayload bytes of
// event JSON going in and coming out; returned values nested deeper than 500
// levels (or cyclic) are rejected. Built-in functions are not
// interruptible, so the ones that build large values from a number or by
// repetition (repeat, padStart, padEnd, concat, split, Array(n),
// Array.from, fill, join, flat, ArrayBuffer, typed arrays, JSON.stringify)
// are wrapped to throw a RangeError when their result would pass
// Options.MaxMemory, the generic methods that loop up to an array-like's
// length refuse lengths over MaxMemory/16, and a heap watch interrupts a call whose process heap
// growth passes it (ErrMemory; see heapWatch). Whatever a call throws or
// returns, including values whose getters or toString throw or loop, ends
// as an *Error and the runtime goes back to the pool (or is replaced).
//
// Frozen built-ins: before the script's top-level code runs, the
// constructors and namespaces of the global object, their prototypes and
// the other intrinsic prototypes are frozen (see hardenSource), so a call
// cannot change what later calls in the same runtime see; scripts cannot
// install polyfills.
//
// Numbers: JSON integers become JavaScript numbers, so integers beyond 2^53
// lose precision once a script reads event.data; data a script does not
// touch is passed on byte for byte.
package script

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"sync"
	"time"

	"github.com/dop251/goja"
	"github.com/dop251/goja/ast"
	"github.com/dop251/goja/file"
	"github.com/dop251/goja/parser"

	"github.com/hookbus/hookbus/sdk"
)

// Defaults for Options fields left zero.
const (
	DefaultTimeout    = 100 * time.Millisecond
	DefaultMaxStack   = 1000
	DefaultMaxPayload = 1 << 20
	DefaultMaxMemory  = 64 << 20
	// MinTopLevelTimeout is the least deadline of a script's top-level code.
	MinTopLevelTimeout = 2 * time.Second
)

// Options tunes a compiled script. Zero fields take the defaults.
type Options struct {
	// Timeout is the deadline of one filter or transform call. Default
	// 100ms. The script's top-level code, run once per runtime, gets at
	// least MinTopLevelTimeout: it is not on an event's path, and on a
	// machine starved of CPU a tight deadline would fail a sound script
	// when it is checked or when a runtime is added to its pool.
	Timeout time.Duration
	// PoolSize is the maximum number of runtimes kept for the script, i.e.
	// how many calls run at once; more calls wait. Default GOMAXPROCS*2.
	PoolSize int
	// MaxStack is the maximum JavaScript call depth. Default 1000.
	MaxStack int
	// MaxPayload is the maximum size in bytes of the event going in and of
	// all events coming out of a call. Default 1 MiB.
	MaxPayload int
	// MaxMemory bounds what one call may allocate, in bytes: the built-ins
	// that build large values (String.prototype.repeat, Array(n), new
	// ArrayBuffer(n), JSON.stringify...) throw a RangeError above it, and a
	// call whose process heap growth passes it is interrupted (ErrMemory).
	// Default 64 MiB.
	MaxMemory int64
	// Logger receives console.* and hookbus.log output. Default slog.Default().
	Logger *slog.Logger
}

func (o *Options) setDefaults() {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.PoolSize <= 0 {
		o.PoolSize = runtime.GOMAXPROCS(0) * 2
	}
	if o.MaxStack <= 0 {
		o.MaxStack = DefaultMaxStack
	}
	if o.MaxPayload <= 0 {
		o.MaxPayload = DefaultMaxPayload
	}
	if o.MaxMemory <= 0 {
		o.MaxMemory = DefaultMaxMemory
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Context is what a script sees as its second argument, ctx.
type Context struct {
	// Pipeline is the name of the pipeline running the script.
	Pipeline string
	// Sink is the sink the event is headed to, when the step runs per sink.
	Sink string
	// Attempt is the delivery attempt number (1 for the first).
	Attempt int
}

// Script is a compiled script with its pool of runtimes. It is safe for
// concurrent use.
type Script struct {
	name string
	opts Options
	prg  *goja.Program

	hasFilter, hasTransform, hasAggregate bool
	// where the functions are defined
	filterPos, transformPos, aggregatePos position

	sem  chan struct{} // one token per runtime in use
	idle chan *vmSlot  // runtimes ready for reuse
}

// Compile reads and compiles the script file at path. The path, as given,
// names the script in errors and logs.
func Compile(path string, opts Options) (*Script, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("script: %w", err)
	}
	return CompileSource(path, string(src), opts)
}

// CompileSource compiles src, naming it name in errors and logs. It runs the
// top-level code once to find filter and transform, and fails when the
// script defines neither, when one is not a function, or when the top-level
// code throws or times out.
func CompileSource(name, src string, opts Options) (*Script, error) {
	opts.setDefaults()
	s := &Script{
		name: name,
		opts: opts,
		sem:  make(chan struct{}, opts.PoolSize),
		idle: make(chan *vmSlot, opts.PoolSize),
	}
	tree, err := parser.ParseFile(nil, name, src, 0)
	if err != nil {
		return nil, s.syntaxError(err)
	}
	s.prg, err = goja.CompileAST(tree, false)
	if err != nil {
		return nil, s.syntaxError(err)
	}
	s.filterPos = declPos(tree, "filter")
	s.transformPos = declPos(tree, "transform")
	s.aggregatePos = declPos(tree, "aggregate")

	slot, err := s.newSlot()
	if err != nil {
		return nil, err
	}
	for _, fn := range []struct {
		name string
		v    goja.Value
		at   position
		has  *bool
	}{
		{"filter", slot.filterV, s.filterPos, &s.hasFilter},
		{"transform", slot.transformV, s.transformPos, &s.hasTransform},
		{"aggregate", slot.aggregateV, s.aggregatePos, &s.hasAggregate},
	} {
		if fn.v == nil || goja.IsUndefined(fn.v) {
			continue
		}
		if _, ok := goja.AssertFunction(fn.v); !ok {
			return nil, &Error{File: name, Line: fn.at.line, Column: fn.at.column,
				Message: fn.name + " must be a function, got " + typeOf(fn.v), Err: ErrNoFunction}
		}
		*fn.has = true
	}
	if !s.hasFilter && !s.hasTransform && !s.hasAggregate {
		return nil, &Error{File: name, Message: "defines none of filter(event, ctx), transform(event, ctx) and aggregate(events, ctx)", Err: ErrNoFunction}
	}
	s.idle <- slot
	return s, nil
}

// syntaxError locates a parse or compile error.
func (s *Script) syntaxError(err error) error {
	e := &Error{File: s.name, Message: err.Error(), Err: ErrSyntax}
	var (
		list parser.ErrorList
		one  *parser.Error
		ce   *goja.CompilerSyntaxError
	)
	switch {
	case errors.As(err, &list) && len(list) > 0:
		e.Line, e.Column, e.Message = list[0].Position.Line, list[0].Position.Column, "SyntaxError: "+list[0].Message
	case errors.As(err, &one):
		e.Line, e.Column, e.Message = one.Position.Line, one.Position.Column, "SyntaxError: "+one.Message
	case errors.As(err, &ce):
		e.Message = "SyntaxError: " + ce.Message
		if ce.File != nil {
			p := ce.File.Position(ce.Offset)
			e.Line, e.Column = p.Line, p.Column
		}
	}
	return e
}

// declPos finds where a top-level function named name is declared
// (function declaration, or var/let/const bound to it); line 1, column 1
// when it is not found.
func declPos(tree *ast.Program, name string) position {
	at := func(idx interface{ Idx0() file.Idx }) position {
		return posOf(tree.File.Position(int(idx.Idx0()) - tree.File.Base()))
	}
	for _, st := range tree.Body {
		var list []*ast.Binding
		switch st := st.(type) {
		case *ast.FunctionDeclaration:
			if st.Function.Name != nil && st.Function.Name.Name.String() == name {
				return at(st.Function)
			}
		case *ast.VariableStatement:
			list = st.List
		case *ast.LexicalDeclaration:
			list = st.List
		}
		for _, b := range list {
			if id, ok := b.Target.(*ast.Identifier); ok && id.Name.String() == name {
				if b.Initializer != nil {
					return at(b.Initializer)
				}
				return at(id)
			}
		}
	}
	return position{line: 1, column: 1}
}

// Name is the script's name (the path given to Compile).
func (s *Script) Name() string { return s.name }

// HasFilter reports whether the script defines filter.
func (s *Script) HasFilter() bool { return s.hasFilter }

// HasTransform reports whether the script defines transform.
func (s *Script) HasTransform() bool { return s.hasTransform }

// HasAggregate reports whether the script defines aggregate.
func (s *Script) HasAggregate() bool { return s.hasAggregate }

// Filter calls the script's filter and reports whether to keep the event
// (a truthy return). Without a filter it keeps every event. Failures are
// *Error; waiting for a free runtime ends with ctx's error.
func (s *Script) Filter(ctx context.Context, ev sdk.Event, c Context) (keep bool, err error) {
	if !s.hasFilter {
		return true, nil
	}
	if err := s.checkInput(ev); err != nil {
		return false, err
	}
	slot, err := s.acquire(ctx)
	if err != nil {
		return false, err
	}
	err = s.call(ctx, slot, ev, s.filterPos, func() error {
		evv, err := slot.eventValue(ev)
		if err != nil {
			return err
		}
		v, err := slot.filter(goja.Undefined(), evv, slot.ctxValue(c))
		if err != nil {
			return s.jsError(slot.vm, err, s.filterPos)
		}
		keep = v.ToBoolean() // a primitive test: runs no script code
		return nil
	}, c)
	return keep, err
}

// Transform calls the script's transform and returns the resulting events:
// one for a returned object, several for an array (a split), none (and a nil
// error) for null or undefined, meaning the event is dropped. Without a
// transform it returns the event unchanged.
//
// A result without an id keeps the input's id; in a split, element i without
// an id gets the input's id + "-" + i. Failures are *Error; waiting for a
// free runtime ends with ctx's error.
func (s *Script) Transform(ctx context.Context, ev sdk.Event, c Context) ([]sdk.Event, error) {
	if !s.hasTransform {
		return []sdk.Event{ev}, nil
	}
	if err := s.checkInput(ev); err != nil {
		return nil, err
	}
	slot, err := s.acquire(ctx)
	if err != nil {
		return nil, err
	}
	var out []sdk.Event
	err = s.call(ctx, slot, ev, s.transformPos, func() error {
		evv, err := slot.eventValue(ev)
		if err != nil {
			return err
		}
		v, err := slot.transform(goja.Undefined(), evv, slot.ctxValue(c))
		if err != nil {
			return s.jsError(slot.vm, err, s.transformPos)
		}
		// Reading the result runs script code (getters, proxies, toJSON):
		// it stays under the deadline, and what it throws is located
		// where it was thrown.
		err = catch(slot.vm, func() (err error) {
			out, err = slot.events(v, ev.ID)
			return err
		})
		if err != nil && !isScriptError(err) {
			return slot.resultError(err)
		}
		return err
	}, c)
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (s *Script) checkInput(ev sdk.Event) error {
	if n := eventSize(ev); n > s.opts.MaxPayload {
		return &Error{File: s.name, Err: ErrPayloadTooLarge,
			Message: fmt.Sprintf("event %q is about %d bytes, over the %d-byte payload limit", ev.ID, n, s.opts.MaxPayload)}
	}
	return nil
}

// acquire takes a runtime from the pool, creating one when none is idle and
// the pool is not full, or waits for one (or for ctx).
func (s *Script) acquire(ctx context.Context) (*vmSlot, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("script %s: %w", s.name, err)
	}
	select {
	case s.sem <- struct{}{}:
	default:
		select {
		case s.sem <- struct{}{}:
		case <-ctx.Done():
			return nil, fmt.Errorf("script %s: waiting for a free runtime: %w", s.name, ctx.Err())
		}
	}
	select {
	case slot := <-s.idle:
		return slot, nil
	default:
	}
	slot, err := s.newSlot()
	if err != nil {
		<-s.sem
		return nil, err
	}
	return slot, nil
}

// release returns a runtime to the pool, or drops it when it may be in a
// bad state (interrupted, stack overflow), so that a fresh one replaces it.
func (s *Script) release(slot *vmSlot, discard bool) {
	if !discard {
		select {
		case s.idle <- slot:
		default: // cannot happen: idle holds at most PoolSize runtimes
		}
	}
	<-s.sem
}

// call runs fn on slot under the deadline and ctx, then returns slot to the
// pool, whatever way fn ends (a panic included: the slot and the timers are
// never lost). at locates failures that carry no position of their own.
func (s *Script) call(ctx context.Context, slot *vmSlot, ev sdk.Event, at position, fn func() error, c Context) (err error) {
	discard := true // until fn is known to have ended cleanly
	defer func() {
		slot.current = callInfo{}
		slot.lazy = lazyData{}
		slot.aggregating = false
		s.release(slot, discard)
	}()
	slot.current = callInfo{pipeline: c.Pipeline, sink: c.Sink, eventID: ev.ID}
	err = s.guard(ctx, slot.vm, at, fn)
	// A thrown exception or a bad return leaves the runtime sound; an
	// interrupt or a stack overflow may not, so that runtime is replaced.
	se, _ := err.(*Error)
	discard = se != nil && se.broken
	return err
}

// guard runs fn with vm interrupted after the timeout or when ctx ends, and
// leaves vm with no pending interrupt. Whatever fn throws or panics with
// from the engine (an exception, an interrupt, a stack overflow) comes back
// as an *Error located at the frame that threw, or at at; the error is
// built while the deadline still runs, since turning a thrown value into
// text can itself run script code.
func (s *Script) guard(ctx context.Context, vm *goja.Runtime, at position, fn func() error) error {
	return s.guardFor(ctx, vm, at, s.opts.Timeout, fn)
}

// guardFor is guard with a deadline of its own.
func (s *Script) guardFor(ctx context.Context, vm *goja.Runtime, at position, timeout time.Duration, fn func() error) error {
	var fired sync.WaitGroup
	fired.Add(1)
	timer := time.AfterFunc(timeout, func() {
		defer fired.Done()
		vm.Interrupt(ErrTimeout)
	})
	stopCtx := func() bool { return true }
	if ctx.Done() != nil {
		fired.Add(1)
		stopCtx = context.AfterFunc(ctx, func() {
			defer fired.Done()
			vm.Interrupt(context.Cause(ctx))
		})
	}
	stopWatch := watch.start(vm, s.opts.MaxMemory)
	defer func() {
		stopWatch()
		if timer.Stop() {
			fired.Done()
		}
		if ctx.Done() != nil && stopCtx() {
			fired.Done()
		}
		// An interrupt that fired after fn returned must not hit the next call.
		fired.Wait()
		vm.ClearInterrupt()
	}()
	err := catch(vm, fn)
	if err != nil && !isScriptError(err) {
		err = s.jsError(vm, err, at)
	}
	return err
}

// catch runs fn and turns what the engine panics with into an error: a
// JavaScript exception (thrown by a getter, a proxy trap, toString...)
// becomes its *goja.Exception, and the uncatchable interrupts and stack
// overflows their own error types. Any other panic (a bug in goja or in
// hookbus' native functions that a script or a payload can trigger)
// becomes an *enginePanic: re-panicking would take the process down, and
// again on every redelivery of the event.
func catch(vm *goja.Runtime, fn func() error) (err error) {
	defer func() {
		if x := recover(); x != nil {
			if e, ok := x.(error); ok && isEngineError(e) {
				err = e
				return
			}
			err = &enginePanic{value: x, stack: debug.Stack()}
		}
	}()
	if ex := vm.Try(func() { err = fn() }); ex != nil {
		return ex
	}
	return err
}

// enginePanic is a panic out of the engine that is not one of its own
// failures, with the Go stack where it was recovered.
type enginePanic struct {
	value any
	stack []byte
}

func (p *enginePanic) Error() string { return fmt.Sprintf("%v", p.value) }

// isEngineError reports whether err is one of goja's own failures.
func isEngineError(err error) bool {
	ie, so, ex := asEngineError(err)
	return ie != nil || so != nil || ex != nil
}

// asEngineError picks goja's failure types out of err by type, not with
// errors.As: (*goja.Exception).Unwrap reads the thrown value's prototype,
// which runs script code when the value is a Proxy. goja returns these
// errors unwrapped.
func asEngineError(err error) (*goja.InterruptedError, *goja.StackOverflowError, *goja.Exception) {
	switch e := err.(type) {
	case *goja.InterruptedError:
		return e, nil, nil
	case *goja.StackOverflowError:
		return nil, e, nil
	case *goja.Exception:
		return nil, nil, e
	}
	return nil, nil, nil
}

// isScriptError reports whether err is already a located *Error (calls
// return them unwrapped).
func isScriptError(err error) bool {
	_, ok := err.(*Error)
	return ok
}

// newSlot creates a runtime and runs the program's top-level code in it,
// then looks up filter and transform (a global getter is script code too,
// so the lookups run under the deadline).
func (s *Script) newSlot() (*vmSlot, error) {
	slot := &vmSlot{s: s, vm: goja.New()}
	slot.vm.SetMaxCallStackSize(s.opts.MaxStack)
	if err := slot.installGlobals(); err != nil {
		return nil, fmt.Errorf("script %s: setting up globals: %w", s.name, err)
	}
	if err := slot.harden(); err != nil {
		return nil, fmt.Errorf("script %s: freezing the built-ins: %w", s.name, err)
	}
	deadline := max(s.opts.Timeout, MinTopLevelTimeout)
	err := s.guardFor(context.Background(), slot.vm, position{line: 1, column: 1}, deadline, func() error {
		if _, err := slot.vm.RunProgram(s.prg); err != nil {
			return s.jsError(slot.vm, err, position{line: 1, column: 1})
		}
		slot.filterV = slot.vm.Get("filter")
		slot.transformV = slot.vm.Get("transform")
		slot.aggregateV = slot.vm.Get("aggregate")
		return nil
	})
	var se *Error
	if errors.As(err, &se) && se.Err == ErrTimeout {
		se.Message = "the script's top-level code timed out after " + deadline.String()
	}
	if err != nil {
		return nil, err
	}
	slot.filter, _ = goja.AssertFunction(slot.filterV)
	slot.transform, _ = goja.AssertFunction(slot.transformV)
	slot.aggregate, _ = goja.AssertFunction(slot.aggregateV)
	return slot, nil
}

// vmSlot is one pooled runtime with the values it needs per call.
type vmSlot struct {
	s         *Script
	vm        *goja.Runtime
	filter    goja.Callable
	transform goja.Callable
	aggregate goja.Callable
	// filterV, transformV and aggregateV are the globals as the
	// top-level code left them.
	filterV, transformV, aggregateV goja.Value
	rangeErrorC                     *goja.Object // the built-in RangeError
	current                         callInfo     // the call in progress, for log attributes
	lazy                            lazyData     // the call's event data, until the script reads it
	// aggregating is set while an aggregate call runs (its result is
	// read and located as aggregate's).
	aggregating bool
}

// callInfo identifies the call in progress in log lines.
type callInfo struct{ pipeline, sink, eventID string }

func (slot *vmSlot) ctxValue(c Context) goja.Value {
	o := slot.vm.NewObject()
	_ = o.Set("pipeline", c.Pipeline)
	_ = o.Set("sink", c.Sink)
	_ = o.Set("attempt", c.Attempt)
	return o
}

func typeOf(v goja.Value) string {
	switch {
	case v == nil || goja.IsUndefined(v):
		return "undefined"
	case goja.IsNull(v):
		return "null"
	}
	if o, ok := v.(*goja.Object); ok {
		if o.ClassName() == "Array" {
			return "array"
		}
		if _, ok := goja.AssertFunction(v); ok {
			return "function"
		}
		return "object"
	}
	switch v.Export().(type) {
	case string:
		return "string"
	case bool:
		return "boolean"
	case int64, float64:
		return "number"
	}
	return v.String()
}
