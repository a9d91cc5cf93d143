package script

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/hookbus/hookbus/sdk"
)

// Result is the outcome of running a script on one event: its filter
// first (when defined), then its transform (when defined).
type Result struct {
	// Kept is true when the event passed the filter and the transform
	// returned at least one event.
	Kept bool `json:"kept"`
	// FilteredBy says which function dropped the event: "filter" (returned
	// falsy), "transform" or "aggregate" (returned null or an empty
	// array); empty when kept.
	FilteredBy string `json:"filtered_by,omitempty"`
	// Events are the events that come out (nil when filtered).
	Events []sdk.Event `json:"events"`
}

// JSON renders the result as indented JSON, ending in a newline.
func (r Result) JSON() []byte {
	if r.Events == nil {
		r.Events = []sdk.Event{}
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil { // only events with invalid raw JSON, which Transform never returns
		b, _ = json.Marshal(map[string]string{"error": err.Error()})
	}
	return append(b, '\n')
}

// Run applies the script to ev: filter (if defined), then transform (if defined).
func (s *Script) Run(ctx context.Context, ev sdk.Event, c Context) (Result, error) {
	keep, err := s.Filter(ctx, ev, c)
	if err != nil {
		return Result{}, err
	}
	if !keep {
		return Result{FilteredBy: "filter"}, nil
	}
	out, err := s.Transform(ctx, ev, c)
	if err != nil {
		return Result{}, err
	}
	if len(out) == 0 {
		return Result{FilteredBy: "transform"}, nil
	}
	return Result{Kept: true, Events: out}, nil
}

// RunFile compiles the script at path and runs it on one event given as
// JSON; it backs `hookbus script run FILE --event event.json`.
func RunFile(ctx context.Context, path string, eventJSON []byte, c Context, opts Options) (Result, error) {
	s, err := Compile(path, opts)
	if err != nil {
		return Result{}, err
	}
	return s.RunJSON(ctx, eventJSON, c)
}

// RunJSON is Run with the event given as JSON (the envelope of DESIGN.md).
func (s *Script) RunJSON(ctx context.Context, eventJSON []byte, c Context) (Result, error) {
	var ev sdk.Event
	if err := json.Unmarshal(eventJSON, &ev); err != nil {
		return Result{}, fmt.Errorf("event: %w", err)
	}
	if ev.Type == "" {
		return Result{}, fmt.Errorf("event: field \"type\" is required")
	}
	return s.Run(ctx, ev, c)
}

// RunAggregate runs the script's aggregate on the events of one window.
func (s *Script) RunAggregate(ctx context.Context, events []sdk.Event, c AggregateContext) (Result, error) {
	out, err := s.Aggregate(ctx, events, c)
	if err != nil {
		return Result{}, err
	}
	if len(out) == 0 {
		return Result{FilteredBy: "aggregate"}, nil
	}
	return Result{Kept: true, Events: out}, nil
}

// RunFileEvents compiles the script at path and runs it on several events
// given as a JSON array; it backs `hookbus script run FILE --event
// events.json` with an array. A script with aggregate gets them as one
// window (c supplies its ctx; zero members take the defaults of a test
// case's); a script without runs filter and transform on each event, and
// the results are in order (aggregated tells which it was).
func RunFileEvents(ctx context.Context, path string, eventsJSON []byte, c CaseContext, opts Options) (results []Result, aggregated bool, err error) {
	s, err := Compile(path, opts)
	if err != nil {
		return nil, false, err
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(eventsJSON, &raws); err != nil {
		return nil, false, fmt.Errorf("events: %w", err)
	}
	events, err := decodeEvents(raws)
	if err != nil {
		return nil, false, err
	}
	if s.HasAggregate() {
		r, err := s.RunAggregate(ctx, events, c.aggregateContext(events))
		if err != nil {
			return nil, true, err
		}
		return []Result{r}, true, nil
	}
	out := make([]Result, 0, len(events))
	for _, ev := range events {
		r, err := s.Run(ctx, ev, c.context())
		if err != nil {
			return nil, false, fmt.Errorf("event %q: %w", ev.ID, err)
		}
		out = append(out, r)
	}
	return out, false, nil
}

// decodeEvents decodes events given as JSON; each needs a type.
func decodeEvents(raws []json.RawMessage) ([]sdk.Event, error) {
	events := make([]sdk.Event, len(raws))
	for i, raw := range raws {
		if err := json.Unmarshal(raw, &events[i]); err != nil {
			return nil, fmt.Errorf("events[%d]: %w", i, err)
		}
		if events[i].Type == "" {
			return nil, fmt.Errorf("events[%d]: field \"type\" is required", i)
		}
	}
	return events, nil
}
