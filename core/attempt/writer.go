package attempt

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// WriterOptions configure a Writer.
type WriterOptions struct {
	// Buffer bounds the entries waiting to be written (default 65536).
	// When it is full, new entries are dropped and counted.
	Buffer int
	// Batch is the most entries per transaction (default 512).
	Batch int
	// Linger is how long a batch waits for more entries after its first
	// (default 5ms).
	Linger time.Duration
	// RetryDelay is the wait after a failed write before the batch is
	// tried again (default 1s, doubling up to 30s).
	RetryDelay time.Duration
	Logger     *slog.Logger
	// OnDrop, when set, is called with the number of entries dropped
	// (a full buffer, an invalid entry, an entry recorded after Close, or
	// Close's ctx ending before they could be written).
	OnDrop func(n int)
	// OnWrite, when set, is called with the size of each batch written.
	OnWrite func(n int)
}

// Writer is a Recorder that writes entries to a Store in batches, off the
// caller's path: Record never blocks. While the store is unreachable,
// entries wait in the buffer (and the failed batch is tried again); when
// the buffer is full, further entries are dropped, counted (Dropped) and
// logged at most once every 10 seconds — deliveries go on.
//
// An entry the store could never keep (Entry.Validate fails) is dropped by
// Record, counted and logged, so that it cannot hold the log up. Entries
// are written as given: the caller does not change an entry (its headers,
// body or event) after Record.
type Writer struct {
	store   Store
	opts    WriterOptions
	ch      chan Entry
	dropped atomic.Int64
	written atomic.Int64
	done    chan struct{}

	// mu orders Record's sends before Close: once closed is set no entry
	// enters ch, so what Close drains is all there is.
	mu     sync.RWMutex
	closed bool
	// stop is closed by Close; closeCtx, set before, bounds the writes
	// made from then on.
	stop     chan struct{}
	closeCtx context.Context

	lastDropLog   atomic.Int64 // unix nanoseconds
	loggedDrops   atomic.Int64
	lastRejectLog atomic.Int64
}

// NewWriter starts a Writer to s.
func NewWriter(s Store, opts WriterOptions) *Writer {
	if opts.Buffer <= 0 {
		opts.Buffer = 65536
	}
	if opts.Batch <= 0 {
		opts.Batch = 512
	}
	if opts.Linger <= 0 {
		opts.Linger = 5 * time.Millisecond
	}
	if opts.RetryDelay <= 0 {
		opts.RetryDelay = time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	w := &Writer{store: s, opts: opts, ch: make(chan Entry, opts.Buffer), stop: make(chan struct{}), done: make(chan struct{})}
	go w.run()
	return w
}

// Record queues e to be written, or drops it (counted) when the buffer is
// full, when e is invalid or after Close.
func (w *Writer) Record(e Entry) {
	if err := e.Validate(); err != nil {
		w.reject(err)
		return
	}
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		w.drop(1)
		return
	}
	select {
	case w.ch <- e:
	default:
		w.drop(1)
	}
}

// Dropped is how many entries were dropped so far.
func (w *Writer) Dropped() int64 { return w.dropped.Load() }

// Written is how many entries were written so far.
func (w *Writer) Written() int64 { return w.written.Load() }

// Pending is how many entries wait in the buffer.
func (w *Writer) Pending() int { return len(w.ch) }

func (w *Writer) count(n int) int64 {
	total := w.dropped.Add(int64(n))
	if w.opts.OnDrop != nil {
		w.opts.OnDrop(n)
	}
	return total
}

func (w *Writer) drop(n int) {
	if n == 0 {
		return
	}
	total := w.count(n)
	now := time.Now().UnixNano()
	last := w.lastDropLog.Load()
	if now-last >= int64(10*time.Second) && w.lastDropLog.CompareAndSwap(last, now) {
		since := total - w.loggedDrops.Swap(total)
		w.opts.Logger.Warn("delivery log buffer full: attempts dropped from the log (deliveries go on)", "dropped", since, "dropped_total", total, "buffer", w.opts.Buffer)
	}
}

// reject drops an invalid entry, logging why at most once every 10 seconds.
func (w *Writer) reject(err error) {
	total := w.count(1)
	now := time.Now().UnixNano()
	last := w.lastRejectLog.Load()
	if now-last >= int64(10*time.Second) && w.lastRejectLog.CompareAndSwap(last, now) {
		w.opts.Logger.Error("delivery log: an invalid attempt was dropped from the log", "error", err, "dropped_total", total)
	}
}

// Close stops taking entries (later ones are dropped and counted), writes
// what is buffered within ctx, and stops the Writer. When ctx ends first,
// the entries still unwritten are dropped and counted, and Close returns
// an error wrapping ctx's. Close returns once the Writer has stopped;
// calling it again waits for that too.
func (w *Writer) Close(ctx context.Context) error {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		w.closeCtx = ctx
		close(w.stop)
	}
	w.mu.Unlock()
	before := w.Dropped()
	<-w.done
	if err := ctx.Err(); err != nil {
		if n := w.Dropped() - before; n > 0 {
			return fmt.Errorf("delivery log: %d attempts dropped at close: %w", n, err)
		}
	}
	return nil
}

// stopping tells whether Close was called (closeCtx is then set).
func (w *Writer) stopping() bool {
	select {
	case <-w.stop:
		return true
	default:
		return false
	}
}

func (w *Writer) run() {
	defer close(w.done)
	batch := make([]Entry, 0, w.opts.Batch)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		batch = batch[:0]
		select {
		case e := <-w.ch:
			batch = append(batch, e)
		case <-w.stop:
			w.drain(batch)
			return
		}
		timer.Reset(w.opts.Linger)
	fill:
		for len(batch) < w.opts.Batch {
			select {
			case e := <-w.ch:
				batch = append(batch, e)
			case <-timer.C:
				break fill
			case <-w.stop:
				break fill
			}
		}
		timer.Stop()
		if !w.write(batch) {
			w.dropBuffered()
			return
		}
	}
}

// write writes batch, trying again after failures (RetryDelay, doubling up
// to 30s) until it is written (true) or, once Close was called, its ctx
// ends (false: the batch is dropped and counted).
func (w *Writer) write(batch []Entry) bool {
	delay := w.opts.RetryDelay
	for {
		base := context.Background()
		stopping := w.stopping()
		if stopping {
			base = w.closeCtx
		}
		ctx, cancel := context.WithTimeout(base, 30*time.Second)
		err := w.store.WriteAttempts(ctx, batch)
		cancel()
		if err == nil {
			w.written.Add(int64(len(batch)))
			if w.opts.OnWrite != nil {
				w.opts.OnWrite(len(batch))
			}
			return true
		}
		if stopping && w.closeCtx.Err() != nil {
			w.opts.Logger.Error("delivery log write failed at close; attempts dropped", "attempts", len(batch), "error", err)
			w.drop(len(batch))
			return false
		}
		w.opts.Logger.Error("delivery log write failed; will try again", "attempts", len(batch), "waiting", len(w.ch), "retry_in", delay, "error", err)
		stop, closing := w.stop, (<-chan struct{})(nil)
		if stopping {
			stop, closing = nil, w.closeCtx.Done()
		}
		t := time.NewTimer(delay)
		select {
		case <-t.C:
			delay = min(2*delay, 30*time.Second)
		case <-stop:
			// Close: try again now, then within its ctx.
		case <-closing:
		}
		t.Stop()
	}
}

// drain writes what the buffer holds at stop, batch by batch; when a
// write fails for good (Close's ctx ended) the rest is dropped.
func (w *Writer) drain(batch []Entry) {
	for {
		for len(batch) < w.opts.Batch {
			select {
			case e := <-w.ch:
				batch = append(batch, e)
				continue
			default:
			}
			break
		}
		if len(batch) == 0 {
			return
		}
		if !w.write(batch) {
			w.dropBuffered()
			return
		}
		batch = batch[:0]
	}
}

// dropBuffered empties the buffer, counting what it held as dropped.
func (w *Writer) dropBuffered() {
	n := 0
	for {
		select {
		case <-w.ch:
			n++
			continue
		default:
		}
		break
	}
	w.drop(n)
}
