// Package spec derives a component's config decoder, validation and JSON
// Schema from one Go struct, so that a `config` block is described once.
//
// A field's tags say everything a tag can say:
//
//	json:"max_in_flight"         the key (a field without one, or "-", is not a key)
//	doc:"Concurrent requests."   the schema's description
//	default:"64"                 applied when the value is zero (nil for a list); in the schema too
//	required:"the receiver's URL" the key must be present; the text follows "required: "
//	min:"1" max:"10000"          bounds of an int
//	check:"positive"             a duration (or each duration of a list) > 0; "nonnegative": >= 0
//	minItems:"1" maxItems:"100"  bounds of a list's length
//	pattern:"^whsec_" format:"uri" schema only: the struct's Validate method enforces them
//
// Supported field types: string, bool, int, time.Duration (a string with a
// unit, "10s"), []string, []time.Duration, map[string]string, a nested
// struct (an object), an embedded struct (its keys are the parent's) and a
// type that decodes itself (Custom).
// Rules a tag cannot say belong in a Validate() error method on the struct,
// which Decode calls after the tags' checks. An unsupported field type or a
// malformed tag panics when the spec is built, at init.
package spec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hookbus/hookbus/sdk"
)

// Custom is a field type that decodes its own JSON and describes its own
// schema (such as statuspolicy.List). An UnmarshalJSON error is reported
// at the field's key; a *sdk.ConfigError's Field, when set, is appended
// to the key ("[2]", ".x"). Only minItems and maxItems tags apply to it
// (for a slice type), besides doc.
type Custom interface {
	json.Unmarshaler
	SpecSchema() map[string]any
}

var customType = reflect.TypeFor[Custom]()

// Validator is implemented by config structs with rules a tag cannot say.
// Validate sees the value with defaults applied and reports every problem
// as a *sdk.ConfigError naming the key, joined with errors.Join.
type Validator interface {
	Validate() error
}

// Option tunes a spec.
type Option func(*options)

type options struct {
	title       string
	unknownHint string
	together    [][]string
	extra       map[string]any
}

// Title sets the schema's title.
func Title(t string) Option { return func(o *options) { o.title = t } }

// UnknownKeyHint replaces the list of known keys in the message for an
// unknown top-level key, for blocks that take no keys at all.
func UnknownKeyHint(hint string) Option { return func(o *options) { o.unknownHint = hint } }

// Together links keys whose rules depend on each other (secret and
// secrets): a malformed value of one hides the Validate errors of the
// others, which would only repeat the problem.
func Together(keys ...string) Option {
	return func(o *options) { o.together = append(o.together, keys) }
}

// SchemaExtra adds a top-level schema keyword a tag cannot say, such as
// "oneOf".
func SchemaExtra(keyword string, value any) Option {
	return func(o *options) {
		if o.extra == nil {
			o.extra = map[string]any{}
		}
		o.extra[keyword] = value
	}
}

// Struct is the spec of a config block decoded into T.
type Struct[T any] struct {
	obj    object
	opts   options
	schema json.RawMessage
}

// For builds the spec of T, a struct type. It panics if T cannot be
// described (a programming error, found when the package initialises).
func For[T any](opts ...Option) *Struct[T] {
	s := &Struct[T]{}
	for _, o := range opts {
		o(&s.opts)
	}
	t := reflect.TypeFor[T]()
	if t.Kind() != reflect.Struct {
		panic(fmt.Sprintf("spec: %s is not a struct", t))
	}
	s.obj = buildObject(t, nil)
	sch := s.obj.schema()
	sch["$schema"] = "https://json-schema.org/draft/2020-12/schema"
	if s.opts.title != "" {
		sch["title"] = s.opts.title
	}
	maps.Copy(sch, s.opts.extra)
	b, err := json.MarshalIndent(sch, "", "  ")
	if err != nil {
		panic(fmt.Sprintf("spec: schema of %s: %v", t, err))
	}
	s.schema = b
	return s
}

// Keys lists the block's top-level keys, in field order.
func (s *Struct[T]) Keys() []string {
	out := make([]string, len(s.obj.fields))
	for i, f := range s.obj.fields {
		out[i] = f.key
	}
	return out
}

// Required lists the keys that must be present.
func (s *Struct[T]) Required() []string { return s.obj.required() }

// Schema returns the JSON Schema (draft 2020-12) of the block.
func (s *Struct[T]) Schema() json.RawMessage { return slices.Clone(s.schema) }

// Check decodes and validates raw, reporting what Decode reports.
func (s *Struct[T]) Check(raw json.RawMessage) error {
	_, err := s.Decode(raw)
	return err
}

// Decode decodes a `config` block (empty or null means {}), applies the
// defaults and checks the tags' rules and then T's Validate. Every problem
// is a *sdk.ConfigError naming its key path ("retry.schedule[1]"), all of
// them joined with errors.Join in key order. A key whose value has the
// wrong shape gets that error only: rules about it are not checked.
func (s *Struct[T]) Decode(raw json.RawMessage) (T, error) {
	var v T
	d := &decoder{opts: &s.opts}
	if t := bytes.TrimSpace(raw); len(t) > 0 && !bytes.Equal(t, []byte("null")) {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(t, &m); err != nil {
			return v, &sdk.ConfigError{Message: "config must be an object: " + err.Error()}
		}
		d.object(&s.obj, "", m, reflect.ValueOf(&v).Elem(), true)
	} else {
		d.missing(&s.obj, "", map[string]json.RawMessage{})
	}
	return v, d.finish(&s.obj, &v)
}

// Complete applies the defaults to v and checks the tags' rules and
// Validate, for a T built in Go rather than decoded.
func (s *Struct[T]) Complete(v *T) error {
	d := &decoder{opts: &s.opts}
	return d.finish(&s.obj, v)
}

type kind int

const (
	kString kind = iota
	kBool
	kInt
	kDuration
	kStrings
	kDurations
	kStringMap
	kObject
	kCustom
)

type field struct {
	key      string
	index    []int // reflect field index from the top struct
	kind     kind
	doc      string
	def      any // parsed default (zero: none)
	defText  string
	required string
	hasMin   bool
	hasMax   bool
	min, max int
	check    string
	minItems int
	maxItems int
	pattern  string
	format   string
	obj      *object      // kObject
	custom   reflect.Type // kCustom
}

type object struct {
	fields []field
}

var durationType = reflect.TypeFor[time.Duration]()

func buildObject(t reflect.Type, prefix []int) object {
	var o object
	for i := range t.NumField() {
		sf := t.Field(i)
		idx := append(slices.Clone(prefix), i)
		if sf.Anonymous && sf.Type.Kind() == reflect.Struct && sf.Tag.Get("json") == "" {
			o.fields = append(o.fields, buildObject(sf.Type, idx).fields...)
			continue
		}
		key, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
		if !sf.IsExported() || key == "" || key == "-" {
			continue
		}
		f := field{key: key, index: idx, doc: sf.Tag.Get("doc"), required: sf.Tag.Get("required"),
			check: sf.Tag.Get("check"), pattern: sf.Tag.Get("pattern"), format: sf.Tag.Get("format"), defText: sf.Tag.Get("default")}
		_, f.hasMin = sf.Tag.Lookup("min")
		_, f.hasMax = sf.Tag.Lookup("max")
		f.min, f.max = atoi(sf, "min"), atoi(sf, "max")
		f.minItems, f.maxItems = atoi(sf, "minItems"), atoi(sf, "maxItems")
		switch ft := sf.Type; {
		case reflect.PointerTo(ft).Implements(customType):
			f.kind = kCustom
			f.custom = ft
		case ft == durationType:
			f.kind = kDuration
		case ft.Kind() == reflect.String:
			f.kind = kString
		case ft.Kind() == reflect.Bool:
			f.kind = kBool
		case ft.Kind() == reflect.Int:
			f.kind = kInt
		case ft.Kind() == reflect.Slice && ft.Elem() == durationType:
			f.kind = kDurations
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.String:
			f.kind = kStrings
		case ft.Kind() == reflect.Map && ft.Key().Kind() == reflect.String && ft.Elem().Kind() == reflect.String:
			f.kind = kStringMap
		case ft.Kind() == reflect.Struct:
			f.kind = kObject
			sub := buildObject(ft, nil)
			f.obj = &sub
		default:
			panic(fmt.Sprintf("spec: field %s.%s: type %s is not supported", t, sf.Name, ft))
		}
		if f.check != "" && f.check != "positive" && f.check != "nonnegative" {
			panic(fmt.Sprintf("spec: field %s.%s: check %q: use positive or nonnegative", t, sf.Name, f.check))
		}
		if f.defText != "" {
			f.def = parseDefault(t, sf, f.kind, f.defText)
		}
		o.fields = append(o.fields, f)
	}
	return o
}

func atoi(sf reflect.StructField, tag string) int {
	s, ok := sf.Tag.Lookup(tag)
	if !ok {
		return 0
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		panic(fmt.Sprintf("spec: field %s: tag %s:%q is not an integer", sf.Name, tag, s))
	}
	return n
}

func parseDefault(t reflect.Type, sf reflect.StructField, k kind, s string) any {
	bad := func(err error) {
		panic(fmt.Sprintf("spec: field %s.%s: default %q: %v", t, sf.Name, s, err))
	}
	switch k {
	case kString:
		return s
	case kBool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			bad(err)
		}
		return b
	case kInt:
		n, err := strconv.Atoi(s)
		if err != nil {
			bad(err)
		}
		return n
	case kDuration:
		d, err := time.ParseDuration(s)
		if err != nil {
			bad(err)
		}
		return d
	case kDurations:
		var out []time.Duration
		for p := range strings.SplitSeq(s, ",") {
			d, err := time.ParseDuration(strings.TrimSpace(p))
			if err != nil {
				bad(err)
			}
			out = append(out, d)
		}
		return out
	case kStrings:
		return strings.Split(s, ",")
	}
	bad(errors.New("this type takes no default"))
	return nil
}

func (o *object) required() []string {
	var out []string
	for _, f := range o.fields {
		if f.required != "" {
			out = append(out, f.key)
		}
	}
	return out
}

func (o *object) keys() []string {
	out := make([]string, len(o.fields))
	for i, f := range o.fields {
		out[i] = f.key
	}
	return out
}

func (o *object) schema() map[string]any {
	props := map[string]any{}
	for _, f := range o.fields {
		props[f.key] = f.schema()
	}
	s := map[string]any{"type": "object", "additionalProperties": false, "properties": props}
	if r := o.required(); len(r) > 0 {
		s["required"] = r
	}
	return s
}

func (f *field) schema() map[string]any {
	var s map[string]any
	switch f.kind {
	case kString:
		s = map[string]any{"type": "string"}
	case kBool:
		s = map[string]any{"type": "boolean"}
	case kInt:
		s = map[string]any{"type": "integer"}
		if f.hasMin {
			s["minimum"] = f.min
		}
		if f.hasMax {
			s["maximum"] = f.max
		}
	case kDuration:
		s = map[string]any{"type": "string"}
	case kStrings, kDurations:
		s = map[string]any{"type": "array", "items": map[string]any{"type": "string"}}
		if f.pattern != "" {
			s["items"].(map[string]any)["pattern"] = f.pattern
		}
		if f.minItems > 0 {
			s["minItems"] = f.minItems
		}
		if f.maxItems > 0 {
			s["maxItems"] = f.maxItems
		}
	case kStringMap:
		s = map[string]any{"type": "object", "additionalProperties": map[string]any{"type": "string"}}
	case kObject:
		s = f.obj.schema()
	case kCustom:
		s = reflect.New(f.custom).Interface().(Custom).SpecSchema()
	}
	if f.pattern != "" && (f.kind == kString || f.kind == kDuration) {
		s["pattern"] = f.pattern
	}
	if f.format != "" {
		s["format"] = f.format
	}
	if f.doc != "" {
		s["description"] = f.doc
	}
	switch d := f.def.(type) {
	case nil:
	case time.Duration:
		s["default"] = f.defText
	case []time.Duration:
		out := strings.Split(f.defText, ",")
		for i := range out {
			out[i] = strings.TrimSpace(out[i])
		}
		s["default"] = out
	default:
		s["default"] = d
	}
	return s
}

// decoder collects the problems of one Decode.
type decoder struct {
	opts *options
	errs []error
	// failed holds the key paths whose value had the wrong shape.
	failed []string
}

func (d *decoder) fail(path, format string, args ...any) {
	d.errs = append(d.errs, &sdk.ConfigError{Field: path, Message: fmt.Sprintf(format, args...)})
}

func (d *decoder) shape(path, format string, args ...any) {
	d.fail(path, format, args...)
	d.failed = append(d.failed, path)
}

func join(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

// object decodes m into v (a struct value holding o's fields at their
// index paths; nested objects are their own struct).
func (d *decoder) object(o *object, prefix string, m map[string]json.RawMessage, v reflect.Value, top bool) {
	byKey := map[string]*field{}
	for i := range o.fields {
		byKey[o.fields[i].key] = &o.fields[i]
	}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		path := join(prefix, k)
		f, ok := byKey[k]
		if !ok {
			if top && d.opts.unknownHint != "" {
				d.shape(path, "unknown key: %s", d.opts.unknownHint)
			} else {
				d.shape(path, "unknown key (known keys: %s)", strings.Join(o.keys(), ", "))
			}
			continue
		}
		raw := m[k]
		if bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
			continue // null is the zero value: the default applies
		}
		d.value(f, path, raw, v.FieldByIndex(f.index))
	}
	d.missing(o, prefix, m)
}

// missing reports required keys absent from m.
func (d *decoder) missing(o *object, prefix string, m map[string]json.RawMessage) {
	for _, f := range o.fields {
		if f.required == "" {
			continue
		}
		if _, ok := m[f.key]; !ok {
			d.shape(join(prefix, f.key), "required: %s", f.required)
		}
	}
}

func (d *decoder) value(f *field, path string, raw json.RawMessage, dst reflect.Value) {
	switch f.kind {
	case kString:
		var s string
		if json.Unmarshal(raw, &s) != nil {
			d.shape(path, "must be a string")
			return
		}
		dst.SetString(s)
	case kBool:
		var b bool
		if json.Unmarshal(raw, &b) != nil {
			d.shape(path, "must be true or false, got %s", raw)
			return
		}
		dst.SetBool(b)
	case kInt:
		// A JSON integer only: a string such as "32" is a type error
		// (hookbus types environment values before they get here).
		var n int
		if json.Unmarshal(raw, &n) != nil {
			d.shape(path, "must be an integer, got %s", raw)
			return
		}
		dst.SetInt(int64(n))
	case kDuration:
		dur, ok := d.duration(path, raw)
		if ok {
			dst.SetInt(int64(dur))
		}
	case kStrings:
		var ss []string
		if json.Unmarshal(raw, &ss) != nil {
			d.shape(path, "must be a list of strings")
			return
		}
		dst.Set(reflect.ValueOf(ss))
	case kDurations:
		var items []json.RawMessage
		if json.Unmarshal(raw, &items) != nil || items == nil {
			d.shape(path, `must be a list of durations like ["5s", "5m"]`)
			return
		}
		out := make([]time.Duration, 0, len(items))
		for i, item := range items {
			dur, _ := d.duration(fmt.Sprintf("%s[%d]", path, i), item)
			out = append(out, dur)
		}
		dst.Set(reflect.ValueOf(out))
	case kStringMap:
		var sm map[string]string
		if json.Unmarshal(raw, &sm) != nil {
			d.shape(path, "must be a mapping of names to string values")
			return
		}
		dst.Set(reflect.ValueOf(sm))
	case kObject:
		var m map[string]json.RawMessage
		if json.Unmarshal(raw, &m) != nil {
			d.shape(path, "must be an object with the keys %s", strings.Join(f.obj.keys(), ", "))
			return
		}
		d.object(f.obj, path, m, dst, false)
	case kCustom:
		if err := dst.Addr().Interface().(Custom).UnmarshalJSON(raw); err != nil {
			var ce *sdk.ConfigError
			if errors.As(err, &ce) {
				d.shape(path+ce.Field, "%s", ce.Message)
				return
			}
			d.shape(path, "%v", err)
		}
	}
}

func (d *decoder) duration(path string, raw json.RawMessage) (time.Duration, bool) {
	var s string
	if json.Unmarshal(raw, &s) != nil {
		d.shape(path, `must be a duration string like "10s", "5m" or "2h", got %s`, raw)
		return 0, false
	}
	dur, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		d.shape(path, `invalid duration %q: use a number with a unit, like "10s", "5m" or "2h"`, s)
		return 0, false
	}
	return dur, true
}

// finish applies defaults, checks the tags' rules and Validate, leaving
// out rules about keys that already failed, and joins everything.
func (d *decoder) finish(o *object, v any) error {
	rv := reflect.ValueOf(v).Elem()
	d.rules(o, "", rv)
	if val, ok := v.(Validator); ok {
		d.validated(val.Validate())
	}
	return errors.Join(d.errs...)
}

func (d *decoder) validated(err error) {
	for _, e := range leaves(err) {
		var ce *sdk.ConfigError
		if errors.As(e, &ce) && d.hidden(ce.Field) {
			continue
		}
		d.errs = append(d.errs, e)
	}
}

// hidden reports whether a rule's problem at path only repeats a shape
// problem: at path, at a key above it, at the block, or at a key linked
// by Together.
func (d *decoder) hidden(path string) bool {
	if d.under(path) {
		return true
	}
	top, _, _ := strings.Cut(path, ".")
	top, _, _ = strings.Cut(top, "[")
	for _, group := range d.opts.together {
		if !slices.Contains(group, top) {
			continue
		}
		for _, k := range group {
			if k != top && d.under(k) {
				return true
			}
		}
	}
	return false
}

// under reports whether path, a key above it or the block failed to decode.
func (d *decoder) under(path string) bool {
	for _, f := range d.failed {
		if f == path || f == "" || strings.HasPrefix(path, f+".") || strings.HasPrefix(path, f+"[") {
			return true
		}
	}
	return false
}

func (d *decoder) rules(o *object, prefix string, v reflect.Value) {
	for i := range o.fields {
		f := &o.fields[i]
		path := join(prefix, f.key)
		fv := v.FieldByIndex(f.index)
		if f.def != nil && (fv.IsZero() && f.kind != kDurations && f.kind != kStrings || fv.Kind() == reflect.Slice && fv.IsNil()) {
			dv := reflect.ValueOf(f.def)
			if dv.Kind() == reflect.Slice {
				dv = reflect.AppendSlice(reflect.MakeSlice(dv.Type(), 0, dv.Len()), dv) // a copy
			}
			fv.Set(dv)
		}
		if slices.Contains(d.failed, path) {
			continue
		}
		switch f.kind {
		case kInt:
			n := int(fv.Int())
			switch {
			case f.hasMin && f.hasMax && (n < f.min || n > f.max):
				d.fail(path, "must be between %d and %d, got %d", f.min, f.max, n)
			case f.hasMin && !f.hasMax && n < f.min:
				d.fail(path, "must be at least %d, got %d", f.min, n)
			case f.hasMax && !f.hasMin && n > f.max:
				d.fail(path, "must be at most %d, got %d", f.max, n)
			}
		case kDuration:
			d.checkDuration(f, path, time.Duration(fv.Int()))
		case kStrings, kDurations:
			n := fv.Len()
			if f.maxItems > 0 && n > f.maxItems {
				d.fail(path, "at most %d items, got %d", f.maxItems, n)
			}
			if f.minItems > 0 && n < f.minItems && !fv.IsNil() {
				d.fail(path, "at least %d items, got %d", f.minItems, n)
			}
			if f.kind == kDurations {
				for j := range n {
					ip := fmt.Sprintf("%s[%d]", path, j)
					if !slices.Contains(d.failed, ip) {
						d.checkDuration(f, ip, time.Duration(fv.Index(j).Int()))
					}
				}
			}
		case kObject:
			d.rules(f.obj, path, fv)
		}
	}
}

func (d *decoder) checkDuration(f *field, path string, v time.Duration) {
	switch {
	case f.check == "positive" && v <= 0:
		d.fail(path, "must be positive, got %s", v)
	case f.check == "nonnegative" && v < 0:
		d.fail(path, "must not be negative, got %s", v)
	}
}

// leaves flattens errors.Join trees.
func leaves(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, leaves(e)...)
		}
		return out
	}
	return []error{err}
}
