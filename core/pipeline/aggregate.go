package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/hookbus/hookbus/core/aggregate"
	"github.com/hookbus/hookbus/core/deadletter"
	"github.com/hookbus/hookbus/core/envelope"
	"github.com/hookbus/hookbus/core/queue"
	"github.com/hookbus/hookbus/core/script"
	"github.com/hookbus/hookbus/sdk"
)

// The aggregate step. A pipeline with one runs its steps before it per
// event and per sink, as any pipeline does; the events that come out are
// added to the window of their (pipeline, sink, key) in Options.Windows,
// durably, before the source message is acked. Nothing goes to the sink
// then. A closer (one goroutine per engine) claims the windows that are
// due, makes each one's output (the step's Aggregator, or
// aggregate.Batch), runs the steps after the aggregate step on it, queues
// the result on the sink's topic, and only then deletes the window. A
// crash anywhere in between closes the window again, into the same ids.

// Aggregator makes a closed window's output: an event, several, or none
// (the window's events are then filtered). Errors are a script's: a
// script.ErrTimeout or script.ErrMemory closes the window again later (up
// to Options.MaxScriptTimeouts times), any other dead-letters the window's
// events with the error as reason.
type Aggregator interface {
	// Name names it in logs and reasons (the script path).
	Name() string
	Aggregate(ctx context.Context, events []sdk.Event, w aggregate.Window) ([]sdk.Event, error)
}

// AggregateStep is a pipeline's aggregate step. A pipeline has at most
// one. It is a Step only to sit in Pipeline.Steps: the engine runs it
// itself (Run is never called).
type AggregateStep struct {
	Spec aggregate.Spec
	// Path is Spec.Key parsed.
	Path aggregate.Path
	// Script, when set, makes each window's output; nil: aggregate.Batch.
	Script Aggregator
}

// Name is the step's name in logs: its script, or "aggregate".
func (a *AggregateStep) Name() string {
	if a.Script != nil {
		return a.Script.Name()
	}
	return "aggregate"
}

// Run is not how an aggregate step runs (see AggregateStep).
func (a *AggregateStep) Run(context.Context, sdk.Event, StepContext) ([]sdk.Event, error) {
	return nil, errors.New("the aggregate step runs through the engine's windows")
}

var _ Step = (*AggregateStep)(nil)

// aggregateAt returns the pipeline's aggregate step and its index (-1:
// none).
func aggregateAt(steps []Step) (*AggregateStep, int) {
	for i, st := range steps {
		if a, ok := st.(*AggregateStep); ok {
			return a, i
		}
	}
	return nil, -1
}

// checkAggregate refuses a pipeline with more than one aggregate step, or
// with one when the engine has no window store.
func (e *Engine) checkAggregate(p Pipeline) error {
	n := 0
	for _, st := range p.Steps {
		if _, ok := st.(*AggregateStep); ok {
			n++
		}
	}
	switch {
	case n > 1:
		return fmt.Errorf("pipeline %q: %d aggregate steps; a pipeline has at most one", p.Name, n)
	case n == 1 && e.windows == nil:
		return fmt.Errorf("pipeline %q: an aggregate step needs a window store (Options.Windows)", p.Name)
	}
	return nil
}

// errInWindow is runForSink's answer for an event that went into its
// window (or was dead-lettered on the way): it has an outcome, and
// nothing is queued for the sink now.
var errInWindow = errors.New("held in an aggregate window")

// errWindowStore is a failure of the window store: the source message is
// handed back to run again (what was added is not added twice).
var errWindowStore = errors.New("aggregate window store")

// Defaults of the closer.
const (
	// windowLease is how long a claimed window is its closer's; a closer
	// that died leaves it to be claimed again after that.
	windowLease = 30 * time.Second
	// closerMaxSleep bounds the closer's sleep: another instance may
	// open windows that are due sooner.
	closerMaxSleep = time.Second
	// closerMinSleep keeps a busy store from being polled in a loop.
	closerMinSleep = 20 * time.Millisecond
	// claimBatch is how many windows one claim takes.
	claimBatch = 32
	// closeParallel is how many windows are closed at once.
	closeParallel = 4
	// dedupSlack is how long after its window's length a source message
	// is remembered as added (see aggregate.Store).
	dedupSlack = time.Hour
)

// windowState is the engine's part of the aggregate step: the add
// batcher and the closer.
type windowState struct {
	owner string
	adds  addBatcher
	kick  chan struct{}
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once
}

func (e *Engine) newWindowState() *windowState {
	return &windowState{
		owner: fmt.Sprintf("%s-%08x", watermill.NewShortUUID(), rand.Uint32()),
		adds:  addBatcher{store: e.opts.Windows},
		kick:  make(chan struct{}, 1),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
}

// kickCloser wakes the closer (a window filled up).
func (w *windowState) kickCloser() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// addToWindows runs the steps before p's aggregate step (at index i) on
// ev for one sink and adds what comes out to its windows. It returns
// errInWindow when the events are in their windows (or dead-lettered),
// nil with no events when the steps filtered the event, the steps' error,
// or an errWindowStore error.
func (e *Engine) addToWindows(ctx context.Context, p Pipeline, agg *AggregateStep, i int, src string, msg *message.Message, ev sdk.Event, sc StepContext) error {
	if e.windows == nil {
		return fmt.Errorf("%w: pipeline %q has an aggregate step but the engine has no window store", errWindowStore, p.Name)
	}
	pre := p
	pre.Steps = p.Steps[:i]
	events, err := e.runSteps(ctx, pre, ev, sc)
	if err != nil || len(events) == 0 {
		return err
	}
	received, _ := strconv.ParseInt(msg.Metadata.Get(envelope.ReceivedAt), 10, 64)
	adds := make([]aggregate.Add, 0, len(events))
	for j, out := range events {
		key, err := agg.Path.Key(out)
		if err != nil {
			// Not a script's fault nor a passing one: the event cannot
			// have a window.
			if err := e.deadLetter(msg, out, p.Name, sc.Sink, deadletter.KindInvalid, fmt.Sprintf("aggregate key: %v", err), 0); err != nil {
				return err
			}
			continue
		}
		adds = append(adds, aggregate.Add{Pipeline: p.Name, Sink: sc.Sink, Key: key, Member: msg.UUID + "/" + strconv.Itoa(j),
			Event: out, Source: src, ReceivedAt: received, Spec: agg.Spec})
	}
	if len(adds) == 0 {
		return errInWindow
	}
	res, err := e.windows.adds.add(ctx, adds, agg.Spec.Window+dedupSlack)
	if err != nil {
		return fmt.Errorf("%w: %v", errWindowStore, err)
	}
	for _, r := range res {
		if r.Full {
			e.windows.kickCloser()
		}
		if r.Evicted > 0 {
			e.log.Info("aggregate: more open windows than max_keys; the oldest closes now", "pipeline", p.Name, "sink", sc.Sink, "max_keys", agg.Spec.MaxKeys)
		}
	}
	return errInWindow
}

// addBatcher gathers the adds of concurrent source messages into one
// store transaction (a group commit): on SQLite, one writer commits for
// all of them.
type addBatcher struct {
	store   aggregate.Store
	mu      sync.Mutex
	pending []*addReq
	running bool
}

type addReq struct {
	adds     []aggregate.Add
	dedupFor time.Duration
	res      []aggregate.Added
	err      error
	done     chan struct{}
}

// maxGroup bounds the adds of one transaction.
const maxGroup = 512

// add adds to the store and returns once the adds are committed (or
// failed). The first caller to find no commit running commits for
// everyone waiting, until none is.
func (b *addBatcher) add(ctx context.Context, adds []aggregate.Add, dedupFor time.Duration) ([]aggregate.Added, error) {
	req := &addReq{adds: adds, dedupFor: dedupFor, done: make(chan struct{})}
	b.mu.Lock()
	b.pending = append(b.pending, req)
	if b.running {
		b.mu.Unlock()
		<-req.done
		return req.res, req.err
	}
	b.running = true
	for len(b.pending) > 0 {
		n, size := 0, 0
		for n < len(b.pending) && (n == 0 || size+len(b.pending[n].adds) <= maxGroup) {
			size += len(b.pending[n].adds)
			n++
		}
		group := b.pending[:n:n]
		b.pending = b.pending[n:]
		b.mu.Unlock()
		b.commit(ctx, group)
		b.mu.Lock()
	}
	b.running = false
	b.mu.Unlock()
	<-req.done
	return req.res, req.err
}

// commit adds a group in one transaction; when that fails, each request
// alone, so one bad add fails only its own message.
func (b *addBatcher) commit(ctx context.Context, group []*addReq) {
	ctx = context.WithoutCancel(ctx)
	var all []aggregate.Add
	dedupFor := time.Duration(0)
	for _, r := range group {
		all = append(all, r.adds...)
		dedupFor = max(dedupFor, r.dedupFor)
	}
	res, err := b.store.AddToWindows(ctx, all, dedupFor)
	if err == nil {
		for _, r := range group {
			r.res, res = res[:len(r.adds)], res[len(r.adds):]
			close(r.done)
		}
		return
	}
	if len(group) == 1 {
		group[0].err = err
		close(group[0].done)
		return
	}
	for _, r := range group {
		r.res, r.err = b.store.AddToWindows(ctx, r.adds, r.dedupFor)
		close(r.done)
	}
}

// startCloser runs the closer until stopCloser.
func (e *Engine) startCloser(ctx context.Context) {
	w := e.windows
	if w == nil {
		return
	}
	go func() {
		defer close(w.done)
		ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		defer cancel()
		lastPrune := time.Time{}
		for {
			next := e.closeDue(ctx)
			if time.Since(lastPrune) > time.Minute {
				lastPrune = time.Now()
				if err := e.opts.Windows.PruneDedup(ctx, lastPrune); err != nil {
					e.log.Error("aggregate: prune the members seen", "error", err)
				}
			}
			sleep := min(max(time.Until(next), closerMinSleep), closerMaxSleep)
			t := time.NewTimer(sleep)
			select {
			case <-w.stop:
				t.Stop()
				return
			case <-w.kick:
			case <-t.C:
			}
			t.Stop()
		}
	}()
}

// stopCloser stops the closer and waits for the windows it is closing.
func (e *Engine) stopCloser() {
	w := e.windows
	if w == nil {
		return
	}
	w.once.Do(func() { close(w.stop) })
	if e.closerStarted.Load() {
		<-w.done
	}
}

// aggregatePipelines are the running pipelines: those with an aggregate
// step, and those that may have windows left from a version with one.
func (e *Engine) aggregatePipelines() []Pipeline {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]Pipeline, 0, len(e.pipes))
	for _, pr := range e.pipes {
		out = append(out, *pr.cur.Load())
	}
	return out
}

// closeDue closes the due windows of every running pipeline and returns
// when the next one is due. Windows of a pipeline that is not running
// wait for it (as its queue does).
func (e *Engine) closeDue(ctx context.Context) time.Time {
	next := time.Now().Add(closerMaxSleep)
	for _, p := range e.aggregatePipelines() {
		due, ok, err := e.opts.Windows.NextDue(ctx, p.Name)
		if err != nil {
			e.log.Error("aggregate: look for due windows; trying again", "pipeline", p.Name, "error", err)
			continue
		}
		if !ok {
			continue
		}
		if due.After(time.Now()) {
			next = minTime(next, due)
			continue
		}
		for {
			ws, err := e.opts.Windows.ClaimWindows(ctx, p.Name, e.windows.owner, time.Now(), windowLease, claimBatch)
			if err != nil {
				e.log.Error("aggregate: claim due windows; trying again", "pipeline", p.Name, "error", err)
				break
			}
			if len(ws) == 0 {
				break
			}
			sem := make(chan struct{}, closeParallel)
			var wg sync.WaitGroup
			for _, w := range ws {
				sem <- struct{}{}
				wg.Go(func() {
					defer func() { <-sem }()
					e.closeWindow(ctx, w)
				})
			}
			wg.Wait()
			if len(ws) < claimBatch {
				break
			}
		}
		if due, ok, err := e.opts.Windows.NextDue(ctx, p.Name); err == nil && ok {
			next = minTime(next, due)
		}
	}
	return next
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// currentPipeline is the running version of a pipeline (ok false: gone).
func (e *Engine) currentPipeline(name string) (Pipeline, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	pr, ok := e.pipes[name]
	if !ok {
		return Pipeline{}, false
	}
	return *pr.cur.Load(), true
}

// closeWindow closes one claimed window: its output through the steps
// after the aggregate step onto the sink's topic, then the window is
// deleted. A window that cannot be closed now is left leased (it is
// claimed again when the lease runs out) or released for later.
func (e *Engine) closeWindow(ctx context.Context, w aggregate.Window) {
	log := e.log.With("pipeline", w.Pipeline, "sink", w.Sink, "window", w.ID, "key", w.Key)
	members, err := e.opts.Windows.WindowEvents(ctx, w.ID)
	if err != nil {
		log.Error("aggregate: read the window's events; it closes again later", "error", err)
		return
	}
	if len(members) == 0 {
		// Every event of it was added in a transaction that failed.
		if err := e.opts.Windows.DeleteWindow(ctx, w.ID); err != nil {
			log.Error("aggregate: delete an empty window", "error", err)
		}
		return
	}
	p, ok := e.currentPipeline(w.Pipeline)
	if !ok {
		// Removed since the claim: the window waits for the pipeline
		// (claimed again once it runs and the lease ran out).
		log.Info("aggregate: the window's pipeline was removed; it waits for it")
		return
	}
	agg, i := aggregateAt(p.Steps)
	if agg == nil {
		e.windowFailed(ctx, log, w, members, fmt.Errorf("pipeline %q no longer has an aggregate step; replay to run the pipeline as it is now", w.Pipeline), deadletter.KindScript)
		return
	}
	events := make([]sdk.Event, len(members))
	for j, m := range members {
		events[j] = m.Event
	}
	out, err := e.windowOutput(ctx, p, agg, i, w, events)
	if err != nil {
		if (errors.Is(err, script.ErrTimeout) || errors.Is(err, script.ErrMemory)) && w.Attempts+1 < e.opts.MaxScriptTimeouts {
			retry := time.Now().Add(e.opts.ScriptTimeoutBackoff << w.Attempts)
			log.Warn("aggregate: a script timed out closing the window; it closes again later", "error", err, "retry_at", retry)
			if err := e.opts.Windows.ReleaseWindow(ctx, w.ID, e.windows.owner, retry); err != nil {
				log.Error("aggregate: release the window", "error", err)
			}
			return
		}
		kind := deadletter.KindScript
		var perr *panicError
		if errors.As(err, &perr) && !perr.inStep {
			kind = deadletter.KindPanic
		}
		e.windowFailed(ctx, log, w, members, err, kind)
		return
	}
	if len(out) == 0 {
		e.m.Filtered.WithLabelValues(w.Pipeline, w.Sink).Add(float64(len(members)))
		log.Info("aggregate: the window closed into nothing; its events are filtered", "events", len(members),
			"reason", agg.Name()+" returned nothing for the window")
	} else if err := e.publishWindow(w, members, out); err != nil {
		log.Error("aggregate: queue the window's output; it closes again later", "error", err)
		return
	}
	if err := e.opts.Windows.DeleteWindow(ctx, w.ID); err != nil {
		// Closed again after the lease: the same ids, deduplicated.
		log.Error("aggregate: delete the closed window", "error", err)
	}
}

// windowOutput makes a window's output and runs the steps after the
// aggregate step on it, turning a panic into a *panicError.
func (e *Engine) windowOutput(ctx context.Context, p Pipeline, agg *AggregateStep, i int, w aggregate.Window, events []sdk.Event) (out []sdk.Event, err error) {
	defer func() {
		if v := recover(); v != nil {
			e.log.Error("aggregate: closing a window panicked", "pipeline", p.Name, "window", w.ID, "panic", v)
			out, err = nil, &panicError{value: v}
		}
	}()
	if agg.Script != nil {
		start := time.Now()
		out, err = agg.Script.Aggregate(ctx, events, w)
		e.m.ScriptTime.WithLabelValues(agg.Name()).Observe(time.Since(start).Seconds())
		if err != nil {
			e.m.ScriptErrors.WithLabelValues(agg.Name()).Inc()
			return nil, err
		}
	} else {
		b, err := aggregate.Batch(w, events)
		if err != nil {
			return nil, err
		}
		out = []sdk.Event{b}
	}
	post := p
	post.Steps = p.Steps[i+1:]
	if len(post.Steps) == 0 {
		return out, nil
	}
	sc := StepContext{Pipeline: p.Name, Sink: w.Sink, Attempt: 1}
	var res []sdk.Event
	for _, ev := range out {
		r, err := e.runSteps(ctx, post, ev, sc)
		if err != nil {
			return nil, err
		}
		res = append(res, r...)
	}
	return res, nil
}

// publishWindow queues a window's output on its sink's topic, with ids
// that are the same on every close of the window.
func (e *Engine) publishWindow(w aggregate.Window, members []aggregate.Member, out []sdk.Event) error {
	received := members[0].ReceivedAt
	for _, m := range members {
		if m.ReceivedAt > 0 && (received <= 0 || m.ReceivedAt < received) {
			received = m.ReceivedAt
		}
	}
	msgs := make([]*message.Message, 0, len(out))
	for j, ev := range out {
		b, err := ev.MarshalJSON()
		if err != nil {
			return fmt.Errorf("encode the output: %w", err)
		}
		om := message.NewMessage(watermill.NewULID(), b)
		om.Metadata.Set(envelope.ReceivedAt, strconv.FormatInt(received, 10))
		om.Metadata.Set(envelope.Source, members[0].Source)
		om.Metadata.Set(envelope.Pipeline, w.Pipeline)
		om.Metadata.Set(envelope.Sink, w.Sink)
		om.Metadata.Set(queue.MetaDedupID, fmt.Sprintf("agg/%s/%d", w.ID, j))
		msgs = append(msgs, om)
	}
	return e.q.Publish(queue.SinkTopic(w.Sink), msgs...)
}

// windowFailed dead-letters every event of a window with err as reason,
// then deletes the window.
func (e *Engine) windowFailed(ctx context.Context, log *slog.Logger, w aggregate.Window, members []aggregate.Member, err error, kind deadletter.Kind) {
	reason := fmt.Sprintf("aggregate window (key %q, %d events): %v", w.Key, len(members), err)
	msgs := make([]*message.Message, 0, len(members))
	for _, m := range members {
		// Named after the window and the event's place in it: a window
		// dead-lettered again after a crash repeats the same dedup ids.
		src := message.NewMessage(fmt.Sprintf("%s/%d", w.ID, m.Seq), nil)
		src.Metadata.Set(envelope.ReceivedAt, strconv.FormatInt(m.ReceivedAt, 10))
		src.Metadata.Set(envelope.Source, m.Source)
		msgs = append(msgs, deadLetterMessage(src, m.Event, w.Pipeline, w.Sink, kind, reason, 0))
	}
	if err := e.q.Publish(queue.DeadLetterTopic, msgs...); err != nil {
		log.Error("aggregate: dead-letter the window's events; it closes again later", "error", err)
		return
	}
	e.m.DeadLettered.WithLabelValues(w.Pipeline, w.Sink, string(kind)).Add(float64(len(members)))
	log.Warn("aggregate: the window's events are dead-lettered", "events", len(members), "kind", kind, "reason", reason)
	if err := e.opts.Windows.DeleteWindow(ctx, w.ID); err != nil {
		log.Error("aggregate: delete the dead-lettered window", "error", err)
	}
}
