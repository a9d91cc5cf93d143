// Package pipeline builds hookbus' Watermill router from the configuration:
// sources publish to a topic per source, each pipeline runs its script steps
// once per target sink and queues the results on the sink's topic, and each
// sink consumes its topic and delivers. Every event ends in one recorded
// outcome per sink: delivered, filtered or dead-lettered.
package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/hookbus/hookbus/core/aggregate"
	"github.com/hookbus/hookbus/core/attempt"
	"github.com/hookbus/hookbus/core/circuit"
	"github.com/hookbus/hookbus/core/deadletter"
	"github.com/hookbus/hookbus/core/envelope"
	"github.com/hookbus/hookbus/core/metrics"
	"github.com/hookbus/hookbus/core/operational"
	"github.com/hookbus/hookbus/core/queue"
	"github.com/hookbus/hookbus/core/retry"
	"github.com/hookbus/hookbus/sdk"
)

// Message metadata keys the engine alone reads and writes; the keys other
// packages read too (pipeline, sink, source, dead-letter reason, ...) are
// in core/envelope.
const (
	// MetaRetryAttempt and MetaDueAt carry a retry through the retry topic
	// for drivers without delayed nacks.
	MetaRetryAttempt = "hookbus_retry_attempt"
	MetaDueAt        = "hookbus_due_at"
	// MetaCycledAt is when the retry pump last sent a not-yet-due retry
	// round its topic.
	MetaCycledAt = "hookbus_cycled_at"
	// MetaScriptTimeouts counts the times a pipeline's steps timed out for
	// an event (and sink), carried on the copy queued to try them again.
	MetaScriptTimeouts = "hookbus_script_timeouts"
)

// StepContext is what a step learns about where the event is going.
type StepContext struct {
	Pipeline string
	Sink     string
	Attempt  int
}

// Step is one filter or transform of a pipeline.
type Step interface {
	// Name identifies the step in logs and dead-letter reasons (the script path).
	Name() string
	// Run returns the events that continue (none: filtered) or an error,
	// which dead-letters the input event with the error as reason.
	Run(ctx context.Context, ev sdk.Event, sc StepContext) ([]sdk.Event, error)
}

// Pipeline routes the events of its sources through its steps to its sinks.
type Pipeline struct {
	Name  string
	From  []string
	Steps []Step
	To    []string
}

// Sink is a configured sink instance.
type Sink struct {
	Name        string
	Sink        sdk.Sink
	MaxInFlight int
	Schedule    retry.Schedule
	// Batch, when above 1, merges concurrent deliveries into Deliver calls
	// of up to this many events (worth it when a call has a fixed cost,
	// as with out-of-process plugins).
	Batch int
	// Ready, when not nil, holds the sink's consumer back until it is
	// closed: a sink that cannot take deliveries yet (a plugin still
	// initialising) leaves its events in the queue, with no delivery
	// attempt counted and no CPU spent, instead of failing them as retries.
	Ready <-chan struct{}
	// Resolve, with Ready, gives the sink and its window once Ready is
	// closed (a plugin answers both in Init, which may succeed long after
	// startup): the engine calls it then, before it consumes the sink's
	// queue, and delivers to the sink it returns; a zero window keeps
	// MaxInFlight. Sink is not used for such a sink.
	Resolve func() (sdk.Sink, int)
	// Circuit configures the sink's circuit breaker (see awaitCircuit);
	// the zero value turns it off. A fan-out sink has none (its targets
	// have their own).
	Circuit circuit.Settings
	// Ordering, when set, is the path of the sink's ordering key into the
	// event as the sink receives it (sinkopts.Ordering.Path): the events
	// with the same key are delivered one after the other, in the order
	// their source accepted them (see ordering.go). It needs a driver
	// that is a queue.Orderer, and a sink that is not a fan-out sink.
	Ordering []string
	// Fanout, when set, makes this a fan-out sink: each event goes to the
	// targets Fanout names, each (event, target) pair a delivery of its
	// own (see Fanout). MaxInFlight bounds the pairs handed out at once;
	// Sink is not delivered to; Ready and Batch do not apply.
	Fanout Fanout
}

// Options configure an Engine.
type Options struct {
	Queue       queue.Queue
	Pipelines   []Pipeline
	Sinks       map[string]Sink
	DeadLetters deadletter.Recorder // may be nil: dead letters are then only logged
	// Attempts, when set, is told of every delivery attempt of every sink
	// (the delivery log); nil: no attempt is recorded. Record must not
	// block (attempt.Writer does not).
	Attempts attempt.Recorder
	Metrics  *metrics.Metrics
	Logger   *slog.Logger
	// CloseTimeout bounds how long Close waits for in-flight work.
	CloseTimeout time.Duration
	// SourceConcurrency bounds unacked source messages per pipeline (default 256).
	SourceConcurrency int
	// MaxScriptTimeouts is how many times the steps of an event may time
	// out (script.ErrTimeout) or be interrupted by the heap watch
	// (script.ErrMemory) before it is dead-lettered (default 3): a timeout
	// on a machine starved of CPU, or a memory interrupt caused by another
	// call's allocations, is not a verdict on the script.
	MaxScriptTimeouts int
	// ScriptTimeoutBackoff is the wait before the first retry after a
	// timeout, doubling for each further one (default 1s).
	ScriptTimeoutBackoff time.Duration
	// Operational, when it names a source, is where the engine publishes
	// a delivery.exhausted event for each delivery dead-lettered after
	// its last attempt failed (see operational.DeliveryExhausted), and
	// marks the deliveries of that source's events as operational.Quiet.
	// May be nil.
	Operational *operational.Emitter
	// MaxDeliveries is how many deliveries in a row without an outcome a
	// message may have (queue.MetaDeliveries, on drivers that count them)
	// before it is dead-lettered as poison (default 10).
	MaxDeliveries int
	// Windows keeps the open windows of aggregate steps (see
	// AggregateStep); nil: a pipeline with an aggregate step is refused.
	Windows aggregate.Store
}

// Engine is the running router.
type Engine struct {
	opts    Options
	q       queue.Queue
	delayer queue.Delayer // nil when the driver nacks with a delay instead
	orderer queue.Orderer // nil when the driver cannot order (no ordered sinks)
	// retryDelivery hands a failed delivery back to be tried again after
	// a delay: retryByNack or retryByPublishAt, chosen once in New.
	retryDelivery func(sink string, d *sinkDelivery, delay time.Duration) error
	router        *message.Router
	log           *slog.Logger
	m             *metrics.Metrics
	runErr        chan error
	once          sync.Once

	// applyMu serialises changes (SetPipeline, SetSink and their removal).
	applyMu sync.Mutex
	// mu guards the maps, the router's handler set against Close, and the
	// fields below.
	mu          sync.Mutex
	deadLetters *consumer
	pipes       map[string]*pipeRunner
	sinks       map[string]*sinkRunner
	pendingLate []lateStart
	started     bool
	runCtx      context.Context
	closed      bool
	closing     chan struct{}
	gen         int

	// sources is the set of sources some pipeline reads, swapped whole.
	sources atomic.Pointer[map[string]bool]
	// keys maps each ordered sink to the path of its ordering key,
	// swapped whole: what pipelines read to route an output to its
	// partition.
	keys atomic.Pointer[map[string][]string]
	// deferred counts the deferrals of fan-out deliveries nacked back to
	// drivers with delayed nacks (see deferPair).
	deferred deferrals
	// heldBack counts the hand-backs of deliveries an open circuit held
	// (see holdBack), to take them off the attempt count.
	heldBack deferrals
	// circuitHold is how long an open circuit holds a delivery before
	// handing it back (the constant; tests shorten it).
	circuitHold time.Duration

	// windows is the aggregate steps' state (nil without Options.Windows);
	// closerStarted tells whether its closer runs.
	windows       *windowState
	closerStarted atomic.Bool
}

// sinkWindow is how many of s's messages its subscriber hands out at once.
func sinkWindow(s Sink) int {
	window := s.MaxInFlight
	if window <= 0 {
		window = 64
	}
	if p, ok := batchPolicy(s); ok {
		// The batches in calls and the next one filling: each
		// delivery waits in its batch, unacknowledged, until the batch's
		// request is answered.
		return (timedCalls(window) + 1) * p.MaxEvents
	}
	if s.Batch > 1 {
		// Keep the next batches queued while the sink works; the batcher
		// holds the deliveries in calls to s.MaxInFlight.
		window *= maxBatches
	}
	return window
}

// New builds the router with opts.Sinks and opts.Pipelines; more can be
// set, replaced and removed later, before or after Start. Nothing runs
// until Start.
func New(opts Options) (*Engine, error) {
	if opts.Queue == nil {
		return nil, errors.New("pipeline: no queue")
	}
	opts.setDefaults()
	e := &Engine{opts: opts, q: opts.Queue, log: opts.Logger, m: opts.Metrics, runErr: make(chan error, 1), closing: make(chan struct{}), circuitHold: circuitHold,
		pipes: map[string]*pipeRunner{}, sinks: map[string]*sinkRunner{}}
	e.sources.Store(&map[string]bool{})
	if opts.Windows != nil {
		e.windows = e.newWindowState()
	}
	// One retry strategy for the driver, chosen here: a copy due later
	// (PublishAt), which a Delayer keeps on disk, or else a nacked message
	// the broker holds back itself (in memory, on JetStream).
	e.delayer, _ = e.q.(queue.Delayer)
	e.orderer, _ = e.q.(queue.Orderer)
	e.keys.Store(&map[string][]string{})
	switch {
	case e.delayer != nil:
		e.retryDelivery = e.retryByPublishAt
	case e.q.Features().DelayedNack:
		e.retryDelivery = e.retryByNack
	default:
		return nil, errors.New("pipeline: the queue driver can neither nack with a delay nor publish for later (queue.Delayer): retries need one of them")
	}
	wlog := watermill.NewSlogLoggerWithLevelMapping(opts.Logger.With("component", "router"), map[slog.Level]slog.Level{slog.LevelInfo: slog.LevelDebug})
	r, err := message.NewRouter(message.RouterConfig{CloseTimeout: opts.CloseTimeout}, wlog)
	if err != nil {
		return nil, err
	}
	e.router = r
	r.AddMiddleware(e.recoverToDeadLetter)
	if err := e.addDeadLetterConsumer(); err != nil {
		return nil, err
	}
	ctx := context.Background()
	for _, name := range slices.Sorted(maps.Keys(opts.Sinks)) {
		s := opts.Sinks[name]
		if s.Name == "" {
			s.Name = name
		}
		if err := e.SetSink(ctx, s); err != nil {
			e.closeSubscribers()
			return nil, err
		}
	}
	for _, p := range opts.Pipelines {
		if err := e.SetPipeline(ctx, p); err != nil {
			e.closeSubscribers()
			return nil, err
		}
	}
	return e, nil
}

func (o *Options) setDefaults() {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Metrics == nil {
		o.Metrics = metrics.New()
	}
	if o.CloseTimeout == 0 {
		o.CloseTimeout = 30 * time.Second
	}
	if o.SourceConcurrency == 0 {
		o.SourceConcurrency = 256
	}
	if o.MaxScriptTimeouts <= 0 {
		o.MaxScriptTimeouts = 3
	}
	if o.MaxDeliveries <= 0 {
		o.MaxDeliveries = 10
	}
	if o.ScriptTimeoutBackoff <= 0 {
		o.ScriptTimeoutBackoff = time.Second
	}
}

// addDeadLetterConsumer adds the consumer that records dead letters. It
// runs for the engine's whole life (the router closes itself when its last
// handler stops).
func (e *Engine) addDeadLetterConsumer() error {
	sub, err := e.subscribe("dead-letters", queue.DeadLetterTopic, 16)
	if err != nil {
		return err
	}
	e.deadLetters = &consumer{handler: "dead-letters", topic: queue.DeadLetterTopic, sub: sub, f: e.deadLetterHandler}
	if err := e.q.Provision(context.Background(), []string{queue.DeadLetterTopic}); err != nil {
		return fmt.Errorf("provision queue: %w", err)
	}
	return nil
}

// closeSubscribers closes the subscribers the router was never given
// (it closes the others itself): all of them when New fails, those of an
// engine closed before Start.
func (e *Engine) closeSubscribers() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, c := range e.consumers() {
		if c.h == nil || !isClosed(c.h.Started()) {
			_ = c.sub.Close()
		}
	}
	for _, r := range e.sinks {
		if r.lateSub != nil {
			_ = r.lateSub.Close()
		}
		if r.parts == nil {
			for _, sub := range r.partSubs {
				_ = sub.Close()
			}
		}
	}
}

// Start runs the router in the background and returns once it is running.
func (e *Engine) Start(ctx context.Context) error {
	// No change while the router starts: a consumer added after the
	// router started its handlers, but before e.started is set, would
	// never run.
	e.applyMu.Lock()
	defer e.applyMu.Unlock()
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return errEngineClosed
	}
	e.runCtx = ctx
	for _, c := range e.consumers() {
		e.addHandler(c)
	}
	e.mu.Unlock()
	go func() { e.runErr <- e.router.Run(ctx) }()
	select {
	case <-e.router.Running():
		e.mu.Lock()
		e.started = true
		late := e.pendingLate
		e.pendingLate = nil
		e.mu.Unlock()
		for _, l := range late {
			go e.startWhenReady(l.ctx, l.r, l.s)
		}
		if e.windows != nil {
			e.closerStarted.Store(true)
			e.startCloser(ctx)
		}
		return nil
	case err := <-e.runErr:
		if err == nil {
			err = errors.New("router stopped")
		}
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops consuming and waits (up to CloseTimeout) for in-flight work.
func (e *Engine) Close() error {
	var err error
	e.once.Do(func() {
		e.mu.Lock()
		e.closed = true
		close(e.closing)
		e.mu.Unlock()
		// No window is closed once the queue may be going.
		e.stopCloser()
		err = e.router.Close()
		e.mu.Lock()
		runners := slices.Collect(maps.Values(e.sinks))
		e.mu.Unlock()
		for _, r := range runners {
			e.endLateWait(r)
			e.endRetire(r)
			r.mu.RLock()
			st := r.state
			r.mu.RUnlock()
			if st != nil && st.batcher != nil {
				st.batcher.close()
			}
		}
		// After the late sinks' goroutines are gone: they set lateSub.
		e.closeSubscribers()
	})
	return err
}

// HasSource tells whether any pipeline reads from the source.
func (e *Engine) HasSource(name string) bool { return (*e.sources.Load())[name] }

// Publish queues events of a source; it returns once the queue confirmed
// every event. It implements the HTTP source's Publisher. Every event's id
// is taken as its producer's: an idempotency key, remembered for the dedup
// window on drivers that deduplicate.
func (e *Engine) Publish(ctx context.Context, source string, events []sdk.Event) error {
	return e.PublishProducerIDs(ctx, source, events, nil)
}

// PublishProducerIDs is Publish told which events' ids came from their
// producer (producerID[i]; nil: all of them). An id hookbus generated is
// unique already and no producer will send it again, so it is not
// remembered: on the deduplicating drivers that saves a lookup and a write
// per event.
func (e *Engine) PublishProducerIDs(ctx context.Context, source string, events []sdk.Event, producerID []bool) error {
	now := strconv.FormatInt(time.Now().UnixNano(), 10)
	msgs := make([]*message.Message, len(events))
	for i, ev := range events {
		b, err := json.Marshal(ev)
		if err != nil {
			return fmt.Errorf("event %d: %w", i, err)
		}
		msg := message.NewMessage(watermill.NewULID(), b)
		msg.Metadata.Set(envelope.ReceivedAt, now)
		msg.Metadata.Set(envelope.Source, source)
		if producerID == nil || producerID[i] {
			msg.Metadata.Set(queue.MetaDedupID, source+"/"+ev.ID)
		}
		msg.SetContext(ctx)
		msgs[i] = msg
	}
	if err := e.q.Publish(queue.SourceTopic(source), msgs...); err != nil {
		return err
	}
	e.m.Received.WithLabelValues(source).Add(float64(len(events)))
	return nil
}

// logQueueError logs a queue publish that failed and that the handler
// tries again: a warning while the queue is unavailable for now (a
// cluster electing a stream leader, no server reachable), which is no
// failure of the event, an error otherwise. err is logged last.
func (e *Engine) logQueueError(msg string, err error, args ...any) {
	level := slog.LevelError
	if errors.Is(err, queue.ErrUnavailable) {
		level = slog.LevelWarn
	}
	e.log.Log(context.Background(), level, msg, append(args, "error", err)...)
}

// infraRetryDelay is how long a message waits after an infrastructure
// error (queue publish failed) before it is tried again.
const infraRetryDelay = time.Second

// recoverToDeadLetter turns a panic in a handler (a bug, in hookbus or in
// a sink) into a dead letter with the panic as reason, instead of a message
// that is redelivered and panics forever.
func (e *Engine) recoverToDeadLetter(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) (out []*message.Message, err error) {
		defer func() {
			if p := recover(); p != nil {
				e.log.Error("handler panicked; dead-lettering the message", "panic", p, "stack", string(debug.Stack()))
				var ev sdk.Event
				if ev.UnmarshalJSON(msg.Payload) != nil {
					ev = sdk.Event{ID: msg.UUID}
				}
				out, err = nil, e.deadLetter(msg, ev, msg.Metadata.Get(envelope.Pipeline), msg.Metadata.Get(envelope.Sink), deadletter.KindPanic,
					fmt.Sprintf("internal error: panic: %v", p), queue.Attempt(msg))
			}
		}()
		return h(msg)
	}
}

// nackLater hands the message back to the queue for redelivery after d.
// It nacks the message itself and returns nil, so the router does not log
// an expected retry as a handler error (its Ack after a Nack is a no-op).
// Callers log the reason themselves.
func nackLater(msg *message.Message, d time.Duration) error {
	msg.Metadata.Set(queue.MetaNackDelay, d.String())
	msg.Nack()
	return nil
}

// DrainRetryTopics moves the retries an older hookbus left on retry topics
// (one per sink, for drivers without delayed nacks) back to the sinks'
// topics, due when they were due, and removes the retry topics. Retries
// no longer go through them: each driver has delayed nacks or PublishAt.
// Call it once at startup, before stale consumer groups are looked for.
func (e *Engine) DrainRetryTopics(ctx context.Context, sinks []string) error {
	var errs []error
	for _, sink := range sinks {
		n, err := queue.DrainRetryTopic(ctx, e.q, sink, func(msg *message.Message) error {
			rm := requeueCopy(msg, queue.MetaAttempt, queue.MetaDeliveries, queue.MetaNackDelay, MetaDueAt, MetaCycledAt)
			due, _ := queue.MetaInt(msg, MetaDueAt)
			if e.delayer != nil {
				return e.delayer.PublishAt(queue.SinkTopic(sink), time.Unix(0, due), rm)
			}
			return e.q.Publish(queue.SinkTopic(sink), rm)
		})
		if errors.Is(err, queue.ErrCannotRetire) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if n > 0 {
			e.log.Info("moved retries left on an old retry topic back to the sink", "sink", sink, "retries", n)
		}
	}
	return errors.Join(errs...)
}

// deadLetter publishes the event with its reason to the dead-letter topic.
// The caller acks the original message when this returns nil.
func (e *Engine) deadLetter(msg *message.Message, ev sdk.Event, pipeline, sink string, kind deadletter.Kind, reason string, attempts int) error {
	dm := deadLetterMessage(msg, ev, pipeline, sink, kind, reason, attempts)
	if err := e.q.Publish(queue.DeadLetterTopic, dm); err != nil {
		e.logQueueError("dead-letter publish failed; will retry", err, "event_id", ev.ID)
		return nackLater(msg, infraRetryDelay)
	}
	e.m.DeadLettered.WithLabelValues(pipeline, sink, string(kind)).Inc()
	e.log.Warn("event dead-lettered", "pipeline", pipeline, "sink", sink, "event_id", ev.ID, "kind", kind, "reason", reason, "attempts", attempts)
	return nil
}

// deadLetterMessage is the dead-letter topic's message for ev, which came
// as msg: its reason, and msg's routing metadata.
func deadLetterMessage(msg *message.Message, ev sdk.Event, pipeline, sink string, kind deadletter.Kind, reason string, attempts int) *message.Message {
	b, err := json.Marshal(ev)
	if err != nil {
		b = msg.Payload
	}
	dm := message.NewMessage(watermill.NewULID(), b)
	dm.Metadata.Set(envelope.ReceivedAt, msg.Metadata.Get(envelope.ReceivedAt))
	dm.Metadata.Set(envelope.Pipeline, pipeline)
	dm.Metadata.Set(envelope.Sink, sink)
	dm.Metadata.Set(envelope.Source, msg.Metadata.Get(envelope.Source))
	// A fan-out sink's delivery names its target: replay goes back to it.
	for _, k := range []string{envelope.Application, envelope.Subscription} {
		if v := msg.Metadata.Get(k); v != "" {
			dm.Metadata.Set(k, v)
		}
	}
	dm.Metadata.Set(envelope.Reason, reason)
	dm.Metadata.Set(envelope.ReasonKind, string(kind))
	dm.Metadata.Set(envelope.Attempts, strconv.Itoa(attempts))
	dm.Metadata.Set(envelope.DeadAt, time.Now().UTC().Format(time.RFC3339Nano))
	dm.Metadata.Set(queue.MetaDedupID, fmt.Sprintf("dead/%s/%s/%s", pipeline, sink, msg.UUID))
	return dm
}

func (e *Engine) deadLetterHandler(msg *message.Message) error {
	if e.opts.DeadLetters == nil {
		return nil
	}
	dl, err := deadletter.Decode(msg)
	if err != nil {
		e.log.Error("undecodable dead letter kept in queue log only", "id", msg.UUID, "error", err)
		return nil
	}
	if err := e.opts.DeadLetters.RecordDeadLetter(msg.Context(), dl); err != nil {
		e.log.Error("recording dead letter failed; will retry", "id", msg.UUID, "error", err)
		return nackLater(msg, infraRetryDelay)
	}
	return nil
}

// Replay queues a dead-lettered event for its sink again, starting at
// attempt 1 (see deadletter.Replay).
func (e *Engine) Replay(ctx context.Context, dl deadletter.DeadLetter) error {
	return deadletter.Replay(ctx, e.q, dl)
}

// initialize creates a group's subscription in the broker before anything
// is published, so no message published before the router runs is missed.
func initialize(sub message.Subscriber, topic string) error {
	if si, ok := sub.(message.SubscribeInitializer); ok {
		if err := si.SubscribeInitialize(topic); err != nil {
			return fmt.Errorf("initialize subscription to %s: %w", topic, err)
		}
	}
	return nil
}
