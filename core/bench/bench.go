// Package bench measures hookbus end to end on this machine: a generator
// POSTs events to the ingest endpoint, they go through the queue and the
// scenario's pipeline, and are delivered as signed webhooks to local
// receivers. The direct scenario sends the same events from the same
// generator straight to the same receiver, the physical baseline every
// other figure is compared with (see Compare).
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"
)

// Scenarios.
const (
	// Direct is the generator straight to the receiver, no hookbus.
	Direct = "direct"
	// Passthrough is a pipeline without steps to one webhook sink.
	Passthrough = "passthrough"
	// Transform is a pipeline with a JavaScript transform to one webhook sink.
	Transform = "transform"
	// Fanout is one pipeline (the transform) to three webhook sinks, each
	// with its own receiver; an event counts once all three have it.
	Fanout = "fanout"
	// Subscriptions is one pipeline without steps to a subscriptions sink:
	// each event (of one application) goes to that application's
	// SubscriptionsPerEvent subscriptions, each with its own receiver; an
	// event counts once every receiver has it. It also measures a single
	// webhook sink (Passthrough) just before, and compares deliveries/s.
	Subscriptions = "subscriptions"
	// SubscriptionsDead is one pipeline without steps to a subscriptions
	// sink with Options.Subscriptions subscriptions in applications of
	// SubscriptionsPerEvent, Options.DeadSubscriptions of which point at
	// an endpoint that accepts the connection and never answers (each
	// attempt ends at the sink's timeout, Options.AttemptTimeout); the
	// events are spread over the applications. The same load runs first
	// without the dead subscriptions, and the healthy deliveries/s of the
	// two runs are compared.
	SubscriptionsDead = "subscriptions-dead"
	// PluginSink is Transform with the webhook sink out of process.
	PluginSink = "plugin-sink"
	// SlowEndpoint is Transform to a healthy sink and a dead one (503 or
	// hanging, see Options.Dead); it also measures the healthy sink alone.
	SlowEndpoint = "slow-endpoint"
	// Backlog is Passthrough to a receiver that answers 503 until every
	// event is accepted, then 204: memory during and after the drain.
	Backlog = "backlog"
	// Ordered is Passthrough with events spread over Options.Keys keys
	// (their subject) to a receiver that answers after
	// Options.ReceiverDelay (default 5ms), run twice in a round: first
	// unordered, then with `ordering: {key: subject}` on the sink. The
	// result is the ordered run's, with the unordered run's events/s
	// (AloneEventsPerS) and the ratio (RelativeToAlone).
	Ordered = "ordered"
)

// Scenarios lists the scenarios that run hookbus, in their usual order.
var Scenarios = []string{Passthrough, Transform, Fanout, Subscriptions, SubscriptionsDead, PluginSink, SlowEndpoint, Backlog, Ordered}

// SubscriptionsPerEvent is how many subscriptions each event of the
// Subscriptions scenario goes to, and how many each application of
// SubscriptionsDead has.
const SubscriptionsPerEvent = 10

// benchApplication is the application of the Subscriptions scenario's events.
const benchApplication = "bench"

// Options of one run.
type Options struct {
	// Scenario is Direct or one of Scenarios; default Transform.
	Scenario string
	Driver   string // queue driver: embedded (default), memory, nats, ...
	QueueURL string
	Events   int // events to send; default 20000
	// Concurrency is the number of concurrent producers; default 32.
	Concurrency int
	Batch       int // events per ingest request; default 1
	// Payload is the length of the padding string in each event; default 32.
	Payload int
	// Rate, when positive, offers that many events/s whatever the answers
	// (open loop) instead of sending as fast as the producers can.
	Rate float64
	// WebhookPlugin is the path of the hookbus-webhook plugin binary, for
	// the PluginSink scenario.
	WebhookPlugin string
	// Binary, when set, is a hookbus executable: hookbus then runs as a
	// child `hookbus run`, and its CPU (plugins included) and memory are
	// read from /proc. Without it hookbus runs in this process and the CPU
	// and memory figures include the generator and the receivers.
	Binary string
	// Dead is how the dead endpoint of SlowEndpoint fails: "503" (default)
	// or "hang" (never answers; the sink's timeout ends each attempt).
	Dead string
	// Circuit is "off" to run SlowEndpoint's dead sink with `circuit:
	// {enabled: false}` (every dead event attempted, as before sinks had
	// circuits); "on" or "" leaves the sink's circuit breaker on, its
	// default.
	Circuit string
	// Timeout bounds waiting for the deliveries; 0 means DefaultTimeout.
	Timeout time.Duration
	// Subscriptions (default 1000) and DeadSubscriptions (default a tenth
	// of them; negative: none) size SubscriptionsDead; AttemptTimeout
	// (default 5s) is its sink's timeout, which ends each attempt to a
	// dead subscription.
	Subscriptions     int
	DeadSubscriptions int
	AttemptTimeout    time.Duration
	// Round is the round this run belongs to (1-based; 0: none), for the
	// scenarios that measure two configurations one after the other
	// (SubscriptionsDead alternates their order).
	Round int
	// Settle is how long after the drain of Backlog the memory is read
	// again (RSSAfter); default 5s.
	Settle time.Duration
	// ProfileDir, when set, turns on server.pprof in hookbus and writes
	// its profiles there, named [run<Round>-]<scenario>-<driver>[-log-<AttemptLog>]: the CPU
	// profile of the whole run, merged from 2 s segments (.cpu.pprof), and
	// for Backlog that of the drain alone (.drain.cpu.pprof); heap profiles
	// after the deliveries (.end.heap.pprof) and, for Backlog, when every
	// event is queued (.queued.heap.pprof) and after Settle
	// (.settled.heap.pprof). In process, the profiles are of the whole
	// bench process.
	ProfileDir string
	// ProfileSeconds, when positive, bounds the CPU profile to the run's
	// first ProfileSeconds (and, for Backlog, the drain's first too).
	ProfileSeconds int
	// MemoryLimit, when set, is the server.memory_limit of the hookbus
	// under test ("160MiB").
	MemoryLimit string
	// AttemptLog is "off" to run hookbus with store.attempt_log false,
	// "on" (or "") with the delivery log on, its default. When set, the
	// result names it and Compare sets the ratio of an "on" run to the
	// "off" run of the same round (RelativeToLogOff).
	AttemptLog string
	// Keys (Ordered; default 1000) is how many ordering keys the events
	// are spread over, in turn.
	Keys int
	// ReceiverDelay, when positive, is how long the receivers wait
	// before they answer a delivery (Ordered: default 5ms).
	ReceiverDelay time.Duration
	// Progress, when set, is called about five times a second during the run.
	Progress func(Progress)
	Logger   *slog.Logger

	// applications, when set, are the events' application attributes,
	// in turn.
	applications []string
	// withoutDead runs SubscriptionsDead without its dead subscriptions.
	withoutDead bool
	// unordered runs Ordered without the sink's ordering.
	unordered bool
}

// Progress is a snapshot of a run under way.
type Progress struct {
	Scenario string
	// Phase is "sending", "backlog", "draining" or "delivering";
	// SubscriptionsDead's first run prefixes it with "without the dead: ".
	Phase     string
	Accepted  int // events the ingest endpoint (or receiver) took
	Delivered int // distinct events that reached every receiver
	Total     int
	Rate      float64 // delivered events/s since the start
	Elapsed   time.Duration
}

func (o *Options) setDefaults() {
	if o.Scenario == "" {
		o.Scenario = Transform
	}
	if o.Driver == "" {
		o.Driver = "embedded"
	}
	if o.Events <= 0 {
		o.Events = 20000
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 32
	}
	if o.Batch <= 0 {
		o.Batch = 1
	}
	if o.Payload <= 0 {
		o.Payload = 32
	}
	if o.Dead == "" {
		o.Dead = "503"
	}
	if o.Subscriptions <= 0 {
		o.Subscriptions = DefaultSubscriptions
	}
	if o.DeadSubscriptions == 0 {
		o.DeadSubscriptions = o.Subscriptions / 10
	}
	if o.AttemptTimeout <= 0 {
		o.AttemptTimeout = DefaultAttemptTimeout
	}
	if o.Settle <= 0 {
		o.Settle = 5 * time.Second
	}
	if o.Scenario == Ordered {
		if o.Keys <= 0 {
			o.Keys = 1000
		}
		if o.ReceiverDelay <= 0 {
			o.ReceiverDelay = 5 * time.Millisecond
		}
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout(o.Scenario, o.Events, o.Rate)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
}

// DefaultTimeout is how long a run waits for its deliveries: a minute, plus
// 5ms per event (a floor of 200 events/s), plus twice the time the offered
// rate needs; three times that for Backlog, which sends, waits and drains,
// and twice for SubscriptionsDead, whose events make 9 deliveries each.
func DefaultTimeout(scenario string, events int, rate float64) time.Duration {
	d := time.Minute + time.Duration(events)*5*time.Millisecond
	if rate > 0 {
		d += time.Duration(2 * float64(events) / rate * float64(time.Second))
	}
	switch scenario {
	case Backlog:
		d *= 3
	case SubscriptionsDead:
		d *= 2
	}
	return d
}

// Result of one run. Durations marshal as nanoseconds (the _ns keys).
type Result struct {
	Scenario string `json:"scenario"`
	Driver   string `json:"driver,omitempty"` // "" for Direct
	Sink     string `json:"sink,omitempty"`   // "webhook", "webhook-plugin"; "" for Direct
	// Process says where hookbus ran: "child" (its own process, figures
	// its own), "in-process" (figures include generator and receivers)
	// or "none" (Direct).
	Process string `json:"process"`
	Events  int    `json:"events"`
	// OfferedRate is Options.Rate (0: closed loop).
	OfferedRate float64       `json:"offered_rate,omitempty"`
	Accepted    int           `json:"accepted"`  // events answered 2xx by ingest
	Delivered   int           `json:"delivered"` // distinct events every receiver got
	Duplicates  int           `json:"duplicates"`
	Elapsed     time.Duration `json:"elapsed_ns"`
	EventsPerS  float64       `json:"events_per_s"`
	// P50, P99 and P999 are ingest -> delivery: from the time the request
	// was sent (or scheduled, with a rate) to its arrival at the receiver.
	P50       time.Duration `json:"p50_ns"`
	P99       time.Duration `json:"p99_ns"`
	P999      time.Duration `json:"p999_ns"`
	IngestP50 time.Duration `json:"ingest_p50_ns"` // time to the ingest answer
	IngestP99 time.Duration `json:"ingest_p99_ns"`
	// CPUPerEvent is hookbus's CPU time (see Process) over the delivered
	// events; 0 for Direct.
	CPUPerEvent time.Duration `json:"cpu_per_event_ns"`
	PeakRSS     int64         `json:"peak_rss_bytes,omitempty"`

	// DirectEventsPerS and RatioToDirect compare with the Direct run of
	// the same round; InProcessRatio compares PluginSink with Transform on
	// the same driver in the same round. Set by Compare.
	DirectEventsPerS float64 `json:"direct_events_per_s,omitempty"`
	RatioToDirect    float64 `json:"ratio_to_direct,omitempty"`
	InProcessRatio   float64 `json:"in_process_ratio,omitempty"`
	// AttemptLog is Options.AttemptLog ("on", "off" or "" when not set);
	// RelativeToLogOff, on an "on" run, is its events/s over those of the
	// "off" run of the same scenario in the same round (set by Compare):
	// 1 minus it is what the delivery log costs.
	AttemptLog       string  `json:"attempt_log,omitempty"`
	RelativeToLogOff float64 `json:"relative_to_log_off,omitempty"`

	// SlowEndpoint: the healthy sink's events/s alone (measured just
	// before), the ratio of EventsPerS to it, and the attempts the dead
	// endpoint refused. Subscriptions: the single webhook sink's events/s
	// (= its deliveries/s, measured just before) and the ratio of
	// DeliveriesPerS to it.
	AloneEventsPerS float64 `json:"alone_events_per_s,omitempty"`
	RelativeToAlone float64 `json:"relative_to_alone,omitempty"`
	DeadAttempts    int64   `json:"dead_attempts,omitempty"`
	// Keys is Ordered's Options.Keys.
	Keys int `json:"keys,omitempty"`
	// Circuit is SlowEndpoint's Options.Circuit ("" when not set).
	Circuit string `json:"circuit,omitempty"`
	// DeliveriesPerS is EventsPerS times the deliveries each event makes
	// (Subscriptions: one per subscription); for SubscriptionsDead, the
	// deliveries to healthy subscriptions (Deliveries) per second.
	DeliveriesPerS float64 `json:"deliveries_per_s,omitempty"`

	// SubscriptionsDead: the subscriptions and how many of them are dead,
	// the deliveries the healthy ones received, and the healthy
	// deliveries/s of the run without the dead ones (measured just
	// before; AloneEventsPerS is its events/s, RelativeToAlone the ratio
	// of DeliveriesPerS to it). DeadAttempts counts the requests the dead
	// endpoints took.
	Subscriptions       int     `json:"subscriptions,omitempty"`
	DeadSubscriptions   int     `json:"dead_subscriptions,omitempty"`
	Deliveries          int64   `json:"deliveries,omitempty"`
	AloneDeliveriesPerS float64 `json:"alone_deliveries_per_s,omitempty"`
	// CPUPerDelivery is hookbus's CPU time over Deliveries;
	// AloneCPUPerDelivery that of the run without the dead, and
	// CPURelativeToAlone the first over the second: the healthy
	// deliveries one CPU second makes beside the dead subscriptions,
	// relative to without them. Unlike the deliveries/s, it does not
	// depend on the share of the machine hookbus got in each run.
	CPUPerDelivery      time.Duration `json:"cpu_per_delivery_ns,omitempty"`
	AloneCPUPerDelivery time.Duration `json:"alone_cpu_per_delivery_ns,omitempty"`
	CPURelativeToAlone  float64       `json:"cpu_relative_to_alone,omitempty"`

	// Deferrals and NotTried are hookbus's counts, from its metrics at
	// the end of the run: deliveries handed back to the queue without an
	// attempt (a subscription's window full or its rate limit), and
	// attempts skipped by an open circuit.
	Deferrals int64 `json:"deferrals,omitempty"`
	NotTried  int64 `json:"not_tried,omitempty"`

	// Backlog: the peak RSS while the events wait and while they drain,
	// the RSS Options.Settle after the drain, the drain's events/s (from
	// the receiver's recovery to the last delivery), attempts refused,
	// and events not delivered.
	PeakRSSBacklog  int64   `json:"peak_rss_backlog_bytes,omitempty"`
	PeakRSSDrain    int64   `json:"peak_rss_drain_bytes,omitempty"`
	RSSAfter        int64   `json:"rss_after_bytes,omitempty"`
	DrainEventsPerS float64 `json:"drain_events_per_s,omitempty"`
	Refused         int64   `json:"refused,omitempty"`
	Lost            int     `json:"lost"`

	// Profile is the CPU profile of the whole run (Options.ProfileDir),
	// Profiles every profile written, ProfileError what could not be.
	Profile      string   `json:"profile,omitempty"`
	Profiles     []string `json:"profiles,omitempty"`
	ProfileError string   `json:"profile_error,omitempty"`

	// Partial is set when the run ended before every event was delivered;
	// Reason says why (a timeout, a refused request, an interrupt) and the
	// figures are those of what was delivered until then.
	Partial bool   `json:"partial,omitempty"`
	Reason  string `json:"reason,omitempty"`
}

// Run performs one measurement of o.Scenario. It returns an error only when
// nothing could be measured (hookbus did not start); a run that ends early
// returns its partial figures with Partial and Reason set.
func Run(ctx context.Context, o Options) (Result, error) {
	o.setDefaults()
	res := Result{Scenario: o.Scenario, Events: o.Events, OfferedRate: o.Rate}
	if o.Scenario == Direct {
		res.Process = "none"
		rcv, err := newReceiver(o.Events, answerOK)
		if err != nil {
			return res, err
		}
		defer rcv.close()
		measure(ctx, o, run{url: rcv.url(), targets: []*receiver{rcv}}, &res)
		return res, nil
	}
	if !slices.Contains(Scenarios, o.Scenario) {
		return res, fmt.Errorf("unknown scenario %q (want %s or one of %v)", o.Scenario, Direct, Scenarios)
	}
	if o.Scenario == PluginSink && o.WebhookPlugin == "" {
		return res, errors.New("scenario plugin-sink needs the hookbus-webhook plugin binary (Options.WebhookPlugin)")
	}
	switch o.Scenario {
	case Subscriptions:
		return runSubscriptions(ctx, o)
	case SubscriptionsDead:
		return runSubscriptionsDead(ctx, o)
	}
	if o.Scenario == Ordered {
		// Unordered first, then ordered, on the same events.
		uo := o
		uo.unordered = true
		uo.Progress = nil
		ur, err := runHookbus(ctx, uo)
		if err != nil {
			return res, fmt.Errorf("unordered: %w", err)
		}
		r, err := runHookbus(ctx, o)
		if err != nil {
			return res, err
		}
		r.AloneEventsPerS, r.Keys = ur.EventsPerS, o.Keys
		if ur.EventsPerS > 0 {
			r.RelativeToAlone = r.EventsPerS / ur.EventsPerS
		}
		if ur.Partial && !r.Partial {
			r.Partial, r.Reason = true, "unordered: "+ur.Reason
		}
		return r, nil
	}
	if o.Scenario == SlowEndpoint {
		// The healthy sink alone first, then beside the dead one.
		alone := o
		alone.Scenario = Transform
		alone.Progress = nil
		ar, err := runHookbus(ctx, alone)
		if err != nil {
			return res, fmt.Errorf("healthy sink alone: %w", err)
		}
		r, err := runHookbus(ctx, o)
		if err != nil {
			return res, err
		}
		r.AloneEventsPerS = ar.EventsPerS
		if ar.EventsPerS > 0 {
			r.RelativeToAlone = r.EventsPerS / ar.EventsPerS
		}
		if ar.Partial && !r.Partial {
			r.Partial, r.Reason = true, "healthy sink alone: "+ar.Reason
		}
		return r, nil
	}
	return runHookbus(ctx, o)
}

const benchSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// runHookbus runs one scenario through hookbus.
func runHookbus(ctx context.Context, o Options) (Result, error) {
	res := Result{Scenario: o.Scenario, Driver: o.Driver, Sink: "webhook", Process: "in-process", Events: o.Events, OfferedRate: o.Rate,
		AttemptLog: o.AttemptLog}
	if o.Binary != "" {
		res.Process = "child"
	}
	dir, err := os.MkdirTemp("", "hookbus-bench-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)

	nrcv := 1
	switch o.Scenario {
	case Fanout:
		nrcv = 3
	case Subscriptions:
		nrcv = SubscriptionsPerEvent
		res.Sink = "subscriptions"
	case SubscriptionsDead:
		nrcv = 0 // one receiver for every healthy subscription, below
		res.Sink = "subscriptions"
	}
	mode := answerOK
	if o.Scenario == Backlog {
		mode = answer503
	}
	var r run
	for range nrcv {
		rcv, err := newReceiver(o.Events, mode)
		if err != nil {
			return res, err
		}
		defer rcv.close()
		rcv.delay = o.ReceiverDelay
		r.targets = append(r.targets, rcv)
	}
	sinkType := "webhook"
	plugins := map[string]any{}
	if o.Scenario == PluginSink {
		sinkType = "webhook-plugin"
		res.Sink = sinkType
		plugins[sinkType] = map[string]any{"path": o.WebhookPlugin}
	}
	sinks := map[string]any{}
	var to []string
	var subs []benchSub // the subscriptions scenarios' callback URLs
	for i, rcv := range r.targets {
		if o.Scenario == Subscriptions {
			subs = append(subs, benchSub{App: benchApplication, URL: rcv.url()})
			continue
		}
		name := "receiver" + strconv.Itoa(i+1)
		c := map[string]any{"url": rcv.url(), "secret": benchSecret, "allow_private_networks": true, "max_in_flight": 64}
		if o.Scenario == Backlog {
			c["retry"] = map[string]any{"schedule": backlogSchedule(o.Events)}
		}
		if o.Scenario == Ordered && !o.unordered {
			c["ordering"] = map[string]any{"key": "subject"}
		}
		sinks[name] = map[string]any{"type": sinkType, "config": c}
		to = append(to, name)
	}
	switch o.Scenario {
	case Subscriptions:
		// As many attempts in flight per subscription as the webhook sink
		// has to its URL.
		sinks["partners"] = map[string]any{"type": "subscriptions", "config": map[string]any{
			"allow_private_networks": true, "subscription_max_in_flight": 64, "max_in_flight": 64 * len(subs)}}
		to = append(to, "partners")
	case SubscriptionsDead:
		dead := max(o.DeadSubscriptions, 0)
		want := newDeadLayout(o.Subscriptions, dead, "", "", o.withoutDead)
		rcv, err := newPairReceiver(o.Events, want.perApp)
		if err != nil {
			return res, err
		}
		defer rcv.close()
		r.targets, r.pairs = []*receiver{rcv}, rcv
		deadURL := ""
		if dead > 0 && !o.withoutDead {
			dr, err := newReceiver(0, answerHang)
			if err != nil {
				return res, err
			}
			defer dr.close()
			r.dead, deadURL = dr, dr.url()
		}
		l := newDeadLayout(o.Subscriptions, dead, rcv.url(), deadURL, o.withoutDead)
		subs, o.applications = l.subs, l.apps
		res.Subscriptions, res.DeadSubscriptions = len(l.subs), l.dead
		// The sink's defaults, as a platform would run it, but for the
		// attempt timeout.
		sinks["partners"] = map[string]any{"type": "subscriptions", "config": map[string]any{
			"allow_private_networks": true, "timeout": o.AttemptTimeout.String()}}
		to = append(to, "partners")
	}
	if o.Scenario == Backlog {
		r.backlog = r.targets[0]
	}
	if o.Scenario == SlowEndpoint {
		dm := answer503
		if o.Dead == "hang" {
			dm = answerHang
		}
		dead, err := newReceiver(o.Events, dm)
		if err != nil {
			return res, err
		}
		defer dead.close()
		r.dead = dead
		sinks["dead"] = map[string]any{"type": sinkType, "config": map[string]any{
			"url": dead.url(), "secret": benchSecret, "allow_private_networks": true, "max_in_flight": 64, "timeout": "2s"}}
		if o.Circuit == "off" {
			sinks["dead"].(map[string]any)["config"].(map[string]any)["circuit"] = map[string]any{"enabled": false}
		}
		res.Circuit = o.Circuit
		to = append(to, "dead")
	}
	pipeline := map[string]any{"from": []string{"load"}, "to": to}
	if o.Scenario != Passthrough && o.Scenario != Backlog && o.Scenario != Subscriptions && o.Scenario != Ordered {
		script := filepath.Join(dir, "noop.js")
		if err := os.WriteFile(script, []byte("function transform(event, ctx) { return event; }\n"), 0o644); err != nil {
			return res, err
		}
		pipeline["steps"] = []any{map[string]any{"transform": script}}
	}
	listen := "127.0.0.1:0"
	if o.Binary != "" {
		if listen, err = freeAddr(); err != nil {
			return res, err
		}
	}
	queue := map[string]any{"driver": o.Driver, "namespace": "bench" + strconv.FormatInt(time.Now().UnixNano()%1e9, 36)}
	if o.QueueURL != "" {
		queue["url"] = o.QueueURL
	}
	cfg := map[string]any{
		"version":   1,
		"server":    serverConfig(o, listen),
		"data_dir":  filepath.Join(dir, "data"),
		"queue":     queue,
		"log":       map[string]any{"level": "error"},
		"reload":    map[string]any{"watch": false},
		"plugins":   plugins,
		"sources":   map[string]any{"load": map[string]any{"type": "http"}},
		"sinks":     sinks,
		"pipelines": map[string]any{"load": pipeline},
		"store":     map[string]any{"attempt_log": o.AttemptLog != "off"},
	}
	h, err := startHost(ctx, o, dir, cfg)
	if err != nil {
		return res, fmt.Errorf("start hookbus: %w", err)
	}
	defer h.stop()
	if len(subs) > 0 {
		if err := createSubscriptions(ctx, "http://"+h.addr(), subs); err != nil {
			return res, fmt.Errorf("create the subscriptions through the API: %w", err)
		}
	}
	r.url = "http://" + h.addr() + "/v1/sources/load/events"
	r.host = h
	measure(ctx, o, r, &res)
	if r.pairs != nil {
		res.Deliveries = r.pairs.pairs.Load()
		if res.Elapsed > 0 {
			res.DeliveriesPerS = float64(res.Deliveries) / res.Elapsed.Seconds()
		}
		if res.Deliveries > 0 {
			res.CPUPerDelivery = res.CPUPerEvent * time.Duration(res.Delivered) / time.Duration(res.Deliveries)
		}
	}
	return res, nil
}

// serverConfig is the server block of the configuration under test.
func serverConfig(o Options, listen string) map[string]any {
	c := map[string]any{"listen": listen, "pprof": o.ProfileDir != ""}
	if o.MemoryLimit != "" {
		c["memory_limit"] = o.MemoryLimit
	}
	return c
}

// backlogSchedule spaces the retries of the backlog so that the attempts
// (100 retries at most) outlast sending every event at 800 events/s or more,
// while a retry after the receiver recovers waits at most a few seconds
// for 100,000 events (about 12s for 1,000,000).
func backlogSchedule(events int) []string {
	step := max(time.Second, time.Duration(events)*time.Second/800/100)
	out := make([]string, 100)
	for i := range out {
		out[i] = step.String()
	}
	return out
}

// run is what measure drives: the ingest URL, the receivers that must each
// get every event, and the hookbus host (nil for Direct).
type run struct {
	url     string
	targets []*receiver
	host    host
	backlog *receiver // answers 503 until every event is accepted
	dead    *receiver
	pairs   *receiver // the receiver of many subscriptions (SubscriptionsDead)
}

func (r run) delivered() int {
	n := int64(-1)
	for _, t := range r.targets {
		if c := t.count.Load(); n < 0 || c < n {
			n = c
		}
	}
	return int(max(n, 0))
}

// measure sends the events and waits for their delivery, filling res.
func measure(ctx context.Context, o Options, r run, res *Result) {
	// The run's clock starts with its timeout: a run cut off by it lasted
	// at least the timeout (the setup below can take a while on a busy
	// machine).
	start := time.Now()
	tctx, cancel := context.WithTimeoutCause(ctx, o.Timeout, fmt.Errorf("timeout after %s", o.Timeout))
	defer cancel()
	gen := newGenerator(r.url, o)
	cpu0 := time.Duration(0)
	if r.host != nil {
		cpu0 = r.host.cpu()
	}
	prof := newProfiler(o, r.host)
	defer prof.report(res)
	genErr := make(chan error, 1)
	go func() { genErr <- gen.run(tctx) }()
	allDone := make(chan struct{})
	go func() {
		defer close(allDone)
		for _, t := range r.targets {
			select {
			case <-t.done:
			case <-tctx.Done():
				return
			}
		}
	}()

	var peak, peakBacklog, peakDrain int64
	var switched time.Time
	phase := "sending"
	if r.backlog != nil {
		phase = "backlog"
	}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	sample := func() {
		if r.host != nil {
			rss := r.host.rss()
			peak = max(peak, rss)
			if r.backlog != nil && switched.IsZero() {
				peakBacklog = max(peakBacklog, rss)
			} else if r.backlog != nil {
				peakDrain = max(peakDrain, rss)
			}
		}
		if r.backlog != nil && switched.IsZero() && gen.accepted.Load() >= int64(o.Events) {
			// Every event is queued: the receiver recovers and the drain starts.
			prof.heap(ctx, "queued")
			prof.mark()
			switched = time.Now()
			r.backlog.mode.Store(answerOK)
			phase = "draining"
		}
		if r.backlog == nil && phase == "sending" && gen.accepted.Load() >= int64(o.Events) {
			phase = "delivering"
		}
		if o.Progress != nil {
			el := time.Since(start)
			o.Progress(Progress{Scenario: o.Scenario, Phase: phase, Accepted: int(gen.accepted.Load()), Delivered: r.delivered(),
				Total: o.Events, Elapsed: el, Rate: float64(r.delivered()) / el.Seconds()})
		}
	}
	sent := false
	var reason string
wait:
	for {
		select {
		case <-allDone:
			if tctx.Err() == nil {
				break wait
			}
			allDone = nil
		case err := <-genErr:
			sent = true
			if err != nil {
				reason = err.Error()
				break wait
			}
		case <-tctx.Done():
			break wait
		case <-tick.C:
			sample()
		}
	}
	sample()
	end := time.Now()
	prof.heap(ctx, "end")
	delivered := r.delivered()
	if delivered < o.Events && reason == "" {
		if c := context.Cause(tctx); c != nil {
			reason = c.Error()
		} else {
			reason = "stopped"
		}
	}
	if !sent {
		// Every event arrived but answers may still be on their way: wait
		// for them so Accepted is whole; on failure stop sending first.
		if reason != "" {
			cancel()
		}
		<-genErr
	}
	if prof != nil {
		pctx, pcancel := context.WithTimeout(context.Background(), profileSegment+time.Minute)
		prof.stop(pctx)
		pcancel()
	}
	if r.dead != nil && r.dead.mode.Load() == answerHang {
		// Release the attempts still hanging, so that stopping hookbus
		// does not wait out their timeout.
		r.dead.close()
	}
	if r.host != nil {
		res.Deferrals, res.NotTried = counters(r.host.addr())
	}
	var cpu time.Duration
	if r.host != nil {
		if ah, ok := r.host.(*appHost); ok {
			// In process, plugin processes count once reaped: stop first.
			ah.stop()
		}
		cpu = r.host.cpu() - cpu0
	}
	var lat []time.Duration
	last := start
	for _, t := range r.targets {
		l, d := t.snapshot()
		lat = append(lat, l...)
		res.Duplicates += d
		if ns := t.last.Load(); ns > 0 && time.Unix(0, ns).After(last) {
			last = time.Unix(0, ns)
		}
	}
	sortDurations(lat)
	ingest := gen.ingestTimes()
	res.Accepted = int(gen.accepted.Load())
	res.Delivered = delivered
	res.Elapsed = last.Sub(start)
	if delivered < o.Events {
		res.Partial, res.Reason = true, fmt.Sprintf("%s: %d of %d events delivered (%d accepted)", reason, delivered, o.Events, res.Accepted)
		res.Elapsed = end.Sub(start)
	}
	if res.Elapsed > 0 {
		res.EventsPerS = float64(delivered) / res.Elapsed.Seconds()
	}
	res.P50, res.P99, res.P999 = pct(lat, 0.50), pct(lat, 0.99), pct(lat, 0.999)
	res.IngestP50, res.IngestP99 = pct(ingest, 0.5), pct(ingest, 0.99)
	if r.host != nil && delivered > 0 {
		res.CPUPerEvent = cpu / time.Duration(delivered)
	}
	res.PeakRSS = peak
	if r.dead != nil {
		res.DeadAttempts = r.dead.rejected.Load()
	}
	if r.backlog != nil {
		res.PeakRSSBacklog, res.PeakRSSDrain = peakBacklog, peakDrain
		res.Refused = r.backlog.rejected.Load()
		res.Lost = o.Events - delivered
		if !switched.IsZero() && delivered > 0 {
			res.DrainEventsPerS = float64(delivered) / last.Sub(switched).Seconds()
		}
		if !res.Partial && r.host != nil {
			settle(ctx, o.Settle)
			res.RSSAfter = r.host.rss()
			if _, inProcess := r.host.(*appHost); !inProcess {
				// In process, hookbus has stopped by now.
				prof.heap(ctx, "settled")
			}
		}
	}
}

// settle waits d (or until ctx ends) so the runtime can return freed memory.
func settle(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

func pct(s []time.Duration, p float64) time.Duration {
	if len(s) == 0 {
		return 0
	}
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

func sortDurations(s []time.Duration) { slices.Sort(s) }
