// Package metrics defines hookbus' Prometheus metrics (all prefixed hookbus_).
package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics holds every hookbus collector, registered on one registry.
type Metrics struct {
	Registry *prometheus.Registry

	Received     *prometheus.CounterVec   // source
	Filtered     *prometheus.CounterVec   // pipeline, sink
	Delivered    *prometheus.CounterVec   // pipeline, sink
	DeadLettered *prometheus.CounterVec   // pipeline, sink, reason_kind
	Attempts     *prometheus.CounterVec   // sink, outcome, status_class
	Retries      *prometheus.CounterVec   // sink
	EndToEnd     *prometheus.HistogramVec // sink: received -> delivered seconds
	AttemptTime  *prometheus.HistogramVec // sink
	ScriptTime   *prometheus.HistogramVec // script
	ScriptErrors *prometheus.CounterVec   // script
	InFlight     *prometheus.GaugeVec     // sink
	// Deferrals counts deliveries handed back to the queue, without
	// counting an attempt, because their target could not take them yet
	// (a fan-out sink's subscription at its max_in_flight or rate limit):
	// sink, reason ("max_in_flight", "rate_limit").
	Deferrals *prometheus.CounterVec
	// NotTried counts attempts a fan-out sink skipped because the target's
	// endpoint is failing (its circuit is open); each counts as a failed
	// attempt of its delivery: sink.
	NotTried *prometheus.CounterVec
	// CircuitOpen is 1 while a sink's circuit is open (its events wait in
	// the queue, unattempted, for its endpoint to recover), else 0: sink.
	CircuitOpen *prometheus.GaugeVec
	// SubscriptionsDisabled counts subscriptions a sink disabled: sink,
	// reason ("gone": the endpoint answered 410; "failing": every attempt
	// failed for disable_after).
	SubscriptionsDisabled *prometheus.CounterVec
	// PluginInitFailures counts failed initialisations of a plugin source
	// or sink (timed out, crashed, failed): plugin, component ("sink partner").
	PluginInitFailures *prometheus.CounterVec
	// ComponentReady is 1 for a component that works, 0 while it cannot
	// (a plugin source or sink still initialising): component ("sink partner").
	ComponentReady *prometheus.GaugeVec

	// The topology last declared (see Declare): the sinks the oldest
	// waiting gauge reports.
	mu    sync.Mutex
	sinks []string
}

// DelayBuckets are the boundaries of hookbus_delivery_delay_seconds, in
// seconds: fine below a second (an event delivered at once), and every
// boundary an SLO on webhook delivery is usually written with (1 s, 5 s,
// 30 s, 1 min, 5 min, 1 h), up to a day of retries.
var DelayBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400}

// AttemptBuckets are the boundaries of hookbus_delivery_attempt_seconds,
// in seconds: one HTTP request, from a loopback answer to a sink's
// timeout.
var AttemptBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

// New creates the collectors on a fresh registry (with Go and process collectors).
func New() *Metrics {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := &Metrics{Registry: r}
	m.Received = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hookbus_events_received_total", Help: "Events accepted by a source and durably queued."}, []string{"source"})
	m.Filtered = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hookbus_events_filtered_total", Help: "Events dropped by a filter or transform script."}, []string{"pipeline", "sink"})
	m.Delivered = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hookbus_events_delivered_total", Help: "Events delivered by a sink."}, []string{"pipeline", "sink"})
	m.DeadLettered = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hookbus_events_dead_lettered_total", Help: "Events dead-lettered, by reason kind."}, []string{"pipeline", "sink", "kind"})
	m.Attempts = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hookbus_delivery_attempts_total", Help: "Delivery attempts by outcome and status class."}, []string{"sink", "outcome", "status_class"})
	m.Retries = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hookbus_delivery_retries_total", Help: "Deliveries scheduled for a retry."}, []string{"sink"})
	m.EndToEnd = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "hookbus_delivery_delay_seconds", Help: "Time from ingest to successful delivery.", Buckets: DelayBuckets}, []string{"sink"})
	m.AttemptTime = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "hookbus_delivery_attempt_seconds", Help: "Duration of one delivery attempt.", Buckets: AttemptBuckets}, []string{"sink"})
	m.ScriptTime = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "hookbus_script_duration_seconds", Help: "Duration of one script call.", Buckets: prometheus.ExponentialBuckets(0.00001, 3, 12)}, []string{"script"})
	m.ScriptErrors = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hookbus_script_errors_total", Help: "Script calls that threw, timed out or returned a bad value."}, []string{"script"})
	m.InFlight = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "hookbus_deliveries_in_flight", Help: "Deliveries currently running per sink."}, []string{"sink"})
	m.PluginInitFailures = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hookbus_plugin_init_failures_total", Help: "Plugin source or sink initialisations that timed out, crashed or failed; each is retried with backoff."}, []string{"plugin", "component"})
	m.ComponentReady = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "hookbus_component_ready", Help: "1 when a component can work, 0 while it cannot (a plugin source or sink still initialising)."}, []string{"component"})
	m.Deferrals = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hookbus_delivery_deferrals_total", Help: "Deliveries handed back to the queue without counting an attempt: their target was at its max_in_flight or rate limit."}, []string{"sink", "reason"})
	m.NotTried = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hookbus_delivery_not_tried_total", Help: "Attempts skipped because the target's endpoint is failing (circuit open); each counts as a failed attempt."}, []string{"sink"})
	m.SubscriptionsDisabled = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hookbus_subscriptions_disabled_total", Help: "Subscriptions disabled by a sink: 410 Gone, or failing for disable_after."}, []string{"sink", "reason"})
	m.CircuitOpen = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "hookbus_sink_circuit_open", Help: "1 while a sink's circuit is open: its endpoint kept failing, and its events wait in the queue, unattempted, until a probe succeeds."}, []string{"sink"})
	r.MustRegister(m.PluginInitFailures, m.ComponentReady, m.Deferrals, m.NotTried, m.SubscriptionsDisabled, m.CircuitOpen)
	r.MustRegister(m.Received, m.Filtered, m.Delivered, m.DeadLettered, m.Attempts, m.Retries, m.EndToEnd, m.AttemptTime, m.ScriptTime, m.ScriptErrors, m.InFlight)
	return m
}

// StatusClass maps an HTTP status to "2xx".."5xx", or "none" when there was no response.
func StatusClass(code int) string {
	if code < 100 || code > 599 {
		return "none"
	}
	return string(rune('0'+code/100)) + "xx"
}
