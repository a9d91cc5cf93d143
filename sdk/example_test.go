package sdk_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"

	"github.com/hookbus/hookbus/sdk"
)

// LogSink is a complete sink plugin: it writes every event to a file as
// one line "<id> <type>". Copy it into package main of your own module.
type LogSink struct {
	mu sync.Mutex
	f  *os.File
}

type logSinkConfig struct {
	Path string `json:"path"`
}

// Describe publishes the config schema, so `hookbus validate` checks the
// config block before the plugin starts.
func (s *LogSink) Describe() sdk.Manifest {
	return sdk.Manifest{
		Name:         "logsink",
		Version:      "0.1.0",
		ConfigSchema: json.RawMessage(`{"type": "object", "required": ["path"], "properties": {"path": {"type": "string"}}}`),
	}
}

// Init opens the file named by the config.
func (s *LogSink) Init(_ context.Context, raw json.RawMessage) (sdk.SinkInfo, error) {
	var c logSinkConfig
	if err := json.Unmarshal(raw, &c); err != nil {
		return sdk.SinkInfo{}, &sdk.ConfigError{Message: err.Error()}
	}
	if c.Path == "" {
		return sdk.SinkInfo{}, &sdk.ConfigError{Field: "path", Message: "required"}
	}
	f, err := os.OpenFile(c.Path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return sdk.SinkInfo{}, &sdk.ConfigError{Field: "path", Message: err.Error()}
	}
	s.f = f
	return sdk.SinkInfo{MaxInFlight: 64}, nil
}

// Deliver answers once per delivery, in order: ok, or retry when the write
// failed or ctx is done (hookbus owns the retry schedule).
func (s *LogSink) Deliver(ctx context.Context, batch []sdk.Delivery) []sdk.Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]sdk.Result, len(batch))
	for i, d := range batch {
		if err := ctx.Err(); err != nil {
			out[i] = sdk.Result{Outcome: sdk.Retry, Reason: err.Error()}
			continue
		}
		if d.Event.Type == "" {
			out[i] = sdk.Result{Outcome: sdk.Permanent, Reason: "event has no type"}
			continue
		}
		if _, err := fmt.Fprintf(s.f, "%s %s\n", d.Event.ID, d.Event.Type); err != nil {
			out[i] = sdk.Result{Outcome: sdk.Retry, Reason: err.Error()}
			continue
		}
		out[i] = sdk.Result{Outcome: sdk.OK}
	}
	return out
}

// Close closes the file.
func (s *LogSink) Close(context.Context) error {
	if s.f == nil {
		return nil
	}
	return s.f.Close()
}

// A plugin's main calls sdk.Serve and nothing else; hookbus starts the
// binary and talks to it over gRPC. (This example is compiled, not run:
// Serve only works when hookbus starts the process.)
func ExampleServe() {
	s := &LogSink{}
	sdk.Serve(sdk.ServeOptions{Sink: s, Manifest: s.Describe()})
}
