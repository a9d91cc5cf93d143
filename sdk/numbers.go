package sdk

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// ErrNumberOutOfRange reports a JSON number that a float64 cannot hold (its
// magnitude is above about 1.8e308, such as 1e700). JavaScript, and so every
// hookbus script, reads such a number as Infinity or fails to read the
// event at all, so hookbus refuses it when an event comes in.
var ErrNumberOutOfRange = errors.New("number is out of the float64 range (magnitude above about 1.8e308)")

// CheckNumbers returns a *FieldError for the first number in the event's
// data or extension members that a float64 cannot hold, or nil. The field
// is the member's path, such as "data.items[2].price" or "myext.total"; its
// Err wraps ErrNumberOutOfRange and quotes the number (shortened). A number
// too small to tell from zero (1e-400) is accepted: it reads as 0.
//
// The host checks events from every source with it; a source plugin may
// call it to skip such an event itself rather than have its batch refused.
func (e *Event) CheckNumbers() error {
	if path, lit, ok := OutOfRangeNumber(e.Data); ok {
		return numberError("data"+path, lit)
	}
	for _, k := range slices.Sorted(maps.Keys(e.Extensions)) { // sorted: a stable first error
		if path, lit, ok := OutOfRangeNumber(e.Extensions[k]); ok {
			return numberError(k+path, lit)
		}
	}
	return nil
}

func numberError(field, lit string) *FieldError {
	const maxShown = 32
	if len(lit) > maxShown {
		lit = lit[:maxShown] + "…"
	}
	return &FieldError{Field: field, Err: fmt.Errorf("%w: %s", ErrNumberOutOfRange, lit)}
}

// OutOfRangeNumber finds the first number in the JSON value v that a
// float64 cannot hold. It returns its path relative to v (".items[2].price",
// "" for v itself) and its literal text. Invalid JSON reports false: that is
// for the JSON validation to report.
func OutOfRangeNumber(v json.RawMessage) (path, literal string, found bool) {
	if !hasOutOfRange(v) {
		return "", "", false // the usual case: one pass over the bytes
	}
	return findOutOfRange(v)
}

// hasOutOfRange scans v's bytes, skipping strings, and parses only the
// number literals that could overflow: those with an exponent or more
// digits than a float64's largest value has.
func hasOutOfRange(v []byte) bool {
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '"':
			for i++; i < len(v) && v[i] != '"'; i++ {
				if v[i] == '\\' {
					i++
				}
			}
		case c == '-' || (c >= '0' && c <= '9'):
			j := i
			exp := false
			for j < len(v) && strings.IndexByte("+-.0123456789eE", v[j]) >= 0 {
				if v[j] == 'e' || v[j] == 'E' {
					exp = true
				}
				j++
			}
			if exp || j-i > 308 {
				if outOfRange(string(v[i:j])) {
					return true
				}
			}
			i = j - 1
		}
	}
	return false
}

func outOfRange(lit string) bool {
	_, err := strconv.ParseFloat(lit, 64)
	// ParseFloat reports ErrRange only for overflow; an underflow reads as 0.
	return errors.Is(err, strconv.ErrRange)
}

// findOutOfRange walks v with a token decoder to name the path of the first
// out-of-range number; only called once hasOutOfRange found one.
func findOutOfRange(v []byte) (string, string, bool) {
	if !json.Valid(v) {
		return "", "", false
	}
	dec := json.NewDecoder(bytes.NewReader(v))
	dec.UseNumber()
	// One frame per open container: an object's current key, or an
	// array's next index.
	type frame struct {
		object    bool
		key       string
		index     int
		expectKey bool
	}
	var stack []frame
	path := func() string {
		var b strings.Builder
		for _, f := range stack {
			if f.object {
				b.WriteString(memberPath(f.key))
			} else {
				fmt.Fprintf(&b, "[%d]", f.index-1)
			}
		}
		return b.String()
	}
	// value is called before each value token: it advances the parent.
	value := func() {
		if n := len(stack); n > 0 {
			if stack[n-1].object {
				stack[n-1].expectKey = true
			} else {
				stack[n-1].index++
			}
		}
	}
	for {
		tok, err := dec.Token()
		if err != nil {
			return "", "", false
		}
		if n := len(stack); n > 0 && stack[n-1].object && stack[n-1].expectKey {
			if k, ok := tok.(string); ok {
				stack[n-1].key = k
				stack[n-1].expectKey = false
				continue
			}
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{', '[':
				value()
				stack = append(stack, frame{object: t == '{', expectKey: t == '{'})
			case '}', ']':
				stack = stack[:len(stack)-1]
			}
		case json.Number:
			value()
			if outOfRange(string(t)) {
				return path(), string(t), true
			}
		default:
			value()
		}
		if len(stack) == 0 && !dec.More() {
			return "", "", false
		}
	}
}

// memberPath renders an object member for a path: .name for identifier-like
// names, ["name"] for any other.
func memberPath(k string) string {
	ident := k != ""
	for i, r := range k {
		if !(r == '_' || r == '$' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (i > 0 && r >= '0' && r <= '9')) {
			ident = false
			break
		}
	}
	if ident {
		return "." + k
	}
	return "[" + strconv.Quote(k) + "]"
}
