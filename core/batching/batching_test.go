package batching

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestPolicyDecodeAndCheck(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in   string
		on   bool
		want Policy
		errs []string // fields Check names
	}{
		{`null`, false, Policy{}, nil},
		{`{}`, true, Policy{MaxEvents: 100, MaxBytes: 1 << 20, MaxWait: time.Second}, nil},
		{`{"max_events": 7, "max_wait": "0s"}`, true, Policy{MaxEvents: 7, MaxBytes: 1 << 20}, nil},
		{`{"max_events": 0, "max_bytes": 0}`, true, Policy{MaxEvents: -1, MaxBytes: -1, MaxWait: time.Second}, []string{"max_events", "max_bytes"}},
		{`{"max_wait": "-1s"}`, true, Policy{MaxEvents: 100, MaxBytes: 1 << 20, MaxWait: -time.Second}, []string{"max_wait"}},
		{`{"max_events": 1001, "max_bytes": 1023, "max_wait": "11s"}`, true, Policy{MaxEvents: 1001, MaxBytes: 1023, MaxWait: 11 * time.Second},
			[]string{"max_events", "max_bytes", "max_wait"}},
	} {
		var p Policy
		if err := p.UnmarshalJSON([]byte(tt.in)); err != nil {
			t.Fatalf("%s: %v", tt.in, err)
		}
		if p.On() != tt.on || p.MaxEvents != tt.want.MaxEvents || p.MaxBytes != tt.want.MaxBytes || p.MaxWait != tt.want.MaxWait {
			t.Errorf("%s = %+v on=%v, want %+v on=%v", tt.in, p, p.On(), tt.want, tt.on)
		}
		var fields []string
		for _, e := range p.Check() {
			fields = append(fields, e.Field)
		}
		if strings.Join(fields, ",") != strings.Join(tt.errs, ",") {
			t.Errorf("%s: Check names %v, want %v", tt.in, fields, tt.errs)
		}
	}
	// Members that cannot be read are told by Check, with the rest.
	var p Policy
	if err := p.UnmarshalJSON([]byte(`{"size": 1, "max_wait": "soon", "max_events": "5", "max_bytes": 3}`)); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, e := range p.Check() {
		got[e.Field] = e.Message
	}
	for field, want := range map[string]string{"size": "unknown key", "max_wait": "invalid duration", "max_events": "whole number", "max_bytes": "1024 to"} {
		if !strings.Contains(got[field], want) {
			t.Errorf("%s: %q, want %q (all: %v)", field, got[field], want, got)
		}
	}
	if len(got) != 4 {
		t.Errorf("problems %v", got)
	}
	if err := p.UnmarshalJSON([]byte(`{"max_wait": 5}`)); err != nil || len(p.Check()) != 1 || !strings.Contains(p.Check()[0].Message, "duration string") {
		t.Errorf("max_wait 5: %v %v", err, p.Check())
	}
	if err := p.UnmarshalJSON([]byte(`[1]`)); err == nil || !strings.Contains(err.Error(), "must be an object") {
		t.Errorf("[1]: %v", err)
	}
}

// A policy survives its JSON form (the store's and the API's).
func TestPolicyRoundTrip(t *testing.T) {
	t.Parallel()
	p := Enabled(20, 4096, 250*time.Millisecond)
	b, err := json.Marshal(p)
	if err != nil || string(b) != `{"max_events":20,"max_bytes":4096,"max_wait":"250ms"}` {
		t.Fatalf("%s, %v", b, err)
	}
	var back Policy
	if err := json.Unmarshal(b, &back); err != nil || back != p {
		t.Fatalf("back %+v, %v; want %+v", back, err, p)
	}
	if b, _ := json.Marshal(Policy{}); string(b) != "null" {
		t.Fatalf("off = %s", b)
	}
	if q := Enabled(0, 0, 0); q.MaxEvents != DefaultMaxEvents || q.MaxWait != DefaultMaxWait || !q.On() {
		t.Fatalf("Enabled defaults %+v", q)
	}
	if q := Enabled(5, 0, -1); q.MaxWait != 0 {
		t.Fatalf("Enabled with no wait %+v", q)
	}
}

// A batch's id depends on the set of ids it carries, not their order;
// another set (one more, one less, two ids run together) has another.
func TestIDIsTheSet(t *testing.T) {
	t.Parallel()
	a := ID([]string{"e1", "e2", "e3"})
	if !strings.HasPrefix(a, IDPrefix) || len(a) != len(IDPrefix)+26 {
		t.Fatalf("id %q", a)
	}
	if b := ID([]string{"e3", "e1", "e2"}); b != a {
		t.Fatalf("order changed the id: %s %s", a, b)
	}
	for _, other := range [][]string{{"e1", "e2"}, {"e1", "e2", "e3", "e4"}, {"e1e2", "e3"}, {"e1", "e2e3"}} {
		if ID(other) == a {
			t.Fatalf("%v has the id of e1,e2,e3", other)
		}
	}
}
