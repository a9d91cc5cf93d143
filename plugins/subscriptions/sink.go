// Package subscriptions is hookbus' built-in `subscriptions` sink: it
// delivers each event to every enabled subscription (a callback URL an
// application registered through the API) of the event's application
// whose event types match and whose filter keeps it. The event's
// `application` attribute (a CloudEvents extension) names the application;
// with `broadcast: true` an event without one goes to the matching
// subscriptions of every application.
//
// The sink is a fan-out sink of the engine (pipeline.Fanout): the engine
// queues one message per (event, subscription) pair, and each pair is a
// delivery of its own, with its own attempts, retries and dead letter.
// Each attempt reads the subscription from the live index, so a changed
// URL or secret is used at once and a deleted or disabled subscription's
// pairs are discarded with a recorded reason. Requests are made by the
// webhook sink's code (plugins/webhook): the same headers, Standard
// Webhooks signatures (with every secret the subscription signs with), SSRF
// guard and judging of answers.
//
// Isolation: each subscription has its own window (max_in_flight, which
// starts at one attempt and doubles with each success), rate limit and
// circuit, all non-blocking: a pair that cannot go now is deferred, handed
// back to the queue for the time its turn is estimated to come, without
// counting an attempt. These states live in each hookbus process (with
// several instances, each applies the limits on its own).
package subscriptions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/hookbus/hookbus/core/deadletter"
	"github.com/hookbus/hookbus/core/metrics"
	"github.com/hookbus/hookbus/core/operational"
	"github.com/hookbus/hookbus/core/pipeline"
	"github.com/hookbus/hookbus/core/registry"
	"github.com/hookbus/hookbus/core/script"
	"github.com/hookbus/hookbus/core/sinkopts"
	"github.com/hookbus/hookbus/core/subscription"
	"github.com/hookbus/hookbus/plugins/webhook"
	"github.com/hookbus/hookbus/sdk"
)

// Name is the sink type in configuration (`type: subscriptions`).
const Name = "subscriptions"

func init() {
	registry.RegisterSink(registry.Sink{Name: Name, Spec: configSpec, New: NewSink, OwnCircuits: true})
}

// NewSink returns a sink for hookbus to Provision and Init (its registered
// constructor).
func NewSink(s sinkopts.Settings) sdk.Sink { return &Sink{shared: s} }

// Indexer gives the current subscription index (a *subscription.Live).
type Indexer interface {
	Index() *subscription.Index
}

// Host is what hookbus gives the sink before Init: the subscriptions, and
// where the sink records what it learns about them.
type Host struct {
	// Sink is the sink's name in the configuration (logs, metrics).
	Sink string
	// Index is the live index of the store's subscriptions.
	Index Indexer
	// Store is where a subscription is marked failing or disabled.
	Store subscription.Store
	// Changes, when set, tells the sink of each changed subscription, so
	// it drops at once what it keeps for the old version.
	Changes *Changes
	// Scripts are the limits subscription filters run under.
	Scripts script.Options
	// Operational, when set, makes the operational events about
	// subscriptions: delivery.failing, subscription.disabled and
	// subscription.recovered (see core/operational).
	Operational *operational.Emitter
	Metrics     *metrics.Metrics
	Logger      *slog.Logger
}

// Sink is the subscriptions sink. Provision it, then Init it; it is safe
// for concurrent use.
type Sink struct {
	shared sinkopts.Settings
	host   Host
	cfg    Config
	ready  bool

	mu     sync.Mutex
	states map[string]*subState // by subscription ID
	swept  time.Time
	stop   func() // stops listening to Changes
	closed bool
}

// Provision gives the sink what it needs from hookbus; call it before Init.
func (s *Sink) Provision(h Host) {
	if h.Logger == nil {
		h.Logger = slog.Default()
	}
	if h.Metrics == nil {
		h.Metrics = metrics.New()
	}
	s.host = h
}

// Init configures the sink from its `config` block (see Config) and
// answers the sink's window: max_in_flight when the block sets it, else
// DefaultMaxInFlight.
func (s *Sink) Init(_ context.Context, raw json.RawMessage) (sdk.SinkInfo, error) {
	cfg, err := ParseConfig(raw)
	if err != nil {
		return sdk.SinkInfo{}, err
	}
	if s.host.Index == nil || s.host.Store == nil {
		return sdk.SinkInfo{}, &sdk.ConfigError{Message: "the subscriptions sink needs hookbus' store and runs only inside hookbus (not as a plugin)"}
	}
	s.cfg = cfg
	s.states = map[string]*subState{}
	s.swept = time.Now()
	if s.host.Changes != nil {
		s.stop = s.host.Changes.listen(s.changed)
	}
	s.ready = true
	return sdk.SinkInfo{MaxInFlight: DefaultMaxInFlight}, nil
}

// ValidateConfig checks a `config` block without opening anything.
func (s *Sink) ValidateConfig(raw json.RawMessage) error {
	_, err := ParseConfig(raw)
	return err
}

// Describe returns the sink's manifest, with the JSON Schema of Config.
func (s *Sink) Describe() sdk.Manifest {
	return sdk.Manifest{Name: Name, Kinds: []string{"sink"}, ConfigSchema: configSpec.Schema(), Version: "1"}
}

// Config returns the configuration in use, defaults applied.
func (s *Sink) Config() Config { return s.cfg }

// AllowPrivateNetworks tells whether subscriptions may point at private
// addresses (the API validates URLs with it).
func (s *Sink) AllowPrivateNetworks() bool { return s.cfg.AllowPrivateNetworks }

// Deliver is not how this sink delivers: hookbus fans its events out
// through Targets and DeliverTarget. A direct call fails every delivery.
func (s *Sink) Deliver(_ context.Context, batch []sdk.Delivery) []sdk.Result {
	res := make([]sdk.Result, len(batch))
	for i := range res {
		res[i] = sdk.Result{Outcome: sdk.Permanent, Reason: "the subscriptions sink delivers through hookbus' fan-out, not Deliver"}
	}
	return res
}

// Close stops listening for changes and releases every subscription's
// idle connections. No delivery runs during or after Close.
func (s *Sink) Close(context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	stop := s.stop
	s.mu.Unlock()
	// Outside s.mu: a change being told holds the Changes lock that stop
	// takes, and waits for s.mu in changed.
	if stop != nil {
		stop()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, st := range s.states {
		st.close()
	}
	s.states = map[string]*subState{}
	return nil
}

// errNoApplication is the reason of an event without an application on
// a sink that does not broadcast.
var errNoApplication = errors.New(`application: the event has no "application" attribute naming the application it is for ` +
	`(set it in the event, or in a transform script; or set broadcast: true on the sink)`)

// Targets appends the subscriptions ev goes to: the enabled ones of its
// application whose event types match (of every application when the
// event names none and the sink broadcasts).
func (s *Sink) Targets(ev sdk.Event, dst []pipeline.Target) ([]pipeline.Target, error) {
	app, err := Application(ev)
	if err != nil {
		return nil, err
	}
	ix := s.host.Index.Index()
	buf := matchBuf.Get().(*[]*subscription.Subscription)
	defer matchBuf.Put(buf)
	switch {
	case app != "":
		*buf = ix.Match(app, ev.Type, (*buf)[:0])
	case s.cfg.Broadcast:
		*buf = ix.MatchAll(ev.Type, (*buf)[:0])
	default:
		return nil, errNoApplication
	}
	for i, sub := range *buf {
		dst = append(dst, pipeline.Target{App: sub.App, ID: sub.ID})
		(*buf)[i] = nil
	}
	return dst, nil
}

var matchBuf = sync.Pool{New: func() any { b := make([]*subscription.Subscription, 0, 16); return &b }}

// Application returns the event's `application` attribute: "" when it has
// none (or null, or an empty string), an error naming the attribute when
// it is not a string.
func Application(ev sdk.Event) (string, error) {
	raw, ok := ev.Extensions["application"]
	if !ok || len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var app string
	if err := json.Unmarshal(raw, &app); err != nil {
		return "", fmt.Errorf("application: must be a string naming the application, got %s", snippet(string(raw), 80))
	}
	return app, nil
}

func snippet(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// discard is the result of a pair whose subscription no longer takes
// deliveries.
func discard(reason string) pipeline.TargetResult {
	return pipeline.TargetResult{Result: sdk.Result{Outcome: sdk.Permanent, Reason: reason}, Kind: deadletter.KindDiscarded}
}

// DeliverTarget makes one attempt of d to subscription t, as the live
// index has it now, or defers it (see the package doc).
func (s *Sink) DeliverTarget(ctx context.Context, t pipeline.Target, d sdk.Delivery) (tr pipeline.TargetResult) {
	if !s.ready {
		return pipeline.TargetResult{Result: sdk.Result{Outcome: sdk.Retry, Reason: "subscriptions sink used before Init"}}
	}
	sub, res, ok := s.lookup(ctx, t)
	if !ok {
		return res
	}
	// Every failure of the pair counts on the subscription's own
	// schedule when it has one.
	defer func() { tr.Schedule = s.schedule(sub) }()
	if !sub.Matches(d.Event.Type) {
		// Its event_types changed since the event was fanned out.
		return pipeline.TargetResult{Filtered: true}
	}
	st := s.state(sub)
	if st == nil {
		return pipeline.TargetResult{Result: sdk.Result{Outcome: sdk.Retry, Reason: "subscriptions sink closed"}}
	}
	if reason := st.disabledHere(); reason != "" {
		return discard("subscription disabled: " + reason)
	}
	if sub.Filter != "" {
		keep, err := st.filter(ctx, d, s)
		switch {
		case errors.Is(err, script.ErrTimeout) || errors.Is(err, script.ErrMemory):
			// Not a verdict on the script (a machine short of CPU or
			// memory): an attempt, tried again on the schedule.
			return pipeline.TargetResult{Result: sdk.Result{Outcome: sdk.Retry, Reason: "subscription filter: " + err.Error()}}
		case err != nil:
			return pipeline.TargetResult{Result: sdk.Result{Outcome: sdk.Permanent, Reason: err.Error()}, Kind: deadletter.KindScript}
		case !keep:
			return pipeline.TargetResult{Filtered: true}
		}
	}
	if p := sub.Delivery.Batch; p.On() {
		return s.deliverBatched(ctx, st, p, d)
	}
	now := time.Now()
	adm := st.admit(now, pairKey(t, d))
	switch {
	case adm.defer_ > 0:
		return pipeline.TargetResult{Defer: adm.defer_, DeferReason: adm.reason}
	case adm.notTried != "":
		res := sdk.Result{Outcome: sdk.Retry, Reason: adm.notTried}
		s.afterFailure(ctx, st, now, trigger{d, res})
		return pipeline.TargetResult{NotTried: true, Result: res}
	}
	waitFor(ctx, adm.wait)
	hook, err := st.webhook(now, s)
	if err != nil {
		st.done(adm.started, time.Now(), 0, outcomeNone)
		return pipeline.TargetResult{Result: sdk.Result{Outcome: sdk.Permanent, Reason: err.Error()}}
	}
	a := hook.DeliverAttempt(ctx, d)
	end := time.Now()
	st.done(adm.started, end, a.Latency, judge(a))
	switch {
	case a.Result.Outcome == sdk.OK:
		s.afterSuccess(ctx, st, d)
	case a.Result.StatusCode == 410 && a.Result.Outcome == sdk.Permanent:
		// Gone, unless the status policy retries it.
		s.disable(ctx, st, "410 Gone", "gone", trigger{d, a.Result})
	default:
		s.afterFailure(ctx, st, end, trigger{d, a.Result})
	}
	return pipeline.TargetResult{Result: a.Result, Detail: a.Detail()}
}

// lookup finds t in the live index. A subscription the index does not
// have is looked up in the store before its pair is discarded: another
// instance may have created it a moment ago. ok false: res is the pair's
// result.
func (s *Sink) lookup(ctx context.Context, t pipeline.Target) (sub *subscription.Subscription, res pipeline.TargetResult, ok bool) {
	sub, found := s.host.Index.Index().Get(t.ID)
	if !found {
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		fresh, err := s.host.Store.GetSubscription(lctx, t.App, t.ID)
		cancel()
		switch {
		case errors.Is(err, subscription.ErrNotFound):
			return nil, discard("subscription deleted"), false
		case err != nil:
			// Not the pair's fault: it waits, counting no attempt.
			s.host.Logger.Warn("subscriptions sink: store lookup failed; the delivery waits", "sink", s.host.Sink, "subscription", t.ID, "error", err)
			return nil, pipeline.TargetResult{Defer: time.Second, DeferReason: "store"}, false
		}
		sub = &fresh
	}
	switch {
	case sub.App != t.App:
		// Never sent to another application's URL.
		return nil, discard("subscription belongs to another application"), false
	case sub.Disabled:
		reason := "subscription disabled"
		if sub.DisabledReason != "" {
			reason += ": " + sub.DisabledReason
		}
		return nil, discard(reason), false
	}
	return sub, res, true
}

// pairKey names one pair for the rate limit's reservations.
func pairKey(t pipeline.Target, d sdk.Delivery) string {
	return t.ID + "\x00" + d.Pipeline + "\x00" + d.Event.ID
}

// state returns the state of sub's subscription, brought up to sub's
// version (nil once the sink is closed).
func (s *Sink) state(sub *subscription.Subscription) *subState {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	st := s.states[sub.ID]
	if st == nil {
		st = newSubState(sub, s.cfg)
		s.states[sub.ID] = st
	}
	s.sweep()
	s.mu.Unlock()
	st.update(sub, s.cfg)
	return st
}

// sweepEvery is how often the states of subscriptions no longer in the
// index are dropped (when no Changes tells of them at once).
const sweepEvery = time.Minute

// sweep drops states of subscriptions the index no longer has, and
// expired rate-limit reservations. Callers hold s.mu.
func (s *Sink) sweep() {
	now := time.Now()
	if now.Sub(s.swept) < sweepEvery {
		return
	}
	s.swept = now
	ix := s.host.Index.Index()
	for id, st := range s.states {
		if _, ok := ix.Get(id); !ok && st.idle() {
			st.close()
			delete(s.states, id)
			continue
		}
		st.sweepSlots(now)
	}
}

// changed drops what the sink keeps for a deleted subscription and the
// connections of a changed one's old URL.
func (s *Sink) changed(old, new *subscription.Subscription) {
	if old == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.states[old.ID]
	if st == nil || s.closed {
		return
	}
	if new == nil {
		if st.idle() {
			st.close()
			delete(s.states, old.ID)
		}
		return
	}
	st.update(new, s.cfg)
}

// TestSend makes one attempt of ev to sub now, outside the queue (as a
// batch of one when sub batches): signed
// with its secrets, through the SSRF guard unless the sink allows private
// networks, judged as a delivery would be. It changes nothing of the
// subscription (a 410 does not disable it).
func (s *Sink) TestSend(ctx context.Context, sub subscription.Subscription, ev sdk.Event) (subscription.TestResult, error) {
	hook, err := s.newWebhook(&sub, time.Now(), sub.MaxInFlight)
	if err != nil {
		return subscription.TestResult{}, err
	}
	defer hook.Close(context.Background())
	d := sdk.Delivery{Event: ev, Attempt: 1}
	var a webhook.Attempt
	if sub.Delivery.Batch.On() {
		// A batching subscription's receiver reads arrays: a batch of one.
		a = hook.DeliverBatch(ctx, []sdk.Delivery{d})[0]
	} else {
		a = hook.DeliverAttempt(ctx, d)
	}
	r := subscription.TestResult{StatusCode: a.Result.StatusCode, LatencyMS: a.Latency.Milliseconds()}
	switch a.Result.Outcome {
	case sdk.OK:
		r.Outcome = "delivered"
	case sdk.Retry:
		r.Outcome = "retry"
	default:
		r.Outcome = "failed"
	}
	switch {
	case len(a.ResponseBody) > 0:
		r.Response = strings.ToValidUTF8(string(a.ResponseBody), "\uFFFD")
	case a.Err != nil || a.Result.Reason != "":
		r.Response = a.Result.Reason
	}
	return r, nil
}

// Interface guards.
var (
	_ sdk.Sink            = (*Sink)(nil)
	_ sdk.ConfigValidator = (*Sink)(nil)
	_ sdk.Describer       = (*Sink)(nil)
	_ pipeline.Fanout     = (*Sink)(nil)
	// The webhook sink tells the engine the detail of its attempts, and
	// batches by its policy.
	_ pipeline.DetailedSink      = (*webhook.Webhook)(nil)
	_ pipeline.BatchingSink      = (*webhook.Webhook)(nil)
	_ pipeline.DetailedBatchSink = (*webhook.Webhook)(nil)
)

// waitFor waits d (nothing when d is not positive), or until ctx ends.
func waitFor(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
