// Package fake is a small sink plugin for plugintest's own tests. Its Mode
// breaks one part of the plugin contract, so the tests can check that the
// suite catches it; the plugin binary (cmd/fakeplugin) reads the mode from
// the environment variable ModeEnv.
package fake

import (
	"context"
	"encoding/json"
	"strings"

	"github.com/hookbus/hookbus/sdk"
)

// ModeEnv names the environment variable cmd/fakeplugin reads its Mode from.
const ModeEnv = "PLUGINTEST_FAKE_MODE"

// Modes of Sink.
const (
	// Good keeps the whole contract.
	Good = "good"
	// OKOnCancel answers OK on a cancelled context.
	OKOnCancel = "ok-on-cancel"
	// BadSchema publishes a ConfigSchema that is not valid JSON Schema.
	BadSchema = "bad-schema"
	// SchemaRejectsConfig publishes a schema the good Config fails.
	SchemaRejectsConfig = "schema-rejects-config"
	// LaxValidate has a ValidateConfig that accepts what Init rejects.
	LaxValidate = "lax-validate"
	// StrictValidate has a ValidateConfig that rejects what Init accepts.
	StrictValidate = "strict-validate"
)

// Config is a config block Init accepts; BadConfig passes the schema but
// Init rejects it.
var (
	Config    = json.RawMessage(`{"url": "http://example.test"}`)
	BadConfig = json.RawMessage(`{"url": "ftp://example.test"}`)
)

// Sink is the fake sink.
type Sink struct {
	Mode string
}

// Describe publishes the schema of Mode.
func (s *Sink) Describe() sdk.Manifest {
	schema := `{"type": "object", "required": ["url"], "additionalProperties": false, "properties": {"url": {"type": "string", "minLength": 1}}}`
	switch s.Mode {
	case BadSchema:
		schema = `{"type": "object", "properties": {"url": {"type": "strin"}}}`
	case SchemaRejectsConfig:
		schema = `{"type": "object", "properties": {"url": {"type": "integer"}}}`
	}
	return sdk.Manifest{Name: "fake", Version: "0.0.1", ConfigSchema: json.RawMessage(schema)}
}

// ValidateConfig checks what Init checks, except in modes LaxValidate and
// StrictValidate.
func (s *Sink) ValidateConfig(config json.RawMessage) error {
	switch s.Mode {
	case LaxValidate:
		return nil
	case StrictValidate:
		return &sdk.ConfigError{Field: "url", Message: "no URL is good enough"}
	}
	return check(config)
}

func check(config json.RawMessage) error {
	var c struct {
		URL string `json:"url"`
	}
	if err := json.Unmarshal(config, &c); err != nil {
		return &sdk.ConfigError{Message: err.Error()}
	}
	if !strings.HasPrefix(c.URL, "http://") && !strings.HasPrefix(c.URL, "https://") {
		return &sdk.ConfigError{Field: "url", Message: "must be an http or https URL"}
	}
	return nil
}

// Init accepts Config and rejects BadConfig.
func (s *Sink) Init(_ context.Context, config json.RawMessage) (sdk.SinkInfo, error) {
	if err := check(config); err != nil {
		return sdk.SinkInfo{}, err
	}
	return sdk.SinkInfo{MaxInFlight: 8}, nil
}

// Deliver answers OK, or Retry once ctx is done (except in OKOnCancel).
func (s *Sink) Deliver(ctx context.Context, batch []sdk.Delivery) []sdk.Result {
	out := make([]sdk.Result, len(batch))
	for i := range out {
		if err := ctx.Err(); err != nil && s.Mode != OKOnCancel {
			out[i] = sdk.Result{Outcome: sdk.Retry, Reason: err.Error()}
		}
	}
	return out
}

// Close does nothing.
func (s *Sink) Close(context.Context) error { return nil }
