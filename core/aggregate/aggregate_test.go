package aggregate

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hookbus/hookbus/sdk"
)

func TestKey(t *testing.T) {
	ev := sdk.Event{ID: "e1", Type: "order.paid", Subject: "o-1", Metadata: map[string]string{"tenant": "t9"},
		Data:       json.RawMessage(`{"customer":{"id":"c-1","n":42,"big":9007199254740993,"flag":true,"tags":["a", "b"],"none":null}}`),
		Extensions: map[string]json.RawMessage{"application": json.RawMessage(`"app_1"`)}}
	for path, want := range map[string]string{
		"":                   "",
		"type":               "order.paid",
		"subject":            "o-1",
		"metadata.tenant":    "t9",
		"metadata.missing":   "",
		"application":        "app_1",
		"data.customer.id":   "c-1",
		"data.customer.n":    "42",
		"data.customer.big":  "9007199254740993", // above 2^53: every digit kept
		"data.customer.flag": "true",
		"data.customer.tags": `["a","b"]`,
		"data.customer.none": "",
		"data.nothing.here":  "",
	} {
		p, err := ParsePath(path)
		if err != nil {
			t.Fatalf("%q: %v", path, err)
		}
		got, err := p.Key(ev)
		if err != nil || got != want {
			t.Errorf("key %q = %q, %v; want %q", path, got, err, want)
		}
	}
	for _, bad := range []string{"data..x", ".data", "type.x", "metadata", "data.items[0]"} {
		if _, err := ParsePath(bad); err == nil {
			t.Errorf("ParsePath(%q) accepted", bad)
		}
	}
	long := sdk.Event{Type: "t", Subject: strings.Repeat("x", MaxKeyLen+1)}
	if _, err := (Path{"subject"}).Key(long); !errors.Is(err, ErrBadKey) {
		t.Errorf("a key over %d bytes: %v", MaxKeyLen, err)
	}
	if _, err := (Path{"subject"}).Key(sdk.Event{Subject: "a\x00b"}); !errors.Is(err, ErrBadKey) {
		t.Errorf("a key with NUL: %v", err)
	}
}

func TestBatch(t *testing.T) {
	w := Window{Pipeline: "p", Sink: "s", Key: "c-1", Start: time.Unix(100, 0), End: time.Unix(160, 0)}
	app := map[string]json.RawMessage{"application": json.RawMessage(`"app_1"`)}
	same := []sdk.Event{{ID: "1", Type: "order.paid", Source: "shop", Extensions: app}, {ID: "2", Type: "order.paid", Source: "shop", Extensions: app}}
	b, err := Batch(w, same)
	if err != nil {
		t.Fatal(err)
	}
	if b.ID != w.OutputID() || b.Type != "order.paid.batch" || b.Source != "shop" || b.Subject != "c-1" || !b.Time.Equal(w.End) || string(b.Extensions["application"]) != `"app_1"` {
		t.Fatalf("batch %+v", b)
	}
	var evs []sdk.Event
	if err := json.Unmarshal(b.Data, &evs); err != nil || len(evs) != 2 || evs[1].ID != "2" {
		t.Fatalf("data %s: %v", b.Data, err)
	}
	mixed := []sdk.Event{{Type: "order.paid", Source: "a"}, {Type: "order.refunded", Source: "b", Extensions: app}}
	if b, _ := Batch(w, mixed); b.Type != "order.batch" || b.Source != "p" || b.Extensions != nil {
		t.Fatalf("mixed batch %+v", b)
	}
	if b, _ := Batch(w, []sdk.Event{{Type: "order.paid"}, {Type: "user.created"}}); b.Type != "batch" {
		t.Fatalf("unrelated types: %s", b.Type)
	}
	// Same pipeline, key and start: the same id; any other: another.
	if OutputID("p", "c-1", w.Start) != w.OutputID() || OutputID("p", "c-2", w.Start) == w.OutputID() ||
		OutputID("p", "c-1", w.Start.Add(time.Nanosecond)) == w.OutputID() || WindowID("p", "a", "k", w.Start) == WindowID("p", "b", "k", w.Start) {
		t.Fatal("derived ids do not follow pipeline, key and start")
	}
}
