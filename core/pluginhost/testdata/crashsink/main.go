// Command crashsink is a misbehaving sink plugin for pluginhost's tests: it
// exits every crash_every events, hangs on events of type hang_type and
// can write noise to stdout before the handshake. While the file named by
// hang_init_while exists, it hangs in ValidateConfig and Init (a stuck
// plugin); once the file is gone, a restarted process initialises.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"

	"github.com/hookbus/hookbus/sdk"
)

type config struct {
	CrashEvery int    `json:"crash_every"`
	HangOnType string `json:"hang_on_type"`
	HangInit   string `json:"hang_init_while"`
	CrashInit  string `json:"crash_init_while"`
}

type sink struct {
	mu    sync.Mutex
	cfg   config
	count int
}

func (s *sink) ValidateConfig(raw json.RawMessage) error {
	var c config
	if err := json.Unmarshal(raw, &c); err != nil {
		return &sdk.ConfigError{Message: "crashsink: " + err.Error()}
	}
	if c.CrashEvery < 0 {
		return &sdk.ConfigError{Field: "crash_every", Message: fmt.Sprintf("crashsink wants crash_every >= 0, got %d", c.CrashEvery)}
	}
	if c.HangInit != "" {
		if _, err := os.Stat(c.HangInit); err == nil {
			select {} // stuck for good, ignoring the caller's deadline
		}
	}
	return nil
}

func (s *sink) Init(_ context.Context, raw json.RawMessage) (sdk.SinkInfo, error) {
	if err := s.ValidateConfig(raw); err != nil {
		return sdk.SinkInfo{}, err
	}
	var c config
	_ = json.Unmarshal(raw, &c)
	if c.CrashInit != "" {
		if _, err := os.Stat(c.CrashInit); err == nil {
			os.Exit(3)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_ = json.Unmarshal(raw, &s.cfg)
	return sdk.SinkInfo{MaxInFlight: 16}, nil
}

func (s *sink) Deliver(ctx context.Context, batch []sdk.Delivery) []sdk.Result {
	out := make([]sdk.Result, len(batch))
	for i, d := range batch {
		s.mu.Lock()
		cfg := s.cfg
		s.count++
		crash := cfg.CrashEvery > 0 && s.count%cfg.CrashEvery == 0
		s.mu.Unlock()
		if crash {
			os.Exit(7)
		}
		if cfg.HangOnType != "" && d.Event.Type == cfg.HangOnType {
			select {} // hang forever, ignoring ctx
		}
		out[i] = sdk.Result{Outcome: sdk.OK}
	}
	return out
}

func (s *sink) Close(context.Context) error { return nil }

func main() {
	if os.Getenv("CRASHSINK_NOISE") != "" {
		fmt.Println("hello from a chatty plugin")
	}
	sdk.Serve(sdk.ServeOptions{
		Sink: &sink{},
		Manifest: sdk.Manifest{
			Name: "crashsink",
			// The version reports what the process was started with, for
			// the host's environment tests.
			Version:      os.Getenv("CRASHSINK_VERSION") + "/gomaxprocs=" + strconv.Itoa(runtime.GOMAXPROCS(0)),
			ConfigSchema: json.RawMessage(`{"type": "object", "properties": {"crash_every": {"type": "integer"}, "hang_on_type": {"type": "string"}, "hang_init_while": {"type": "string"}, "crash_init_while": {"type": "string"}}, "additionalProperties": false}`),
		},
	})
}
