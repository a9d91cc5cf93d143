package script

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dop251/goja"

	"github.com/hookbus/hookbus/sdk"
)

// eventValue builds the event as plain JavaScript objects (not Go wrappers:
// a JS object stored into a wrapped Go map is copied, which surprises script
// authors). JSON members keep their order; integers that fit in int64 stay
// exact; other numbers are float64, as in JavaScript.
func (slot *vmSlot) eventValue(ev sdk.Event) (goja.Value, error) {
	vm := slot.vm
	o := vm.NewObject()
	set := func(k, v string) {
		if v != "" {
			_ = o.Set(k, v)
		}
	}
	set("id", ev.ID)
	set("type", ev.Type)
	set("source", ev.Source)
	set("subject", ev.Subject)
	if !ev.Time.IsZero() {
		_ = o.Set("time", ev.Time.Format(time.RFC3339Nano))
	}
	set("datacontenttype", ev.DataContentType)
	slot.lazy = lazyData{}
	if len(ev.Data) > 0 {
		slot.defineLazyData(o, ev)
	}
	if ev.Metadata != nil {
		m := vm.NewObject()
		for _, k := range slices.Sorted(maps.Keys(ev.Metadata)) {
			setOwn(m, k, vm.ToValue(ev.Metadata[k]))
		}
		_ = o.Set("metadata", m)
	}
	for _, k := range slices.Sorted(maps.Keys(ev.Extensions)) {
		if knownMember(k) {
			continue
		}
		v, err := jsonValue(vm, ev.Extensions[k])
		if err != nil {
			return nil, slot.s.invalidEvent(ev, k, err)
		}
		setOwn(o, k, v)
	}
	return o, nil
}

// lazyData is the input event's data while the script has not touched it.
type lazyData struct {
	obj          *goja.Object // the event object handed to the script
	raw          []byte
	materialized bool
}

// defineLazyData makes event.data an accessor that parses the JSON on first
// use and then turns into a plain data property: a filter that only looks
// at event.type never pays for decoding the payload, and a transform that
// returns the event without touching data passes the original bytes on.
func (slot *vmSlot) defineLazyData(o *goja.Object, ev sdk.Event) {
	vm := slot.vm
	slot.lazy = lazyData{obj: o, raw: ev.Data}
	materialize := func(target *goja.Object, v goja.Value) {
		slot.lazy.materialized = true
		_ = target.DefineDataProperty("data", v, goja.FLAG_TRUE, goja.FLAG_TRUE, goja.FLAG_TRUE)
	}
	get := vm.ToValue(func(goja.FunctionCall) goja.Value {
		v, err := jsonValue(vm, ev.Data)
		if err != nil {
			if je, ok := err.(*jsonError); ok && je.Path != "" {
				panic(vm.NewTypeError("event.data%s: %s", strings.TrimPrefix(je.Path, "(the value itself)"), je.Msg))
			}
			panic(vm.NewTypeError("event.data is not valid JSON: %v", err))
		}
		materialize(o, v)
		return v
	})
	set := vm.ToValue(func(call goja.FunctionCall) goja.Value {
		target, ok := call.This.(*goja.Object)
		if !ok {
			target = o
		}
		materialize(target, call.Argument(0))
		return goja.Undefined()
	})
	_ = o.DefineAccessorProperty("data", get, set, goja.FLAG_TRUE, goja.FLAG_TRUE)
}

func (s *Script) invalidEvent(ev sdk.Event, member string, err error) *Error {
	if je, ok := err.(*jsonError); ok && je.Path != "" {
		return &Error{File: s.name, Err: ErrInvalidEvent,
			Message: fmt.Sprintf("event %q: member %s%s: %s", ev.ID, member, strings.TrimPrefix(je.Path, "(the value itself)"), je.Msg)}
	}
	return &Error{File: s.name, Err: ErrInvalidEvent,
		Message: fmt.Sprintf("event %q: member %q is not valid JSON: %v", ev.ID, member, err)}
}

func knownMember(k string) bool {
	switch k {
	case "id", "type", "source", "subject", "time", "datacontenttype", "data", "metadata":
		return true
	}
	return false
}

// setOwn defines an own data property, as JSON.parse does: an assignment
// would reach the prototype's "__proto__" setter, and would fail for a key
// named like a frozen member of Object.prototype (hasOwnProperty...).
func setOwn(o *goja.Object, k string, v goja.Value) {
	_ = o.DefineDataProperty(k, v, goja.FLAG_TRUE, goja.FLAG_TRUE, goja.FLAG_TRUE)
}

// events converts what transform returned into events.
func (slot *vmSlot) events(v goja.Value, inputID string) ([]sdk.Event, error) {
	s := slot.s
	at, fn := slot.resultAt(), slot.resultFn()
	if v == nil || goja.IsUndefined(v) || goja.IsNull(v) {
		return []sdk.Event{}, nil
	}
	o, ok := v.(*goja.Object)
	if !ok || isFunction(v) {
		return nil, s.badReturn(at, "%s must return an event object, an array of events, or null; got %s", fn, typeOf(v))
	}
	size := 0
	var out []sdk.Event
	add := func(el *goja.Object, id, where string) error {
		ev, n, err := slot.event(el, id, where)
		if err != nil {
			return err
		}
		size += n
		if size > s.opts.MaxPayload {
			return &Error{File: s.name, Line: at.line, Column: at.column, Err: ErrPayloadTooLarge,
				Message: fmt.Sprintf("%s result is over the %d-byte payload limit", fn, s.opts.MaxPayload)}
		}
		out = append(out, ev)
		return nil
	}
	if o.ClassName() != "Array" {
		if err := add(o, inputID, fn+" result"); err != nil {
			return nil, err
		}
		return out, nil
	}
	n := o.Get("length").ToInteger()
	out = make([]sdk.Event, 0, n)
	for i := range n {
		where := fn + " result[" + strconv.FormatInt(i, 10) + "]"
		el := o.Get(strconv.FormatInt(i, 10))
		eo, ok := el.(*goja.Object)
		if !ok || eo.ClassName() == "Array" || isFunction(el) {
			return nil, s.badReturn(at, "%s must be an event object, got %s", where, typeOf(el))
		}
		if err := add(eo, inputID+"-"+strconv.FormatInt(i, 10), where); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// resultError reports an engine failure (a getter or proxy trap that threw,
// an interrupt) met while reading transform's result.
func (slot *vmSlot) resultError(err error) *Error {
	e := slot.s.jsError(slot.vm, err, slot.resultAt())
	if e.Err == ErrException {
		e.Err = ErrBadReturn
		e.Message = "reading the " + slot.resultFn() + " result: " + e.Message
	}
	return e
}

// resultAt locates problems with a returned value: at the definition of
// the function that returned it (transform unless aggregate is running).
func (slot *vmSlot) resultAt() position {
	if slot.aggregating {
		return slot.s.aggregatePos
	}
	return slot.s.transformPos
}

// resultFn names the function whose result is being read.
func (slot *vmSlot) resultFn() string {
	if slot.aggregating {
		return "aggregate"
	}
	return "transform"
}

// asString returns v's string value when v is a primitive string.
func asString(v goja.Value) (string, bool) {
	if _, isObj := v.(*goja.Object); isObj || v == nil {
		return "", false
	}
	s, ok := v.Export().(string)
	return s, ok
}

func isFunction(v goja.Value) bool {
	_, ok := goja.AssertFunction(v)
	return ok
}

// event converts one returned object into an event; defaultID applies when
// it has no id. It also returns the event's approximate encoded size.
func (slot *vmSlot) event(o *goja.Object, defaultID, where string) (sdk.Event, int, error) {
	s := slot.s
	at := slot.resultAt()
	var ev sdk.Event
	size := 0
	str := func(k string, v goja.Value) (string, error) {
		sv, ok := asString(v)
		if !ok {
			return "", s.badReturn(at, "%s.%s must be a string, got %s", where, k, typeOf(v))
		}
		size += len(k) + len(sv) + 6
		return sv, nil
	}
	for _, k := range o.Keys() {
		if k == "data" && o == slot.lazy.obj && !slot.lazy.materialized {
			ev.Data = slot.lazy.raw // untouched: pass the original bytes on
			size += len(ev.Data) + 8
			continue
		}
		v := o.Get(k)
		if v == nil || goja.IsUndefined(v) || (goja.IsNull(v) && knownMember(k)) {
			continue
		}
		var err error
		switch k {
		case "id":
			ev.ID, err = str(k, v)
		case "type":
			ev.Type, err = str(k, v)
		case "source":
			ev.Source, err = str(k, v)
		case "subject":
			ev.Subject, err = str(k, v)
		case "datacontenttype":
			ev.DataContentType, err = str(k, v)
		case "time":
			ev.Time, err = slot.timeValue(v, where)
			size += 40
		case "metadata":
			ev.Metadata, err = slot.metadata(v, where)
			for mk, mv := range ev.Metadata {
				size += len(mk) + len(mv) + 6
			}
		case "data":
			ev.Data, err = slot.encode(v, where+".data")
			size += len(ev.Data) + 8
		default:
			var raw json.RawMessage
			raw, err = slot.encode(v, where+"."+k)
			if raw != nil {
				if ev.Extensions == nil {
					ev.Extensions = map[string]json.RawMessage{}
				}
				ev.Extensions[k] = raw
				size += len(k) + len(raw) + 4
			}
		}
		if err != nil {
			return sdk.Event{}, 0, err
		}
	}
	if ev.Type == "" {
		return sdk.Event{}, 0, s.badReturn(at, "%s.type must be a non-empty string", where)
	}
	if ev.ID == "" {
		ev.ID = defaultID
	}
	return ev, size, nil
}

func (slot *vmSlot) timeValue(v goja.Value, where string) (time.Time, error) {
	at := slot.resultAt()
	var x any
	if o, ok := v.(*goja.Object); ok {
		if o.ClassName() == "Date" {
			if math.IsNaN(o.ToFloat()) {
				return time.Time{}, slot.s.badReturn(at, "%s.time is an invalid Date", where)
			}
			x = o.Export() // time.Time
		}
	} else {
		x = v.Export()
	}
	switch t := x.(type) {
	case time.Time: // a Date object
		return t.UTC(), nil
	case string:
		if t == "" {
			return time.Time{}, nil
		}
		tm, err := time.Parse(time.RFC3339, t)
		if err != nil {
			return time.Time{}, slot.s.badReturn(at, "%s.time must be an RFC 3339 timestamp, got %q", where, t)
		}
		return tm, nil
	}
	return time.Time{}, slot.s.badReturn(at, "%s.time must be an RFC 3339 string or a Date, got %s", where, typeOf(v))
}

func (slot *vmSlot) metadata(v goja.Value, where string) (map[string]string, error) {
	at := slot.resultAt()
	o, ok := v.(*goja.Object)
	if !ok || o.ClassName() == "Array" || isFunction(v) {
		return nil, slot.s.badReturn(at, "%s.metadata must be an object of strings, got %s", where, typeOf(v))
	}
	keys := o.Keys()
	m := make(map[string]string, len(keys))
	for _, k := range keys {
		mv := o.Get(k)
		sv, ok := asString(mv)
		if !ok {
			return nil, slot.s.badReturn(at, "%s.metadata.%s must be a string, got %s", where, k, typeOf(mv))
		}
		m[k] = sv
	}
	return m, nil
}

// encode renders v as JSON the way JSON.stringify would (see jsonEncoder),
// within the payload limit. Nil means "leave out" (undefined, a function).
func (slot *vmSlot) encode(v goja.Value, where string) (json.RawMessage, error) {
	s := slot.s
	out, ok, err := encodeJSON(slot.vm, v, s.opts.MaxPayload)
	switch {
	case err == errEncodeTooLarge:
		return nil, &Error{File: s.name, Line: slot.resultAt().line, Column: slot.resultAt().column, Err: ErrPayloadTooLarge,
			Message: fmt.Sprintf("%s is over the %d-byte payload limit", where, s.opts.MaxPayload)}
	case err != nil:
		if isEngineError(err) {
			e := s.jsError(slot.vm, err, slot.resultAt())
			if e.Err == ErrException {
				e.Err = ErrBadReturn
				e.Message = "encoding " + where + " as JSON: " + e.Message
			}
			return nil, e
		}
		return nil, s.badReturn(slot.resultAt(), "encoding %s as JSON: %v", where, err)
	case !ok:
		return nil, nil
	}
	return json.RawMessage(out), nil
}

// eventSize approximates the event's encoded JSON size.
func eventSize(ev sdk.Event) int {
	n := 100 + len(ev.ID) + len(ev.Type) + len(ev.Source) + len(ev.Subject) + len(ev.DataContentType) + len(ev.Data)
	for k, v := range ev.Metadata {
		n += len(k) + len(v) + 6
	}
	for k, v := range ev.Extensions {
		n += len(k) + len(v) + 4
	}
	return n
}
