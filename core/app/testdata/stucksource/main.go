// Command stucksource is a source plugin for core/app's tests: while the
// file named by hang_init_while exists it hangs in ValidateConfig and Init
// (a stuck plugin); once initialised it emits one event, emit_id, and waits.
package main

import (
	"context"
	"encoding/json"
	"os"
	"sync"
	"time"

	"github.com/hookbus/hookbus/sdk"
)

type config struct {
	HangInit string `json:"hang_init_while"`
	EmitID   string `json:"emit_id"`
}

type source struct {
	mu  sync.Mutex
	cfg config
}

func (s *source) ValidateConfig(raw json.RawMessage) error {
	var c config
	if err := json.Unmarshal(raw, &c); err != nil {
		return &sdk.ConfigError{Message: "stucksource: " + err.Error()}
	}
	if c.HangInit != "" {
		if _, err := os.Stat(c.HangInit); err == nil {
			select {} // stuck for good, ignoring the caller's deadline
		}
	}
	return nil
}

func (s *source) Init(_ context.Context, raw json.RawMessage) error {
	if err := s.ValidateConfig(raw); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return json.Unmarshal(raw, &s.cfg)
}

func (s *source) Run(ctx context.Context, emit sdk.Emitter) error {
	s.mu.Lock()
	id := s.cfg.EmitID
	s.mu.Unlock()
	for id != "" && emit.Emit(ctx, []sdk.Event{{ID: id, Type: "src.tick"}}) != nil {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(100 * time.Millisecond):
		}
	}
	<-ctx.Done()
	return nil
}

func (s *source) Close(context.Context) error { return nil }

func main() {
	sdk.Serve(sdk.ServeOptions{
		Source: &source{},
		Manifest: sdk.Manifest{
			Name:         "stucksource",
			ConfigSchema: json.RawMessage(`{"type": "object", "properties": {"hang_init_while": {"type": "string"}, "emit_id": {"type": "string"}}, "additionalProperties": false}`),
		},
	})
}
