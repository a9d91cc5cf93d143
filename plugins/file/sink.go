// Package file holds hookbus' file plugins: a source that tails a JSON-lines
// file and a sink that appends events to one. Both are served out of process
// by the binaries under cmd/ and are the reference examples for plugin
// authors.
package file

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/hookbus/hookbus/sdk"
)

// SinkConfig is the `config` block of a file sink.
type SinkConfig struct {
	// Path is the file events are appended to, one JSON envelope per line.
	// It is created when missing.
	Path string `json:"path"`
	// MaxLineBytes rejects (permanently) events whose line would be longer.
	// Zero means 1 MiB.
	MaxLineBytes int `json:"max_line_bytes,omitempty"`
	// Fsync syncs the file after every batch before answering ok.
	Fsync bool `json:"fsync,omitempty"`
}

const sinkSchema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "additionalProperties": false,
  "required": ["path"],
  "properties": {
    "path": {"type": "string", "minLength": 1, "description": "file the events are appended to"},
    "max_line_bytes": {"type": "integer", "minimum": 0},
    "fsync": {"type": "boolean"}
  }
}`

// Sink appends delivered events to a file as JSON lines.
type Sink struct {
	mu  sync.Mutex
	cfg SinkConfig
	f   *os.File
}

// Describe returns the sink's manifest.
func (s *Sink) Describe() sdk.Manifest {
	return sdk.Manifest{Name: "file", Kinds: []string{sdk.KindSink}, ConfigSchema: json.RawMessage(sinkSchema), Version: "1.0.0"}
}

// ValidateConfig checks a configuration without opening the file.
func (s *Sink) ValidateConfig(config json.RawMessage) error {
	_, err := parseSinkConfig(config)
	return err
}

func parseSinkConfig(config json.RawMessage) (SinkConfig, error) {
	var c SinkConfig
	errs := decodeConfig(config, &c)
	if c.Path == "" {
		errs = append(errs, &sdk.ConfigError{Field: "path", Message: "file sink needs a path"})
	}
	if c.MaxLineBytes < 0 {
		errs = append(errs, &sdk.ConfigError{Field: "max_line_bytes", Message: "must not be negative"})
	}
	if c.MaxLineBytes == 0 {
		c.MaxLineBytes = 1 << 20
	}
	return c, errors.Join(errs...)
}

// Init opens (or creates) the file.
func (s *Sink) Init(_ context.Context, config json.RawMessage) (sdk.SinkInfo, error) {
	c, err := parseSinkConfig(config)
	if err != nil {
		return sdk.SinkInfo{}, err
	}
	f, err := os.OpenFile(c.Path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return sdk.SinkInfo{}, &sdk.ConfigError{Field: "path", Message: err.Error()}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f != nil {
		_ = s.f.Close()
	}
	s.cfg, s.f = c, f
	return sdk.SinkInfo{MaxInFlight: 256}, nil
}

// Deliver appends the batch in one write: ok for every written event,
// permanent for events over max_line_bytes, retry when the write fails.
func (s *Sink) Deliver(ctx context.Context, batch []sdk.Delivery) []sdk.Result {
	out := make([]sdk.Result, len(batch))
	var buf bytes.Buffer
	written := make([]int, 0, len(batch))
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		for i := range out {
			out[i] = sdk.Result{Outcome: sdk.Retry, Reason: "file sink is not initialised"}
		}
		return out
	}
	for i, d := range batch {
		line, err := json.Marshal(d.Event)
		switch {
		case err != nil:
			out[i] = sdk.Result{Outcome: sdk.Permanent, Reason: "encode event: " + err.Error()}
		case len(line) > s.cfg.MaxLineBytes:
			out[i] = sdk.Result{Outcome: sdk.Permanent, Reason: fmt.Sprintf("event is %d bytes, more than max_line_bytes %d", len(line), s.cfg.MaxLineBytes)}
		default:
			buf.Write(line)
			buf.WriteByte('\n')
			written = append(written, i)
		}
	}
	if ctx.Err() != nil {
		for _, i := range written {
			out[i] = sdk.Result{Outcome: sdk.Retry, Reason: ctx.Err().Error()}
		}
		return out
	}
	_, err := s.f.Write(buf.Bytes())
	if err == nil && s.cfg.Fsync {
		err = s.f.Sync()
	}
	for _, i := range written {
		if err != nil {
			out[i] = sdk.Result{Outcome: sdk.Retry, Reason: "write " + s.cfg.Path + ": " + err.Error()}
		} else {
			out[i] = sdk.Result{Outcome: sdk.OK}
		}
	}
	return out
}

// Close closes the file.
func (s *Sink) Close(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	return err
}

var (
	_ sdk.Sink            = (*Sink)(nil)
	_ sdk.Describer       = (*Sink)(nil)
	_ sdk.ConfigValidator = (*Sink)(nil)
)
