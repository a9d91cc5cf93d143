package script

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"strings"
	"time"

	"github.com/hookbus/hookbus/core/aggregate"
	"github.com/hookbus/hookbus/sdk"
)

// Case is one test case of a script. A script's cases live in
// <name>.cases.json beside <name>.js, as a JSON array of cases.
type Case struct {
	Name string `json:"name"`
	// Event is the input of a filter or transform case.
	Event json.RawMessage `json:"event,omitempty"`
	// Events, instead of Event, makes the case an aggregate case: the
	// events of one window, handed to aggregate(events, ctx).
	Events []json.RawMessage `json:"events,omitempty"`
	// Ctx is optional; members left out are pipeline "test", sink "test",
	// attempt 1, and for an aggregate case key "", window_start the first
	// event's time (or 1970-01-01T00:00:00Z), window_end the last
	// event's time (or window_start), count the number of events.
	Ctx *CaseContext `json:"ctx,omitempty"`
	// Exactly one of the following is the expectation.
	Expect         json.RawMessage `json:"expect,omitempty"`          // the events that come out, as an array
	ExpectFiltered bool            `json:"expect_filtered,omitempty"` // filtered or dropped
	ExpectError    string          `json:"expect_error,omitempty"`    // a regexp the error must match
}

// CaseContext is the ctx a Case runs with, as written in a cases file.
type CaseContext struct {
	Pipeline string `json:"pipeline,omitempty"`
	Sink     string `json:"sink,omitempty"`
	Attempt  int    `json:"attempt,omitempty"`
	// The window of an aggregate case.
	Key         string    `json:"key,omitempty"`
	WindowStart time.Time `json:"window_start,omitzero"`
	WindowEnd   time.Time `json:"window_end,omitzero"`
	Count       int       `json:"count,omitempty"`
}

// aggregateContext is the ctx of an aggregate case over events, with the
// defaults of members left out; the output id is derived as a pipeline's
// would be.
func (c *CaseContext) aggregateContext(events []sdk.Event) AggregateContext {
	base := c.context()
	out := AggregateContext{Pipeline: base.Pipeline, Sink: base.Sink, Count: len(events), WindowStart: time.Unix(0, 0).UTC()}
	if len(events) > 0 && !events[0].Time.IsZero() {
		out.WindowStart = events[0].Time
	}
	out.WindowEnd = out.WindowStart
	if len(events) > 0 && !events[len(events)-1].Time.IsZero() {
		out.WindowEnd = events[len(events)-1].Time
	}
	if c != nil {
		out.Key = c.Key
		if !c.WindowStart.IsZero() {
			out.WindowStart = c.WindowStart
		}
		if !c.WindowEnd.IsZero() {
			out.WindowEnd = c.WindowEnd
		}
		if c.Count > 0 {
			out.Count = c.Count
		}
	}
	out.OutputID = aggregate.OutputID(out.Pipeline, out.Key, out.WindowStart)
	return out
}

// context fills in the defaults of members left out.
func (c *CaseContext) context() Context {
	out := Context{Pipeline: "test", Sink: "test", Attempt: 1}
	if c == nil {
		return out
	}
	if c.Pipeline != "" {
		out.Pipeline = c.Pipeline
	}
	if c.Sink != "" {
		out.Sink = c.Sink
	}
	if c.Attempt > 0 {
		out.Attempt = c.Attempt
	}
	return out
}

// CaseResult is the outcome of one Case.
type CaseResult struct {
	Pass bool
	// Problem says why the case failed.
	Problem string
	// Got is what came out: the events as a JSON array ([] when filtered),
	// or nil when the script failed.
	Got json.RawMessage
	// Err is the script's error, if it failed.
	Err error
}

// WriteCases writes cases as a cases file, indented, without escaping
// HTML characters.
func WriteCases(path string, cases []Case) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(cases); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

// CasesPath is where the cases of the script at path are kept.
func CasesPath(path string) string { return strings.TrimSuffix(path, ".js") + ".cases.json" }

// LoadCases reads a cases file. Unknown members, a case without a name or
// event, and a case with no or several expectations are errors that name
// the case.
func LoadCases(path string) ([]Case, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var cases []Case
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cases); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for i, c := range cases {
		where := fmt.Sprintf("%s: case %d (%q)", path, i, c.Name)
		n := 0
		if len(c.Expect) > 0 {
			n++
		}
		if c.ExpectFiltered {
			n++
		}
		if c.ExpectError != "" {
			n++
			if _, err := regexp.Compile(c.ExpectError); err != nil {
				return nil, fmt.Errorf("%s: expect_error: %w", where, err)
			}
		}
		switch {
		case c.Name == "":
			return nil, fmt.Errorf("%s: \"name\" is required", where)
		case len(c.Event) == 0 && len(c.Events) == 0:
			return nil, fmt.Errorf("%s: \"event\" (or \"events\", for aggregate) is required", where)
		case len(c.Event) > 0 && len(c.Events) > 0:
			return nil, fmt.Errorf("%s: give \"event\" (filter, transform) or \"events\" (aggregate), not both", where)
		case n > 1:
			return nil, fmt.Errorf("%s: give one of expect, expect_filtered and expect_error", where)
		}
	}
	return cases, nil
}

// Check runs one case. A case without an expectation fails with the output
// it got, so `hookbus test --update` can record it.
func (s *Script) Check(ctx context.Context, c Case) CaseResult {
	var r Result
	var err error
	if len(c.Events) > 0 {
		r, err = s.runAggregateCase(ctx, c)
	} else {
		r, err = s.RunJSON(ctx, c.Event, c.Ctx.context())
	}
	if c.ExpectError != "" {
		if err == nil {
			return CaseResult{Problem: fmt.Sprintf("no error, want one matching %q", c.ExpectError), Got: output(r)}
		}
		if !regexp.MustCompile(c.ExpectError).MatchString(err.Error()) {
			return CaseResult{Problem: fmt.Sprintf("error %q does not match %q", err, c.ExpectError), Err: err}
		}
		return CaseResult{Pass: true, Err: err}
	}
	if err != nil {
		return CaseResult{Problem: err.Error(), Err: err}
	}
	got := output(r)
	switch {
	case c.ExpectFiltered:
		if r.Kept {
			return CaseResult{Problem: "kept, want filtered", Got: got}
		}
		return CaseResult{Pass: true, Got: got}
	case len(c.Expect) == 0:
		return CaseResult{Problem: "no expectation (expect, expect_filtered or expect_error)", Got: got}
	}
	same, err := sameJSON(got, c.Expect)
	if err != nil {
		return CaseResult{Problem: "expect: " + err.Error(), Got: got}
	}
	if !same {
		return CaseResult{Problem: "output differs from expect", Got: got}
	}
	return CaseResult{Pass: true, Got: got}
}

// output is what a run produced, as a JSON array of events.
func output(r Result) json.RawMessage {
	if !r.Kept {
		return json.RawMessage("[]")
	}
	b, err := json.Marshal(r.Events)
	if err != nil {
		return nil
	}
	return b
}

func sameJSON(a, b []byte) (bool, error) {
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		return false, err
	}
	if err := json.Unmarshal(b, &y); err != nil {
		return false, err
	}
	return reflect.DeepEqual(x, y), nil
}

// runAggregateCase runs an aggregate case: its events through aggregate.
func (s *Script) runAggregateCase(ctx context.Context, c Case) (Result, error) {
	events, err := decodeEvents(c.Events)
	if err != nil {
		return Result{}, err
	}
	return s.RunAggregate(ctx, events, c.Ctx.aggregateContext(events))
}
