// Command emitsource is a source plugin for pluginhost's tests. It logs in
// every way a plugin can (sdk.Logger before and after Serve, the standard
// log package, plain writes to stderr), emits the one batch its config
// names and writes what Emit returned to a file.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os"
	"strings"

	"github.com/hookbus/hookbus/sdk"
)

type config struct {
	// Out is the file the outcome is written to.
	Out string `json:"out"`
	// Batch is "ok", "mixed" (a valid event, one without type, a valid
	// one), "toomany" (sdk.MaxBatchEvents+1 events) or "toobig" (one event
	// over sdk.MaxEventBytes).
	Batch string `json:"batch"`
}

// Outcome is what the source wrote to Out.
type Outcome struct {
	Error      string          `json:"error"`
	Rejected   bool            `json:"rejected"`
	NotQueued  bool            `json:"not_queued"`
	Rejections []sdk.Rejection `json:"rejections"`
	// Remaining is how many events RejectedError.Remaining kept, and
	// Then what emitting those returned ("" for nil).
	Remaining int    `json:"remaining"`
	Then      string `json:"then"`
}

type source struct{ cfg config }

func (s *source) Init(_ context.Context, raw json.RawMessage) error {
	if err := json.Unmarshal(raw, &s.cfg); err != nil {
		return &sdk.ConfigError{Message: err.Error()}
	}
	sdk.Logger().Info("slog info after serve", "batch", s.cfg.Batch)
	sdk.Logger().Warn("slog warning after serve")
	log.Printf("standard log line")
	fmt.Fprintln(os.Stderr, "plain stderr line after serve")
	return nil
}

func (s *source) events() []sdk.Event {
	switch s.cfg.Batch {
	case "mixed":
		return []sdk.Event{{ID: "a", Type: "t"}, {ID: "b"}, {ID: "c", Type: "t"}}
	case "toomany":
		out := make([]sdk.Event, sdk.MaxBatchEvents+1)
		for i := range out {
			out[i] = sdk.Event{ID: fmt.Sprint(i), Type: "t"}
		}
		return out
	case "toobig":
		data, _ := json.Marshal(strings.Repeat("x", sdk.MaxEventBytes))
		return []sdk.Event{{ID: "small", Type: "t"}, {ID: "big", Type: "t", Data: data}}
	}
	return []sdk.Event{{ID: "ok", Type: "t"}}
}

func (s *source) Run(ctx context.Context, emit sdk.Emitter) error {
	events := s.events()
	err := emit.Emit(ctx, events)
	var o Outcome
	if err != nil {
		o.Error = err.Error()
		o.Rejected = errors.Is(err, sdk.ErrRejected)
		o.NotQueued = errors.Is(err, sdk.ErrNotQueued)
		var re *sdk.RejectedError
		if errors.As(err, &re) {
			o.Rejections = re.Rejections
			rest := re.Remaining(events)
			o.Remaining = len(rest)
			if len(rest) > 0 {
				if err := emit.Emit(ctx, rest); err != nil {
					o.Then = err.Error()
				}
			}
		}
	}
	b, _ := json.Marshal(o)
	if err := os.WriteFile(s.cfg.Out+".tmp", b, 0o644); err != nil {
		return err
	}
	if err := os.Rename(s.cfg.Out+".tmp", s.cfg.Out); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}

func (s *source) Close(context.Context) error { return nil }

func main() {
	// A logger made before Serve, and a plain write before it.
	sdk.Logger().Info("slog info before serve")
	fmt.Fprintln(os.Stderr, "plain stderr line before serve")
	sdk.Serve(sdk.ServeOptions{Source: &source{}, Manifest: sdk.Manifest{Name: "emitsource"}})
}
