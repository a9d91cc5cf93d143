package plugintest

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/hookbus/hookbus/sdk"
)

// SourceOptions configure RunSource.
type SourceOptions struct {
	// Config is a valid `config` block. Every source the suite makes gets
	// it, so state the source keeps (its committed offsets) carries over
	// from one check to the next, as across restarts of hookbus.
	Config json.RawMessage
	// BadConfig, when set, is a `config` block Init must reject.
	BadConfig json.RawMessage
	// Feed makes the source produce n more events (e.g. appends lines to
	// the file it tails). Required.
	Feed func(t testing.TB, n int)
}

// RunSource runs the conformance suite against sources made by newSource.
func RunSource(t *testing.T, newSource func() sdk.Source, opts SourceOptions) {
	t.Helper()
	runSource(t, func(*testing.T) sdk.Source { return newSource() }, opts)
}

// RunSourceBinary runs the conformance suite against the plugin binary at
// path, started through go-plugin as hookbus starts it.
func RunSourceBinary(t *testing.T, path string, opts SourceOptions) {
	t.Helper()
	runSource(t, func(t *testing.T) sdk.Source { return startBinary(t, path).Source() }, opts)
}

// recorder is an Emitter that records batches and nacks on demand.
type recorder struct {
	mu      sync.Mutex
	batches [][]sdk.Event
	nack    int // how many next batches to nack
	acked   []sdk.Event
	changed chan struct{}
}

func newRecorder(nack int) *recorder {
	return &recorder{nack: nack, changed: make(chan struct{}, 1)}
}

func (r *recorder) Emit(_ context.Context, events []sdk.Event) error {
	r.mu.Lock()
	defer func() {
		r.mu.Unlock()
		select {
		case r.changed <- struct{}{}:
		default:
		}
	}()
	r.batches = append(r.batches, events)
	if r.nack > 0 {
		r.nack--
		return errors.New("plugintest: nack")
	}
	r.acked = append(r.acked, events...)
	return nil
}

func (r *recorder) waitAcked(t testing.TB, n int) []sdk.Event {
	t.Helper()
	deadline := time.After(Timeout)
	for {
		r.mu.Lock()
		got := len(r.acked)
		r.mu.Unlock()
		if got >= n {
			r.mu.Lock()
			defer r.mu.Unlock()
			return append([]sdk.Event(nil), r.acked...)
		}
		select {
		case <-r.changed:
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			t.Fatalf("source emitted %d acked events, want %d", got, n)
		}
	}
}

// running is a source Run in the background.
type running struct {
	cancel context.CancelFunc
	done   chan error
}

func start(t *testing.T, s sdk.Source, em sdk.Emitter) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- s.Run(ctx, em) }()
	return r
}

func (r *running) stop(t *testing.T, s sdk.Source) {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("Run returned %v after its context was cancelled, want nil", err)
		}
	case <-time.After(Timeout):
		t.Fatal("Run did not return after its context was cancelled")
	}
	if err := s.Close(ctxFor(t)); err != nil {
		t.Errorf("Close: %v", err)
	}
}

func runSource(t *testing.T, newSource func(*testing.T) sdk.Source, opts SourceOptions) {
	if opts.Feed == nil {
		t.Fatal("plugintest: SourceOptions.Feed is required")
	}
	if opts.BadConfig != nil {
		t.Run("RejectsBadConfig", func(t *testing.T) {
			s := newSource(t)
			if err := s.Init(ctxFor(t), opts.BadConfig); err == nil {
				t.Fatalf("Init accepted BadConfig %s", opts.BadConfig)
			}
		})
	}
	seen := map[string]bool{}
	// The checks share the source's state, so they run in order.
	ok := t.Run("EmitsAndAcks", func(t *testing.T) {
		s := newSource(t)
		if err := s.Init(ctxFor(t), opts.Config); err != nil {
			t.Fatalf("Init(Config): %v", err)
		}
		rec := newRecorder(0)
		r := start(t, s, rec)
		opts.Feed(t, 3)
		for _, e := range rec.waitAcked(t, 3) {
			if e.ID == "" || e.Type == "" {
				t.Errorf("emitted event without id or type: %+v", e)
			}
			seen[e.ID] = true
		}
		r.stop(t, s)
	})
	if !ok {
		return
	}
	ok = t.Run("AckedNotRedelivered", func(t *testing.T) {
		s := newSource(t)
		if err := s.Init(ctxFor(t), opts.Config); err != nil {
			t.Fatalf("Init(Config): %v", err)
		}
		rec := newRecorder(0)
		r := start(t, s, rec)
		opts.Feed(t, 1)
		got := rec.waitAcked(t, 1)
		r.stop(t, s)
		for _, e := range got {
			if seen[e.ID] {
				t.Errorf("event %s was acked before and offered again after a restart", e.ID)
			}
			seen[e.ID] = true
		}
	})
	if !ok {
		return
	}
	t.Run("RedeliversAfterNack", func(t *testing.T) {
		s := newSource(t)
		if err := s.Init(ctxFor(t), opts.Config); err != nil {
			t.Fatalf("Init(Config): %v", err)
		}
		rec := newRecorder(1)
		r := start(t, s, rec)
		opts.Feed(t, 2)
		acked := rec.waitAcked(t, 2)
		r.stop(t, s)
		rec.mu.Lock()
		first := rec.batches[0]
		rec.mu.Unlock()
		ackedIDs := map[string]bool{}
		for _, e := range acked {
			ackedIDs[e.ID] = true
		}
		for _, e := range first {
			if !ackedIDs[e.ID] {
				t.Errorf("event %s of the nacked batch was not offered again", e.ID)
			}
			if seen[e.ID] {
				t.Errorf("nacked batch holds event %s acked earlier", e.ID)
			}
		}
	})
}
