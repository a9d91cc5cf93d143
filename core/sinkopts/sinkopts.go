// Package sinkopts holds the settings every sink shares, whatever its
// type: the retry schedule, the cap on a receiver's Retry-After, the
// delivery window and the circuit breaker. They sit inside the sink's `config` block (DESIGN.md's
// contract), and hookbus, not the sink, acts on them: Split takes them out
// of the block once, for every sink type, built in or plugin, with the same
// rules and defaults, and the type gets the rest.
package sinkopts

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/hookbus/hookbus/core/circuit"
	"github.com/hookbus/hookbus/core/retry"
	"github.com/hookbus/hookbus/core/spec"
	"github.com/hookbus/hookbus/sdk"
)

// Defaults and bounds of the shared settings.
const (
	DefaultMaxInFlight   = 64
	MaxMaxInFlight       = 10000
	DefaultMaxRetryAfter = retry.DefaultMaxRetryAfter
)

// Settings are the keys of a sink's `config` block that hookbus handles
// for every sink type. A sink type's own config struct may embed Settings
// to describe its whole block (the webhook sink does); hookbus still takes
// these keys out before the type's constructor sees the block.
type Settings struct {
	// MaxInFlight (`max_in_flight`, default 64) bounds the deliveries
	// handed to the sink at once. A plugin's own window (its answer to
	// Init) applies when the block does not set it.
	MaxInFlight int `json:"max_in_flight" default:"64" min:"1" max:"10000" doc:"Concurrent deliveries to the sink."`
	// Retry (`retry`) is the retry schedule.
	Retry Retry `json:"retry" doc:"When failed deliveries are tried again."`
	// MaxRetryAfter (`max_retry_after`, default 1h) caps how long a
	// receiver's Retry-After (sdk.Result.RetryAfter) can postpone a retry.
	MaxRetryAfter time.Duration `json:"max_retry_after" default:"1h" check:"nonnegative" doc:"Cap on a receiver's Retry-After (Go duration)."`
	// Circuit (`circuit`) is the sink's circuit breaker.
	Circuit Circuit `json:"circuit" doc:"Stops attempts to an endpoint that keeps failing, for a cooldown (not for subscriptions sinks: each subscription has its own circuit)."`
	// Ordering (`ordering`) delivers the events of one key in ingest
	// order; absent, events are delivered unordered.
	Ordering Ordering `json:"ordering" doc:"Per-key FIFO delivery: events with the same key are delivered in ingest order, the next after the previous one was delivered or dead-lettered (embedded and nats queue drivers; not for subscriptions sinks)."`

	// explicitWindow is set by Split when the block sets max_in_flight;
	// explicitCircuit when it has a circuit block.
	explicitWindow, explicitCircuit bool
}

// Ordering is the `ordering` block.
type Ordering struct {
	// Key (`ordering.key`, required in the block) is a dot-separated path
	// into the event as the sink receives it (after the pipeline's
	// transforms): `subject`, `data.order_id`. An event whose path is
	// absent, or is neither a string nor a number, is delivered unordered.
	Key string `json:"key" doc:"Dot-separated path into the event as the sink receives it (subject, data.order_id); events without a string or number there are delivered unordered."`
}

// MaxKeyPath bounds the length of ordering.key.
const MaxKeyPath = 256

// Path returns the key's path segments (nil when ordering is off).
func (o Ordering) Path() []string {
	if o.Key == "" {
		return nil
	}
	return strings.Split(o.Key, ".")
}

// On tells whether ordering is on.
func (o Ordering) On() bool { return o.Key != "" }

// validate checks ordering.key (set: the block has an ordering block).
func (o Ordering) validate(set bool) error {
	k := o.Key
	switch {
	case k == "" && set:
		return &sdk.ConfigError{Field: "ordering.key", Message: "required: a dot-separated path into the event, such as subject or data.order_id"}
	case k == "":
		return nil
	case len(k) > MaxKeyPath:
		return &sdk.ConfigError{Field: "ordering.key", Message: fmt.Sprintf("at most %d characters, got %d", MaxKeyPath, len(k))}
	}
	for i, seg := range strings.Split(k, ".") {
		if seg == "" {
			return &sdk.ConfigError{Field: "ordering.key", Message: fmt.Sprintf("%q: segment %d is empty (a path such as data.order_id)", k, i+1)}
		}
		if strings.IndexFunc(seg, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
			return &sdk.ConfigError{Field: "ordering.key", Message: fmt.Sprintf("%q: segment %q holds a space or control character", k, seg)}
		}
	}
	return nil
}

// Retry is the `retry` block.
type Retry struct {
	// Schedule (`retry.schedule`, default [5s, 5m, 30m, 2h, 5h, 10h, 10h])
	// lists the waits before each retry; there are len(schedule)+1
	// attempts, then the event is dead-lettered. Each wait varies by ±20%
	// and stretches to a longer Retry-After. An empty list means no retry.
	// (In Go, nil means the default.)
	Schedule []time.Duration `json:"schedule" default:"5s,5m,30m,2h,5h,10h,10h" maxItems:"100" check:"positive" doc:"Waits before each retry; len+1 attempts in all."`
}

// Circuit is the `circuit` block: after `failures` failed attempts in a
// row (connection errors, timeouts, 408, 429, 5xx: the failures worth a
// retry), the sink's events wait in the queue, unattempted, for
// `cooldown`; then one probe goes, and its success closes the circuit
// while its failure opens it again for twice as long, up to
// `max_cooldown`. On by default; `enabled: false` turns it off.
type Circuit struct {
	// Enabled (`circuit.enabled`, default true) turns the breaker on. Split
	// sets it: true unless the block says false.
	Enabled bool `json:"enabled" doc:"Turns the circuit breaker on (default true)."`
	// Failures (`circuit.failures`, default 10) failed attempts in a row
	// open the circuit.
	Failures int `json:"failures" default:"10" min:"1" max:"1000000" doc:"Failed attempts in a row that open the circuit."`
	// Cooldown (`circuit.cooldown`, default 5s) is how long the circuit
	// first stays open.
	Cooldown time.Duration `json:"cooldown" default:"5s" check:"positive" doc:"How long the circuit first stays open (Go duration); doubles after each failed probe."`
	// MaxCooldown (`circuit.max_cooldown`, default 5m) caps the cooldown.
	MaxCooldown time.Duration `json:"max_cooldown" default:"5m" check:"positive" doc:"Cap on the cooldown (Go duration)."`
}

// Validate checks the rules of the shared keys a tag cannot say.
func (s Settings) Validate() error {
	c := s.Circuit
	if c.Cooldown > 0 && c.MaxCooldown > 0 && c.MaxCooldown < c.Cooldown {
		return &sdk.ConfigError{Field: "circuit.max_cooldown", Message: fmt.Sprintf("must be at least circuit.cooldown (%s), got %s", c.Cooldown, c.MaxCooldown)}
	}
	return s.Ordering.validate(false)
}

// Breaker returns the settings of the sink's circuit breaker: the zero
// value (off) when the block turns it off.
func (s Settings) Breaker() circuit.Settings {
	c := s.Circuit
	if !c.Enabled {
		return circuit.Settings{}
	}
	return circuit.Settings{Failures: c.Failures, Cooldown: c.Cooldown, MaxCooldown: c.MaxCooldown}
}

// CircuitSet tells whether the block has a `circuit` block (a sink type
// with circuits of its own refuses one).
func (s Settings) CircuitSet() bool { return s.explicitCircuit }

// Spec is the spec of the shared keys.
var Spec = spec.For[Settings]()

// Keys are the shared keys, taken out of every sink's block.
var Keys = Spec.Keys()

// Schedule returns the retry schedule the settings describe.
func (s Settings) Schedule() retry.Schedule {
	delays := s.Retry.Schedule
	if delays == nil {
		delays = retry.DefaultDelays
	}
	mra := s.MaxRetryAfter
	if mra == 0 {
		mra = DefaultMaxRetryAfter
	}
	return retry.Schedule{Delays: slices.Clone(delays), Jitter: retry.DefaultJitter, MaxRetryAfter: mra}
}

// Window returns the sink's delivery window: the block's max_in_flight
// when it sets one, else declared (what a sink answered Init, 0 for
// nothing), else the default.
func (s Settings) Window(declared int) int {
	switch {
	case s.explicitWindow && s.MaxInFlight > 0:
		return s.MaxInFlight
	case declared > 0:
		return declared
	case s.MaxInFlight > 0:
		return s.MaxInFlight
	}
	return DefaultMaxInFlight
}

// Defaults returns the settings of a block that sets none of the keys.
func Defaults() Settings {
	s, _ := Spec.Decode(nil)
	s.Circuit.Enabled = true
	return s
}

// Split takes the shared keys out of a sink's `config` block. It returns
// the rest of the block (for the sink type) and the settings, defaults
// applied. Problems with the shared keys are *sdk.ConfigError naming the
// key ("retry.schedule[1]"), joined with errors.Join; the rest is still
// returned, so the type's own keys can be checked too. A block that is not
// an object is returned as it is, for the type to refuse.
func Split(raw json.RawMessage) (json.RawMessage, Settings, error) {
	var m map[string]json.RawMessage
	if t := bytes.TrimSpace(raw); len(t) == 0 || json.Unmarshal(t, &m) != nil || m == nil {
		return raw, Defaults(), nil
	}
	shared := map[string]json.RawMessage{}
	for _, k := range Keys {
		if v, ok := m[k]; ok {
			shared[k] = v
			delete(m, k)
		}
	}
	if len(shared) == 0 {
		return raw, Defaults(), nil
	}
	own, err := json.Marshal(shared)
	if err != nil {
		return raw, Defaults(), err
	}
	s, serr := Spec.Decode(own)
	_, s.explicitWindow = shared["max_in_flight"]
	_, s.explicitCircuit = shared["circuit"]
	_, orderingSet := shared["ordering"]
	if oerr := s.Ordering.validate(orderingSet); oerr != nil && s.Ordering.Key == "" {
		// A bad key is reported by Validate, through Decode.
		serr = errors.Join(serr, oerr)
	}
	s.Circuit.Enabled = circuitEnabled(shared["circuit"])
	rest, err := json.Marshal(m)
	if err != nil {
		return raw, s, err
	}
	return rest, s, serr
}

// circuitEnabled tells whether a `circuit` block (nil: absent) leaves the
// breaker on: unless it says `enabled: false`. (A default of true cannot
// be a tag: the spec applies defaults to zero values, and false is one.)
func circuitEnabled(raw json.RawMessage) bool {
	var c struct {
		Enabled *bool `json:"enabled"`
	}
	if raw == nil || json.Unmarshal(raw, &c) != nil || c.Enabled == nil {
		return true
	}
	return *c.Enabled
}

// Merge returns the schema of a sink type's whole `config` block: the
// type's own schema (typeSchema, an object schema) with the shared keys
// added to its properties.
func Merge(typeSchema json.RawMessage) (json.RawMessage, error) {
	var own map[string]any
	if err := json.Unmarshal(typeSchema, &own); err != nil {
		return nil, err
	}
	var shared map[string]any
	if err := json.Unmarshal(Spec.Schema(), &shared); err != nil {
		return nil, err
	}
	props, _ := own["properties"].(map[string]any)
	if props == nil {
		props = map[string]any{}
	}
	sp, _ := shared["properties"].(map[string]any)
	for _, k := range slices.Sorted(maps.Keys(sp)) {
		if _, ok := props[k]; !ok {
			props[k] = sp[k]
		}
	}
	own["properties"] = props
	return json.MarshalIndent(own, "", "  ")
}
