package script

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/dop251/goja"
)

// jsonValue decodes one JSON value straight into native JavaScript values,
// keeping object members in their order. Integers that fit in int64 become
// integers, other numbers float64 (so, as in JavaScript, integers beyond
// 2^53 lose precision). It is a small recursive-descent parser: going
// through encoding/json's token stream costs several times more.
func jsonValue(vm *goja.Runtime, raw []byte) (goja.Value, error) {
	p := jsonParser{vm: vm, b: raw}
	p.space()
	v, err := p.value(0)
	if err != nil {
		return nil, err
	}
	p.space()
	if p.i != len(p.b) {
		return nil, p.errorf("unexpected %q after the JSON value", p.b[p.i])
	}
	return v, nil
}

// maxJSONDepth bounds nesting, as encoding/json does.
const maxJSONDepth = 10000

type jsonParser struct {
	vm   *goja.Runtime
	b    []byte
	i    int
	path []pathSegment // where the parser is, for errors about a value
}

// pathSegment is a member name or, when key is empty and index is not
// negative, an array index.
type pathSegment struct {
	key   string
	index int
}

// jsonError is a JSON document hookbus cannot hand to a script. Path is
// set when a value is at fault (a number out of the float64 range), as a
// member path such as .items[2].amount; otherwise Offset locates a syntax
// error.
type jsonError struct {
	Path   string
	Offset int
	Msg    string
}

func (e *jsonError) Error() string {
	if e.Path != "" {
		return e.Path + ": " + e.Msg
	}
	return fmt.Sprintf("offset %d: %s", e.Offset, e.Msg)
}

func (p *jsonParser) errorf(format string, args ...any) error {
	return &jsonError{Offset: p.i, Msg: fmt.Sprintf(format, args...)}
}

// valueErrorf reports a problem with the value at the current path.
func (p *jsonParser) valueErrorf(format string, args ...any) error {
	var b strings.Builder
	for _, seg := range p.path {
		if seg.index >= 0 {
			b.WriteString("[" + strconv.Itoa(seg.index) + "]")
		} else {
			b.WriteString(memberRef(seg.key))
		}
	}
	path := b.String()
	if path == "" {
		path = "(the value itself)"
	}
	return &jsonError{Path: path, Offset: p.i, Msg: fmt.Sprintf(format, args...)}
}

// memberRef writes a member access: .name for identifiers, ["..."] otherwise.
func memberRef(k string) string {
	ident := k != ""
	for i, r := range k {
		if !(r == '_' || r == '$' || unicode.IsLetter(r) || (i > 0 && unicode.IsDigit(r))) {
			ident = false
			break
		}
	}
	if ident {
		return "." + k
	}
	q, _ := json.Marshal(k)
	return "[" + string(q) + "]"
}

func (p *jsonParser) space() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *jsonParser) literal(word string, v goja.Value) (goja.Value, error) {
	if len(p.b)-p.i < len(word) || string(p.b[p.i:p.i+len(word)]) != word {
		return nil, p.errorf("invalid literal")
	}
	p.i += len(word)
	return v, nil
}

func (p *jsonParser) value(depth int) (goja.Value, error) {
	if depth > maxJSONDepth {
		return nil, p.errorf("nested too deeply")
	}
	if p.i >= len(p.b) {
		return nil, p.errorf("unexpected end of JSON")
	}
	switch c := p.b[p.i]; {
	case c == '{':
		return p.object(depth)
	case c == '[':
		return p.array(depth)
	case c == '"':
		s, err := p.string()
		if err != nil {
			return nil, err
		}
		return p.vm.ToValue(s), nil
	case c == 't':
		return p.literal("true", p.vm.ToValue(true))
	case c == 'f':
		return p.literal("false", p.vm.ToValue(false))
	case c == 'n':
		return p.literal("null", goja.Null())
	case c == '-' || (c >= '0' && c <= '9'):
		return p.number()
	default:
		return nil, p.errorf("unexpected %q", c)
	}
}

func (p *jsonParser) object(depth int) (goja.Value, error) {
	o := p.vm.NewObject()
	p.i++ // '{'
	p.space()
	if p.i < len(p.b) && p.b[p.i] == '}' {
		p.i++
		return o, nil
	}
	for {
		p.space()
		if p.i >= len(p.b) || p.b[p.i] != '"' {
			return nil, p.errorf("expected a member name")
		}
		k, err := p.string()
		if err != nil {
			return nil, err
		}
		p.space()
		if p.i >= len(p.b) || p.b[p.i] != ':' {
			return nil, p.errorf("expected ':'")
		}
		p.i++
		p.space()
		p.path = append(p.path, pathSegment{key: k, index: -1})
		v, err := p.value(depth + 1)
		if err != nil {
			return nil, err
		}
		p.path = p.path[:len(p.path)-1]
		setOwn(o, k, v)
		p.space()
		if p.i >= len(p.b) {
			return nil, p.errorf("unexpected end of JSON")
		}
		switch p.b[p.i] {
		case ',':
			p.i++
		case '}':
			p.i++
			return o, nil
		default:
			return nil, p.errorf("expected ',' or '}'")
		}
	}
}

func (p *jsonParser) array(depth int) (goja.Value, error) {
	p.i++ // '['
	p.space()
	var items []any
	if p.i < len(p.b) && p.b[p.i] == ']' {
		p.i++
		return p.vm.NewArray(), nil
	}
	for {
		p.space()
		p.path = append(p.path, pathSegment{index: len(items)})
		v, err := p.value(depth + 1)
		if err != nil {
			return nil, err
		}
		p.path = p.path[:len(p.path)-1]
		items = append(items, v)
		p.space()
		if p.i >= len(p.b) {
			return nil, p.errorf("unexpected end of JSON")
		}
		switch p.b[p.i] {
		case ',':
			p.i++
		case ']':
			p.i++
			return p.vm.NewArray(items...), nil
		default:
			return nil, p.errorf("expected ',' or ']'")
		}
	}
}

// string reads a JSON string; plain ones are sliced, escaped ones go
// through encoding/json.
func (p *jsonParser) string() (string, error) {
	start := p.i
	p.i++ // '"'
	escaped := false
	for p.i < len(p.b) {
		switch c := p.b[p.i]; {
		case c == '"':
			p.i++
			raw := p.b[start:p.i]
			if !escaped && utf8.Valid(raw) {
				return string(raw[1 : len(raw)-1]), nil
			}
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				return "", p.errorf("invalid string: %v", err)
			}
			return s, nil
		case c == '\\':
			escaped = true
			p.i += 2
		case c < 0x20:
			return "", p.errorf("control character in string")
		default:
			p.i++
		}
	}
	return "", p.errorf("unterminated string")
}

func (p *jsonParser) number() (goja.Value, error) {
	start := p.i
	isInt := true
	if p.b[p.i] == '-' {
		p.i++
	}
	for p.i < len(p.b) {
		c := p.b[p.i]
		if c >= '0' && c <= '9' {
			p.i++
			continue
		}
		if c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-' {
			isInt = false
			p.i++
			continue
		}
		break
	}
	num := string(p.b[start:p.i])
	if !json.Valid(p.b[start:p.i]) {
		return nil, p.errorf("invalid number %q", num)
	}
	if isInt {
		if n, err := strconv.ParseInt(num, 10, 64); err == nil {
			return p.vm.ToValue(n), nil
		}
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		// Valid JSON, but no JavaScript number can hold it (1e700):
		// name the member rather than turn it into Infinity silently.
		return nil, p.valueErrorf("number %s is outside the range of a JavaScript number (float64)", num)
	}
	return p.vm.ToValue(f), nil
}
