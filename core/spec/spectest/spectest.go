// Package spectest checks that a config spec's JSON Schema and its decoder
// agree: every key the schema lists is accepted, a key it does not list is
// refused, its required keys are required, a value of the wrong JSON type
// is refused, and its defaults are accepted.
package spectest

import (
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/hookbus/hookbus/sdk"
)

// Spec is what is checked (core/spec.Struct and core/registry.Spec have it).
type Spec interface {
	Check(raw json.RawMessage) error
	Schema() json.RawMessage
}

type property struct {
	Type    string          `json:"type"`
	Default json.RawMessage `json:"default"`
}

type schema struct {
	Properties map[string]property `json:"properties"`
	Required   []string            `json:"required"`
	Additional *bool               `json:"additionalProperties"`
}

// Conformance checks s against valid, blocks the spec must accept which
// together use every key of the schema.
func Conformance(t *testing.T, s Spec, valid ...string) {
	t.Helper()
	var sc schema
	if err := json.Unmarshal(s.Schema(), &sc); err != nil {
		t.Fatalf("schema is not JSON: %v", err)
	}
	if sc.Additional == nil || *sc.Additional {
		t.Errorf("schema allows other keys; the decoder refuses them")
	}
	blocks := make([]map[string]json.RawMessage, len(valid))
	used := map[string]bool{}
	for i, v := range valid {
		if err := s.Check(json.RawMessage(v)); err != nil {
			t.Fatalf("valid block %s refused: %v", v, err)
		}
		if err := json.Unmarshal([]byte(v), &blocks[i]); err != nil {
			t.Fatalf("valid block %s: %v", v, err)
		}
		for k := range blocks[i] {
			used[k] = true
			if _, ok := sc.Properties[k]; !ok {
				t.Errorf("key %q is accepted but not in the schema", k)
			}
		}
	}
	for _, k := range slices.Sorted(maps.Keys(sc.Properties)) {
		if !used[k] {
			t.Errorf("schema key %q is in no valid block: give one that uses it", k)
		}
	}
	check := func(what string, m map[string]json.RawMessage, key string) {
		t.Helper()
		raw, _ := json.Marshal(m)
		err := s.Check(raw)
		if !names(err, key) {
			t.Errorf("%s: %s gives %v, want a problem at %q", what, raw, err, key)
		}
	}
	for i, b := range blocks {
		m := maps.Clone(b)
		m["zz_not_a_key"] = json.RawMessage(`1`)
		check("extra key", m, "zz_not_a_key")
		for k := range b {
			typ := sc.Properties[k].Type
			m := maps.Clone(b)
			m[k] = wrong(typ)
			check("wrong type for "+typ, m, k)
			if d := sc.Properties[k].Default; d != nil {
				m[k] = d
				if raw, _ := json.Marshal(m); s.Check(raw) != nil {
					t.Errorf("block %d with %s at its schema default %s refused: %v", i, k, d, s.Check(raw))
				}
			}
		}
	}
	for _, k := range sc.Required {
		for _, b := range blocks {
			m := maps.Clone(b)
			delete(m, k)
			check("required key missing", m, k)
		}
	}
}

// wrong returns a JSON value that is not of type typ.
func wrong(typ string) json.RawMessage {
	switch typ {
	case "string":
		return json.RawMessage(`5`)
	case "object":
		return json.RawMessage(`[1]`)
	}
	return json.RawMessage(`"not a ` + typ + `"`)
}

// names reports whether err holds a *sdk.ConfigError at key or below it.
func names(err error, key string) bool {
	found := false
	var walk func(error)
	walk = func(e error) {
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
			return
		}
		var ce *sdk.ConfigError
		if errors.As(e, &ce) && (ce.Field == key || strings.HasPrefix(ce.Field, key+".") || strings.HasPrefix(ce.Field, key+"[")) {
			found = true
		}
	}
	if err != nil {
		walk(err)
	}
	return found
}
