package subscriptions

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/hookbus/hookbus/core/batching"
	"github.com/hookbus/hookbus/core/pipeline"
	"github.com/hookbus/hookbus/core/retry"
	"github.com/hookbus/hookbus/core/script"
	"github.com/hookbus/hookbus/core/sinkopts"
	"github.com/hookbus/hookbus/core/subscription"
	"github.com/hookbus/hookbus/plugins/webhook"
	"github.com/hookbus/hookbus/sdk"
)

// Isolation settings.
const (
	// circuitThreshold failed attempts in a row open a subscription's
	// circuit: its attempts are skipped until circuitBase passes (doubling
	// after each failed probe, up to circuitMax) and one probe succeeds.
	circuitThreshold = 3
	circuitBase      = time.Second
	circuitMax       = 5 * time.Minute
	// initialLatency is the attempt latency assumed of a subscription
	// before its first attempt, for the wait of a pair deferred while its
	// window is full.
	initialLatency = 50 * time.Millisecond
	// minDefer and maxDefer bound a deferral's wait.
	minDefer = 10 * time.Millisecond
	maxDefer = 10 * time.Minute
	// inlineWait is the longest a pair waits for its rate-limit slot
	// inside its delivery rather than be deferred.
	inlineWait = 20 * time.Millisecond
	// slotMemory is how long a reservation whose pair did not come back
	// (it went to another instance) is kept.
	slotMemory = time.Minute
	// filterPool is how many runtimes a subscription's filter keeps.
	filterPool = 2
)

// outcome is what an attempt says of its endpoint's health.
type outcome int

const (
	// outcomeNone: no request reached the endpoint (refused before it).
	outcomeNone outcome = iota
	// outcomeHealthy: the endpoint answered (2xx, or a 4xx it chose).
	outcomeHealthy
	// outcomeFailing: it did not answer in time, or answered 408, 429 or
	// 5xx.
	outcomeFailing
)

// judge classifies an attempt for the window and the circuit.
func judge(a webhook.Attempt) outcome {
	switch {
	case a.Result.Outcome == sdk.Retry:
		return outcomeFailing
	case a.Result.Outcome == sdk.OK, a.Result.StatusCode != 0:
		return outcomeHealthy
	}
	return outcomeNone
}

// subState is what the sink keeps for one subscription: its webhook and
// compiled filter for the version in use, and its window, rate limit,
// circuit and failing state.
type subState struct {
	mu  sync.Mutex
	sub *subscription.Subscription // the version applied

	// Window: inFlight attempts run, at most limit (1 at first, doubled by
	// each healthy answer up to maxInFlight, back to 1 on a failure).
	maxInFlight, inFlight, limit int
	latency                      time.Duration // moving average of attempts
	windowAt                     time.Time     // when the last pair deferred for the window is due
	// started holds when each attempt in flight began: an attempt running
	// longer than the average (an endpoint that stopped answering) tells
	// more of when a place frees than the average does.
	started []time.Time

	rateLimit float64
	limiter   *rate.Limiter
	slots     map[string]time.Time // pair -> its reserved rate-limit slot

	// Circuit.
	failures     int       // failing attempts in a row
	failingSince time.Time // first of them
	openUntil    time.Time
	backoff      time.Duration
	probing      bool

	// writeMu serialises this process's store writes for the subscription.
	writeMu sync.Mutex
	// stored is FailingSince as the store has it, as far as this process
	// knows; disabled is the reason this process disabled it, until the
	// index shows a newer version.
	stored   time.Time
	disabled string

	// The run of failed attempts counted for delivery.failing (in this
	// process): how many in a row, and since when (the store's
	// FailingSince when known, so that instances name the run alike).
	opFailures int
	opSince    time.Time

	hook    *webhook.Webhook
	hookKey string
	// hookFor is the version hook was checked against, valid until
	// hookUntil (when a secret it signs with expires).
	hookFor   *subscription.Subscription
	hookUntil time.Time
	filterSrc string
	filterS   *script.Script
	filterErr error

	// The subscription's batches (see batch.go): the batcher for
	// batchPolicy, and the pairs waiting in or sent by it.
	batcher     *pipeline.TargetBatcher
	batchPolicy batching.Policy
	batchHeld   int
}

func newSubState(sub *subscription.Subscription, cfg Config) *subState {
	st := &subState{limit: 1, latency: initialLatency, slots: map[string]time.Time{}}
	st.update(sub, cfg)
	return st
}

// update brings st to sub's version: limits, the failing state the store
// has, and a fresh circuit for a new URL. The webhook and the filter are
// rebuilt when next used.
func (st *subState) update(sub *subscription.Subscription, cfg Config) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.sub == sub {
		return
	}
	old := st.sub
	st.sub = sub
	st.maxInFlight = sub.MaxInFlight
	if st.maxInFlight <= 0 {
		st.maxInFlight = cfg.SubscriptionMaxInFlight
	}
	st.limit = max(1, min(st.limit, st.maxInFlight))
	if sub.RateLimit != st.rateLimit || st.limiter == nil && sub.RateLimit > 0 {
		st.rateLimit, st.limiter = sub.RateLimit, nil
		if sub.RateLimit > 0 {
			st.limiter = rate.NewLimiter(rate.Limit(sub.RateLimit), 1)
		}
	}
	st.stored = sub.FailingSince
	st.disabled = ""
	if old == nil || old.URL != sub.URL {
		st.failures, st.failingSince, st.openUntil, st.backoff, st.probing = 0, time.Time{}, time.Time{}, 0, false
		st.latency = initialLatency
	}
}

// disabledHere is the reason this process disabled the subscription, ""
// when it did not (or the index has caught up).
func (st *subState) disabledHere() string {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.disabled
}

// admission is admit's verdict: defer by defer_ (for reason), skip the
// attempt (notTried, the reason), or go after wait, the attempt counted
// in flight from started (give that to done).
type admission struct {
	defer_   time.Duration
	reason   string
	notTried string
	wait     time.Duration
	started  time.Time
}

// admit decides whether the pair key may be attempted now, taking a place
// in the window when it may (done gives it back).
func (st *subState) admit(now time.Time, key string) admission {
	st.mu.Lock()
	defer st.mu.Unlock()
	probe := false
	if st.failures >= circuitThreshold {
		if st.probing || now.Before(st.openUntil) {
			return admission{notTried: "not tried: endpoint failing since " + st.failingSince.UTC().Format(time.RFC3339)}
		}
		probe = true
	}
	if st.inFlight >= st.limit {
		return admission{defer_: st.windowWait(now), reason: "max_in_flight"}
	}
	var wait time.Duration
	if st.limiter != nil {
		if slot, ok := st.slots[key]; ok {
			// Back for the slot reserved when it was deferred.
			delete(st.slots, key)
			wait = slot.Sub(now)
		} else {
			wait = st.limiter.ReserveN(now, 1).DelayFrom(now)
		}
		if wait > inlineWait {
			st.slots[key] = now.Add(wait)
			return admission{defer_: wait, reason: "rate_limit"}
		}
	}
	st.inFlight++
	st.started = append(st.started, now)
	st.probing = st.probing || probe
	return admission{wait: max(wait, 0), started: now}
}

// windowWait estimates when a pair that found the window full will find a
// place: deferred pairs line up behind each other, one per slot freed
// (the attempts' latency over the window). The latency is the average
// of the attempts, or, when longer, how long the oldest attempt in
// flight has been running: pairs of an endpoint that stopped answering
// then come back ever more rarely while it hangs (a wait that doubles,
// about, with each look), rather than every average latency until the
// sink's timeout ends the attempt. Callers hold st.mu.
func (st *subState) windowWait(now time.Time) time.Duration {
	lat := st.latency
	if len(st.started) > 0 {
		lat = max(lat, now.Sub(slices.MinFunc(st.started, time.Time.Compare)))
	}
	per := max(lat/time.Duration(max(st.limit, 1)), minDefer)
	if st.windowAt.Before(now) {
		st.windowAt = now
	}
	st.windowAt = st.windowAt.Add(per)
	w := st.windowAt.Sub(now)
	// A little jitter, so pairs deferred together do not all come back in
	// the same instant.
	w += time.Duration(rand.Int64N(int64(per)/10 + 1))
	return min(w, maxDefer)
}

// done gives back the place admit took for the attempt started then,
// and learns from the attempt.
func (st *subState) done(started, end time.Time, latency time.Duration, o outcome) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.inFlight--
	if i := slices.IndexFunc(st.started, started.Equal); i >= 0 {
		st.started = slices.Delete(st.started, i, i+1)
	}
	if latency > 0 {
		st.latency = (st.latency*4 + latency) / 5
	}
	switch o {
	case outcomeHealthy:
		st.failures, st.failingSince, st.openUntil, st.backoff, st.probing = 0, time.Time{}, time.Time{}, 0, false
		st.limit = min(st.limit*2, st.maxInFlight)
	case outcomeFailing:
		if st.failures == 0 {
			st.failingSince = end.Add(-latency)
		}
		st.failures++
		st.limit = 1
		switch {
		case st.probing:
			st.probing = false
			st.backoff = min(max(st.backoff*2, circuitBase), circuitMax)
			st.openUntil = end.Add(st.backoff)
		case st.failures == circuitThreshold:
			st.backoff = circuitBase
			st.openUntil = end.Add(st.backoff)
		}
	default:
		st.probing = false
	}
}

// idle tells whether nothing of st is in use (it may be dropped).
func (st *subState) idle() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.inFlight == 0 && len(st.slots) == 0 && st.batchHeld == 0
}

// sweepSlots drops reservations whose pair did not come back.
func (st *subState) sweepSlots(now time.Time) {
	st.mu.Lock()
	defer st.mu.Unlock()
	for k, at := range st.slots {
		if now.Sub(at) > slotMemory {
			delete(st.slots, k)
		}
	}
}

// close releases the webhook's idle connections.
func (st *subState) close() {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.hook != nil {
		_ = st.hook.Close(context.Background())
		st.hook = nil
	}
	if st.batcher != nil {
		go st.batcher.Close() // at once when idle; else after its calls
		st.batcher = nil
	}
}

// webhook returns the webhook for the subscription's version and the
// secrets that sign at now, built on first use and when either changes.
func (st *subState) webhook(now time.Time, s *Sink) (*webhook.Webhook, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.hook != nil && st.hookFor == st.sub && now.Before(st.hookUntil) {
		return st.hook, nil
	}
	key := hookKey(st.sub, now, st.maxInFlight)
	if st.hook == nil || st.hookKey != key {
		h, err := s.newWebhook(st.sub, now, st.maxInFlight)
		if err != nil {
			return nil, err
		}
		if st.hook != nil {
			_ = st.hook.Close(context.Background())
		}
		st.hook, st.hookKey = h, key
	}
	st.hookFor, st.hookUntil = st.sub, signingUntil(st.sub, now)
	return st.hook, nil
}

// signingUntil is when the set of secrets that sign at now changes next:
// the earliest expiry still ahead.
func signingUntil(sub *subscription.Subscription, now time.Time) time.Time {
	until := now.Add(time.Hour)
	for _, sec := range append(slices.Clip(sub.Secrets), sub.SigningKeys...) {
		if !sec.Expires.IsZero() && sec.Expires.After(now) && sec.Expires.Before(until) {
			until = sec.Expires
		}
	}
	return until
}

// hookKey is what a subscription's webhook is built from.
func hookKey(sub *subscription.Subscription, now time.Time, maxInFlight int) string {
	var b strings.Builder
	b.WriteString(sub.URL)
	for _, sec := range sub.Signing(now) {
		b.WriteString("\x00")
		b.WriteString(sec.Value)
	}
	for _, k := range sub.SigningKeysAt(now) {
		b.WriteString("\x00")
		b.WriteString(k.Value)
	}
	b.WriteString("\x01")
	for _, k := range slices.Sorted(maps.Keys(sub.Headers)) {
		b.WriteString(k + "\x00" + sub.Headers[k] + "\x00")
	}
	fmt.Fprintf(&b, "\x01%d\x01%d", maxInFlight, sub.Delivery.Timeout)
	retryOn, _ := sub.Delivery.RetryOn.MarshalJSON()
	permanentOn, _ := sub.Delivery.PermanentOn.MarshalJSON()
	fmt.Fprintf(&b, "\x01%t%s\x01%t%s", sub.Delivery.RetryOn == nil, retryOn, sub.Delivery.PermanentOn == nil, permanentOn)
	batch, _ := sub.Delivery.Batch.MarshalJSON()
	fmt.Fprintf(&b, "\x01%s\x01%s\x01%s", sub.Format, sub.Delivery.Compression, batch)
	return b.String()
}

// newWebhook builds the webhook sink that makes sub's attempts: its URL,
// headers, format and the secrets that sign at now, with the sink's
// timeout and SSRF policy.
func (s *Sink) newWebhook(sub *subscription.Subscription, now time.Time, maxInFlight int) (*webhook.Webhook, error) {
	signing := sub.Signing(now)
	if len(signing) == 0 {
		return nil, fmt.Errorf("subscription %s has no secret that signs now", sub.ID)
	}
	secrets := make([]string, len(signing))
	for i, sec := range signing {
		secrets[i] = sec.Value
	}
	var keys []string
	for _, k := range sub.SigningKeysAt(now) {
		keys = append(keys, k.Value)
	}
	if maxInFlight <= 0 {
		maxInFlight = s.cfg.SubscriptionMaxInFlight
	}
	policy := s.cfg.Policy().Override(sub.Delivery.Policy())
	w, err := webhook.New(webhook.Config{
		URL: sub.URL, Secrets: secrets, SigningKeys: keys, Headers: sub.Headers, Timeout: s.timeout(sub), AllowPrivateNetworks: s.cfg.AllowPrivateNetworks,
		RetryOn: policy.RetryOn, PermanentOn: policy.PermanentOn,
		Format:      sub.Format,
		Compression: sub.Delivery.Compression,
		Batch:       sub.Delivery.Batch,
		Settings:    sinkopts.Settings{MaxInFlight: maxInFlight, MaxRetryAfter: s.shared.MaxRetryAfter},
	})
	if err != nil {
		// The webhook's problems name its keys: url, secrets[0], headers.X.
		return nil, fmt.Errorf("subscription %s: %s", sub.ID, strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	return w, nil
}

// timeout is the bound on one attempt to sub: its own timeout, at most
// the sink's max_timeout, else the sink's timeout.
func (s *Sink) timeout(sub *subscription.Subscription) time.Duration {
	if t := sub.Delivery.Timeout; t > 0 {
		return min(t, s.cfg.MaxTimeout)
	}
	return s.cfg.Timeout
}

// schedule is the retry schedule of sub's pairs when it has its own (nil:
// the sink's): its waits, with the sink's jitter and Retry-After cap.
func (s *Sink) schedule(sub *subscription.Subscription) *retry.Schedule {
	if sub.Delivery.RetrySchedule == nil {
		return nil
	}
	sched := s.shared.Schedule()
	sched.Delays = slices.Clone(sub.Delivery.RetrySchedule)
	return &sched
}

// filter runs the subscription's filter on d's event, compiling it first
// for a new version.
func (st *subState) filter(ctx context.Context, d sdk.Delivery, s *Sink) (bool, error) {
	st.mu.Lock()
	src := st.sub.Filter
	if st.filterSrc != src || st.filterS == nil && st.filterErr == nil {
		opts := s.host.Scripts
		opts.PoolSize = filterPool
		name := "subscriptions/" + st.sub.ID + "/filter.js"
		st.filterS, st.filterErr = script.CompileSource(name, src, opts)
		if st.filterErr == nil && !st.filterS.HasFilter() {
			st.filterS, st.filterErr = nil, errors.New(name+": defines no filter(event) function")
		}
		st.filterSrc = src
	}
	sc, err := st.filterS, st.filterErr
	st.mu.Unlock()
	if err != nil {
		return false, err
	}
	return sc.Filter(ctx, d.Event, script.Context{Pipeline: d.Pipeline, Sink: s.host.Sink, Attempt: d.Attempt})
}
