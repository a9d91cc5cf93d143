// Package registry is where component types register themselves: sink and
// source types and queue drivers, each with its constructor and its config
// spec, in the way Caddy modules (caddy.RegisterModule) and Benthos
// components (RegisterOutput(name, spec, ctor)) do. A component's package
// registers it from an init function; the composition root imports the
// package and looks the type up by the name the configuration gives, so no
// switch over type names is needed anywhere.
//
// The registry is a leaf: it knows specs and constructors only as
// interfaces and func types, so that config validation can take a
// *Registry (through config.Checkers) without importing the components,
// their brokers or their HTTP clients. Queue drivers are registered with an
// untyped Open (core/queue.Opener) for that reason; core/queue.Open is the
// typed lookup.
package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/hookbus/hookbus/core/sinkopts"
	"github.com/hookbus/hookbus/sdk"
)

// Spec describes a component type's `config` block. core/spec.Struct
// implements it from a Go struct.
type Spec interface {
	// Check decodes and validates a block (JSON, "{}" when absent): nil or
	// errors.Join of *sdk.ConfigError, each naming its key inside the block.
	Check(raw json.RawMessage) error
	// Schema is the JSON Schema of the block.
	Schema() json.RawMessage
}

// Sink is a sink type.
type Sink struct {
	// Name is the type in configuration (`type: webhook`).
	Name string
	// Spec describes the type's own keys; the shared sink settings
	// (sinkopts.Keys) are taken out of the block before Check and New see it.
	Spec Spec
	// New returns a sink to Init with the rest of the block. It gets the
	// block's shared settings, which hookbus applies itself (retries, the
	// window), so that a sink can size its own resources to them.
	New func(sinkopts.Settings) sdk.Sink
	// OwnCircuits tells that the type keeps a circuit per target itself
	// (the subscriptions sink): a `circuit` block, the sink-wide breaker,
	// is then refused.
	OwnCircuits bool
}

// CheckCircuit refuses a `circuit` block for a type with circuits of its
// own.
func (s Sink) CheckCircuit(settings sinkopts.Settings) error {
	if s.OwnCircuits && settings.CircuitSet() {
		return &sdk.ConfigError{Field: "circuit", Message: "not for a " + s.Name + " sink: each of its targets has a circuit of its own"}
	}
	return nil
}

// Source is a source type.
type Source struct {
	// Name is the type in configuration (`type: http`).
	Name string
	// Spec describes the type's config block.
	Spec Spec
	// New returns a source to Init with the block and Run. Nil for a type
	// served by hookbus itself (Ingest).
	New func() sdk.Source
	// Ingest: the source's events arrive on hookbus's own ingest endpoint
	// (POST /v1/sources/{name}/events); nothing is started for it.
	Ingest bool
}

// QueueDriver is a queue driver.
type QueueDriver struct {
	// Name is the driver in configuration (`queue.driver: nats`).
	Name string
	// NeedsURL: queue.url is required.
	NeedsURL bool
	// UsesDataDir: the driver keeps its state under data_dir, which one
	// process at a time may use.
	UsesDataDir bool
	// Unsupported, when set, makes a known name this build refuses, with
	// this message.
	Unsupported string
	// Open is the driver's constructor, a core/queue.Opener (untyped here
	// so that this package does not import core/queue).
	Open any
}

// Registry holds registered types. The zero value is not usable; use New.
// It is safe for concurrent use.
type Registry struct {
	mu      sync.RWMutex
	sinks   table[Sink]
	sources table[Source]
	queues  table[QueueDriver]
}

// New returns an empty registry (tests build their own).
func New() *Registry {
	return &Registry{
		sinks:   newTable[Sink]("sink type"),
		sources: newTable[Source]("source type"),
		queues:  newTable[QueueDriver]("queue driver"),
	}
}

// Default is the registry the component packages register into from
// their init functions, and the one hookbus uses.
var Default = New()

// RegisterSink registers a sink type in Default; see Registry.RegisterSink.
func RegisterSink(s Sink) { Default.RegisterSink(s) }

// RegisterSource registers a source type in Default.
func RegisterSource(s Source) { Default.RegisterSource(s) }

// RegisterQueueDriver registers a queue driver in Default.
func RegisterQueueDriver(d QueueDriver) { Default.RegisterQueueDriver(d) }

// RegisterSink registers a sink type. It panics (at init, when called from
// an init function) when the name is empty or taken, or Spec or New is
// missing: two packages claiming one type is a build mistake.
func (r *Registry) RegisterSink(s Sink) {
	if s.Spec == nil || s.New == nil {
		panic(fmt.Sprintf("registry: sink type %q registered without a Spec or New", s.Name))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sinks.add(s.Name, s)
}

// RegisterSource registers a source type; it panics like RegisterSink.
func (r *Registry) RegisterSource(s Source) {
	if s.Spec == nil || s.New == nil && !s.Ingest {
		panic(fmt.Sprintf("registry: source type %q registered without a Spec, or without New and not Ingest", s.Name))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sources.add(s.Name, s)
}

// RegisterQueueDriver registers a queue driver; it panics like
// RegisterSink (Open may be nil only for an Unsupported name).
func (r *Registry) RegisterQueueDriver(d QueueDriver) {
	if d.Open == nil && d.Unsupported == "" {
		panic(fmt.Sprintf("registry: queue driver %q registered without Open", d.Name))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.queues.add(d.Name, d)
}

// Sink returns a sink type, or an error naming the known ones:
// `unknown sink type "x" (known sink types: webhook)`.
func (r *Registry) Sink(name string) (Sink, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.sinks.get(name)
}

// Source returns a source type, or an error naming the known ones.
func (r *Registry) Source(name string) (Source, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.sources.get(name)
}

// QueueDriver returns a queue driver, or an error: for an unknown name
// `unknown driver "x" (one of embedded, nats, …)`, for an Unsupported one
// its message.
func (r *Registry) QueueDriver(name string) (QueueDriver, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	d, ok := r.queues.byName[name]
	switch {
	case !ok:
		return QueueDriver{}, fmt.Errorf("unknown driver %q (one of %s)", name, orNone(r.queues.names))
	case d.Unsupported != "":
		return QueueDriver{}, fmt.Errorf("%s", d.Unsupported)
	}
	return d, nil
}

// SinkNames lists the sink types, sorted.
func (r *Registry) SinkNames() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return slices.Sorted(slices.Values(r.sinks.names))
}

// SourceNames lists the source types, sorted.
func (r *Registry) SourceNames() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return slices.Sorted(slices.Values(r.sources.names))
}

// QueueDriverNames lists the queue drivers in registration order (the
// order core/queue registers them, default first), unsupported ones
// included.
func (r *Registry) QueueDriverNames() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return slices.Clone(r.queues.names)
}

// NewSink returns a new sink of type typ, given its block's shared
// settings, ready for Init with the rest of the block (sinkopts.Split).
// ok is false when typ is not a registered type (a plugin name, say).
func (r *Registry) NewSink(typ string, s sinkopts.Settings) (sdk.Sink, bool) {
	t, err := r.Sink(typ)
	if err != nil {
		return nil, false
	}
	return t.New(s), true
}

// NewSource returns a new source of type typ, ready for Init. ok is false
// when typ is not registered or is served by hookbus itself (Ingest).
func (r *Registry) NewSource(typ string) (sdk.Source, bool) {
	t, err := r.Source(typ)
	if err != nil || t.New == nil {
		return nil, false
	}
	return t.New(), true
}

// IsIngest reports whether typ is a source type served on hookbus's own
// ingest endpoint.
func (r *Registry) IsIngest(typ string) bool {
	t, err := r.Source(typ)
	return err == nil && t.Ingest
}

// SinkSchema returns the JSON Schema of a sink type's whole block: its own
// keys and the shared ones.
func (r *Registry) SinkSchema(typ string) (json.RawMessage, error) {
	t, err := r.Sink(typ)
	if err != nil {
		return nil, err
	}
	return sinkopts.Merge(t.Spec.Schema())
}

// CheckSink checks a sink's whole `config` block: the shared settings, then
// the type's own keys. ok is false when typ is not registered.
func (r *Registry) CheckSink(typ string, raw json.RawMessage) (ok bool, err error) {
	t, lerr := r.Sink(typ)
	rest, settings, serr := sinkopts.Split(raw)
	if lerr != nil {
		return false, serr
	}
	return true, errors.Join(serr, t.CheckCircuit(settings), t.Spec.Check(rest))
}

// table is one kind's entries, in registration order.
type table[E any] struct {
	kind   string
	names  []string
	byName map[string]E
}

func newTable[E any](kind string) table[E] {
	return table[E]{kind: kind, byName: map[string]E{}}
}

func (t *table[E]) add(name string, e E) {
	if name == "" {
		panic(fmt.Sprintf("registry: %s registered without a name", t.kind))
	}
	if _, dup := t.byName[name]; dup {
		panic(fmt.Sprintf("registry: %s %q registered twice (two packages claim the name)", t.kind, name))
	}
	t.names = append(t.names, name)
	t.byName[name] = e
}

func (t *table[E]) get(name string) (E, error) {
	e, ok := t.byName[name]
	if !ok {
		known := slices.Sorted(slices.Values(t.names))
		return e, fmt.Errorf("unknown %s %q (known %ss: %s)", t.kind, name, t.kind, orNone(known))
	}
	return e, nil
}

func orNone(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}
