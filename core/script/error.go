package script

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/dop251/goja"
	"github.com/dop251/goja/file"
)

// Sentinel causes carried by *Error (match them with errors.Is).
var (
	// ErrException: the script threw (or the engine threw on its behalf, e.g. a TypeError).
	ErrException = errors.New("script threw an exception")
	// ErrTimeout: the call ran past Options.Timeout and was interrupted.
	ErrTimeout = errors.New("script timed out")
	// ErrStackOverflow: the call exceeded Options.MaxStack nested calls.
	ErrStackOverflow = errors.New("script exceeded the maximum call stack size")
	// ErrBadReturn: the function returned a value that does not fit the contract.
	ErrBadReturn = errors.New("script returned an invalid value")
	// ErrPayloadTooLarge: the event going in or the events coming out exceed Options.MaxPayload.
	ErrPayloadTooLarge = errors.New("script payload too large")
	// ErrNoFunction: the script defines none of filter, transform and
	// aggregate (or not the one a step needs).
	ErrNoFunction = errors.New("script defines none of filter, transform and aggregate")
	// ErrInvalidEvent: the event handed to the script is not valid (e.g. its data is not JSON).
	ErrInvalidEvent = errors.New("invalid event")
	// ErrSyntax: the script does not compile.
	ErrSyntax = errors.New("script syntax error")
	// ErrMemory: the call allocated more than Options.MaxMemory and was interrupted.
	ErrMemory = errors.New("script exceeded its memory bound")
	// ErrEngine: the script engine failed inside (a panic in goja or in a
	// native function); the runtime is discarded.
	ErrEngine = errors.New("internal error in the script engine")
)

// Error is a script failure located in the script's source. A pipeline
// dead-letters the event with Error() as the reason.
//
// Line and Column are 1-based; they are 0 when the failure has no position
// (e.g. the incoming event is over the payload cap).
type Error struct {
	File    string
	Line    int
	Column  int
	Message string
	// Err is the class of failure (ErrTimeout, ErrException, ...) or, for a
	// call canceled through its context, the context's error.
	Err error

	// broken marks a failure after which the runtime must not be reused.
	broken bool
}

// Error formats as "file:line:column: message" ("file: message" without a position).
func (e *Error) Error() string {
	if e.Line <= 0 {
		return e.File + ": " + e.Message
	}
	return e.File + ":" + strconv.Itoa(e.Line) + ":" + strconv.Itoa(e.Column) + ": " + e.Message
}

// Unwrap returns the class of failure.
func (e *Error) Unwrap() error { return e.Err }

// position is a 1-based line and column in the script.
type position struct{ line, column int }

func posOf(p file.Position) position { return position{line: p.Line, column: p.Column} }

// frameOf returns the innermost stack frame that lies in the script's own
// code (not a built-in, nor hookbus' wrappers of built-ins), or fallback.
func frameOf(stack []goja.StackFrame, name string, fallback position) position {
	for i := range stack {
		p := stack[i].Position()
		if p.Line > 0 && stack[i].SrcName() == name {
			return posOf(p)
		}
	}
	return fallback
}

// jsError turns an error from the engine into an *Error located where it
// happened. vm is the runtime that raised it: showing a thrown value runs
// its toString, which may throw or loop in turn, so it runs under vm.Try
// and must be called while the call's deadline still runs.
func (s *Script) jsError(vm *goja.Runtime, err error, fallback position) *Error {
	e := &Error{File: s.name, Line: fallback.line, Column: fallback.column}
	defer func() { e.broken = e.Err != ErrException }()
	// Type switches, not errors.As: unwrapping a *goja.Exception asks the
	// thrown value for its prototype, which runs a Proxy's trap.
	switch ie, so, ex := asEngineError(err); {
	case ie != nil:
		p := frameOf(ie.Stack(), s.name, fallback)
		e.Line, e.Column = p.line, p.column
		cause, _ := ie.Value().(error)
		switch {
		case cause == nil || errors.Is(cause, ErrTimeout):
			e.Err = ErrTimeout
			e.Message = "script timed out after " + s.opts.Timeout.String()
		case errors.Is(cause, ErrMemory):
			e.Err = ErrMemory
			e.Message = cause.Error()
		default:
			e.Err = cause
			e.Message = "script call canceled: " + cause.Error()
		}
	case so != nil:
		p := frameOf(so.Stack(), s.name, fallback)
		e.Line, e.Column = p.line, p.column
		e.Err = ErrStackOverflow
		e.Message = fmt.Sprintf("maximum call stack size exceeded (%d)", s.opts.MaxStack)
	case ex != nil:
		p := frameOf(ex.Stack(), s.name, fallback)
		e.Line, e.Column = p.line, p.column
		msg, merr := exceptionMessage(vm, ex)
		if _, _, isEx := asEngineError(merr); merr != nil && isEx == nil {
			// Showing the value was interrupted (a toString that loops
			// until the deadline) or overflowed the stack: report that.
			return s.jsError(vm, merr, p)
		}
		e.Err = ErrException
		e.Message = msg
	default:
		if p, ok := err.(*enginePanic); ok {
			e.Err = ErrEngine
			e.Message = "internal error in the script engine: " + p.Error()
			s.opts.Logger.Error("internal error in the script engine; the runtime is discarded",
				"script", s.name, "at", e.Error(), "panic", p.Error(), "stack", string(p.stack))
			return e
		}
		e.Err = ErrException
		e.Message = err.Error()
	}
	return e
}

// exceptionMessage is the thrown value as text: "Error: boom", "TypeError: ...",
// or the value itself when a non-Error was thrown. A value that cannot be
// shown (Object.create(null), a toString or message getter that throws) is
// described instead; err is set when showing it was interrupted.
func exceptionMessage(vm *goja.Runtime, ex *goja.Exception) (msg string, err error) {
	v := ex.Value()
	if v == nil || goja.IsUndefined(v) {
		return "undefined thrown", nil
	}
	o, isObj := v.(*goja.Object)
	if !isObj {
		return v.String(), nil // a primitive: no script code runs
	}
	err = catch(vm, func() error {
		msg = o.String()
		return nil
	})
	if err == nil {
		return msg, nil
	}
	class := "value"
	_ = catch(vm, func() error { // a revoked proxy has no class either
		class = o.ClassName() + " object"
		return nil
	})
	return "uncaught exception: a thrown " + class + " that cannot be converted to a string", err
}

// badReturn reports a return value that breaks the contract, located at the function.
func (s *Script) badReturn(at position, format string, args ...any) *Error {
	return &Error{File: s.name, Line: at.line, Column: at.column, Message: fmt.Sprintf(format, args...), Err: ErrBadReturn}
}
