// Package batching holds the `batch` option of webhook deliveries: how many
// events, how many bytes and how long a wait make one request that carries
// a JSON array of events (Policy), and the webhook-id such a request
// carries (ID). One set of rules for the webhook sink and for
// subscriptions, so both batch alike.
package batching

import (
	"bytes"
	"crypto/sha256"
	"encoding/base32"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/hookbus/hookbus/sdk"
)

// Defaults and bounds of a `batch` block.
const (
	DefaultMaxEvents = 100
	MaxMaxEvents     = 1000
	DefaultMaxBytes  = 1 << 20
	MinMaxBytes      = 1 << 10
	MaxMaxBytes      = 16 << 20
	DefaultMaxWait   = time.Second
	// MaxMaxWait bounds max_wait: a batch's events wait unacknowledged
	// (the embedded queue keeps them in progress, but the postgres
	// driver's ack deadline is 30s), then for the request's timeout.
	MaxMaxWait = 10 * time.Second
)

// Policy is a `batch` block: a batch closes when it holds MaxEvents
// events, when the next event would take its body over MaxBytes, or
// MaxWait after its first event arrived, whichever comes first. The zero
// value means no batching (one request per event).
type Policy struct {
	// MaxEvents (`max_events`, default 100, at most 1000) events at most
	// in one request.
	MaxEvents int `json:"max_events,omitempty"`
	// MaxBytes (`max_bytes`, default 1048576, 1024 to 16777216) bounds the
	// request body before compression; an event bigger than that alone
	// goes in a batch of its own.
	MaxBytes int `json:"max_bytes,omitempty"`
	// MaxWait (`max_wait`, default 1s, at most 10s; 0s: no wait, only the
	// events waiting at that moment) is the longest the first event of a
	// batch waits for others.
	MaxWait time.Duration `json:"-"`
	// on is set when the block was given (a `batch: {}` block batches with
	// every default).
	on bool
	// problems are the block's members UnmarshalJSON could not read, for
	// Check (nil for a block without: policies stay comparable).
	problems *[]*sdk.ConfigError
}

// On tells whether the policy batches.
func (p Policy) On() bool { return p.on }

// Enabled returns a batching policy with the given limits, defaults in
// place of zero ones (a negative MaxWait means no wait).
func Enabled(maxEvents, maxBytes int, maxWait time.Duration) Policy {
	p := Policy{MaxEvents: maxEvents, MaxBytes: maxBytes, MaxWait: maxWait, on: true}
	p.setDefaults(maxWait == 0)
	if p.MaxWait < 0 {
		p.MaxWait = 0
	}
	return p
}

func (p *Policy) setDefaults(waitUnset bool) {
	if p.MaxEvents == 0 {
		p.MaxEvents = DefaultMaxEvents
	}
	if p.MaxBytes == 0 {
		p.MaxBytes = DefaultMaxBytes
	}
	if waitUnset {
		p.MaxWait = DefaultMaxWait
	}
}

// stored is the block as JSON: max_wait a duration string.
type stored struct {
	MaxEvents *int    `json:"max_events,omitempty"`
	MaxBytes  *int    `json:"max_bytes,omitempty"`
	MaxWait   *string `json:"max_wait,omitempty"`
}

// UnmarshalJSON reads a `batch` block (an object with max_events,
// max_bytes and max_wait, each optional) and applies the defaults. null
// means no batching. Only a block that is not an object is an error
// here (a *sdk.ConfigError); a member of the wrong type or an unknown key
// is kept for Check, which reports it with the values out of bounds, so
// that every problem of the block is told at once.
func (p *Policy) UnmarshalJSON(b []byte) error {
	*p = Policy{}
	if t := bytes.TrimSpace(b); len(t) == 0 || string(t) == "null" {
		return nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil || m == nil {
		return &sdk.ConfigError{Message: "must be an object with max_events, max_bytes and max_wait"}
	}
	p.on = true
	var problems []*sdk.ConfigError
	fail := func(field, msg string) { problems = append(problems, &sdk.ConfigError{Field: field, Message: msg}) }
	number := func(key string, dst *int) {
		raw, ok := m[key]
		if !ok {
			return
		}
		if json.Unmarshal(raw, dst) != nil {
			fail(key, fmt.Sprintf("must be a whole number, got %s", snippet(raw)))
			*dst = 0
			return
		}
		if *dst == 0 {
			*dst = -1 // given as 0: refused by Check, not defaulted
		}
	}
	number("max_events", &p.MaxEvents)
	number("max_bytes", &p.MaxBytes)
	raw, waitSet := m["max_wait"]
	if waitSet {
		var w string
		if json.Unmarshal(raw, &w) != nil {
			fail("max_wait", fmt.Sprintf(`must be a duration string like "1s", got %s`, snippet(raw)))
		} else if d, err := time.ParseDuration(strings.TrimSpace(w)); err != nil {
			fail("max_wait", fmt.Sprintf(`invalid duration %q: use a number with a unit, like "500ms", "1s" or "0s"`, w))
		} else {
			p.MaxWait = d
		}
	}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if k != "max_events" && k != "max_bytes" && k != "max_wait" {
			fail(k, "unknown key (the keys are max_events, max_bytes and max_wait)")
		}
	}
	p.setDefaults(!waitSet)
	if len(problems) > 0 {
		p.problems = &problems
	}
	return nil
}

// snippet is a short form of a raw JSON value for a message.
func snippet(raw json.RawMessage) string {
	if len(raw) > 40 {
		return string(raw[:40]) + "…"
	}
	return string(raw)
}

// MarshalJSON writes the block as UnmarshalJSON reads it (null when off).
func (p Policy) MarshalJSON() ([]byte, error) {
	if !p.on {
		return []byte("null"), nil
	}
	w := p.MaxWait.String()
	return json.Marshal(stored{MaxEvents: &p.MaxEvents, MaxBytes: &p.MaxBytes, MaxWait: &w})
}

// SpecSchema is the block's JSON Schema (core/spec).
func (Policy) SpecSchema() map[string]any {
	return map[string]any{
		"type":                 "object",
		"additionalProperties": false,
		"properties": map[string]any{
			"max_events": map[string]any{"type": "integer", "minimum": 1, "maximum": MaxMaxEvents, "default": DefaultMaxEvents,
				"description": "Most events in one request."},
			"max_bytes": map[string]any{"type": "integer", "minimum": MinMaxBytes, "maximum": MaxMaxBytes, "default": DefaultMaxBytes,
				"description": "Most bytes of one request body, before compression; a bigger event goes alone."},
			"max_wait": map[string]any{"type": "string", "default": DefaultMaxWait.String(),
				"description": "Longest the first event of a batch waits for more (Go duration; 0s: no wait)."},
		},
	}
}

// Check returns what is wrong with the policy's values, each naming its
// key inside the block ("max_events").
func (p Policy) Check() []*sdk.ConfigError {
	if !p.on {
		return nil
	}
	var errs []*sdk.ConfigError
	told := map[string]bool{}
	if p.problems != nil {
		for _, e := range *p.problems {
			errs = append(errs, e)
			told[e.Field] = true
		}
	}
	if !told["max_events"] && (p.MaxEvents < 1 || p.MaxEvents > MaxMaxEvents) {
		errs = append(errs, &sdk.ConfigError{Field: "max_events", Message: fmt.Sprintf("must be 1 to %d, got %d", MaxMaxEvents, max(0, p.MaxEvents))})
	}
	if !told["max_bytes"] && (p.MaxBytes < MinMaxBytes || p.MaxBytes > MaxMaxBytes) {
		errs = append(errs, &sdk.ConfigError{Field: "max_bytes", Message: fmt.Sprintf("must be %d to %d bytes, got %d", MinMaxBytes, MaxMaxBytes, max(0, p.MaxBytes))})
	}
	if !told["max_wait"] && (p.MaxWait < 0 || p.MaxWait > MaxMaxWait) {
		errs = append(errs, &sdk.ConfigError{Field: "max_wait", Message: fmt.Sprintf("must be 0s to %s, got %s", MaxMaxWait, p.MaxWait)})
	}
	return errs
}

// IDPrefix starts the webhook-id of every batch, so that a receiver (and
// the delivery log) tells a batch's id from an event's.
const IDPrefix = "batch_"

// ID is the webhook-id of a batch carrying the events with these ids: a
// digest of the set, so the same events sent again (a retry of the whole
// batch, in any order) have the same webhook-id, and any other set has
// another. "batch_" and 26 base32 characters (128 bits of SHA-256).
func ID(eventIDs []string) string {
	ids := slices.Clone(eventIDs)
	slices.Sort(ids)
	h := sha256.New()
	for _, id := range ids {
		// Length-prefixed, so no two lists hash the same text.
		fmt.Fprintf(h, "%d:%s\n", len(id), id)
	}
	sum := h.Sum(nil)
	return IDPrefix + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(sum[:16]))
}
