package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hookbus/hookbus/core/config"
	"github.com/hookbus/hookbus/core/pipeline"
	"github.com/hookbus/hookbus/core/pluginhost"
	"github.com/hookbus/hookbus/core/retry"
	"github.com/hookbus/hookbus/sdk"
	pluginv1 "github.com/hookbus/hookbus/sdk/proto/hookbus/plugin/v1"
	"github.com/hookbus/hookbus/sdk/remote"
)

// PluginSpec turns a plugins.<name> entry into a host spec.
func PluginSpec(p config.Plugin) pluginhost.Spec {
	var env []string
	for _, k := range slices.Sorted(maps.Keys(p.Env)) {
		env = append(env, k+"="+p.Env[k])
	}
	return pluginhost.Spec{Path: p.Path, SHA256: p.SHA256, Args: p.Args, Env: env}
}

// splitRetry takes the generic `retry: {schedule: [...]}` out of a plugin
// sink's config block: hookbus owns retries, the plugin never sees it.
func splitRetry(raw json.RawMessage) (json.RawMessage, retry.Schedule, error) {
	sched := retry.Default()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return raw, sched, nil
	}
	r, ok := m["retry"]
	if !ok {
		return raw, sched, nil
	}
	delete(m, "retry")
	var rc struct {
		Schedule []string `json:"schedule"`
	}
	if err := json.Unmarshal(r, &rc); err != nil {
		return nil, sched, &sdk.ConfigError{Field: "retry", Message: "must be {schedule: [durations]}"}
	}
	if rc.Schedule != nil {
		sched.Delays = nil
		for i, s := range rc.Schedule {
			d, err := time.ParseDuration(s)
			if err != nil || d < 0 {
				return nil, sched, &sdk.ConfigError{Field: fmt.Sprintf("retry.schedule[%d]", i), Message: fmt.Sprintf("invalid duration %q", s)}
			}
			sched.Delays = append(sched.Delays, d)
		}
	}
	out, err := json.Marshal(m)
	return out, sched, err
}

// Plugin sinks that cannot initialise (the plugin hangs past its
// init_timeout, crashes or fails) are retried in the background with a
// backoff between these bounds, while the rest of the instance runs.
var (
	pluginInitMinBackoff = time.Second
	pluginInitMaxBackoff = time.Minute
)

// pluginSink starts the plugin process for one sink and initialises it.
// A config the plugin rejects is returned as an error: it will not get
// better by trying again. A plugin that does not answer in time, crashes
// or fails otherwise does not hold up the instance: the returned sink is
// not ready yet, its events wait in the queue (the pipeline consumes them
// once Ready is closed), /readyz names it, and initialisation is retried
// in the background until it succeeds or the instance shuts down.
func (a *App) pluginSink(ctx context.Context, sinkName string, c config.Component) (pipeline.Sink, error) {
	p, ok := a.cfg.Plugins[c.Type]
	if !ok {
		return pipeline.Sink{}, &config.Errors{{Path: "sinks." + sinkName + ".type", Message: fmt.Sprintf("%q is neither a built-in type nor a declared plugin", c.Type)}}
	}
	raw, err := c.RawConfig()
	if err != nil {
		return pipeline.Sink{}, &config.Errors{{Path: "sinks." + sinkName + ".config", Message: err.Error()}}
	}
	raw, sched, err := splitRetry(raw)
	if err != nil {
		return pipeline.Sink{}, configErrors("sinks."+sinkName+".config", err)
	}
	ps := &pendingSink{a: a, name: sinkName, pluginType: c.Type, spec: PluginSpec(p), raw: raw, timeout: p.InitTimeoutOrDefault()}
	// A call to a plugin has a fixed cost (a gRPC message, a process
	// switch): merge concurrent deliveries into batches.
	out := pipeline.Sink{Name: sinkName, Schedule: sched, Batch: 64}
	s, info, err := ps.attempt(ctx)
	if err == nil {
		a.addSink(s)
		a.readiness.set(ps.component(), "")
		out.Sink, out.MaxInFlight = s, info.MaxInFlight
		return out, nil
	}
	if isConfigRejection(err) {
		return pipeline.Sink{}, configErrors("sinks."+sinkName+".config", err)
	}
	ps.failed(err)
	// Until the plugin answers, the sink's window is the pipeline default:
	// the plugin's own max_in_flight is only known after Init.
	ps.ready = make(chan struct{})
	out.Sink, out.Ready = ps, ps.ready
	a.bgWG.Add(1)
	go ps.retry()
	return out, nil
}

// isConfigRejection tells a config the plugin answered is wrong (permanent)
// from a plugin that did not answer, crashed or broke its connection.
func isConfigRejection(err error) bool {
	var re *remote.Error
	return errors.As(err, &re) && re.Code == pluginv1.ErrorCode_ERROR_CODE_INVALID_CONFIG && !errors.Is(err, remote.ErrUnavailable)
}

// configErrors turns a plugin's config rejection into *config.Errors under
// base (sinks.<name>.config), one per field the plugin named.
func configErrors(base string, err error) *config.Errors {
	var ces []*sdk.ConfigError
	collectConfigErrors(err, &ces)
	if len(ces) == 0 {
		return &config.Errors{{Path: base, Message: err.Error()}}
	}
	out := config.Errors{}
	for _, ce := range ces {
		path := base
		if ce.Field != "" {
			path += "." + ce.Field
		}
		out = append(out, config.Error{Path: path, Message: ce.Message})
	}
	return &out
}

// pendingSink is a plugin sink whose plugin has not initialised yet. The
// pipeline delivers to it only after ready is closed, when sink is set.
type pendingSink struct {
	a          *App
	name       string
	pluginType string
	spec       pluginhost.Spec
	raw        json.RawMessage
	timeout    time.Duration

	plugin *pluginhost.Plugin // the started process, nil until one started
	ready  chan struct{}
	mu     sync.Mutex
	sink   sdk.Sink
}

func (ps *pendingSink) component() string { return "sink " + ps.name }

// attempt starts the plugin (unless running) and initialises its sink,
// both within the init timeout.
func (ps *pendingSink) attempt(ctx context.Context) (sdk.Sink, sdk.SinkInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, ps.timeout)
	defer cancel()
	if ps.plugin == nil {
		pl, err := ps.a.host.Start(ctx, ps.pluginType+"/"+ps.name, ps.spec)
		if err != nil {
			return nil, sdk.SinkInfo{}, ps.wrap(ctx, "start", err)
		}
		ps.plugin = pl
	}
	// A plugin that did not answer Init in time is marked broken and
	// restarted by its supervisor; the next attempt waits for that process.
	s, info, err := ps.plugin.Sink(ctx, ps.raw)
	if err != nil {
		return nil, sdk.SinkInfo{}, ps.wrap(ctx, "init", err)
	}
	return s, info, nil
}

func (ps *pendingSink) wrap(ctx context.Context, step string, err error) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("plugin %s: %s: timed out after %s: %w", ps.pluginType, step, ps.timeout, err)
	}
	return fmt.Errorf("plugin %s: %s: %w", ps.pluginType, step, err)
}

func (ps *pendingSink) failed(err error) {
	ps.a.Metrics.PluginInitFailures.WithLabelValues(ps.pluginType, ps.name).Inc()
	ps.a.readiness.set(ps.component(), firstLine(err.Error()))
	ps.a.log.Error("plugin sink cannot initialise; its events wait in the queue, retrying in the background",
		"sink", ps.name, "plugin", ps.pluginType, "error", err)
}

// retry initialises the plugin sink again with backoff until it works or
// the instance shuts down.
func (ps *pendingSink) retry() {
	defer ps.a.bgWG.Done()
	ctx := ps.a.bgCtx
	backoff := pluginInitMinBackoff
	for {
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(backoff*2, pluginInitMaxBackoff)
		s, _, err := ps.attempt(ctx)
		if ctx.Err() != nil {
			if s != nil {
				_ = s.Close(context.Background())
			}
			return
		}
		if err != nil {
			ps.failed(err)
			continue
		}
		ps.mu.Lock()
		ps.sink = s
		ps.mu.Unlock()
		ps.a.addSink(s)
		ps.a.readiness.set(ps.component(), "")
		ps.a.log.Info("plugin sink initialised; delivering its queued events", "sink", ps.name, "plugin", ps.pluginType)
		close(ps.ready)
		return
	}
}

func (ps *pendingSink) Init(context.Context, json.RawMessage) (sdk.SinkInfo, error) {
	return sdk.SinkInfo{}, errors.New("pendingSink is initialised by its retry loop")
}

// Deliver hands the batch to the plugin once initialised. The pipeline
// waits for ready before it delivers; a Retry here is only a safety net.
func (ps *pendingSink) Deliver(ctx context.Context, batch []sdk.Delivery) []sdk.Result {
	ps.mu.Lock()
	s := ps.sink
	ps.mu.Unlock()
	if s == nil {
		out := make([]sdk.Result, len(batch))
		for i := range out {
			out[i] = sdk.Result{Outcome: sdk.Retry, Reason: "plugin sink " + ps.name + " is not initialised yet"}
		}
		return out
	}
	return s.Deliver(ctx, batch)
}

// Close does nothing: the initialised sink is closed with the app's sinks.
func (ps *pendingSink) Close(context.Context) error { return nil }

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// readiness tracks the components that cannot work yet, for /readyz and
// the hookbus_component_ready gauge.
type readiness struct {
	gauge    *prometheus.GaugeVec
	mu       sync.Mutex
	notReady map[string]string
}

// set records component as ready (reason "") or not ready with reason.
func (r *readiness) set(component, reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if reason == "" {
		delete(r.notReady, component)
		r.gauge.WithLabelValues(component).Set(1)
		return
	}
	r.notReady[component] = reason
	r.gauge.WithLabelValues(component).Set(0)
}

// list returns "component: reason" for each component not ready, sorted.
func (r *readiness) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.notReady))
	for _, c := range slices.Sorted(maps.Keys(r.notReady)) {
		out = append(out, c+": "+r.notReady[c])
	}
	return out
}

// sourceEmitter queues a plugin source's batches; Emit returns once durable.
type sourceEmitter struct {
	e      *pipeline.Engine
	source string
}

func (s sourceEmitter) Emit(ctx context.Context, events []sdk.Event) error {
	now := time.Now().UTC()
	for i := range events {
		if events[i].Type == "" {
			return fmt.Errorf("event %d: field \"type\" is required", i)
		}
		if events[i].ID == "" {
			events[i].ID = newID()
		}
		if events[i].Source == "" {
			events[i].Source = s.source
		}
		if events[i].Time.IsZero() {
			events[i].Time = now
		}
	}
	return s.e.Publish(ctx, s.source, events)
}

// startPluginSources starts every plugin source and runs it until Shutdown.
func (a *App) startPluginSources(ctx context.Context) error {
	for _, name := range a.cfg.SourceNames() {
		c := a.cfg.Sources[name]
		if c.Type == "http" {
			continue
		}
		p, ok := a.cfg.Plugins[c.Type]
		if !ok {
			return fmt.Errorf("sources.%s.type: %q is neither a built-in type nor a declared plugin", name, c.Type)
		}
		raw, err := c.RawConfig()
		if err != nil {
			return err
		}
		pl, err := a.host.Start(ctx, c.Type+"/"+name, PluginSpec(p))
		if err != nil {
			return fmt.Errorf("sources.%s: %w", name, err)
		}
		src, err := pl.Source(ctx, raw)
		if err != nil {
			return fmt.Errorf("sources.%s.config: %w", name, err)
		}
		a.sourcesWG.Add(1)
		go a.runSource(ctx, name, src)
	}
	return nil
}

func (a *App) runSource(ctx context.Context, name string, src sdk.Source) {
	defer a.sourcesWG.Done()
	log := a.log.With("source", name)
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := src.Run(ctx, sourceEmitter{e: a.Engine, source: name})
		if ctx.Err() != nil {
			break
		}
		if err == nil {
			err = errors.New("Run returned before shutdown")
		}
		log.Error("source failed; restarting", "error", err, "in", backoff)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
		}
		backoff = min(backoff*2, 30*time.Second)
	}
	if err := src.Close(context.Background()); err != nil {
		log.Warn("source close", "error", err)
	}
}

// ValidatePlugins starts each plugin used by a source or sink briefly and
// checks its config block against the plugin's schema and its own
// validation. Problems carry the block's key path. Plugins are checked in
// parallel, each within its init_timeout: a plugin that does not answer in
// time is reported as such, naming the component.
func ValidatePlugins(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	host := pluginhost.New(log, nil)
	defer host.Close()
	type job struct {
		kind, section, name string
		c                   config.Component
		errs                []error
	}
	var jobs []*job
	for _, n := range cfg.SourceNames() {
		jobs = append(jobs, &job{kind: "source", section: "sources", name: n, c: cfg.Sources[n]})
	}
	for _, n := range cfg.SinkNames() {
		jobs = append(jobs, &job{kind: "sink", section: "sinks", name: n, c: cfg.Sinks[n]})
	}
	var wg sync.WaitGroup
	for _, j := range jobs {
		p, ok := cfg.Plugins[j.c.Type]
		if !ok {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			j.errs = validatePlugin(ctx, host, j.kind, j.section+"."+j.name+".config", j.c, p)
		}()
	}
	wg.Wait()
	var errs []error
	for _, j := range jobs {
		errs = append(errs, j.errs...)
	}
	return errors.Join(errs...)
}

// validatePlugin checks one component's config block with its plugin.
func validatePlugin(ctx context.Context, host *pluginhost.Host, kind, base string, c config.Component, p config.Plugin) []error {
	raw, err := c.RawConfig()
	if err == nil && kind == "sink" {
		raw, _, err = splitRetry(raw)
	}
	if err == nil {
		timeout := p.InitTimeoutOrDefault()
		cctx, cancel := context.WithTimeout(ctx, timeout)
		err = host.Validate(cctx, c.Type, PluginSpec(p), kind, raw)
		if err != nil && errors.Is(cctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("plugin %s did not answer its config check within %s (plugins.%s.init_timeout): %w", c.Type, timeout, c.Type, err)
		}
		cancel()
	}
	if err == nil {
		return nil
	}
	var ces []*sdk.ConfigError
	collectConfigErrors(err, &ces)
	if len(ces) == 0 {
		return []error{fmt.Errorf("%s: %w", base, err)}
	}
	var out []error
	for _, ce := range ces {
		path := base
		if ce.Field != "" {
			path += "." + ce.Field
		}
		out = append(out, fmt.Errorf("%s: %s", path, ce.Message))
	}
	return out
}

func collectConfigErrors(err error, out *[]*sdk.ConfigError) {
	var ce *sdk.ConfigError
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			collectConfigErrors(e, out)
		}
		return
	}
	if errors.As(err, &ce) {
		*out = append(*out, ce)
		return
	}
	if u := errors.Unwrap(err); u != nil {
		collectConfigErrors(u, out)
	}
}
