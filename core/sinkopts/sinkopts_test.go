package sinkopts

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hookbus/hookbus/core/circuit"
	"github.com/hookbus/hookbus/core/retry"
	"github.com/hookbus/hookbus/core/spec/spectest"
	"github.com/hookbus/hookbus/sdk"
)

func TestDefaults(t *testing.T) {
	t.Parallel()
	s := Defaults()
	// The tag's default list is retry.DefaultDelays, written out.
	if !slices.Equal(s.Retry.Schedule, retry.DefaultDelays) || s.MaxInFlight != DefaultMaxInFlight || s.MaxRetryAfter != time.Hour {
		t.Fatalf("defaults = %+v", s)
	}
	sch := s.Schedule()
	if !slices.Equal(sch.Delays, retry.DefaultDelays) || sch.Jitter != retry.DefaultJitter || sch.MaxRetryAfter != time.Hour || sch.MaxAttempts() != 8 {
		t.Fatalf("Schedule() = %+v", sch)
	}
	// The zero value (a sink built in Go) means the defaults too.
	if z := (Settings{}).Schedule(); !slices.Equal(z.Delays, retry.DefaultDelays) || z.MaxRetryAfter != time.Hour {
		t.Fatalf("zero Schedule() = %+v", z)
	}
}

func TestSplit(t *testing.T) {
	t.Parallel()
	rest, s, err := Split(json.RawMessage(`{"url": "u", "retry": {"schedule": ["1s", "1m"]}, "max_in_flight": 9, "max_retry_after": "2m"}`))
	if err != nil {
		t.Fatal(err)
	}
	if string(rest) != `{"url":"u"}` {
		t.Errorf("rest = %s", rest)
	}
	if !slices.Equal(s.Schedule().Delays, []time.Duration{time.Second, time.Minute}) || s.Schedule().MaxRetryAfter != 2*time.Minute {
		t.Errorf("schedule = %+v", s.Schedule())
	}
	if s.Window(3) != 9 {
		t.Errorf("a block's max_in_flight wins over the sink's own: %d", s.Window(3))
	}
	// Without max_in_flight the sink's declared window applies, else 64.
	rest, s, err = Split(json.RawMessage(`{"url": "u"}`))
	if err != nil || string(rest) != `{"url": "u"}` || s.Window(3) != 3 || s.Window(0) != 64 {
		t.Errorf("no shared keys: %s %v %d %d", rest, err, s.Window(3), s.Window(0))
	}
	if _, s, _ := Split(json.RawMessage(`{"retry": {"schedule": []}}`)); s.Schedule().MaxAttempts() != 1 {
		t.Errorf("an empty schedule means a single attempt: %+v", s.Schedule())
	}
	// Not an object: left to the type.
	if rest, _, err := Split(json.RawMessage(`[1]`)); err != nil || string(rest) != `[1]` {
		t.Errorf("non-object: %s %v", rest, err)
	}
}

func TestSplitErrors(t *testing.T) {
	t.Parallel()
	rest, _, err := Split(json.RawMessage(`{"x": 1, "retry": {"schedule": ["5s", "soon", "0s"], "max": 1}, "max_in_flight": "32", "max_retry_after": "-1s"}`))
	if string(rest) != `{"x":1}` {
		t.Errorf("rest = %s, want the type's keys even when the shared ones are wrong", rest)
	}
	want := map[string]string{
		"retry.schedule[1]": `invalid duration "soon"`, "retry.schedule[2]": "must be positive", "retry.max": "unknown key (known keys: schedule)",
		"max_in_flight": `must be an integer, got "32"`, "max_retry_after": "must not be negative",
	}
	got := map[string]string{}
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var ce *sdk.ConfigError
		if !errors.As(e, &ce) {
			t.Fatalf("%v is not a *sdk.ConfigError", e)
		}
		got[ce.Field] = ce.Message
	}
	if len(got) != len(want) {
		t.Fatalf("problems = %v", got)
	}
	for f, sub := range want {
		if !strings.Contains(got[f], sub) {
			t.Errorf("%s: %q, want containing %q", f, got[f], sub)
		}
	}
	if _, _, err := Split(json.RawMessage(`{"max_in_flight": 10001}`)); err == nil || !strings.Contains(err.Error(), "between 1 and 10000") {
		t.Errorf("max_in_flight 10001: %v", err)
	}
}

func TestSchemaMatchesDecoder(t *testing.T) {
	t.Parallel()
	spectest.Conformance(t, Spec, `{"retry": {"schedule": ["1s"]}, "max_in_flight": 5, "max_retry_after": "1m", "circuit": {"enabled": true, "failures": 3, "cooldown": "1s", "max_cooldown": "1m"}, "ordering": {"key": "data.order_id"}}`)
}

func TestMerge(t *testing.T) {
	t.Parallel()
	out, err := Merge(json.RawMessage(`{"type": "object", "additionalProperties": false, "properties": {"path": {"type": "string"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	var s struct {
		Properties map[string]any `json:"properties"`
	}
	if err := json.Unmarshal(out, &s); err != nil || len(s.Properties) != 1+len(Keys) {
		t.Fatalf("merged = %s (%v)", out, err)
	}
}

// The circuit breaker is on by default, with its defaults; a block sets
// its keys or turns it off; bad values name their key.
func TestCircuit(t *testing.T) {
	t.Parallel()
	want := circuit.Settings{Failures: 10, Cooldown: 5 * time.Second, MaxCooldown: 5 * time.Minute}
	if got := Defaults().Breaker(); got != want {
		t.Errorf("default breaker = %+v, want %+v", got, want)
	}
	for _, raw := range []string{`{"url": "u"}`, `{"max_in_flight": 3}`, `{"circuit": {}}`, `{"circuit": {"enabled": true}}`} {
		_, s, err := Split(json.RawMessage(raw))
		if err != nil || s.Breaker() != want {
			t.Errorf("%s: breaker %+v (%v), want the defaults", raw, s.Breaker(), err)
		}
	}
	_, s, err := Split(json.RawMessage(`{"circuit": {"failures": 3, "cooldown": "1s", "max_cooldown": "1m"}, "ordering": {"key": "data.order_id"}}`))
	if got := s.Breaker(); err != nil || got != (circuit.Settings{Failures: 3, Cooldown: time.Second, MaxCooldown: time.Minute}) || !s.CircuitSet() {
		t.Errorf("set: %+v (%v)", got, err)
	}
	if _, s, err := Split(json.RawMessage(`{"circuit": {"enabled": false}}`)); err != nil || s.Breaker().On() {
		t.Errorf("enabled: false: %+v (%v), want off", s.Breaker(), err)
	}
	for raw, field := range map[string]string{
		`{"circuit": {"failures": 0.5}}`:                           "circuit.failures",
		`{"circuit": {"failures": -1}}`:                            "circuit.failures",
		`{"circuit": {"cooldown": "-1s"}}`:                         "circuit.cooldown",
		`{"circuit": {"cooldown": "10m"}}`:                         "circuit.max_cooldown",
		`{"circuit": {"cooldown": "1s", "max_cooldown": "500ms"}}`: "circuit.max_cooldown",
		`{"circuit": {"enabled": "no"}}`:                           "circuit.enabled",
		`{"circuit": {"open": true}}`:                              "circuit.open",
		`{"circuit": true}`:                                        "circuit",
	} {
		_, _, err := Split(json.RawMessage(raw))
		var ce *sdk.ConfigError
		if !errors.As(err, &ce) || ce.Field != field {
			t.Errorf("%s: %v, want an error naming %s", raw, err, field)
		}
	}
}

func TestOrdering(t *testing.T) {
	t.Parallel()
	rest, s, err := Split(json.RawMessage(`{"url": "u", "ordering": {"key": "data.order_id"}}`))
	if err != nil || string(rest) != `{"url":"u"}` {
		t.Fatalf("Split: %s %v", rest, err)
	}
	if !s.Ordering.On() || !slices.Equal(s.Ordering.Path(), []string{"data", "order_id"}) {
		t.Fatalf("ordering = %+v", s.Ordering)
	}
	if _, s, err := Split(json.RawMessage(`{"url": "u"}`)); err != nil || s.Ordering.On() || s.Ordering.Path() != nil {
		t.Fatalf("no ordering block: %+v %v", s.Ordering, err)
	}
	for _, tc := range []struct{ block, want string }{
		{`{"ordering": {}}`, "ordering.key: required"},
		{`{"ordering": {"key": ""}}`, "ordering.key: required"},
		{`{"ordering": {"key": "data..id"}}`, "segment 2 is empty"},
		{`{"ordering": {"key": ".id"}}`, "segment 1 is empty"},
		{`{"ordering": {"key": "data.order id"}}`, "space or control"},
		{`{"ordering": {"key": "` + strings.Repeat("a", MaxKeyPath+1) + `"}}`, "at most 256"},
		{`{"ordering": {"key": "subject", "partitions": 3}}`, "ordering.partitions"},
		{`{"ordering": "subject"}`, "ordering"},
	} {
		_, _, err := Split(json.RawMessage(tc.block))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.block, err, tc.want)
		}
		var ce *sdk.ConfigError
		if err != nil && !errors.As(err, &ce) {
			t.Errorf("%s: %v is no *sdk.ConfigError", tc.block, err)
		}
	}
}
