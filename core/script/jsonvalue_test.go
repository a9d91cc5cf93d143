package script

import (
	"encoding/json"
	"reflect"
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
	f.Fuzz(func(t *testing.T, doc []byte) {
		got, err := roundTrip(goja.New(), doc)
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
