package spec_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hookbus/hookbus/core/spec"
	"github.com/hookbus/hookbus/core/spec/spectest"
	"github.com/hookbus/hookbus/sdk"
)

type inner struct {
	Delays []time.Duration `json:"delays" default:"1s,2s" check:"positive" maxItems:"3"`
}

type base struct {
	Level int `json:"level" default:"2" min:"1" max:"5"`
}

type sample struct {
	Name    string            `json:"name" required:"a name for it" doc:"What it is called."`
	On      bool              `json:"on"`
	Wait    time.Duration     `json:"wait" default:"3s" check:"nonnegative"`
	Tags    []string          `json:"tags" minItems:"1"`
	Labels  map[string]string `json:"labels"`
	Inner   inner             `json:"inner"`
	Ignored string            `json:"-"`
	base
}

func (s sample) Validate() error {
	if s.Name == "bad" {
		return &sdk.ConfigError{Field: "name", Message: "is bad"}
	}
	return nil
}

var sampleSpec = spec.For[sample](spec.Title("sample"))

func fields(err error) map[string]string {
	out := map[string]string{}
	var walk func(error)
	walk = func(e error) {
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
			return
		}
		var ce *sdk.ConfigError
		if errors.As(e, &ce) {
			out[ce.Field] = ce.Message
		} else {
			out["?"] = e.Error()
		}
	}
	if err != nil {
		walk(err)
	}
	return out
}

func TestSchemaMatchesDecoder(t *testing.T) {
	t.Parallel()
	spectest.Conformance(t, sampleSpec,
		`{"name": "x", "on": true, "wait": "1m", "tags": ["a"], "labels": {"k": "v"}, "inner": {"delays": ["1s"]}, "level": 3}`)
	if got := fmt.Sprint(sampleSpec.Keys()); got != "[name on wait tags labels inner level]" {
		t.Errorf("keys = %s", got)
	}
	if got := fmt.Sprint(sampleSpec.Required()); got != "[name]" {
		t.Errorf("required = %s", got)
	}
}

func TestDecodeDefaults(t *testing.T) {
	t.Parallel()
	v, err := sampleSpec.Decode(json.RawMessage(`{"name": "x"}`))
	if err != nil {
		t.Fatal(err)
	}
	if v.Wait != 3*time.Second || v.Level != 2 || fmt.Sprint(v.Inner.Delays) != "[1s 2s]" {
		t.Fatalf("defaults: %+v", v)
	}
	// An explicit empty list is kept; nil means the default.
	v, err = sampleSpec.Decode(json.RawMessage(`{"name": "x", "inner": {"delays": []}}`))
	if err != nil || v.Inner.Delays == nil || len(v.Inner.Delays) != 0 {
		t.Fatalf("empty list: %+v %v", v, err)
	}
	var s sample
	s.Name = "y"
	if err := sampleSpec.Complete(&s); err != nil || s.Level != 2 {
		t.Fatalf("Complete: %+v %v", s, err)
	}
	s.Level = 9
	if err := sampleSpec.Complete(&s); !strings.Contains(fmt.Sprint(err), "level: must be between 1 and 5, got 9") {
		t.Fatalf("Complete out of range: %v", err)
	}
}

func TestDecodeErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		raw  string
		want map[string]string
	}{
		{`[1]`, map[string]string{"": "config must be an object"}},
		{``, map[string]string{"name": "required: a name for it"}},
		{`{"name": 1, "on": "yes", "wait": 5, "tags": "a", "labels": {"a": 1}, "level": "2"}`, map[string]string{
			"name": "must be a string", "on": `must be true or false, got "yes"`, "wait": `must be a duration string like "10s"`,
			"tags": "must be a list of strings", "labels": "string values", "level": `must be an integer, got "2"`}},
		{`{"name": "x", "nme": 1, "inner": {"delay": 1}}`, map[string]string{
			"nme": "unknown key (known keys: name, on, wait, tags, labels, inner, level)", "inner.delay": "unknown key (known keys: delays)"}},
		{`{"name": "x", "inner": [1]}`, map[string]string{"inner": "must be an object"}},
		{`{"name": "x", "inner": {"delays": ["0s", "later", 3]}}`, map[string]string{
			"inner.delays[0]": "must be positive, got 0s", "inner.delays[1]": `invalid duration "later"`, "inner.delays[2]": "duration string"}},
		{`{"name": "x", "inner": {"delays": ["1s", "1s", "1s", "1s"]}, "wait": "-1s", "level": 6, "tags": []}`, map[string]string{
			"inner.delays": "at most 3 items, got 4", "wait": "must not be negative, got -1s", "level": "between 1 and 5, got 6", "tags": "at least 1 items"}},
		// Validate runs on what decoded; a malformed key hides its rules.
		{`{"name": "bad"}`, map[string]string{"name": "is bad"}},
	}
	for _, tt := range tests {
		_, err := sampleSpec.Decode(json.RawMessage(tt.raw))
		got := fields(err)
		if len(got) != len(tt.want) {
			t.Errorf("%s: problems %v, want %v", tt.raw, got, tt.want)
			continue
		}
		for f, sub := range tt.want {
			if !strings.Contains(got[f], sub) {
				t.Errorf("%s: %q: %q, want containing %q", tt.raw, f, got[f], sub)
			}
		}
	}
}

type linked struct {
	A string   `json:"a"`
	B []string `json:"b"`
}

func (l linked) Validate() error {
	if l.A == "" && len(l.B) == 0 {
		return &sdk.ConfigError{Field: "a", Message: "a or b required"}
	}
	return nil
}

func TestTogetherHidesLinkedRules(t *testing.T) {
	t.Parallel()
	sp := spec.For[linked](spec.Together("a", "b"))
	got := fields(sp.Check(json.RawMessage(`{"b": "x"}`)))
	if len(got) != 1 || got["b"] == "" {
		t.Fatalf("problems = %v, want only b's", got)
	}
	got = fields(spec.For[linked]().Check(json.RawMessage(`{"b": "x"}`)))
	if len(got) != 2 {
		t.Fatalf("without Together: %v, want a and b", got)
	}
}

func TestUnknownKeyHint(t *testing.T) {
	t.Parallel()
	got := fields(spec.For[struct{}](spec.UnknownKeyHint("this block takes no keys")).Check(json.RawMessage(`{"x": 1}`)))
	if got["x"] != "unknown key: this block takes no keys" {
		t.Fatalf("problems = %v", got)
	}
}

func TestBadSpecPanics(t *testing.T) {
	t.Parallel()
	for name, f := range map[string]func(){
		"type": func() {
			spec.For[struct {
				X float64 `json:"x"`
			}]()
		},
		"default": func() {
			spec.For[struct {
				X int `json:"x" default:"many"`
			}]()
		},
		"check": func() {
			spec.For[struct {
				X time.Duration `json:"x" check:"big"`
			}]()
		},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
}
