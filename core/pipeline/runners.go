package pipeline

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hookbus/hookbus/core/batching"
	"github.com/hookbus/hookbus/core/circuit"
	"github.com/hookbus/hookbus/core/envelope"
	"github.com/hookbus/hookbus/core/queue"
	"github.com/hookbus/hookbus/sdk"
)

// The engine grows and shrinks while it runs: a pipeline or sink is one or
// more Watermill handlers (AddConsumerHandler + RunHandlers), stopped one
// by one (Handler.Stop) when it goes. Consumer groups are named after the
// pipeline or sink ("pipeline-<name>", "sink-<name>"), so a pipeline or sink
// that is replaced, or removed and added again, takes up its queue where
// the last one left it.

// consumer is one router handler and the subscriber it reads.
type consumer struct {
	handler string // the router's handler name, unique per consumer
	topic   string
	sub     message.Subscriber
	f       message.NoPublishHandlerFunc // the handler function, wrapped
	h       *message.Handler             // nil until the router has it

	// The handler function's calls, counted, so stop can wait for the
	// last one: the router's Stopped tells only that no more messages are
	// handed out.
	mu       sync.Mutex
	active   int
	stopping bool
	idle     chan struct{} // closed when stopping and active reaches 0
}

// wrap counts the calls of f. A call that starts after stop began (the
// router hands out messages from goroutines that may run late) hands its
// message back untouched: it is redelivered to the group, not handled by a
// consumer on its way out.
func (c *consumer) wrap(f message.NoPublishHandlerFunc) message.NoPublishHandlerFunc {
	return func(msg *message.Message) error {
		c.mu.Lock()
		if c.stopping {
			c.mu.Unlock()
			return nackLater(msg, 0)
		}
		c.active++
		c.mu.Unlock()
		defer func() {
			c.mu.Lock()
			c.active--
			if c.stopping && c.active == 0 && c.idle != nil {
				close(c.idle)
				c.idle = nil
			}
			c.mu.Unlock()
		}()
		return f(msg)
	}
}

// Subscribe is what the router subscribes through. A consumer stopped
// before its handler started (a RunHandlers that failed on the way) hands
// it a closed channel, so the router drops the handler instead of
// subscribing a closed subscriber, which would fail every later
// RunHandlers and hold Close for its whole timeout.
func (c *consumer) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	c.mu.Lock()
	stopping := c.stopping
	c.mu.Unlock()
	if stopping {
		ch := make(chan *message.Message)
		close(ch)
		return ch, nil
	}
	return c.sub.Subscribe(ctx, topic)
}

// Close closes the subscriber (the router does when it closes).
func (c *consumer) Close() error { return c.sub.Close() }

// stop stops the handler, waits (up to grace) for the calls in progress to
// finish, then closes the subscriber. Messages the subscriber had fetched
// but not handed out go back to the group (the driver's Close does that).
func (c *consumer) stop(grace time.Duration) {
	if c.h != nil && isClosed(c.h.Started()) {
		c.h.Stop()
		<-c.h.Stopped()
	}
	c.mu.Lock()
	c.stopping = true
	var idle chan struct{}
	if c.active > 0 {
		idle = make(chan struct{})
		c.idle = idle
	}
	c.mu.Unlock()
	if idle != nil {
		t := time.NewTimer(grace)
		select {
		case <-idle:
		case <-t.C:
		}
		t.Stop()
	}
	_ = c.sub.Close()
}

// abandon stops a consumer whose handler may not have started.
func (c *consumer) abandon() {
	c.mu.Lock()
	c.stopping = true
	c.mu.Unlock()
	_ = c.sub.Close()
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// pipeRunner is a running pipeline: one consumer per source, all in the
// pipeline's group. cur is swapped whole on a change, and each event reads
// it once, so it runs through exactly one version of the steps.
type pipeRunner struct {
	name string
	cur  atomic.Pointer[Pipeline]
	cons map[string]*consumer // by source
	// ordered: the consumers hand out one event at a time, in the order
	// of the source (a sink of the pipeline is ordered).
	ordered bool
}

// sinkRunner is a running sink: its consumer and the sink it delivers to.
// A fan-out sink has two: cons reads the sink's topic and fans each event
// out to pairTopic, which pairs reads and delivers.
type sinkRunner struct {
	name, topic string
	window      int
	cons        *consumer // nil while the sink is not ready
	fanout      bool
	pairTopic   string
	pairs       *consumer

	// An ordered sink (see ordering.go): the path of its key, a consumer
	// per partition topic (nil while the sink is not ready, when partSubs
	// hold the groups), and the slots that bound its partitions'
	// deliveries in flight to max_in_flight.
	ordering []string
	parts    []*consumer
	partSubs []message.Subscriber
	partSem  chan struct{}
	// An unordered sink moves what an ordered version of it left on its
	// partitions to its topic (retirePartitions): how to stop that.
	retireCancel context.CancelFunc
	retireDone   chan struct{}

	mu    sync.RWMutex // guards state against a swap
	state *sinkState

	// late: the goroutine waiting for the sink's Ready, and how to stop it.
	lateCancel context.CancelFunc
	lateDone   chan struct{}
	lateSub    message.Subscriber // the group's subscriber made before Ready

	// failures folds the info lines of failed attempts (see failureLog).
	failures failureLog
	// breaker is the sink's circuit (see awaitCircuit); it outlives an
	// in-place swap of the sink's version.
	breaker circuit.Breaker

	// The per-sink series, looked up once rather than per delivery.
	inFlight, circuitOpen prometheus.Gauge
	retries, notTried     prometheus.Counter
	attemptTime, endToEnd prometheus.Observer
}

// sinkState is one version of a sink: what deliveries go to.
type sinkState struct {
	spec    Sink
	deliver func(ctx context.Context, d sdk.Delivery) sdk.Result
	// detailed, when set, is the sink's DeliverDetailed (single
	// deliveries only), which the engine calls when it logs attempts.
	detailed DetailedSink
	batcher  *batcher
	uses     sync.WaitGroup
}

// acquire returns the current state, counted as in use until release.
func (r *sinkRunner) acquire() *sinkState {
	r.mu.RLock()
	st := r.state
	st.uses.Add(1)
	r.mu.RUnlock()
	return st
}

func (st *sinkState) release() { st.uses.Done() }

// retire waits for the deliveries still using st, then stops its batcher.
func (st *sinkState) retire() {
	st.uses.Wait()
	if st.batcher != nil {
		st.batcher.close()
	}
}

func newSinkState(s Sink) *sinkState {
	st := &sinkState{spec: s}
	if s.Fanout != nil {
		return st // delivers through s.Fanout
	}
	sink := s.Sink
	st.deliver = func(ctx context.Context, d sdk.Delivery) sdk.Result {
		res := sink.Deliver(ctx, []sdk.Delivery{d})
		if len(res) != 1 {
			return sdk.Result{Outcome: sdk.Retry, Reason: fmt.Sprintf("sink returned %d results for 1 delivery", len(res))}
		}
		return res[0]
	}
	if p, ok := batchPolicy(s); ok {
		st.batcher = newTimedBatcher(sink, p, s.MaxInFlight)
		st.deliver = st.batcher.deliver
	} else if s.Batch > 1 {
		st.batcher = newBatcher(sink, s.Batch, s.MaxInFlight)
		st.deliver = st.batcher.deliver
	} else {
		st.detailed, _ = sink.(DetailedSink)
	}
	return st
}

// batchPolicy is the policy of a sink that batches by design
// (BatchingSink), ok false for any other.
func batchPolicy(s Sink) (batching.Policy, bool) {
	bs, ok := s.Sink.(BatchingSink)
	if !ok || s.Fanout != nil {
		return batching.Policy{}, false
	}
	p := bs.BatchPolicy()
	return p, p.On()
}

// handlerName names a consumer's router handler uniquely: a replaced
// sink's new handler may be added before the router forgot the old one.
func (e *Engine) handlerName(kind, name string) string {
	e.gen++
	return fmt.Sprintf("%s/%s#%d", kind, name, e.gen)
}

// subscribe makes a subscriber of group for topic, its subscription
// created in the broker before anything is published to it.
func (e *Engine) subscribe(group, topic string, window int) (message.Subscriber, error) {
	return initialized(topic)(e.q.Subscriber(group, window))
}

// initialized returns what creates topic's subscription in the broker for
// a subscriber just made (closing it when that fails), so that nothing
// published from then on is missed.
func initialized(topic string) func(message.Subscriber, error) (message.Subscriber, error) {
	return func(sub message.Subscriber, err error) (message.Subscriber, error) {
		if err != nil {
			return nil, err
		}
		if err := initialize(sub, topic); err != nil {
			_ = sub.Close()
			return nil, err
		}
		return sub, nil
	}
}

// addConsumer runs c with f: at once when the router runs, else from
// Start (a handler the router has but never starts could not be stopped,
// and would hold the router's Close for its whole timeout). Callers hold
// e.mu.
func (e *Engine) addConsumer(c *consumer, f message.NoPublishHandlerFunc) error {
	if e.closed {
		return errEngineClosed
	}
	c.f = c.wrap(f)
	if !e.started {
		return nil
	}
	return e.runConsumer(c)
}

// runConsumer adds c's handler to the running router and starts it.
// Callers hold e.mu.
func (e *Engine) runConsumer(c *consumer) error {
	e.addHandler(c)
	return e.router.RunHandlers(e.runCtx)
}

// addHandler gives c's handler to the router. Callers hold e.mu.
func (e *Engine) addHandler(c *consumer) {
	c.h = e.router.AddConsumerHandler(c.handler, c.topic, c, c.f)
}

// consumers returns every consumer the engine has. Callers hold e.mu.
func (e *Engine) consumers() []*consumer {
	var cs []*consumer
	if e.deadLetters != nil {
		cs = append(cs, e.deadLetters)
	}
	for _, pr := range e.pipes {
		cs = slices.AppendSeq(cs, maps.Values(pr.cons))
	}
	for _, r := range e.sinks {
		if r.cons != nil {
			cs = append(cs, r.cons)
		}
		if r.pairs != nil {
			cs = append(cs, r.pairs)
		}
		cs = append(cs, r.parts...)
	}
	return cs
}

var errEngineClosed = errors.New("pipeline: engine closed")

// SetPipeline adds a pipeline or replaces the one of that name. A
// replaced pipeline keeps its consumers (and their place in the queue) for
// the sources it still reads; events already being handled finish on the
// version they started with, the next ones run the new steps. Every sink
// of p.To must have been set.
func (e *Engine) SetPipeline(ctx context.Context, p Pipeline) error {
	if err := e.checkAggregate(p); err != nil {
		return err
	}
	e.applyMu.Lock()
	defer e.applyMu.Unlock()
	return e.setPipeline(ctx, p)
}

// setPipeline is SetPipeline; callers hold e.applyMu.
func (e *Engine) setPipeline(ctx context.Context, p Pipeline) error {
	e.mu.Lock()
	for _, to := range p.To {
		if _, ok := e.sinks[to]; !ok {
			e.mu.Unlock()
			return fmt.Errorf("pipeline %q: unknown sink %q", p.Name, to)
		}
	}
	pr, ok := e.pipes[p.Name]
	if !ok {
		pr = &pipeRunner{name: p.Name, cons: map[string]*consumer{}}
		e.pipes[p.Name] = pr
	}
	pp := p
	pr.cur.Store(&pp)
	if ordered := e.orderedPipeline(p); ordered != pr.ordered {
		// A pipeline that becomes ordered, or stops being, reads its
		// sources with new consumers of the same groups, once the old
		// ones have stopped (and handed back what they held): an ordered
		// and an unordered consumer of one group never run at once here.
		gone := slices.Collect(maps.Values(pr.cons))
		pr.cons, pr.ordered = map[string]*consumer{}, ordered
		e.mu.Unlock()
		for _, c := range gone {
			c.stop(e.opts.CloseTimeout)
		}
		e.mu.Lock()
	}
	var gone []*consumer
	for src, c := range pr.cons {
		if !slices.Contains(p.From, src) {
			gone = append(gone, c)
			delete(pr.cons, src)
		}
	}
	var topics []string
	var errs []error
	for _, src := range p.From {
		if _, ok := pr.cons[src]; ok {
			continue
		}
		if err := e.addSourceConsumer(pr, src); err != nil {
			errs = append(errs, fmt.Errorf("pipeline %q: source %q: %w", p.Name, src, err))
			continue
		}
		topics = append(topics, queue.SourceTopic(src))
	}
	e.updateSources()
	e.mu.Unlock()
	for _, c := range gone {
		c.stop(e.opts.CloseTimeout)
	}
	if len(topics) > 0 {
		if err := e.q.Provision(ctx, topics); err != nil {
			errs = append(errs, fmt.Errorf("provision queue: %w", err))
		}
	}
	return errors.Join(errs...)
}

// addSourceConsumer adds pr's consumer of src, in the pipeline's group.
// Callers hold e.mu.
func (e *Engine) addSourceConsumer(pr *pipeRunner, src string) error {
	topic := queue.SourceTopic(src)
	var sub message.Subscriber
	var err error
	if pr.ordered {
		sub, err = e.subscribeOrdered("pipeline-"+pr.name, topic)
	} else {
		sub, err = e.subscribe("pipeline-"+pr.name, topic, e.opts.SourceConcurrency)
	}
	if err != nil {
		return err
	}
	c := &consumer{handler: e.handlerName("pipeline", pr.name+"/"+src), topic: topic, sub: sub}
	if err := e.addConsumer(c, e.pipelineHandler(pr, src, pr.ordered)); err != nil {
		c.abandon()
		return err
	}
	pr.cons[src] = c
	return nil
}

// RemovePipeline stops a pipeline once the events it is handling are done.
// Its group keeps its place in the queue: the events that arrive meanwhile
// wait for a pipeline of that name to come back.
func (e *Engine) RemovePipeline(name string) {
	e.applyMu.Lock()
	defer e.applyMu.Unlock()
	e.mu.Lock()
	pr, ok := e.pipes[name]
	delete(e.pipes, name)
	e.updateSources()
	e.mu.Unlock()
	if !ok {
		return
	}
	for _, c := range pr.cons {
		c.stop(e.opts.CloseTimeout)
	}
}

// updateSources recomputes the set of sources read by some pipeline.
// Callers hold e.mu.
func (e *Engine) updateSources() {
	srcs := map[string]bool{}
	for _, pr := range e.pipes {
		for src := range pr.cons {
			srcs[src] = true
		}
		for _, src := range pr.cur.Load().From {
			srcs[src] = true
		}
	}
	e.sources.Store(&srcs)
}

// SetSink adds a sink or replaces the one of that name. A replacement with
// the same window is swapped in place: deliveries in progress finish on
// the old sink, the next ones go to the new one, and the consumer keeps
// running. One whose window changed, or that is not ready yet, replaces
// the consumer: the old one stops after its deliveries in progress, and
// the events queued meanwhile wait for the new one. SetSink returns once
// the old sink is no longer used; closing it is the caller's.
func (e *Engine) SetSink(ctx context.Context, s Sink) error {
	e.applyMu.Lock()
	defer e.applyMu.Unlock()
	if s.MaxInFlight <= 0 {
		s.MaxInFlight = 64
	}
	if s.Fanout != nil && (s.Ready != nil || s.Batch > 1) {
		return fmt.Errorf("sink %q: a fan-out sink cannot be late (Ready) or batched", s.Name)
	}
	if err := e.checkOrdering(s); err != nil {
		return err
	}
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return errEngineClosed
	}
	r, ok := e.sinks[s.Name]
	var old *sinkState
	if ok && r.swappable(s) {
		// Under e.mu: Close, which stops the states it finds, finds
		// either the old one (retired below) or this one.
		old = r.swap(newSinkState(s))
	}
	e.mu.Unlock()
	if old != nil {
		old.retire()
		return nil
	}
	if ok {
		e.stopSink(r)
	}
	err := e.startSink(ctx, s)
	return errors.Join(err, e.reorderPipelines(ctx))
}

// swappable tells whether s can take r's place in place. A late sink's
// runner never can: its consumer is set by its own goroutine. Callers
// hold e.mu.
func (r *sinkRunner) swappable(s Sink) bool {
	return s.Ready == nil && r.lateCancel == nil && r.cons != nil && sinkWindow(s) == r.window && (s.Fanout != nil) == r.fanout &&
		slices.Equal(s.Ordering, r.ordering) && cap(r.partSem) == orderedWindow(s)
}

// swap makes st the state new deliveries use and returns the old one.
func (r *sinkRunner) swap(st *sinkState) *sinkState {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.state
	r.state = st
	return old
}

// RemoveSink stops a sink once its deliveries in progress are done. No
// pipeline may still send to it. Its group keeps the events queued for it.
func (e *Engine) RemoveSink(name string) error {
	e.applyMu.Lock()
	defer e.applyMu.Unlock()
	e.mu.Lock()
	for _, pr := range e.pipes {
		if slices.Contains(pr.cur.Load().To, name) {
			e.mu.Unlock()
			return fmt.Errorf("sink %q: pipeline %q still sends to it", name, pr.name)
		}
	}
	r, ok := e.sinks[name]
	e.mu.Unlock()
	if ok {
		e.stopSink(r)
	}
	return e.reorderPipelines(context.Background())
}

// stopSink stops a sink's consumer (or its wait for Ready) and its state,
// and forgets it.
func (e *Engine) stopSink(r *sinkRunner) {
	e.endLateWait(r)
	e.endRetire(r)
	e.mu.Lock()
	delete(e.sinks, r.name)
	e.updateKeys()
	cons, pairs, lateSub, parts, partSubs := r.cons, r.pairs, r.lateSub, r.parts, r.partSubs
	e.mu.Unlock()
	if cons != nil {
		// A fan-out sink stops fanning out first, then delivering.
		cons.stop(e.opts.CloseTimeout)
	} else if lateSub != nil {
		_ = lateSub.Close()
	}
	e.stopParts(parts, partSubs)
	if pairs != nil {
		pairs.stop(e.opts.CloseTimeout)
	}
	r.circuitOpen.Set(0)
	r.mu.RLock()
	st := r.state
	r.mu.RUnlock()
	if st != nil {
		st.retire()
	}
}

// endLateWait stops a late sink's wait for Ready, if it has one, and
// returns once the goroutine waiting (if it was started) is gone. It may
// be called more than once (by Close and by a change).
func (e *Engine) endLateWait(r *sinkRunner) {
	if r.lateCancel == nil {
		return
	}
	r.lateCancel()
	e.mu.Lock()
	if i := slices.IndexFunc(e.pendingLate, func(l lateStart) bool { return l.r == r }); i >= 0 {
		// Its goroutine will never run, so it is closed here: once, for
		// this call and any later one.
		e.pendingLate = slices.Delete(e.pendingLate, i, i+1)
		close(r.lateDone)
	}
	e.mu.Unlock()
	<-r.lateDone
}

// startSink subscribes a new sink's group and starts its consumer, or,
// for a sink not ready yet, waits for it in the background.
func (e *Engine) startSink(ctx context.Context, s Sink) error {
	window := sinkWindow(s)
	topic := queue.SinkTopic(s.Name)
	sub, err := e.subscribe("sink-"+s.Name, topic, window)
	if err != nil {
		return fmt.Errorf("sink %q: %w", s.Name, err)
	}
	r := e.newSinkRunner(s.Name, topic, window)
	topics := []string{topic}
	// A fan-out sink's deliveries are read by the same group, on their
	// own topic.
	var psub message.Subscriber
	if s.Fanout != nil {
		r.fanout, r.pairTopic = true, envelope.DeliveriesTopic(s.Name)
		if psub, err = e.subscribe("sink-"+s.Name, r.pairTopic, window); err != nil {
			_ = sub.Close()
			return fmt.Errorf("sink %q: %w", s.Name, err)
		}
		topics = append(topics, r.pairTopic)
	}
	if s.Ordering != nil {
		if err := e.subscribePartitions(r, s); err != nil {
			_ = sub.Close()
			return fmt.Errorf("sink %q: %w", s.Name, err)
		}
		for p := range envelope.Partitions {
			topics = append(topics, envelope.PartitionTopic(s.Name, p))
		}
	}
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		_ = sub.Close()
		if psub != nil {
			_ = psub.Close()
		}
		for _, ps := range r.partSubs {
			_ = ps.Close()
		}
		return errEngineClosed
	}
	e.sinks[s.Name] = r
	if s.Ready != nil {
		e.waitReady(r, s, sub)
	} else if err = e.addSinkConsumer(r, s, sub, psub); err != nil {
		delete(e.sinks, s.Name)
	}
	if err == nil {
		e.updateKeys()
		if s.Ordering == nil && s.Fanout == nil {
			e.startRetire(r)
		}
	}
	e.mu.Unlock()
	if err != nil {
		return fmt.Errorf("sink %q: %w", s.Name, err)
	}
	if err := e.q.Provision(ctx, topics); err != nil {
		return fmt.Errorf("provision queue: %w", err)
	}
	return nil
}

// addSinkConsumer gives r its state and its consumer reading sub, and a
// fan-out sink its consumer of deliveries reading psub. Callers hold e.mu.
func (e *Engine) addSinkConsumer(r *sinkRunner, s Sink, sub, psub message.Subscriber) error {
	r.state = newSinkState(s)
	handler := e.sinkHandler(r)
	if s.Fanout != nil {
		handler = e.fanoutHandler(r)
	}
	c := &consumer{handler: e.handlerName("sink", s.Name), topic: r.topic, sub: sub}
	if err := e.addConsumer(c, handler); err != nil {
		c.abandon()
		if psub != nil {
			_ = psub.Close()
		}
		return err
	}
	if psub != nil {
		pc := &consumer{handler: e.handlerName("deliveries", s.Name), topic: r.pairTopic, sub: psub}
		if err := e.addConsumer(pc, e.pairHandler(r)); err != nil {
			pc.abandon()
			c.abandon()
			return err
		}
		r.pairs = pc
	}
	if err := e.addPartitionConsumers(r, s); err != nil {
		c.abandon()
		if r.pairs != nil {
			r.pairs.abandon()
			r.pairs = nil
		}
		return err
	}
	r.cons = c
	return nil
}

// waitReady has r wait in the background for the late sink s to be
// ready, from Start when the engine has not started yet. Callers hold
// e.mu.
func (e *Engine) waitReady(r *sinkRunner, s Sink, sub message.Subscriber) {
	// A late sink's window may change once it is ready; this subscriber
	// then only holds the group, for the events to wait.
	r.lateSub = sub
	lctx, cancel := context.WithCancel(context.Background())
	r.lateCancel, r.lateDone = cancel, make(chan struct{})
	if e.started {
		go e.startWhenReady(lctx, r, s)
	} else {
		e.pendingLate = append(e.pendingLate, lateStart{r, s, lctx})
	}
}

// lateStart is a late sink added before Start, waiting to be watched.
type lateStart struct {
	r   *sinkRunner
	s   Sink
	ctx context.Context
}

func (e *Engine) newSinkRunner(name, topic string, window int) *sinkRunner {
	r := &sinkRunner{
		name: name, topic: topic, window: window,
		inFlight:    e.m.InFlight.WithLabelValues(name),
		circuitOpen: e.m.CircuitOpen.WithLabelValues(name),
		attemptTime: e.m.AttemptTime.WithLabelValues(name),
		endToEnd:    e.m.EndToEnd.WithLabelValues(name),
		retries:     e.m.Retries.WithLabelValues(name),
		notTried:    e.m.NotTried.WithLabelValues(name),
	}
	// A new runner's circuit is closed (one replaced may have been open).
	r.circuitOpen.Set(0)
	return r
}

// startWhenReady adds a late sink's consumer to the running router once
// the sink is ready, with the window the sink tells then (a plugin that
// declares max_in_flight: 1 is a serial sink, however late it initialised).
// A failed subscription (a broker slow to create the consumer) is tried
// again. ctx ends the wait (the sink was replaced or removed).
func (e *Engine) startWhenReady(ctx context.Context, r *sinkRunner, s Sink) {
	defer close(r.lateDone)
	select {
	case <-s.Ready:
	case <-ctx.Done():
		return
	case <-e.closing:
		return
	}
	w := &lateWait{ctx: ctx, closing: e.closing, backoff: 100 * time.Millisecond}
	if s.Resolve != nil {
		var n int
		if s.Sink, n = s.Resolve(); n > 0 {
			s.MaxInFlight = n
		}
	}
	sub, ok := e.resubscribeLate(r, s, w)
	if !ok {
		return
	}
	r.mu.Lock()
	r.state = newSinkState(s)
	r.mu.Unlock()
	e.runLate(r, s, sub, w)
}

// lateWait waits between a late sink's tries, the backoff doubling up to
// 10s, until the sink's wait is ended.
type lateWait struct {
	ctx     context.Context
	closing <-chan struct{}
	backoff time.Duration
}

// wait waits out the backoff; false: the wait was ended.
func (w *lateWait) wait() bool {
	t := time.NewTimer(w.backoff)
	defer t.Stop()
	select {
	case <-t.C:
	case <-w.ctx.Done():
		return false
	case <-w.closing:
		return false
	}
	w.backoff = min(w.backoff*2, 10*time.Second)
	return true
}

// resubscribeLate returns the subscriber for a late sink that is ready:
// the one that held its group, or, when its window changed, a new one
// with the window (tried until it succeeds or the wait is ended: ok
// false).
func (e *Engine) resubscribeLate(r *sinkRunner, s Sink, w *lateWait) (sub message.Subscriber, ok bool) {
	sub = r.lateSub
	window := sinkWindow(s)
	for window != r.window {
		nsub, err := e.subscribe("sink-"+s.Name, r.topic, window)
		if err == nil {
			// The first subscriber never subscribed: it has nothing in flight.
			_ = sub.Close()
			e.mu.Lock()
			r.lateSub, r.window = nsub, window
			e.mu.Unlock()
			return nsub, true
		}
		e.log.Error("subscribe sink consumer with its window; trying again", "sink", s.Name, "max_in_flight", s.MaxInFlight, "error", err, "in", w.backoff)
		if !w.wait() {
			return nil, false
		}
	}
	return sub, true
}

// runLate adds a ready late sink's consumer to the router and starts it,
// trying again until it runs or the wait is ended.
func (e *Engine) runLate(r *sinkRunner, s Sink, sub message.Subscriber, w *lateWait) {
	for {
		e.mu.Lock()
		if e.closed || w.ctx.Err() != nil {
			e.mu.Unlock()
			return
		}
		var err error
		if r.cons == nil {
			c := &consumer{handler: e.handlerName("sink", s.Name), topic: r.topic, sub: sub}
			err = e.addConsumer(c, e.sinkHandler(r))
			r.cons, r.lateSub = c, nil
			if err == nil {
				err = e.addPartitionConsumers(r, s)
			}
		} else if err = e.addPartitionConsumers(r, s); err == nil {
			// RunHandlers starts only the handlers not running yet.
			err = e.router.RunHandlers(e.runCtx)
		}
		e.mu.Unlock()
		if err == nil {
			e.log.Info("sink ready; consuming its queue", "sink", s.Name, "max_in_flight", s.MaxInFlight)
			return
		}
		e.log.Error("start sink consumer; trying again", "sink", s.Name, "error", err, "in", w.backoff)
		if !w.wait() {
			return
		}
	}
}

// Pipelines returns the names of the running pipelines, sorted.
func (e *Engine) Pipelines() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Sorted(maps.Keys(e.pipes))
}

// Sinks returns the names of the running sinks, sorted.
func (e *Engine) Sinks() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Sorted(maps.Keys(e.sinks))
}
