package metrics

import "slices"

// Topology is what a configuration runs, as the metrics label it. Declare
// creates its series at zero, so that rate() and ratios see a component
// before its first event, not only after.
type Topology struct {
	// Sources are the configured sources (events_received_total).
	Sources []string
	// Routes are the (pipeline, sink) pairs the pipelines route to.
	Routes []Route
	// Sinks are the configured sinks; FanoutSinks those of them that
	// deliver to subscriptions (deferrals, disabled subscriptions).
	Sinks       []string
	FanoutSinks []string
	// Scripts are the names the pipelines' scripts are measured by.
	Scripts []string
	// DeadLetterKinds are every kind of dead letter (deadletter.Kinds):
	// events_dead_lettered_total has a series per route and kind.
	DeadLetterKinds []string
}

// Route is a pipeline that routes to a sink.
type Route struct {
	Pipeline, Sink string
}

// AttemptOutcomes are the outcome label values of
// hookbus_delivery_attempts_total: what a sink makes of one attempt, as
// sdk.Outcome's String names it (the metrics do not import the SDK).
func AttemptOutcomes() []string { return []string{"ok", "retry", "permanent"} }

// StatusClasses are the status_class label values Declare creates for
// every outcome: the final HTTP status classes and "none" (no response,
// or a sink that does not speak HTTP). A 1xx is never an answer.
func StatusClasses() []string {
	return []string{"2xx", "3xx", "4xx", "5xx", StatusClass(0)}
}

// DeferralReasons are the reason label values of
// hookbus_delivery_deferrals_total.
func DeferralReasons() []string { return []string{"max_in_flight", "rate_limit", "store"} }

// DisableReasons are the reason label values of
// hookbus_subscriptions_disabled_total.
func DisableReasons() []string { return []string{"gone", "failing"} }

// Declare creates, at zero, every labelled series of t's components that
// does not exist yet: received per source; filtered, delivered and
// dead-lettered (per kind) per route; attempts per outcome and status
// class, retries, not-tried, circuit-open, in-flight and both histograms per sink;
// deferrals and disabled subscriptions per fan-out sink; duration and
// errors per script. Series that exist keep their values.
//
// t becomes the running topology (the sinks the oldest-waiting gauge
// reports). Series of components t no longer has are kept, frozen at
// their last values until the process ends: their last increments (an
// event queued just before a source was removed) stay readable, rate()
// over them falls to zero, and a component added again under the same
// name goes on counting from where it stopped. Call Declare at start
// and after every reload.
func (m *Metrics) Declare(t Topology) {
	for _, s := range t.Sources {
		m.Received.WithLabelValues(s)
	}
	for _, r := range t.Routes {
		m.Filtered.WithLabelValues(r.Pipeline, r.Sink)
		m.Delivered.WithLabelValues(r.Pipeline, r.Sink)
		for _, k := range t.DeadLetterKinds {
			m.DeadLettered.WithLabelValues(r.Pipeline, r.Sink, k)
		}
	}
	for _, s := range t.Sinks {
		for _, o := range AttemptOutcomes() {
			for _, c := range StatusClasses() {
				m.Attempts.WithLabelValues(s, o, c)
			}
		}
		m.Retries.WithLabelValues(s)
		m.NotTried.WithLabelValues(s)
		m.CircuitOpen.WithLabelValues(s)
		m.InFlight.WithLabelValues(s)
		m.EndToEnd.WithLabelValues(s)
		m.AttemptTime.WithLabelValues(s)
	}
	for _, s := range t.FanoutSinks {
		for _, r := range DeferralReasons() {
			m.Deferrals.WithLabelValues(s, r)
		}
		for _, r := range DisableReasons() {
			m.SubscriptionsDisabled.WithLabelValues(s, r)
		}
	}
	for _, s := range t.Scripts {
		m.ScriptTime.WithLabelValues(s)
		m.ScriptErrors.WithLabelValues(s)
	}
	sinks := slices.Clone(t.Sinks)
	slices.Sort(sinks)
	m.mu.Lock()
	m.sinks = slices.Compact(sinks)
	m.mu.Unlock()
}

// declaredSinks returns the sinks of the topology last declared.
func (m *Metrics) declaredSinks() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.sinks
}
