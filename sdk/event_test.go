package sdk

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
)

func TestEventJSONRoundTrip(t *testing.T) {
	cases := []struct {
		name, in string
		ext      []string
	}{
		{"known members only", `{"id":"a","type":"t","source":"s","subject":"x","time":"2024-05-01T12:00:00Z","data":{"k":[1,{"id":2}],"s":"}{,\""},"metadata":{"m":"v"}}`, nil},
		{"extension", `{"id":"a","type":"t","traceparent":"00-abc","data":1}`, []string{"traceparent"}},
		{"escaped key", `{"id":"a","type":"t","\u0074ype2":"x"}`, []string{"type2"}},
		{"nested object with unknown keys is data", `{"type":"t","data":{"whatever":{"deep":true}}}`, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var fast Event
			if err := json.Unmarshal([]byte(c.in), &fast); err != nil {
				t.Fatal(err)
			}
			for _, k := range c.ext {
				if _, ok := fast.Extensions[k]; !ok {
					t.Errorf("extension %q lost: %+v", k, fast.Extensions)
				}
			}
			out, err := json.Marshal(fast)
			if err != nil {
				t.Fatal(err)
			}
			var back Event
			if err := json.Unmarshal(out, &back); err != nil || !reflect.DeepEqual(back, fast) {
				t.Fatalf("round trip: %s -> %+v (%v)", out, back, err)
			}
		})
	}
}

func TestEventFieldErrors(t *testing.T) {
	for in, field := range map[string]string{
		`{"type":5}`:                      "type",
		`{"type":"t","time":"monday"}`:    "time",
		`{"type":"t","metadata":{"a":1}}`: "metadata",
	} {
		var e Event
		err := json.Unmarshal([]byte(in), &e)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != field {
			t.Errorf("%s: error %v, want a FieldError on %q", in, err, field)
		}
	}
	var e Event
	if err := json.Unmarshal([]byte(`[1]`), &e); err == nil {
		t.Error("array accepted as an event")
	}
}

func BenchmarkEventUnmarshal(b *testing.B) {
	in := []byte(`{"id":"01M814HSG310ZH119K2HHQQDNB","type":"order.paid","source":"shop","time":"2024-05-01T12:00:00Z","data":{"id":"1001","amount":42.5,"currency":"eur","customer":{"email":"ann@example.com"},"items":[{"sku":"a","quantity":2}]}}`)
	for b.Loop() {
		var e Event
		if err := json.Unmarshal(in, &e); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzEventDecode checks that the one-pass decoder of the usual envelope
// agrees with the full decoder whenever it takes an input.
func FuzzEventDecode(f *testing.F) {
	for _, s := range []string{
		`{"id":"01M814HSG310ZH119K2HHQQDNB","type":"order.paid","source":"shop","time":"2024-05-01T12:00:00Z","data":{"id":"1001","amount":42.5,"items":[{"sku":"a"}]}}`,
		`{"id":"a","type":"t","subject":"x","metadata":{"m":"v"},"data":"s\"}"}`,
		` { "type" : "t" , "data" : [1, {"a": [true, null]}] , "time": null } `,
		`{"id":"caf\u00e9","type":"t\n"}`, `{"id":"é","type":"\xff"}`, `{}`, `{"data":1e5}`, `{"data":tru}`,
		`{"data":{]}`, `{"data":{"a":1}`, `{"type":"t"}x`, `{"id":5}`, `{"traceparent":"x"}`, `{"ID":"a"}`,
		`{"id":"a","id":"b","metadata":{"a":"1"},"metadata":null}`,
		`{"specversion":"1.0","type":"t","x":1,"x":[2],"ID":"y","Type":null}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var fast Event
		if !fast.decodeKnown(b) {
			return
		}
		var full Event
		if err := full.unmarshalMembers(b); err != nil {
			t.Fatalf("%q: one-pass decoder took an input the full one rejects: %v", b, err)
		}
		if !reflect.DeepEqual(fast, full) {
			t.Fatalf("%q: one-pass %+v, full %+v", b, fast, full)
		}
	})
}

func TestEventDecodeTakesTheUsualEnvelope(t *testing.T) {
	// The one-pass decoder must really take the common shapes, or every
	// event pays for the full decoder.
	for _, s := range []string{
		`{"id":"01M814HSG310ZH119K2HHQQDNB","type":"order.paid","source":"shop","time":"2024-05-01T12:00:00Z","data":{"id":"1001"}}`,
		`{"id":"a","type":"t","metadata":{"m":"v"},"data":[1,"x"]}`,
		`{"specversion":"1.0","id":"a","type":"t","traceparent":"00-ab","data":{}}`,
	} {
		var e Event
		if !e.decodeKnown([]byte(s)) {
			t.Errorf("%s: not decoded in one pass", s)
		}
	}
	for _, s := range []string{`{"id":"a","\u0074ype":"x"}`, `{"id":"a","type":5}`, `{"data":{]}`, `{"specversion":tru}`} {
		var e Event
		if e.decodeKnown([]byte(s)) {
			t.Errorf("%s: taken by the one-pass decoder", s)
		}
	}
}
