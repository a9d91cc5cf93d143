package sdk

import (
	"context"
	"encoding/json"
)

type nopSink struct{}

func (nopSink) Init(context.Context, json.RawMessage) (SinkInfo, error) { return SinkInfo{}, nil }
func (nopSink) Deliver(_ context.Context, b []Delivery) []Result        { return make([]Result, len(b)) }
func (nopSink) Close(context.Context) error                             { return nil }

type nopSource struct{}

func (nopSource) Init(context.Context, json.RawMessage) error { return nil }
func (nopSource) Run(ctx context.Context, _ Emitter) error    { <-ctx.Done(); return nil }
func (nopSource) Close(context.Context) error                 { return nil }
