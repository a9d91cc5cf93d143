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
	// ErrNoFunction: the script defines neither filter nor transform.
	ErrNoFunction = errors.New("script defines neither filter nor transform")
	// ErrInvalidEvent: the event handed to the script is not valid (e.g. its data is not JSON).
	ErrInvalidEvent = errors.New("invalid event")
	// ErrSyntax: the script does not compile.
	ErrSyntax = errors.New("script syntax error")
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

// frameOf returns the innermost stack frame that lies in script code (not a
// built-in), or fallback.
func frameOf(stack []goja.StackFrame, fallback position) position {
	for i := range stack {
		p := stack[i].Position()
		if p.Line > 0 {
			return posOf(p)
		}
	}
	return fallback
}

// jsError turns an error from the engine into an *Error located where it happened.
func (s *Script) jsError(err error, fallback position) *Error {
	e := &Error{File: s.name, Line: fallback.line, Column: fallback.column}
	defer func() { e.broken = e.Err != ErrException }()
	var (
		ie *goja.InterruptedError
		so *goja.StackOverflowError
		ex *goja.Exception
	)
	switch {
	case errors.As(err, &ie):
		p := frameOf(ie.Stack(), fallback)
		e.Line, e.Column = p.line, p.column
		cause, _ := ie.Value().(error)
		if cause == nil || errors.Is(cause, ErrTimeout) {
			e.Err = ErrTimeout
			e.Message = "script timed out after " + s.opts.Timeout.String()
		} else {
			e.Err = cause
			e.Message = "script call canceled: " + cause.Error()
		}
	case errors.As(err, &so):
		p := frameOf(so.Stack(), fallback)
		e.Line, e.Column = p.line, p.column
		e.Err = ErrStackOverflow
		e.Message = fmt.Sprintf("maximum call stack size exceeded (%d)", s.opts.MaxStack)
	case errors.As(err, &ex):
		p := frameOf(ex.Stack(), fallback)
		e.Line, e.Column = p.line, p.column
		e.Err = ErrException
		e.Message = exceptionMessage(ex)
	default:
		e.Err = ErrException
		e.Message = err.Error()
	}
	return e
}

// exceptionMessage is the thrown value as text: "Error: boom", "TypeError: ...",
// or the value itself when a non-Error was thrown.
func exceptionMessage(ex *goja.Exception) string {
	v := ex.Value()
	if v == nil || goja.IsUndefined(v) {
		return "undefined thrown"
	}
	return v.String()
}

// badReturn reports a return value that breaks the contract, located at the function.
func (s *Script) badReturn(at position, format string, args ...any) *Error {
	return &Error{File: s.name, Line: at.line, Column: at.column, Message: fmt.Sprintf(format, args...), Err: ErrBadReturn}
}
