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
