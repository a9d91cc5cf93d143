package envelope

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestMember(t *testing.T) {
	raw := json.RawMessage(`{"subject":"o-1","data":{"order":{"id":9007199254740993,"tags":["a"]},"s":"x"}}`)
	for path, want := range map[string]string{
		"subject":       `"o-1"`,
		"data.order.id": `9007199254740993`,
		"data.order":    `{"id":9007199254740993,"tags":["a"]}`,
		"data.s.deeper": ``, // a string has no members
		"data.missing":  ``,
		"nothing.here":  ``,
	} {
		if got := string(Member(raw, strings.Split(path, "."))); got != want {
			t.Errorf("Member(%s) = %q, want %q", path, got, want)
		}
	}
	if got := Member(json.RawMessage(`not json`), []string{"a"}); got != nil {
		t.Errorf("Member of invalid JSON = %q, want nil", got)
	}
}
