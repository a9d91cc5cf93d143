package plugintest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
	// the file it tails). Leave it nil for a source that produces events
	// on its own (a ticker, a poller): the suite then waits for the events
	// the source emits by itself.
	Feed func(t testing.TB, n int)
}

// RunSource runs the conformance suite against sources made by newSource.
//
// It checks that the source emits events hookbus accepts (a type, within
// sdk.MaxBatchEvents and sdk.MaxEventBytes: the suite rejects other
// batches as hookbus does, and fails the test), that acked events are not
// offered again by the next source made with the same Config, and that a
// nacked batch is offered again. Events may leave their id empty (hookbus
// assigns one); the suite then says once that such events are not
// deduplicated, and tells events apart by their content.
func RunSource(t *testing.T, newSource func() sdk.Source, opts SourceOptions) {
	t.Helper()
	runSource(t, func(*testing.T) sdk.Source { return newSource() }, inProcess(sdk.KindSource, func() any { return newSource() }), opts)
}

// RunSourceBinary runs the conformance suite against the plugin binary at
// path, started through go-plugin as hookbus starts it. The batch limits
// are checked on the wire exactly as hookbus checks them.
func RunSourceBinary(t *testing.T, path string, opts SourceOptions) {
	t.Helper()
	runSource(t, func(t *testing.T) sdk.Source {
		s := startBinary(t, path).Source()
		s.OnRejected = func(_ int, err *sdk.RejectedError) { reportRejected(t, err) }
		return s
	}, overWire(sdk.KindSource, path), opts)
}

var (
	reportedMu sync.Mutex
	reported   = map[testing.TB]bool{}
)

// reportRejected fails t for a batch hookbus would reject, once per test
// (a source offers a rejected batch again, or drops events and offers the
// rest).
func reportRejected(t testing.TB, err *sdk.RejectedError) {
	reportedMu.Lock()
	first := !reported[t]
	if first {
		reported[t] = true
		t.Cleanup(func() {
			reportedMu.Lock()
			delete(reported, t)
			reportedMu.Unlock()
		})
	}
	reportedMu.Unlock()
	if first {
		t.Errorf("the source emitted a batch hookbus rejects: %v", err)
	}
}

// recorder is an Emitter that checks batches as hookbus does, records
// them and nacks on demand.
type recorder struct {
	t       testing.TB
	mu      sync.Mutex
	batches [][]sdk.Event
	nack    int // how many next batches to nack
	acked   []sdk.Event
	// rejected is set once a batch failed sdk.CheckBatch.
	rejected bool
	changed  chan struct{}
}

func newRecorder(t testing.TB, nack int) *recorder {
	return &recorder{t: t, nack: nack, changed: make(chan struct{}, 1)}
}

func (r *recorder) Emit(_ context.Context, events []sdk.Event) error {
	if len(events) == 0 {
		return nil
	}
	if err := sdk.CheckBatch(events); err != nil {
		var re *sdk.RejectedError
		if errors.As(err, &re) {
			reportRejected(r.t, re)
		}
		r.mu.Lock()
		r.rejected = true
		r.mu.Unlock()
		return err
	}
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

// waitFor waits until cond holds for the acked events and returns them.
func (r *recorder) waitFor(t testing.TB, what string, cond func(acked []sdk.Event) bool) []sdk.Event {
	t.Helper()
	deadline := time.After(Timeout)
	for {
		r.mu.Lock()
		acked := append([]sdk.Event(nil), r.acked...)
		rejected := r.rejected
		r.mu.Unlock()
		reportedMu.Lock()
		rejected = rejected || reported[r.t] // on the wire, by a binary's host side
		reportedMu.Unlock()
		if cond(acked) {
			return acked
		}
		if rejected {
			t.Fatalf("stopped waiting for %s: hookbus would reject the source's batches", what)
		}
		select {
		case <-r.changed:
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			t.Fatalf("source emitted %d acked events; timed out waiting for %s", len(acked), what)
		}
	}
}

func (r *recorder) waitAcked(t testing.TB, n int) []sdk.Event {
	t.Helper()
	return r.waitFor(t, fmt.Sprintf("%d acked events", n), func(acked []sdk.Event) bool { return len(acked) >= n })
}

// eventKey tells events apart: by id, or by content for an event without
// one (hookbus would give it a fresh id).
func eventKey(e sdk.Event) string {
	if e.ID != "" {
		return "id " + e.ID
	}
	b, err := json.Marshal(e)
	if err != nil {
		return "unencodable " + err.Error()
	}
	return "content " + string(b)
}

func describe(e sdk.Event) string {
	if e.ID != "" {
		return e.ID
	}
	b, _ := json.Marshal(e)
	return "without id " + string(b)
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

func runSource(t *testing.T, newSource func(*testing.T) sdk.Source, c checker, opts SourceOptions) {
	runConfigChecks(t, c, opts.Config, opts.BadConfig)
	feed := opts.Feed
	if feed == nil {
		feed = func(testing.TB, int) {} // the source produces events on its own
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
	// distinct is false when one run acked two events with the same key:
	// then a repeat does not prove a redelivery.
	distinct := true
	// The checks share the source's state, so they run in order.
	ok := t.Run("EmitsAndAcks", func(t *testing.T) {
		s := newSource(t)
		if err := s.Init(ctxFor(t), opts.Config); err != nil {
			t.Fatalf("Init(Config): %v", err)
		}
		rec := newRecorder(t, 0)
		r := start(t, s, rec)
		feed(t, 3)
		acked := rec.waitAcked(t, 3)
		r.stop(t, s)
		noID := 0
		for _, e := range acked {
			if e.ID == "" {
				noID++
			}
			k := eventKey(e)
			if seen[k] {
				distinct = false
			}
			seen[k] = true
		}
		if noID > 0 {
			t.Logf("note: %d of %d events have no id. hookbus gives each a fresh one, which it never deduplicates: "+
				"an event offered again (after a crash, or an Emit that got no answer) is delivered again. "+
				"Give events an id derived from what they are, such as an offset (see sdk.Source).", noID, len(acked))
		}
		if !distinct {
			t.Logf("note: the source acked events that cannot be told apart (same id, or no id and the same content); " +
				"the redelivery checks below skip them")
		}
	})
	if !ok {
		return
	}
	ok = t.Run("AckedNotRedelivered", func(t *testing.T) {
		s := newSource(t)
		if err := s.Init(ctxFor(t), opts.Config); err != nil {
			t.Fatalf("Init(Config): %v", err)
		}
		rec := newRecorder(t, 0)
		r := start(t, s, rec)
		feed(t, 1)
		got := rec.waitAcked(t, 1)
		r.stop(t, s)
		for _, e := range got {
			k := eventKey(e)
			if seen[k] && distinct {
				t.Errorf("event %s was acked before and offered again after a restart", describe(e))
			}
			seen[k] = true
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
		rec := newRecorder(t, 1)
		r := start(t, s, rec)
		feed(t, 2)
		var first []sdk.Event
		rec.waitFor(t, "the nacked batch to be offered again", func(acked []sdk.Event) bool {
			rec.mu.Lock()
			if len(rec.batches) > 0 {
				first = rec.batches[0]
			}
			rec.mu.Unlock()
			if first == nil {
				return false
			}
			ackedKeys := map[string]bool{}
			for _, e := range acked {
				ackedKeys[eventKey(e)] = true
			}
			for _, e := range first {
				if !ackedKeys[eventKey(e)] {
					return false
				}
			}
			return true
		})
		r.stop(t, s)
		for _, e := range first {
			if seen[eventKey(e)] && distinct {
				t.Errorf("nacked batch holds event %s acked earlier", describe(e))
			}
		}
	})
}
