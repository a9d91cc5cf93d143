package app

import (
	"maps"
	"slices"
	"time"

	"github.com/hookbus/hookbus/core/deadletter"
	"github.com/hookbus/hookbus/core/metrics"
	"github.com/hookbus/hookbus/plugins/subscriptions"
)

// topology is what rt runs, as the metrics label it: Declare creates its
// series at zero.
func (rt *runtime) topology() metrics.Topology {
	cfg := rt.cfg
	// The operational events' source too: hookbus publishes into it.
	t := metrics.Topology{Sources: cfg.PipelineSources(), Sinks: cfg.SinkNames()}
	for _, name := range cfg.PipelineNames() {
		for _, sink := range cfg.Pipelines[name].To {
			t.Routes = append(t.Routes, metrics.Route{Pipeline: name, Sink: sink})
		}
	}
	for _, name := range t.Sinks {
		if cfg.Sinks[name].Type == subscriptions.Name {
			t.FanoutSinks = append(t.FanoutSinks, name)
		}
	}
	for _, path := range slices.Sorted(maps.Keys(rt.scripts)) {
		t.Scripts = append(t.Scripts, scriptName(cfg, path))
	}
	for _, k := range deadletter.Kinds() {
		t.DeadLetterKinds = append(t.DeadLetterKinds, string(k))
	}
	return t
}

// oldestWaitingCache is how long one answer of the store's OldestWaiting
// serves scrapes.
const oldestWaitingCache = 5 * time.Second

// registerOldestWaiting exports hookbus_oldest_waiting_seconds from the
// delivery log, while it records attempts (store.attempt_log; without it
// the log's figures would only grow stale). A failed look-up is logged;
// the gauge keeps the last answer.
func (a *App) registerOldestWaiting() {
	if a.Attempts == nil || a.attemptWriter == nil {
		return
	}
	a.Metrics.RegisterOldestWaiting(a.Attempts, metrics.WaitingOptions{CacheFor: oldestWaitingCache, OnError: func(err error) {
		a.log.Warn("metrics: cannot read the oldest events waiting for a retry from the delivery log; hookbus_oldest_waiting_seconds shows the last figures read", "error", err)
	}})
}
