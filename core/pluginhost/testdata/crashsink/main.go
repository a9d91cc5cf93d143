// Command crashsink is a misbehaving sink plugin for pluginhost's tests: it
// exits every crash_every events, hangs on events of type hang_type and
// can write noise to stdout before the handshake. While the file named by
// hang_init_while exists, it hangs in ValidateConfig and Init (a stuck
// plugin); once the file is gone, a restarted process initialises.
// max_in_flight is the window it declares in Init (default 16). When
// concurrency_file is set, it writes there the most deliveries it had at
// once; each call then waits up to hold_ms for another call to overlap
// it, so a delivery handed out while another is in progress is seen.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/hookbus/hookbus/sdk"
)

type config struct {
	CrashEvery int    `json:"crash_every"`
	HangOnType string `json:"hang_on_type"`
	HangInit   string `json:"hang_init_while"`
	CrashInit  string `json:"crash_init_while"`

	MaxInFlight     int    `json:"max_in_flight"`
	ConcurrencyFile string `json:"concurrency_file"`
	HoldMS          int    `json:"hold_ms"`
}

type sink struct {
	mu    sync.Mutex
	cfg   config
	count int

	// The overlap counter of concurrency_file, under mu.
	inFlight int
	peak     int
	started  chan struct{} // closed and replaced when a call starts
}

func (s *sink) ValidateConfig(raw json.RawMessage) error {
	var c config
	if err := json.Unmarshal(raw, &c); err != nil {
		return &sdk.ConfigError{Message: "crashsink: " + err.Error()}
	}
	if c.MaxInFlight < 0 {
		return &sdk.ConfigError{Field: "max_in_flight", Message: fmt.Sprintf("crashsink wants max_in_flight >= 0, got %d", c.MaxInFlight)}
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
	s.started = make(chan struct{})
	if s.cfg.MaxInFlight == 0 {
		return sdk.SinkInfo{MaxInFlight: 16}, nil
	}
	return sdk.SinkInfo{MaxInFlight: s.cfg.MaxInFlight}, nil
}

func (s *sink) Deliver(ctx context.Context, batch []sdk.Delivery) []sdk.Result {
	s.mu.Lock()
	file, hold := s.cfg.ConcurrencyFile, time.Duration(s.cfg.HoldMS)*time.Millisecond
	s.mu.Unlock()
	if file != "" {
		defer s.overlap(file, hold, len(batch))()
	}
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

// overlap counts n deliveries in progress, records a new peak in file
// (written whole, then renamed, so a reader never sees half of it) and
// waits up to hold for another call to start while this one is alone.
// The returned func ends the deliveries.
func (s *sink) overlap(file string, hold time.Duration, n int) func() {
	s.mu.Lock()
	s.inFlight += n
	if s.inFlight > s.peak {
		s.peak = s.inFlight
		tmp := file + ".tmp"
		if err := os.WriteFile(tmp, []byte(strconv.Itoa(s.peak)), 0o644); err == nil {
			_ = os.Rename(tmp, file)
		}
	}
	alone := s.inFlight == 1
	close(s.started)
	s.started = make(chan struct{})
	next := s.started
	s.mu.Unlock()
	if alone {
		t := time.NewTimer(hold)
		select {
		case <-next:
		case <-t.C:
		}
		t.Stop()
	}
	return func() {
		s.mu.Lock()
		s.inFlight -= n
		s.mu.Unlock()
	}
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
			ConfigSchema: json.RawMessage(`{"type": "object", "properties": {"crash_every": {"type": "integer"}, "hang_on_type": {"type": "string"}, "hang_init_while": {"type": "string"}, "crash_init_while": {"type": "string"}, "max_in_flight": {"type": "integer"}, "concurrency_file": {"type": "string"}, "hold_ms": {"type": "integer"}}, "additionalProperties": false}`),
		},
	})
}
