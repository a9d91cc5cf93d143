package app

import (
	"context"

	"github.com/hookbus/hookbus/core/aggregate"
	"github.com/hookbus/hookbus/core/pipeline"
	"github.com/hookbus/hookbus/core/script"
	"github.com/hookbus/hookbus/sdk"
)

// filterStep runs a script's filter function.
type filterStep struct{ s *script.Script }

func (f filterStep) Name() string { return f.s.Name() }

func (f filterStep) Run(ctx context.Context, ev sdk.Event, sc pipeline.StepContext) ([]sdk.Event, error) {
	keep, err := f.s.Filter(ctx, ev, script.Context{Pipeline: sc.Pipeline, Sink: sc.Sink, Attempt: sc.Attempt})
	if err != nil || !keep {
		return nil, err
	}
	return []sdk.Event{ev}, nil
}

// transformStep runs a script's transform function.
type transformStep struct{ s *script.Script }

func (t transformStep) Name() string { return t.s.Name() }

func (t transformStep) Run(ctx context.Context, ev sdk.Event, sc pipeline.StepContext) ([]sdk.Event, error) {
	return t.s.Transform(ctx, ev, script.Context{Pipeline: sc.Pipeline, Sink: sc.Sink, Attempt: sc.Attempt})
}

// aggregateScript runs a script's aggregate function on a closed window.
type aggregateScript struct{ s *script.Script }

func (a aggregateScript) Name() string { return a.s.Name() }

func (a aggregateScript) Aggregate(ctx context.Context, events []sdk.Event, w aggregate.Window) ([]sdk.Event, error) {
	return a.s.Aggregate(ctx, events, script.AggregateContext{Pipeline: w.Pipeline, Sink: w.Sink, Key: w.Key,
		WindowStart: w.Start, WindowEnd: w.End, Count: len(events), OutputID: w.OutputID()})
}
