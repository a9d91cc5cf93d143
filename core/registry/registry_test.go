package registry_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/hookbus/hookbus/core/registry"
	"github.com/hookbus/hookbus/core/sinkopts"
	"github.com/hookbus/hookbus/core/spec"
	"github.com/hookbus/hookbus/sdk"
)

type nopSink struct{ s sinkopts.Settings }

func (nopSink) Init(context.Context, json.RawMessage) (sdk.SinkInfo, error) {
	return sdk.SinkInfo{}, nil
}
func (nopSink) Deliver(_ context.Context, b []sdk.Delivery) []sdk.Result {
	return make([]sdk.Result, len(b))
}
func (nopSink) Close(context.Context) error { return nil }

type ownConfig struct {
	Path string `json:"path" required:"the file"`
}

func sinkType(name string) registry.Sink {
	return registry.Sink{Name: name, Spec: spec.For[ownConfig](), New: func(s sinkopts.Settings) sdk.Sink { return nopSink{s} }}
}

func mustPanic(t *testing.T, want string, f func()) {
	t.Helper()
	defer func() {
		t.Helper()
		r := recover()
		if r == nil {
			t.Fatalf("no panic, want one saying %q", want)
		}
		if msg, _ := r.(string); !strings.Contains(msg, want) {
			t.Fatalf("panic %v, want it to say %q", r, want)
		}
	}()
	f()
}

func TestDuplicateRegistrationPanics(t *testing.T) {
	t.Parallel()
	r := registry.New()
	r.RegisterSink(sinkType("file"))
	mustPanic(t, `registry: sink type "file" registered twice`, func() { r.RegisterSink(sinkType("file")) })
	// Kinds are separate name spaces.
	r.RegisterSource(registry.Source{Name: "file", Spec: spec.For[ownConfig](), Ingest: true})
	mustPanic(t, `registry: source type "file" registered twice`, func() {
		r.RegisterSource(registry.Source{Name: "file", Spec: spec.For[ownConfig](), Ingest: true})
	})
	r.RegisterQueueDriver(registry.QueueDriver{Name: "memory", Open: 1})
	mustPanic(t, `registry: queue driver "memory" registered twice`, func() { r.RegisterQueueDriver(registry.QueueDriver{Name: "memory", Open: 1}) })
	mustPanic(t, "without a name", func() { r.RegisterSink(sinkType("")) })
	mustPanic(t, "without a Spec or New", func() { r.RegisterSink(registry.Sink{Name: "x"}) })
	mustPanic(t, "without Open", func() { r.RegisterQueueDriver(registry.QueueDriver{Name: "x"}) })
}

func TestUnknownTypeListsKnownOnes(t *testing.T) {
	t.Parallel()
	r := registry.New()
	if _, err := r.Sink("webhook"); err == nil || err.Error() != `unknown sink type "webhook" (known sink types: none)` {
		t.Fatalf("empty registry: %v", err)
	}
	r.RegisterSink(sinkType("webhook"))
	r.RegisterSink(sinkType("archive"))
	if _, err := r.Sink("webhok"); err == nil || err.Error() != `unknown sink type "webhok" (known sink types: archive, webhook)` {
		t.Fatalf("err = %v", err)
	}
	if _, ok := r.NewSink("webhok", sinkopts.Defaults()); ok {
		t.Fatal("NewSink of an unknown type")
	}
	if _, err := r.Source("http"); err == nil || !strings.Contains(err.Error(), "known source types: none") {
		t.Fatalf("err = %v", err)
	}
	// Queue drivers keep their registration order (the default first) and
	// an unsupported name its own message.
	for _, n := range []string{"embedded", "nats", "kafka", "memory"} {
		d := registry.QueueDriver{Name: n, Open: 1}
		if n == "kafka" {
			d = registry.QueueDriver{Name: n, Unsupported: "kafka is not supported yet; use embedded or nats"}
		}
		r.RegisterQueueDriver(d)
	}
	if _, err := r.QueueDriver("rabbit"); err == nil || err.Error() != `unknown driver "rabbit" (one of embedded, nats, kafka, memory)` {
		t.Fatalf("err = %v", err)
	}
	if _, err := r.QueueDriver("kafka"); err == nil || err.Error() != "kafka is not supported yet; use embedded or nats" {
		t.Fatalf("err = %v", err)
	}
	if d, err := r.QueueDriver("nats"); err != nil || d.Name != "nats" {
		t.Fatalf("nats: %+v %v", d, err)
	}
}

func TestNewSinkGetsSettings(t *testing.T) {
	t.Parallel()
	r := registry.New()
	r.RegisterSink(sinkType("file"))
	_, s, err := sinkopts.Split(json.RawMessage(`{"path": "x", "max_in_flight": 7}`))
	if err != nil {
		t.Fatal(err)
	}
	got, ok := r.NewSink("file", s)
	if !ok || got.(nopSink).s.Window(0) != 7 {
		t.Fatalf("NewSink = %+v, %v", got, ok)
	}
}

func TestIngestSource(t *testing.T) {
	t.Parallel()
	r := registry.New()
	r.RegisterSource(registry.Source{Name: "http", Spec: spec.For[struct{}](), Ingest: true})
	if !r.IsIngest("http") || r.IsIngest("file") {
		t.Fatal("IsIngest")
	}
	if _, ok := r.NewSource("http"); ok {
		t.Fatal("an ingest source has nothing to construct")
	}
}

// CheckSink checks the shared keys and the type's own, all at once; the
// type's spec never sees the shared keys.
func TestCheckSink(t *testing.T) {
	t.Parallel()
	r := registry.New()
	r.RegisterSink(sinkType("file"))
	ok, err := r.CheckSink("file", json.RawMessage(`{"path": "x", "retry": {"schedule": ["5s"]}, "max_in_flight": 8}`))
	if !ok || err != nil {
		t.Fatalf("valid block: %v %v", ok, err)
	}
	ok, err = r.CheckSink("file", json.RawMessage(`{"retry": {"schedule": ["soon"]}, "max_in_flight": 0.5, "colour": "red"}`))
	if !ok {
		t.Fatal("file is registered")
	}
	got := fields(err)
	for _, want := range []string{"retry.schedule[0]", "max_in_flight", "colour", "path"} {
		if _, ok := got[want]; !ok {
			t.Errorf("no problem at %q; got %v", want, got)
		}
	}
	if len(got) != 4 {
		t.Errorf("problems = %v", got)
	}
	// An unknown type still has its shared keys checked (for plugin sinks).
	if ok, err := r.CheckSink("acme", json.RawMessage(`{"max_in_flight": 20000}`)); ok || !strings.Contains(err.Error(), "between 1 and 10000") {
		t.Fatalf("plugin sink: %v %v", ok, err)
	}
}

// The schema of a type's block lists its own keys and the shared ones.
func TestSinkSchema(t *testing.T) {
	t.Parallel()
	r := registry.New()
	r.RegisterSink(sinkType("file"))
	raw, err := r.SinkSchema("file")
	if err != nil {
		t.Fatal(err)
	}
	var s struct {
		Properties map[string]json.RawMessage `json:"properties"`
		Required   []string                   `json:"required"`
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatal(err)
	}
	for _, k := range append([]string{"path"}, sinkopts.Keys...) {
		if _, ok := s.Properties[k]; !ok {
			t.Errorf("schema lacks %q: %s", k, raw)
		}
	}
	if len(s.Properties) != 1+len(sinkopts.Keys) || len(s.Required) != 1 || s.Required[0] != "path" {
		t.Errorf("schema = %s", raw)
	}
	if _, err := r.SinkSchema("nope"); err == nil {
		t.Error("schema of an unknown type")
	}
}

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
		}
	}
	if err != nil {
		walk(err)
	}
	return out
}

// A type with circuits of its own refuses the sink-wide `circuit` block;
// other types take it.
func TestCheckSinkCircuit(t *testing.T) {
	t.Parallel()
	r := registry.New()
	r.RegisterSink(sinkType("file"))
	own := sinkType("fanout")
	own.OwnCircuits = true
	r.RegisterSink(own)
	if _, err := r.CheckSink("file", json.RawMessage(`{"path": "x", "circuit": {"failures": 3}}`)); err != nil {
		t.Fatalf("file with a circuit: %v", err)
	}
	if _, err := r.CheckSink("fanout", json.RawMessage(`{"path": "x"}`)); err != nil {
		t.Fatalf("fanout without a circuit: %v", err)
	}
	_, err := r.CheckSink("fanout", json.RawMessage(`{"path": "x", "circuit": {"enabled": false}}`))
	if got := fields(err); len(got) != 1 || !strings.Contains(got["circuit"], "circuit of its own") {
		t.Fatalf("fanout with a circuit: %v", got)
	}
}
