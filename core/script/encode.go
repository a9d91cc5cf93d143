package script

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/dop251/goja"
)

// maxEncodeDepth bounds the nesting of values a script returns or logs; it
// also catches cycles.
const maxEncodeDepth = 500

var (
	errEncodeTooLarge = errors.New("value too large")
	errEncodeTooDeep  = fmt.Errorf("value nested deeper than %d levels (or cyclic)", maxEncodeDepth)
)

// jsonEncoder writes goja values as JSON the way JSON.stringify does
// (toJSON methods, Dates, undefined and functions left out of objects and
// null in arrays, NaN and Infinity as null, member order kept, and
// JSON.stringify's replacer and space), but with a depth limit and a size
// limit, so that a script cannot make hookbus spend unbounded time or Go
// stack in native code where interrupts do not reach.
type jsonEncoder struct {
	vm    *goja.Runtime
	buf   bytes.Buffer
	limit int
	// work counts the values visited, those left out too (a member that
	// is undefined, or missing from a replacer array's keys, writes
	// nothing but costs a lookup): the native loop stops at limit/2 visits
	// even when the output stays small. A written value takes at least
	// two bytes, so the output would reach the limit first.
	work int

	replacer goja.Callable // a replacer function, or nil
	keys     []string      // a replacer array's property list, when hasKeys
	hasKeys  bool
	gap      string // the indentation step; "" writes compact JSON
	indent   string
}

// encodeJSON renders v; ok is false when v encodes to nothing (undefined, a function).
func encodeJSON(vm *goja.Runtime, v goja.Value, limit int) (out []byte, ok bool, err error) {
	e := jsonEncoder{vm: vm, limit: limit}
	return e.encode(v)
}

func (e *jsonEncoder) encode(v goja.Value) (out []byte, ok bool, err error) {
	var holder *goja.Object
	if e.replacer != nil { // the replacer sees the value as member "" of a wrapper
		holder = e.vm.NewObject()
		if err := holder.Set("", v); err != nil {
			return nil, false, err
		}
	}
	e.work = 0
	ok, err = e.value(holder, v, "", 0)
	if err != nil || !ok {
		return nil, ok, err
	}
	return e.buf.Bytes(), true, nil
}

// setReplacer takes JSON.stringify's replacer argument: a function, or an
// array whose strings and numbers list the members to write. maxKeys
// bounds the array's length (a sparse array would loop natively).
func (e *jsonEncoder) setReplacer(r goja.Value, maxKeys int64) error {
	o, ok := r.(*goja.Object)
	if !ok {
		return nil
	}
	if fn, ok := goja.AssertFunction(o); ok {
		e.replacer = fn
		return nil
	}
	if o.ClassName() != "Array" {
		return nil
	}
	n := o.Get("length").ToInteger()
	if n > maxKeys {
		return errEncodeTooLarge
	}
	e.hasKeys = true
	seen := map[string]bool{}
	for i := range n {
		v := o.Get(strconv.FormatInt(i, 10))
		if v == nil || goja.IsUndefined(v) || goja.IsNull(v) { // a hole, or a value that names no key
			continue
		}
		var item string
		switch x := v.(type) {
		case *goja.Object:
			if c := x.ClassName(); c != "String" && c != "Number" {
				continue
			}
			item = x.String()
		default:
			switch v.Export().(type) {
			case string, int64, float64:
				item = v.String()
			default:
				continue
			}
		}
		if !seen[item] {
			seen[item] = true
			e.keys = append(e.keys, item)
		}
	}
	return nil
}

// setSpace takes JSON.stringify's space argument: a number of spaces (at
// most 10) or a string (its first 10 characters).
func (e *jsonEncoder) setSpace(sp goja.Value) {
	if o, ok := sp.(*goja.Object); ok {
		switch o.ClassName() {
		case "Number":
			sp = o.ToNumber()
		case "String":
			sp = e.vm.ToValue(o.String())
		default:
			return
		}
	}
	if sp == nil {
		return
	}
	switch x := sp.Export().(type) {
	case int64, float64:
		n := sp.ToFloat()
		if n >= 1 {
			e.gap = strings.Repeat(" ", int(math.Min(10, n)))
		}
	case string:
		units := 0
		for i, r := range x {
			if r >= 0x10000 {
				units += 2
			} else {
				units++
			}
			if units > 10 {
				x = x[:i]
				break
			}
		}
		e.gap = x
	}
}

func skippable(v goja.Value) bool {
	if v == nil || goja.IsUndefined(v) {
		return true
	}
	if _, ok := v.(*goja.Symbol); ok {
		return true
	}
	return isFunction(v)
}

// value writes v, member key of holder (for toJSON and the replacer), and
// reports whether it wrote anything.
func (e *jsonEncoder) value(holder *goja.Object, v goja.Value, key string, depth int) (bool, error) {
	e.work++
	if e.buf.Len() > e.limit || e.work > e.limit/2+1 {
		return false, errEncodeTooLarge
	}
	if depth > maxEncodeDepth {
		return false, errEncodeTooDeep
	}
	if o, ok := v.(*goja.Object); ok {
		if toJSON, ok := goja.AssertFunction(o.Get("toJSON")); ok {
			r, err := toJSON(o, e.vm.ToValue(key))
			if err != nil {
				return false, err
			}
			v = r
		}
	}
	if e.replacer != nil {
		r, err := e.replacer(holder, e.vm.ToValue(key), v)
		if err != nil {
			return false, err
		}
		v = r
	}
	if skippable(v) {
		return false, nil
	}
	if goja.IsNull(v) {
		e.buf.WriteString("null")
		return true, nil
	}
	o, isObj := v.(*goja.Object)
	if !isObj {
		return true, e.primitive(v)
	}
	switch o.ClassName() {
	case "Array":
		return true, e.array(o, depth)
	case "String", "Number", "Boolean": // boxed primitives
		if valueOf, ok := goja.AssertFunction(o.Get("valueOf")); ok {
			p, err := valueOf(o)
			if err != nil {
				return false, err
			}
			if _, still := p.(*goja.Object); !still {
				return true, e.primitive(p)
			}
		}
	}
	return true, e.object(o, depth)
}

func (e *jsonEncoder) primitive(v goja.Value) error {
	switch x := v.Export().(type) {
	case string:
		e.quote(x)
	case bool:
		e.buf.WriteString(strconv.FormatBool(x))
	case int64:
		e.buf.WriteString(strconv.FormatInt(x, 10))
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			e.buf.WriteString("null")
		} else {
			e.buf.WriteString(v.String()) // JavaScript's number formatting
		}
	default:
		return fmt.Errorf("cannot encode a %s as JSON", reflect.TypeOf(x))
	}
	return nil
}

// newline starts a member on its own line when there is a gap.
func (e *jsonEncoder) newline() {
	if e.gap != "" {
		e.buf.WriteByte('\n')
		e.buf.WriteString(e.indent)
	}
}

func (e *jsonEncoder) array(o *goja.Object, depth int) error {
	n := o.Get("length").ToInteger()
	e.buf.WriteByte('[')
	if n <= 0 {
		e.buf.WriteByte(']')
		return nil
	}
	stepback := e.indent
	e.indent += e.gap
	for i := range n {
		if i > 0 {
			e.buf.WriteByte(',')
		}
		e.newline()
		k := strconv.FormatInt(i, 10)
		wrote, err := e.value(o, o.Get(k), k, depth+1)
		if err != nil {
			return err
		}
		if !wrote {
			e.buf.WriteString("null")
		}
	}
	e.indent = stepback
	e.newline()
	e.buf.WriteByte(']')
	return nil
}

func (e *jsonEncoder) object(o *goja.Object, depth int) error {
	e.buf.WriteByte('{')
	keys := e.keys
	if !e.hasKeys {
		keys = o.Keys()
	}
	stepback := e.indent
	e.indent += e.gap
	first := true
	for _, k := range keys {
		mark := e.buf.Len()
		if !first {
			e.buf.WriteByte(',')
		}
		e.newline()
		e.quote(k)
		e.buf.WriteByte(':')
		if e.gap != "" {
			e.buf.WriteByte(' ')
		}
		wrote, err := e.value(o, o.Get(k), k, depth+1)
		if err != nil {
			return err
		}
		if !wrote {
			e.buf.Truncate(mark) // left out, as JSON.stringify does
			continue
		}
		first = false
	}
	e.indent = stepback
	if !first {
		e.newline()
	}
	e.buf.WriteByte('}')
	return nil
}

const hexDigits = "0123456789abcdef"

// quote writes s as a JSON string, escaping only what JSON requires.
func (e *jsonEncoder) quote(s string) {
	b := &e.buf
	b.WriteByte('"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			if c < utf8.RuneSelf {
				i++
				continue
			}
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				b.WriteString(s[start:i])
				b.WriteString(`\ufffd`)
				i += size
				start = i
				continue
			}
			i += size
			continue
		}
		b.WriteString(s[start:i])
		switch c {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		default:
			b.WriteString(`\u00`)
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&0xf])
		}
		i++
		start = i
	}
	b.WriteString(s[start:])
	b.WriteByte('"')
}
