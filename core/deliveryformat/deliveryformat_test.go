package deliveryformat

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/hookbus/hookbus/sdk"
)

func raw(s string) json.RawMessage { return json.RawMessage(s) }

func TestEncodeJSONIsTheEnvelope(t *testing.T) {
	t.Parallel()
	ev := sdk.Event{ID: "1", Type: "t", Data: raw(`{"a":1}`)}
	m, err := Encode("", ev, []byte(`{"as":"held"}`))
	if err != nil || string(m.Body) != `{"as":"held"}` || m.ContentType != MediaJSON || m.Header != nil {
		t.Fatalf("%+v %v", m, err)
	}
	m, err = Encode(JSON, ev, nil)
	if err != nil || string(m.Body) != `{"id":"1","type":"t","data":{"a":1}}` {
		t.Fatalf("%s %v", m.Body, err)
	}
}

func TestEncodeStructured(t *testing.T) {
	t.Parallel()
	ev := sdk.Event{ID: "e1", Type: "order.paid", Subject: "o/1", Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Data: raw(`{ "total": 1 }`), Metadata: map[string]string{"tenant": "t1"},
		Extensions: map[string]json.RawMessage{"specversion": raw(`"1.0"`), "traceparent": raw(`"00-x"`), "n": raw(`7`), "gone": raw(`null`)}}
	m, err := Encode(Structured, ev, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"specversion":"1.0","id":"e1","source":"hookbus","type":"order.paid","subject":"o/1","time":"2026-01-02T03:04:05Z",` +
		`"datacontenttype":"application/json","n":7,"tenant":"t1","traceparent":"00-x","data":{"total":1}}`
	if string(m.Body) != want || m.ContentType != MediaCloudEvents {
		t.Fatalf("body\n%s\nwant\n%s", m.Body, want)
	}
}

// Events queued before data_base64 was kept carry base64 text in data and
// dataencoding; they go out as binary data.
func TestEncodeLegacyDataEncoding(t *testing.T) {
	t.Parallel()
	ev := sdk.Event{ID: "e1", Type: "t", Source: "s", Data: raw(`"AAH/"`),
		Extensions: map[string]json.RawMessage{"dataencoding": raw(`"base64"`)}}
	m, err := Encode(Structured, ev, nil)
	if err != nil || !strings.Contains(string(m.Body), `"datacontenttype":"application/octet-stream","data_base64":"AAH/"}`) ||
		strings.Contains(string(m.Body), "dataencoding") {
		t.Fatalf("%s %v", m.Body, err)
	}
	m, err = Encode(Binary, ev, nil)
	if err != nil || string(m.Body) != "\x00\x01\xff" || m.ContentType != "application/octet-stream" {
		t.Fatalf("%q %v", m.Body, err)
	}
}

func TestEncodeBinaryHeaders(t *testing.T) {
	t.Parallel()
	ev := sdk.Event{ID: "e 1", Type: "t", Source: "/s", DataContentType: "text/plain", Data: raw(`"hi"`),
		Extensions: map[string]json.RawMessage{"comment": raw(`"café 100%"`), "ok": raw(`true`)}}
	m, err := Encode(Binary, ev, nil)
	if err != nil {
		t.Fatal(err)
	}
	if string(m.Body) != "hi" || m.ContentType != "text/plain" {
		t.Fatalf("%q %q", m.Body, m.ContentType)
	}
	for k, v := range map[string]string{"Ce-Specversion": "1.0", "Ce-Id": "e%201", "Ce-Source": "/s", "Ce-Type": "t",
		"Ce-Comment": "caf%C3%A9%20100%25", "Ce-Ok": "true"} {
		if got := m.Header.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if len(m.Header) != 6 {
		t.Errorf("headers %v", m.Header)
	}
	// No data: no body, no Content-Type.
	m, err = Encode(Binary, sdk.Event{ID: "1", Type: "t"}, nil)
	if err != nil || len(m.Body) != 0 || m.ContentType != "" {
		t.Fatalf("%+v %v", m, err)
	}
}

func TestEncodeRefusesWhatCloudEventsCannotCarry(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		ev   sdk.Event
		attr string
	}{
		{"bad name", sdk.Event{ID: "1", Type: "t", Extensions: map[string]json.RawMessage{"x-ext": raw(`"v"`)}}, "x-ext"},
		{"upper case", sdk.Event{ID: "1", Type: "t", Extensions: map[string]json.RawMessage{"Trace": raw(`"v"`)}}, "Trace"},
		{"object", sdk.Event{ID: "1", Type: "t", Extensions: map[string]json.RawMessage{"obj": raw(`{"a":1}`)}}, "obj"},
		{"float", sdk.Event{ID: "1", Type: "t", Extensions: map[string]json.RawMessage{"n": raw(`1.5`)}}, "n"},
		{"big", sdk.Event{ID: "1", Type: "t", Extensions: map[string]json.RawMessage{"n": raw(`3000000000`)}}, "n"},
		{"specversion", sdk.Event{ID: "1", Type: "t", Extensions: map[string]json.RawMessage{"specversion": raw(`"0.3"`)}}, "specversion"},
		{"bad base64", sdk.Event{ID: "1", Type: "t", Extensions: map[string]json.RawMessage{"data_base64": raw(`"!!"`)}}, "data_base64"},
		{"both data", sdk.Event{ID: "1", Type: "t", Data: raw(`1`), Extensions: map[string]json.RawMessage{"data_base64": raw(`"AA=="`)}}, "data_base64"},
		{"metadata name", sdk.Event{ID: "1", Type: "t", Metadata: map[string]string{"my_key": "v"}}, "metadata.my_key"},
		{"metadata reserved", sdk.Event{ID: "1", Type: "t", Metadata: map[string]string{"source": "v"}}, "metadata.source"},
		{"metadata clash", sdk.Event{ID: "1", Type: "t", Metadata: map[string]string{"k": "a"},
			Extensions: map[string]json.RawMessage{"k": raw(`"b"`)}}, "metadata.k"},
		{"no id", sdk.Event{Type: "t"}, "id"},
		{"bad media type", sdk.Event{ID: "1", Type: "t", DataContentType: "not a type", Data: raw(`1`)}, "datacontenttype"},
	} {
		for _, f := range []Format{Structured, Binary} {
			_, err := Encode(f, tt.ev, nil)
			e, ok := err.(*Error)
			if !ok || e.Attribute != tt.attr || e.Format != f || !IsError(err) {
				t.Errorf("%s %s: %v, want an *Error naming %q", tt.name, f, err, tt.attr)
			}
		}
	}
}

func TestCheck(t *testing.T) {
	t.Parallel()
	for _, f := range []string{"", "json", "cloudevents-structured", "cloudevents-binary"} {
		if msg := Check(f); msg != "" {
			t.Errorf("%q: %s", f, msg)
		}
	}
	if Check("cloudevents") == "" || Check("JSON") == "" {
		t.Error("bad formats accepted")
	}
	if CheckHeader(Binary, "CE-Type") == "" || CheckHeader(Structured, "ce-type") != "" || CheckHeader(Binary, "X-Ce") != "" {
		t.Error("CheckHeader")
	}
}
