package config

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"gopkg.in/yaml.v3"
)

var (
	durationType  = reflect.TypeFor[time.Duration]()
	byteSizeType  = reflect.TypeFor[ByteSize]()
	envStringType = reflect.TypeFor[envString]()
)

// DecodeHook converts configuration values to Config's field types without
// mapstructure's loose weak typing:
//   - time.Duration from "10s", "5m" (and 0); other bare numbers are errors
//     because they have no unit;
//   - ByteSize from "1MiB", "512KB" or an integer;
//   - integers, floats and booleans from strings that came from the
//     environment (HOOKBUS_ variables, ${VAR} references), which are
//     always strings; a string written in YAML ("32") for a number field is
//     a type error, as mapstructure's weak typing is off;
//   - a list of strings from a YAML flow list "[a, b]" or a comma-separated
//     string "a,b" (empty entries dropped), so `from: shop` means [shop];
//   - strings from numbers and booleans (`port: 8080` into a string field).
func DecodeHook() mapstructure.DecodeHookFunc {
	return mapstructure.ComposeDecodeHookFunc(
		durationHook,
		byteSizeHook,
		fromStringHook,
		toStringHook,
		plainStringHook,
	)
}

func durationHook(f, t reflect.Type, data any) (any, error) {
	if t != durationType {
		return data, nil
	}
	v := reflect.ValueOf(data)
	switch f.Kind() {
	case reflect.String:
		s := strings.TrimSpace(v.String())
		if s == "0" {
			return time.Duration(0), nil
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			return nil, fmt.Errorf("invalid duration %q: use a number with a unit, like 500ms, 10s, 5m or 2h", v.String())
		}
		return d, nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		if f == durationType {
			return data, nil
		}
		if v.IsZero() {
			return time.Duration(0), nil
		}
		return nil, fmt.Errorf("invalid duration %v: a duration needs a unit, like 10s or 5m", data)
	}
	return data, nil
}

func byteSizeHook(f, t reflect.Type, data any) (any, error) {
	if t != byteSizeType || f == byteSizeType {
		return data, nil
	}
	v := reflect.ValueOf(data)
	switch f.Kind() {
	case reflect.String:
		return ParseByteSize(v.String())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return ByteSize(v.Int()), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return ByteSize(v.Uint()), nil
	case reflect.Float32, reflect.Float64:
		fl := v.Float()
		if fl != float64(int64(fl)) {
			return nil, fmt.Errorf("invalid size %v: not a whole number of bytes", data)
		}
		return ByteSize(int64(fl)), nil
	}
	return data, nil
}

// fromStringHook parses strings into numbers, booleans and string lists.
func fromStringHook(f, t reflect.Type, data any) (any, error) {
	if f.Kind() != reflect.String {
		return data, nil
	}
	s := reflect.ValueOf(data).String()
	trimmed := strings.TrimSpace(s)
	fromEnv := f == envStringType
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64, reflect.Bool:
		if !fromEnv {
			return data, nil // mapstructure reports the type error
		}
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(trimmed, 10, t.Bits())
		if err != nil {
			return nil, fmt.Errorf("expected an integer, got %q", s)
		}
		return reflect.ValueOf(n).Convert(t).Interface(), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, err := strconv.ParseUint(trimmed, 10, t.Bits())
		if err != nil {
			return nil, fmt.Errorf("expected a non-negative integer, got %q", s)
		}
		return reflect.ValueOf(n).Convert(t).Interface(), nil
	case reflect.Float32, reflect.Float64:
		n, err := strconv.ParseFloat(trimmed, t.Bits())
		if err != nil {
			return nil, fmt.Errorf("expected a number, got %q", s)
		}
		return reflect.ValueOf(n).Convert(t).Interface(), nil
	case reflect.Bool:
		b, err := strconv.ParseBool(trimmed)
		if err != nil {
			return nil, fmt.Errorf("expected true or false, got %q", s)
		}
		return b, nil
	case reflect.Slice:
		if t.Elem().Kind() != reflect.String {
			return data, nil
		}
		if strings.HasPrefix(trimmed, "[") {
			var list []string
			if err := yaml.Unmarshal([]byte(trimmed), &list); err != nil {
				return nil, fmt.Errorf("expected a list of strings, got %q", s)
			}
			return list, nil
		}
		list := []string{}
		for part := range strings.SplitSeq(s, ",") {
			if part = strings.TrimSpace(part); part != "" {
				list = append(list, part)
			}
		}
		return list, nil
	}
	return data, nil
}

// plainStringHook hands an envString to an untyped (any) field as a plain string.
func plainStringHook(f, t reflect.Type, data any) (any, error) {
	if f == envStringType && t.Kind() == reflect.Interface {
		return string(data.(envString)), nil
	}
	return data, nil
}

// toStringHook accepts scalars for string fields.
func toStringHook(f, t reflect.Type, data any) (any, error) {
	if t.Kind() != reflect.String || f.Kind() == reflect.String {
		return data, nil
	}
	switch f.Kind() {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return fmt.Sprint(data), nil
	}
	return data, nil
}

// decodeProblem is one decoding error with its key path in our notation.
type decodeProblem struct {
	path    string
	message string
	unknown []string // unknown keys under path, when this is an unknown-key error
}

// decodeProblems flattens mapstructure's joined errors.
func decodeProblems(err error) []decodeProblem {
	var out []decodeProblem
	var walk func(error)
	walk = func(err error) {
		if err == nil {
			return
		}
		de, ok := err.(*mapstructure.DecodeError)
		if !ok {
			switch u := err.(type) {
			case interface{ Unwrap() []error }:
				for _, e := range u.Unwrap() {
					walk(e)
				}
			case interface{ Unwrap() error }:
				walk(u.Unwrap())
			default:
				out = append(out, decodeProblem{message: err.Error()})
			}
			return
		}
		inner := de.Unwrap()
		var nested *mapstructure.DecodeError
		if errors.As(inner, &nested) {
			walk(inner)
			return
		}
		path := keyPath(de.Name())
		msg := describe(inner)
		if keys, ok := strings.CutPrefix(msg, "has invalid keys: "); ok {
			out = append(out, decodeProblem{path: path, unknown: strings.Split(keys, ", ")})
			return
		}
		out = append(out, decodeProblem{path: path, message: msg})
	}
	walk(err)
	return out
}

// describe words mapstructure's type errors for configuration authors.
func describe(err error) string {
	var ute *mapstructure.UnconvertibleTypeError
	if errors.As(err, &ute) {
		return fmt.Sprintf("expected %s, got %s", typeWord(ute.Expected.Type()), valueWord(ute.Value))
	}
	msg := err.Error()
	if kind, ok := strings.CutPrefix(msg, "expected a map or struct, got "); ok {
		return "expected a mapping, got " + kindWord(strings.Trim(kind, `"`))
	}
	if kind, ok := strings.CutPrefix(msg, "source data must be an array or slice, got "); ok {
		got := kindWord(kind)
		if kind == "map" {
			got = "a mapping"
		}
		return "expected a list, got " + got
	}
	return msg
}

// kindWord words a reflect.Kind name.
func kindWord(kind string) string {
	switch {
	case kind == "string":
		return "a string"
	case kind == "bool":
		return "a boolean"
	case kind == "slice" || kind == "array":
		return "a list"
	case strings.HasPrefix(kind, "int") || strings.HasPrefix(kind, "uint") || strings.HasPrefix(kind, "float"):
		return "a number"
	}
	return kind
}

func typeWord(t reflect.Type) string {
	switch t {
	case durationType:
		return "a duration like 10s"
	case byteSizeType:
		return "a size like 1MiB"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "a mapping"
	}
	return t.String()
}

func valueWord(v any) string {
	switch x := v.(type) {
	case nil:
		return "nothing"
	case string:
		return fmt.Sprintf("the string %q", x)
	case envString:
		return fmt.Sprintf("the string %q", string(x))
	case bool:
		return fmt.Sprintf("the boolean %v", x)
	case int, int64, uint64, float64:
		return fmt.Sprintf("the number %v", x)
	}
	switch reflect.ValueOf(v).Kind() {
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Map:
		return "a mapping"
	}
	return fmt.Sprintf("%T", v)
}

// keyPath turns a mapstructure field name ("sinks[partner].config",
// "pipelines[x].steps[1]") into our key path ("sinks.partner.config",
// "pipelines.x.steps[1]"), telling map keys from slice indexes by Config's
// field types. The root struct's name ("config.Config") becomes "".
func keyPath(name string) string {
	if name == reflect.TypeFor[Config]().String() {
		return ""
	}
	var b strings.Builder
	t := reflect.TypeFor[Config]()
	for name != "" {
		if name[0] == '.' {
			name = name[1:]
			continue
		}
		if name[0] == '[' {
			end := strings.IndexByte(name, ']')
			if end < 0 {
				b.WriteString(name)
				break
			}
			key := name[1:end]
			name = name[end+1:]
			isIndex := false
			if t != nil {
				switch t.Kind() {
				case reflect.Slice, reflect.Array:
					isIndex = true
					t = t.Elem()
				case reflect.Map:
					t = t.Elem()
				default:
					t = nil
				}
			}
			if t == nil {
				_, err := strconv.Atoi(key)
				isIndex = err == nil
			}
			if isIndex {
				b.WriteString("[" + key + "]")
			} else {
				if b.Len() > 0 {
					b.WriteByte('.')
				}
				b.WriteString(key)
			}
			continue
		}
		end := strings.IndexAny(name, ".[")
		if end < 0 {
			end = len(name)
		}
		field := name[:end]
		name = name[end:]
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(field)
		t = fieldType(t, field)
	}
	return b.String()
}

// fieldType returns the type of the struct field tagged koanf:"name", nil when unknown.
func fieldType(t reflect.Type, name string) reflect.Type {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.Kind() != reflect.Struct {
		return nil
	}
	for i := range t.NumField() {
		if t.Field(i).Tag.Get("koanf") == name {
			return t.Field(i).Type
		}
	}
	return nil
}
