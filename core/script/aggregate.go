package script

import (
	"context"
	"fmt"
	"time"

	"github.com/dop251/goja"

	"github.com/hookbus/hookbus/sdk"
)

// AggregateContext is the ctx an aggregate(events, ctx) call sees: the
// window being closed.
type AggregateContext struct {
	// Pipeline and Sink are where the window's output goes.
	Pipeline, Sink string
	// Key is the window's key ("" for a step without one).
	Key string
	// WindowStart is when its first event was added; WindowEnd when it
	// closed (start + window, or earlier when it filled up).
	WindowStart, WindowEnd time.Time
	// Count is the number of events.
	Count int
	// OutputID is the id a returned event without one takes: the
	// window's derived id (an array's element i: OutputID + "-" + i).
	OutputID string
}

// Aggregate calls the script's aggregate(events, ctx) with the events of a
// closed window and returns what it made of them: one event for a
// returned object, several for an array, none (and a nil error) for null
// or undefined. events is an array of envelopes as filter and transform
// see them; ctx is {pipeline, sink, key, window_start, window_end (RFC
// 3339 strings), count}. The events going in are capped together by
// Options.MaxMemory, what comes out by Options.MaxPayload. Failures are
// *Error located at the script line; waiting for a free runtime ends with
// ctx's error.
func (s *Script) Aggregate(ctx context.Context, events []sdk.Event, c AggregateContext) ([]sdk.Event, error) {
	if !s.hasAggregate {
		return nil, &Error{File: s.name, Message: "defines no aggregate(events, ctx) function", Err: ErrNoFunction}
	}
	size := 0
	for _, ev := range events {
		size += eventSize(ev)
	}
	if int64(size) > s.opts.MaxMemory {
		return nil, &Error{File: s.name, Err: ErrPayloadTooLarge,
			Message: fmt.Sprintf("the window's %d events are about %d bytes, over the %d-byte scripts.max_memory", len(events), size, s.opts.MaxMemory)}
	}
	slot, err := s.acquire(ctx)
	if err != nil {
		return nil, err
	}
	var out []sdk.Event
	err = s.call(ctx, slot, sdk.Event{ID: c.OutputID}, s.aggregatePos, func() error {
		slot.aggregating = true
		vals := make([]any, len(events))
		for i, ev := range events {
			v, err := slot.eventValue(ev)
			if err != nil {
				return err
			}
			vals[i] = v
		}
		// Only the last event's data can pass through untouched (see
		// lazyData); the others are encoded again when returned.
		v, err := slot.aggregate(goja.Undefined(), slot.vm.NewArray(vals...), slot.aggregateCtxValue(c))
		if err != nil {
			return s.jsError(slot.vm, err, s.aggregatePos)
		}
		err = catch(slot.vm, func() (err error) {
			out, err = slot.events(v, c.OutputID)
			return err
		})
		if err != nil && !isScriptError(err) {
			return slot.resultError(err)
		}
		return err
	}, Context{Pipeline: c.Pipeline, Sink: c.Sink, Attempt: 1})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (slot *vmSlot) aggregateCtxValue(c AggregateContext) goja.Value {
	o := slot.vm.NewObject()
	_ = o.Set("pipeline", c.Pipeline)
	_ = o.Set("sink", c.Sink)
	_ = o.Set("key", c.Key)
	_ = o.Set("window_start", c.WindowStart.UTC().Format(time.RFC3339Nano))
	_ = o.Set("window_end", c.WindowEnd.UTC().Format(time.RFC3339Nano))
	_ = o.Set("count", c.Count)
	return o
}
