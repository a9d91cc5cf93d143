package spec_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/hookbus/hookbus/core/spec"
	"github.com/hookbus/hookbus/sdk"
)

// evens is a Custom field type: a list of even numbers.
type evens []int

func (e *evens) UnmarshalJSON(b []byte) error {
	var ns []int
	if err := json.Unmarshal(b, &ns); err != nil {
		return errors.New("must be a list of integers")
	}
	for i, n := range ns {
		if n%2 != 0 {
			return &sdk.ConfigError{Field: "[" + string(rune('0'+i)) + "]", Message: "must be even"}
		}
	}
	*e = ns
	return nil
}

func (evens) SpecSchema() map[string]any {
	return map[string]any{"type": "array", "items": map[string]any{"type": "integer", "multipleOf": 2}}
}

type withCustom struct {
	Evens evens `json:"evens" doc:"Even numbers."`
}

// A field whose type decodes itself: decoded, its errors named at the
// key (and the item its error names), its schema its own plus doc.
func TestCustomField(t *testing.T) {
	s := spec.For[withCustom]()
	v, err := s.Decode(json.RawMessage(`{"evens": [2, 4]}`))
	if err != nil || len(v.Evens) != 2 || v.Evens[1] != 4 {
		t.Fatalf("decoded %v, %v", v, err)
	}
	for raw, field := range map[string]string{`{"evens": [2, 3]}`: "evens[1]", `{"evens": "x"}`: "evens"} {
		_, err := s.Decode(json.RawMessage(raw))
		var ce *sdk.ConfigError
		if !errors.As(err, &ce) || ce.Field != field {
			t.Errorf("%s: error %v, want one at %s", raw, err, field)
		}
	}
	if sc := string(s.Schema()); !strings.Contains(sc, `"multipleOf": 2`) || !strings.Contains(sc, `"Even numbers."`) {
		t.Fatalf("schema %s", sc)
	}
}
