package plugintest

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"

	"github.com/hookbus/hookbus/sdk"
)

// SinkOptions configure RunSink.
type SinkOptions struct {
	// Config is a valid `config` block; Init must accept it.
	Config json.RawMessage
	// BadConfig, when set, is a `config` block Init must reject.
	BadConfig json.RawMessage
	// Cases are deliveries with the outcomes the sink must give them. When
	// empty the suite sends a batch of three events and checks only the
	// shape of the answer.
	Cases []SinkCase
	// Check, when set, is called after the cases ran (the sink is still
	// open), e.g. to check what reached the sink's target.
	Check func(t *testing.T)
}

// SinkCase is one batch and its expected outcomes.
type SinkCase struct {
	Name       string
	Deliveries []sdk.Delivery
	// Want has one outcome per delivery; nil means any outcome.
	Want []sdk.Outcome
}

// RunSink runs the conformance suite against sinks made by newSink (a fresh
// one for each check).
func RunSink(t *testing.T, newSink func() sdk.Sink, opts SinkOptions) {
	t.Helper()
	runSink(t, func(*testing.T) sdk.Sink { return newSink() }, inProcess(sdk.KindSink, func() any { return newSink() }), opts)
}

// RunSinkBinary runs the conformance suite against the plugin binary at
// path, started through go-plugin exactly as hookbus starts it (a fresh
// process for each check).
func RunSinkBinary(t *testing.T, path string, opts SinkOptions) {
	t.Helper()
	runSink(t, func(t *testing.T) sdk.Sink { return startBinary(t, path).Sink() }, overWire(sdk.KindSink, path), opts)
}

// SampleEvents returns n distinct events for tests.
func SampleEvents(n int) []sdk.Delivery {
	out := make([]sdk.Delivery, n)
	for i := range out {
		out[i] = sdk.Delivery{
			Event: sdk.Event{
				ID:         fmt.Sprintf("evt-%d", i),
				Type:       "plugintest.sample",
				Source:     "plugintest",
				Data:       json.RawMessage(fmt.Sprintf(`{"n":%d}`, i)),
				Metadata:   map[string]string{"k": "v"},
				Extensions: map[string]json.RawMessage{"traceparent": json.RawMessage(`"00-abc"`)},
			},
			Attempt:  1,
			Pipeline: "plugintest",
		}
	}
	return out
}

func runSink(t *testing.T, newSink func(*testing.T) sdk.Sink, c checker, opts SinkOptions) {
	runConfigChecks(t, c, opts.Config, opts.BadConfig)
	if opts.BadConfig != nil {
		t.Run("RejectsBadConfig", func(t *testing.T) {
			s := newSink(t)
			if _, err := s.Init(ctxFor(t), opts.BadConfig); err == nil {
				_ = s.Close(ctxFor(t))
				t.Fatalf("Init accepted BadConfig %s", opts.BadConfig)
			} else if err.Error() == "" {
				t.Fatal("Init rejected BadConfig with an empty message")
			}
		})
	}
	t.Run("Deliver", func(t *testing.T) {
		s := newSink(t)
		ctx := ctxFor(t)
		info, err := s.Init(ctx, opts.Config)
		if err != nil {
			t.Fatalf("Init(Config): %v", err)
		}
		if info.MaxInFlight < 0 {
			t.Fatalf("MaxInFlight = %d, want >= 0", info.MaxInFlight)
		}
		cases := opts.Cases
		if len(cases) == 0 {
			cases = []SinkCase{{Name: "sample", Deliveries: SampleEvents(3)}}
		}
		for _, c := range cases {
			got := s.Deliver(ctx, c.Deliveries)
			if len(got) != len(c.Deliveries) {
				t.Fatalf("case %s: %d results for %d deliveries", c.Name, len(got), len(c.Deliveries))
			}
			for i, want := range c.Want {
				if got[i].Outcome != want {
					t.Errorf("case %s: delivery %d (%s): outcome %v (%s), want %v", c.Name, i, c.Deliveries[i].Event.ID, got[i].Outcome, got[i].Reason, want)
				}
				if got[i].Outcome != sdk.OK && got[i].Reason == "" {
					t.Errorf("case %s: delivery %d: outcome %v without a reason", c.Name, i, got[i].Outcome)
				}
			}
		}
		if got := s.Deliver(ctx, nil); len(got) != 0 {
			t.Errorf("empty batch: %d results, want 0", len(got))
		}
		// Deliver must be safe to call concurrently.
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				batch := SampleEvents(4)
				for i := range batch {
					batch[i].Event.ID = fmt.Sprintf("concurrent-%d-%d", g, i)
				}
				if got := s.Deliver(ctx, batch); len(got) != len(batch) {
					t.Errorf("concurrent Deliver: %d results for %d deliveries", len(got), len(batch))
				}
			}()
		}
		wg.Wait()
		// A cancelled context still gets one result per delivery, each a
		// Retry: nothing may count as delivered (or given up on) once
		// hookbus stopped waiting for the answer.
		got := s.Deliver(ctxCancelled(), SampleEvents(2))
		if len(got) != 2 {
			t.Errorf("cancelled Deliver: %d results for 2 deliveries", len(got))
		}
		for i, r := range got {
			if r.Outcome != sdk.Retry {
				t.Errorf("Deliver on a cancelled context: delivery %d: outcome %v, want retry "+
					"(when ctx is done, unfinished deliveries are reported as Retry; hookbus records an ok as delivered and never sends it again)", i, r.Outcome)
			}
		}
		if opts.Check != nil {
			opts.Check(t)
		}
		if err := s.Close(ctx); err != nil {
			t.Fatalf("Close: %v", err)
		}
	})
	t.Run("CloseWithoutDeliver", func(t *testing.T) {
		s := newSink(t)
		if _, err := s.Init(ctxFor(t), opts.Config); err != nil {
			t.Fatalf("Init(Config): %v", err)
		}
		if err := s.Close(ctxFor(t)); err != nil {
			t.Fatalf("Close: %v", err)
		}
	})
}
