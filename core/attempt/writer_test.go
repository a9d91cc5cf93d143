package attempt_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/hookbus/hookbus/core/attempt"
	"github.com/hookbus/hookbus/core/store"
	"github.com/hookbus/hookbus/internal/testenv"
)

// openStore opens a real SQLite store in the test's directory.
func openStore(t *testing.T) *store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), "sqlite", "", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

var (
	entropyMu sync.Mutex
	entropy   = ulid.Monotonic(rand.Reader, 0)
)

func entry(i int) attempt.Entry {
	entropyMu.Lock()
	id := ulid.MustNew(ulid.Now(), entropy).String()
	entropyMu.Unlock()
	return attempt.Entry{Attempt: attempt.Attempt{ID: id, EventID: fmt.Sprintf("evt_%d", i), Sink: "partner", Number: 1,
		StartedAt: time.Now(), Duration: time.Millisecond, Outcome: attempt.Delivered, StatusCode: 200}}
}

// stored counts the attempts of sink partner in s.
func stored(t *testing.T, s *store.Store) int {
	t.Helper()
	n := 0
	f := attempt.Filter{Sink: "partner", Limit: store.MaxPageLimit}
	for {
		page, next, err := s.ListAttempts(context.Background(), f)
		if err != nil {
			t.Fatal(err)
		}
		n += len(page)
		if next == "" {
			return n
		}
		f.Cursor = next
	}
}

// gated is a store whose writes wait while the gate is shut.
type gated struct {
	attempt.Store
	mu   sync.Mutex
	open chan struct{}
	// waiting counts the writes that reached the gate.
	waiting atomic.Int64
}

func newGated(s attempt.Store) *gated { return &gated{Store: s, open: make(chan struct{})} }

func (g *gated) release() { close(g.open) }

func (g *gated) WriteAttempts(ctx context.Context, entries []attempt.Entry) error {
	g.waiting.Add(1)
	select {
	case <-g.open:
	case <-ctx.Done():
		return ctx.Err()
	}
	return g.Store.WriteAttempts(ctx, entries)
}

// flaky is the unreachable store: its writes fail until up is set, the
// first of them after writing the batch (a commit whose answer was lost).
type flaky struct {
	attempt.Store
	up       atomic.Bool
	failures atomic.Int64
}

func (f *flaky) WriteAttempts(ctx context.Context, entries []attempt.Entry) error {
	if f.up.Load() {
		return f.Store.WriteAttempts(ctx, entries)
	}
	if f.failures.Add(1) == 1 {
		if err := f.Store.WriteAttempts(ctx, entries); err != nil {
			return err
		}
	}
	return errors.New("connection refused")
}

func TestWriterWritesBatches(t *testing.T) {
	s := openStore(t)
	g := newGated(s)
	var mu sync.Mutex
	var sizes []int
	w := attempt.NewWriter(g, attempt.WriterOptions{Batch: 10, Linger: 20 * time.Millisecond, OnWrite: func(n int) {
		mu.Lock()
		sizes = append(sizes, n)
		mu.Unlock()
	}})
	defer w.Close(context.Background())
	w.Record(entry(0))
	testenv.Eventually(t, 10*time.Second, "the first batch at the store", func() bool { return g.waiting.Load() == 1 })
	// While the first batch waits, the rest queue up: they go in full batches.
	for i := 1; i < 95; i++ {
		w.Record(entry(i))
	}
	g.release()
	testenv.Eventually(t, 10*time.Second, "95 written", func() bool { return w.Written() == 95 })
	mu.Lock()
	defer mu.Unlock()
	if sizes[0] != 1 || len(sizes) != 11 {
		t.Fatalf("batches %v, want 1 then nine of 10 and one of 4", sizes)
	}
	for i, n := range sizes[1:10] {
		if n != 10 {
			t.Fatalf("batch %d of %d (batches %v)", i+1, n, sizes)
		}
	}
	if n := stored(t, s); n != 95 || w.Dropped() != 0 {
		t.Fatalf("%d stored, %d dropped", n, w.Dropped())
	}
}

func TestWriterDropsWhenFull(t *testing.T) {
	s := openStore(t)
	g := newGated(s)
	var onDrop atomic.Int64
	w := attempt.NewWriter(g, attempt.WriterOptions{Buffer: 8, Batch: 4, OnDrop: func(n int) { onDrop.Add(int64(n)) }})
	defer w.Close(context.Background())
	// Record never blocks, even with the store holding the first batch
	// and the buffer full: the loop ends while the store is still shut.
	recorded := make(chan struct{})
	go func() {
		defer close(recorded)
		for i := range 100 {
			w.Record(entry(i))
		}
	}()
	select {
	case <-recorded:
	case <-time.After(testenv.Timeout(30 * time.Second)):
		t.Fatal("Record blocked on a full buffer")
	}
	if w.Written() != 0 || w.Dropped() < 100-8-4 || w.Dropped() != onDrop.Load() || w.Pending() > 8 {
		t.Fatalf("written %d, dropped %d (OnDrop %d), pending %d", w.Written(), w.Dropped(), onDrop.Load(), w.Pending())
	}
	g.release()
	testenv.Eventually(t, 10*time.Second, "what was kept written", func() bool { return w.Written()+w.Dropped() == 100 })
	if n := stored(t, s); int64(n) != w.Written() || n < 8 {
		t.Fatalf("%d stored, %d written", n, w.Written())
	}
}

func TestWriterWaitsForTheStore(t *testing.T) {
	s := openStore(t)
	f := &flaky{Store: s}
	w := attempt.NewWriter(f, attempt.WriterOptions{Batch: 16, RetryDelay: 5 * time.Millisecond})
	defer w.Close(context.Background())
	for i := range 50 {
		w.Record(entry(i))
	}
	testenv.Eventually(t, 10*time.Second, "writes failing a while", func() bool { return f.failures.Load() >= 5 })
	if w.Written() != 0 || w.Dropped() != 0 {
		t.Fatalf("while down: written %d, dropped %d", w.Written(), w.Dropped())
	}
	f.up.Store(true)
	testenv.Eventually(t, 30*time.Second, "the entries written once the store is back", func() bool { return w.Written() == 50 })
	// The batch whose first write committed unseen was written again: it
	// is still there once, and counted once in the figures.
	if n := stored(t, s); n != 50 || w.Dropped() != 0 {
		t.Fatalf("%d stored, %d dropped", n, w.Dropped())
	}
	st, err := s.Stats(context.Background(), attempt.Scope{Sink: "partner"}, time.Hour)
	if err != nil || st.Attempts != 50 || st.Delivered != 50 {
		t.Fatalf("figures %+v, %v", st, err)
	}
}

func TestWriterCloseDrains(t *testing.T) {
	s := openStore(t)
	// A long linger: Close writes the batch being filled without waiting it out.
	w := attempt.NewWriter(s, attempt.WriterOptions{Linger: time.Hour})
	for i := range 30 {
		w.Record(entry(i))
	}
	ctx, cancel := context.WithTimeout(context.Background(), testenv.Timeout(30*time.Second))
	defer cancel()
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if w.Written() != 30 || w.Pending() != 0 || stored(t, s) != 30 {
		t.Fatalf("written %d, pending %d, stored %d", w.Written(), w.Pending(), stored(t, s))
	}
	// After Close an entry is dropped and counted, not left in the buffer.
	w.Record(entry(31))
	if w.Dropped() != 1 || w.Pending() != 0 {
		t.Fatalf("after close: dropped %d, pending %d", w.Dropped(), w.Pending())
	}
	if err := w.Close(ctx); err != nil {
		t.Fatalf("second close: %v", err)
	}
}

func TestWriterCloseGivesUpWithItsContext(t *testing.T) {
	s := openStore(t)
	f := &flaky{Store: s}
	f.failures.Store(1) // no write gets through
	var onDrop atomic.Int64
	w := attempt.NewWriter(f, attempt.WriterOptions{Batch: 4, RetryDelay: time.Millisecond, OnDrop: func(n int) { onDrop.Add(int64(n)) }})
	for i := range 20 {
		w.Record(entry(i))
	}
	testenv.Eventually(t, 10*time.Second, "a failed write", func() bool { return f.failures.Load() >= 3 })
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err := w.Close(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || w.Dropped() != 20 || onDrop.Load() != 20 || w.Written() != 0 || w.Pending() != 0 {
		t.Fatalf("Close = %v; dropped %d (OnDrop %d), written %d, pending %d", err, w.Dropped(), onDrop.Load(), w.Written(), w.Pending())
	}
}

func TestWriterDropsInvalidEntries(t *testing.T) {
	s := openStore(t)
	w := attempt.NewWriter(s, attempt.WriterOptions{})
	bad := entry(1)
	bad.Attempt.Outcome = "lost"
	w.Record(entry(0))
	w.Record(bad)
	w.Record(entry(2))
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if w.Written() != 2 || w.Dropped() != 1 || stored(t, s) != 2 {
		t.Fatalf("written %d, dropped %d, stored %d", w.Written(), w.Dropped(), stored(t, s))
	}
}
