// Package sinkopts holds the settings every sink shares, whatever its
// type: the retry schedule, the cap on a receiver's Retry-After and the
// delivery window. They sit inside the sink's `config` block (DESIGN.md's
// contract), and hookbus, not the sink, acts on them: Split takes them out
// of the block once, for every sink type, built in or plugin, with the same
// rules and defaults, and the type gets the rest.
package sinkopts

import (
	"bytes"
	"encoding/json"
	"maps"
	"slices"
	"time"

	"github.com/hookbus/hookbus/core/retry"
	"github.com/hookbus/hookbus/core/spec"
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

	// explicitWindow is set by Split when the block sets max_in_flight.
	explicitWindow bool
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
	rest, err := json.Marshal(m)
	if err != nil {
		return raw, s, err
	}
	return rest, s, serr
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
