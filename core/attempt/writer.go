package attempt

import (
	"context"
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
	// (a full buffer, or Close before they could be written).
	OnDrop func(n int)
	// OnWrite, when set, is called with the size of each batch written.
	OnWrite func(n int)
}

// Writer is a Recorder that writes entries to a Store in batches, off the
// caller's path: Record never blocks. While the store is unreachable,
// entries wait in the buffer (and the failed batch is tried again); when
// the buffer is full, further entries are dropped, counted (Dropped) and
// logged at most once every 10 seconds — deliveries go on.
type Writer struct {
	store   Store
	opts    WriterOptions
	ch      chan Entry
	dropped atomic.Int64
	written atomic.Int64
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once

	lastDropLog atomic.Int64 // unix nanoseconds
	loggedDrops atomic.Int64
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

// Record queues e to be written, or drops it when the buffer is full.
func (w *Writer) Record(e Entry) {
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

func (w *Writer) drop(n int) {
	total := w.dropped.Add(int64(n))
	if w.opts.OnDrop != nil {
		w.opts.OnDrop(n)
	}
	now := time.Now().UnixNano()
	last := w.lastDropLog.Load()
	if now-last >= int64(10*time.Second) && w.lastDropLog.CompareAndSwap(last, now) {
		since := total - w.loggedDrops.Swap(total)
		w.opts.Logger.Warn("delivery log buffer full: attempts dropped from the log (deliveries go on)", "dropped", since, "dropped_total", total, "buffer", w.opts.Buffer)
	}
}

// Close writes what is buffered (within ctx) and stops the Writer;
// entries still unwritten when ctx ends are dropped and counted.
func (w *Writer) Close(ctx context.Context) error {
	w.once.Do(func() { close(w.stop) })
	select {
	case <-w.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
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
		if !w.write(batch, false) {
			w.drain(nil)
			return
		}
	}
}

// write writes batch, trying again after failures until it is written
// (true) or the Writer is stopped and the batch could not be written
// (false: the batch is dropped).
func (w *Writer) write(batch []Entry, stopping bool) bool {
	delay := w.opts.RetryDelay
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := w.store.WriteAttempts(ctx, batch)
		cancel()
		if err == nil {
			w.written.Add(int64(len(batch)))
			if w.opts.OnWrite != nil {
				w.opts.OnWrite(len(batch))
			}
			return true
		}
		w.opts.Logger.Error("delivery log write failed; will try again", "attempts", len(batch), "waiting", len(w.ch), "error", err)
		if stopping {
			w.drop(len(batch))
			return false
		}
		select {
		case <-time.After(delay):
			delay = min(2*delay, 30*time.Second)
		case <-w.stop:
			if w.write(batch, true) {
				return true
			}
			return false
		}
	}
}

// drain writes what the buffer holds at stop, batch by batch; a failed
// write drops the rest.
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
		if !w.write(batch, true) {
			w.drop(len(w.ch))
			return
		}
		batch = batch[:0]
	}
}
