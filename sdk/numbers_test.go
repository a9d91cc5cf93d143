package sdk

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestOutOfRangeNumber(t *testing.T) {
	for _, tt := range []struct {
		json, path, lit string
		found           bool
	}{
		{`1e700`, "", "1e700", true},
		{`-1e400`, "", "-1e400", true},
		{`1.7976931348623157e308`, "", "", false},
		{`1e-400`, "", "", false},
		{`{"price": 12.5, "n": 1e3}`, "", "", false},
		{`{"items": [{"price": 1}, {"price": 2}, {"price": 1E700}]}`, ".items[2].price", "1E700", true},
		{`{"a": {"b c": [0, [1, 2e999]]}}`, `.a["b c"][1][1]`, "2e999", true},
		{`{"s": "1e700", "t": "\"1e700"}`, "", "", false},
		{`[1, 2, "x", {"k": -9e9999}]`, "[3].k", "-9e9999", true},
		{`"` + strings.Repeat("9", 400) + `"`, "", "", false},
		{`{"big": ` + strings.Repeat("9", 400) + `}`, ".big", strings.Repeat("9", 400), true},
		{`{"a": 1e700`, "", "", false}, // invalid JSON: not this check's to report
	} {
		path, lit, found := OutOfRangeNumber(json.RawMessage(tt.json))
		if found != tt.found || path != tt.path || lit != tt.lit {
			t.Errorf("OutOfRangeNumber(%s) = %q, %q, %v; want %q, %q, %v", tt.json, path, lit, found, tt.path, tt.lit, tt.found)
		}
	}
}

func TestEventCheckNumbers(t *testing.T) {
	var ev Event
	if err := json.Unmarshal([]byte(`{"type":"t","data":{"items":[1,2,{"price":1e700}]},"zz":{"n":1e500}}`), &ev); err != nil {
		t.Fatal(err)
	}
	err := ev.CheckNumbers()
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "data.items[2].price" || !errors.Is(err, ErrNumberOutOfRange) {
		t.Fatalf("CheckNumbers = %v, want a FieldError for data.items[2].price", err)
	}
	ev.Data = json.RawMessage(`{"ok": 1}`)
	if err := ev.CheckNumbers(); !errors.As(err, &fe) || fe.Field != "zz.n" {
		t.Fatalf("CheckNumbers = %v, want a FieldError for the extension zz.n", err)
	}
	delete(ev.Extensions, "zz")
	if err := ev.CheckNumbers(); err != nil {
		t.Fatalf("CheckNumbers = %v on a valid event", err)
	}
}

func FuzzOutOfRangeNumber(f *testing.F) {
	for _, s := range []string{`1e700`, `{"a":[1,{"b":-1e400}]}`, `"x"`, `[1e308, 1e309]`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		path, _, found := OutOfRangeNumber(json.RawMessage(s))
		if !json.Valid([]byte(s)) {
			return
		}
		// The fast scan and the path walk agree with a full decode: a valid
		// document decodes into float64s exactly when nothing is out of range.
		var v any
		err := json.Unmarshal([]byte(s), &v)
		if found == (err == nil) {
			t.Fatalf("found=%v (path %q) but json.Unmarshal error %v", found, path, err)
		}
	})
}
