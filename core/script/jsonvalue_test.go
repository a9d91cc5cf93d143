package script

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/dop251/goja"
)

// roundTrip parses doc with jsonValue and prints it back with JSON.stringify.
func roundTrip(vm *goja.Runtime, doc []byte) (string, error) {
	v, err := jsonValue(vm, doc)
	if err != nil {
		return "", err
	}
	stringify, _ := goja.AssertFunction(vm.Get("JSON").ToObject(vm).Get("stringify"))
	out, err := stringify(goja.Undefined(), v)
	if err != nil {
		return "", err
	}
	return out.String(), nil
}

func TestJSONValue(t *testing.T) {
	t.Parallel()
	valid := []string{
		`{}`, `[]`, `null`, `true`, `false`, `0`, `-0.5`, `1e3`, `-12E-2`, `123456789012`, `"s"`,
		` { "a" : [ 1 , 2.5 , "x" , null , true , false , { } , [ ] ] , "b" : { "c" : "d" } } `,
		`"esc \" \\ \/ \b \f \n \r \t \u00e9 \ud83d\ude00"`, `"héllo ☃"`,
		`{"z":1,"a":2,"m":{"y":[{"k":"v"}]}}`, `18446744073709551616`,
	}
	for _, doc := range valid {
		vm := goja.New()
		got, err := roundTrip(vm, []byte(doc))
		if err != nil {
			t.Errorf("%s: %v", doc, err)
			continue
		}
		var want, have any
		_ = json.Unmarshal([]byte(doc), &want)
		if err := json.Unmarshal([]byte(got), &have); err != nil || !reflect.DeepEqual(want, have) {
			t.Errorf("%s: round trip gave %s (%v)", doc, got, err)
		}
	}
	// Member order is kept.
	if got, _ := roundTrip(goja.New(), []byte(`{"z":1,"a":2}`)); got != `{"z":1,"a":2}` {
		t.Errorf("order: %s", got)
	}
	invalid := []string{
		``, `{`, `[1,]`, `{"a":1,}`, `{"a" 1}`, `tru`, `nul`, `01x`, `1-2`, `-`, `"unterminated`, "\"ctl \x01\"",
		`{"a":1} x`, `[1 2]`, `{1:2}`, `'x'`, `"bad \x escape"`,
	}
	for _, doc := range invalid {
		if got, err := roundTrip(goja.New(), []byte(doc)); err == nil {
			t.Errorf("%q parsed as %s, want an error", doc, got)
		}
	}
}

func FuzzJSONValue(f *testing.F) {
	for _, seed := range []string{`{"a":[1,2,{"b":null}]}`, `"x\u0041"`, `-1.5e10`, `[`, `{"a":tru}`} {
		f.Add([]byte(seed))
	}
	f.Add([]byte(`{"a":[1,{"b":-1e700}]}`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		got, err := roundTrip(goja.New(), doc)
		var je *jsonError
		if json.Valid(doc) && errors.As(err, &je) && je.Path != "" {
			// Valid JSON with a number no float64 holds: encoding/json
			// refuses it too, and the error names where it is.
			var x any
			var ute *json.UnmarshalTypeError
			if uerr := json.Unmarshal(doc, &x); !errors.As(uerr, &ute) || ute.Value != "number "+strings.TrimSpace(numberIn(je.Msg)) {
				t.Fatalf("%q: jsonValue error %v, but encoding/json says %v", doc, err, uerr)
			}
			return
		}
		if valid := json.Valid(doc); valid != (err == nil) {
			t.Fatalf("%q: json.Valid = %v, jsonValue error = %v", doc, valid, err)
		}
		if err != nil {
			return
		}
		var want, have any
		_ = json.Unmarshal(doc, &want)
		if err := json.Unmarshal([]byte(got), &have); err != nil || !reflect.DeepEqual(want, have) {
			t.Fatalf("%q: round trip gave %s", doc, got)
		}
	})
}

// numberIn extracts the number from a jsonError message "number X is ...".
func numberIn(msg string) string {
	msg = strings.TrimPrefix(msg, "number ")
	if i := strings.IndexByte(msg, ' '); i >= 0 {
		return msg[:i]
	}
	return msg
}

// TestJSONNumberOutOfRange: a number beyond float64 in an event (queued
// before ingest rejected them, or from a plugin source) is a script error
// naming its member path, at the line that reads the data.
func TestJSONNumberOutOfRange(t *testing.T) {
	t.Parallel()
	for doc, path := range map[string]string{
		`1e700`:                         "(the value itself)",
		`{"a":[1,{"b c":-1e700}]}`:      `.a[1]["b c"]`,
		`{"items":[{"amount":2E+999}]}`: ".items[0].amount",
	} {
		_, err := jsonValue(goja.New(), []byte(doc))
		var je *jsonError
		if !errors.As(err, &je) || je.Path != path || !strings.Contains(je.Msg, "outside the range") {
			t.Errorf("%s: error %v, want one at %s", doc, err, path)
		}
	}

	s := compile(t, "function transform(event) {\n  return {type: 't', data: event.data.items.length};\n}", Options{})
	ev := testEvent()
	ev.Data = json.RawMessage(`{"items":[{"amount":1e700}]}`)
	_, err := s.Transform(context.Background(), ev, Context{})
	wantScriptError(t, err, 2, 0, ErrException, `^test\.js:2:\d+: TypeError: event\.data\.items\[0\]\.amount: number 1e700 is outside the range of a JavaScript number \(float64\)$`)
	// An extension member is decoded before the call: the event is invalid.
	ev2 := testEvent()
	ev2.Extensions = map[string]json.RawMessage{"limits": json.RawMessage(`{"max":[1e999]}`)}
	_, err = s.Transform(context.Background(), ev2, Context{})
	wantScriptError(t, err, 0, 0, ErrInvalidEvent, `^test\.js: event "ev1": member limits\.max\[0\]: number 1e999 is outside the range`)
	// Data the script does not read passes on untouched.
	s = compile(t, "function transform(event) { event.type = 'seen'; return event; }", Options{})
	out, err := s.Transform(context.Background(), ev, Context{})
	if err != nil || string(out[0].Data) != string(ev.Data) {
		t.Errorf("untouched data: %v, %v", out, err)
	}
}
