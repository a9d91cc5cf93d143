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
	"github.com/hookbus/hookbus/core/registry"
	"github.com/hookbus/hookbus/core/sinkopts"
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
	return pluginhost.Spec{Path: p.Path, SHA256: p.SHA256, Args: p.Args, Env: env, Reattach: p.Reattach}
}

// Plugin sinks that cannot initialise (the plugin hangs past its
// init_timeout, crashes or fails) are retried in the background with a
// backoff between these bounds, while the rest of the instance runs.
var (
	pluginInitMinBackoff = time.Second
	pluginInitMaxBackoff = time.Minute
)

// pluginInit starts one source's or sink's plugin and initialises it,
// each attempt within the plugin's init_timeout, counting failures and
// keeping the component's readiness.
type pluginInit struct {
	a          *App
	kind       string // sdk.KindSink or sdk.KindSource
	name       string
	pluginType string
	spec       pluginhost.Spec
	timeout    time.Duration
	// init initialises the component on the started plugin.
	init func(ctx context.Context, pl *pluginhost.Plugin) error

	plugin *pluginhost.Plugin // the started process, nil until one started
	// reason is what this initialisation last reported ("": ready), kept
	// under readiness.mu for the moment it takes the component over.
	reason string
}

func newPluginInit(a *App, kind, name string, c config.Component, p config.Plugin, init func(context.Context, *pluginhost.Plugin) error) *pluginInit {
	return &pluginInit{a: a, kind: kind, name: name, pluginType: c.Type, spec: PluginSpec(p), timeout: p.InitTimeoutOrDefault(), init: init}
}

// component names the component in /readyz and metrics: "sink partner".
func (pi *pluginInit) component() string { return pi.kind + " " + pi.name }

// attempt starts the plugin (unless running) and initialises the
// component, both within the init timeout.
func (pi *pluginInit) attempt(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, pi.timeout)
	defer cancel()
	if pi.plugin == nil {
		pl, err := pi.a.host.Start(ctx, pi.pluginType+"/"+pi.name, pi.spec)
		if err != nil {
			return pi.wrap(ctx, "start", err)
		}
		pi.plugin = pl
	}
	// A plugin that did not answer Init in time is marked broken and
	// restarted by its supervisor; the next attempt waits for that process.
	if err := pi.init(ctx, pi.plugin); err != nil {
		return pi.wrap(ctx, "init", err)
	}
	pi.a.readiness.report(pi, "")
	return nil
}

func (pi *pluginInit) wrap(ctx context.Context, step string, err error) error {
	// gRPC ends a call at the context's deadline by its own timer, which
	// can report before ctx.Err() is set: the clock decides.
	deadline, has := ctx.Deadline()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) || has && !time.Now().Before(deadline) {
		return fmt.Errorf("plugin %s: %s: timed out after %s: %w", pi.pluginType, step, pi.timeout, err)
	}
	return fmt.Errorf("plugin %s: %s: %w", pi.pluginType, step, err)
}

// close stops the component's plugin process, if one was started. Call
// it only once no attempt runs.
func (pi *pluginInit) close() {
	if pi.plugin != nil {
		_ = pi.plugin.Close()
		pi.plugin = nil
	}
}

// failed records a failed attempt: counted, logged, and shown by /readyz.
func (pi *pluginInit) failed(err error) {
	pi.a.Metrics.PluginInitFailures.WithLabelValues(pi.pluginType, pi.component()).Inc()
	pi.a.readiness.report(pi, firstLine(err.Error()))
	pi.a.log.Error("plugin cannot initialise; retrying in the background",
		pi.kind, pi.name, "plugin", pi.pluginType, "error", err)
}

// retry attempts again with backoff until an attempt succeeds (true) or
// ctx is done (false).
func (pi *pluginInit) retry(ctx context.Context) bool {
	backoff := pluginInitMinBackoff
	for {
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
		backoff = min(backoff*2, pluginInitMaxBackoff)
		err := pi.attempt(ctx)
		if ctx.Err() != nil {
			return false
		}
		if err == nil {
			pi.a.log.Info("plugin initialised", pi.kind, pi.name, "plugin", pi.pluginType)
			return true
		}
		pi.failed(err)
	}
}

// pluginSink starts the plugin process for one sink and initialises it.
// A config the plugin rejects is returned as *config.Errors: it will not
// get better by trying again. A plugin that does not answer in time,
// crashes or fails otherwise does not hold up the instance: the returned
// sink is not ready yet, its events wait in the queue (the pipeline
// consumes them once Ready is closed), /readyz names it, and
// initialisation is retried in the background until it succeeds, the sink
// is replaced or removed, or the instance shuts down.
//
// raw is the sink's block without the shared settings (sinkopts.Split):
// the plugin never sees retry or max_in_flight; its own window (its answer
// to Init) applies when the block does not set max_in_flight.
func (a *App) pluginSink(ctx context.Context, cfg *config.Config, sinkName string, c config.Component, raw json.RawMessage, settings sinkopts.Settings) (*sinkInst, error) {
	p, ok := cfg.Plugins[c.Type]
	if !ok {
		return nil, &config.Errors{{Path: "sinks." + sinkName + ".type", Message: fmt.Sprintf("%q is neither a built-in type nor a declared plugin", c.Type)}}
	}
	si := &sinkInst{}
	ps := &pendingSink{ready: make(chan struct{}), settings: settings}
	ps.pluginInit = newPluginInit(a, sdk.KindSink, sinkName, c, p, func(ctx context.Context, pl *pluginhost.Plugin) error {
		// The checks of `hookbus validate` first: every problem at once.
		if err := pl.Validate(ctx, sdk.KindSink, raw); err != nil {
			return err
		}
		s, info, err := pl.Sink(ctx, raw)
		if err != nil {
			return err
		}
		ps.sink, ps.maxInFlight = s, info.MaxInFlight
		si.addSink(s)
		return nil
	})
	si.pi = ps.pluginInit
	// A call to a plugin has a fixed cost (a gRPC message, a process
	// switch): merge concurrent deliveries into batches.
	si.spec = pipeline.Sink{Name: sinkName, Schedule: settings.Schedule(), Batch: 64, Circuit: settings.Breaker(), Ordering: settings.Ordering.Path()}
	err := ps.attempt(ctx)
	if err == nil {
		si.spec.Sink, si.spec.MaxInFlight = ps.resolve()
		si.done = closedChan()
		return si, nil
	}
	if isConfigRejection(err) {
		ps.close()
		return nil, configErrors("sinks."+sinkName+".config", err)
	}
	ps.failed(err)
	// The plugin sink and its own max_in_flight are only known after Init:
	// the pipeline resolves them once ready is closed, before it consumes
	// the sink's queue.
	si.spec.Ready, si.spec.Resolve = ps.ready, ps.resolve
	bctx, cancel := context.WithCancel(a.bgCtx)
	si.cancel, si.done = cancel, make(chan struct{})
	go func() {
		defer close(si.done)
		if ps.retry(bctx) {
			close(ps.ready)
		}
	}()
	return si, nil
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

// pendingSink is a plugin sink whose plugin may not have initialised yet.
// sink and maxInFlight are set before ready is closed, and read (through
// resolve, by the pipeline) only after.
type pendingSink struct {
	*pluginInit
	ready       chan struct{}
	sink        sdk.Sink
	maxInFlight int // what the plugin answered Init (0: the default)
	settings    sinkopts.Settings
}

// resolve returns the sink and its window: the block's max_in_flight, else
// the plugin's own.
func (ps *pendingSink) resolve() (sdk.Sink, int) {
	return ps.sink, ps.settings.Window(ps.maxInFlight)
}

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
	// owners are the initialisations whose reports count, one per
	// component. A reload builds a changed sink's replacement while the
	// running one still retries: the replacement reports only once apply
	// hands the component over (a refused reload never does), and the one
	// it replaced no longer does.
	owners map[string]*pluginInit
}

// report records what pi found (reason "": ready) and, unless another
// initialisation owns pi's component, shows it; the first to report for a
// component owns it.
func (r *readiness) report(pi *pluginInit, reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	pi.reason = reason
	c := pi.component()
	if o := r.owners[c]; o != nil && o != pi {
		return
	}
	if r.owners == nil {
		r.owners = map[string]*pluginInit{}
	}
	r.owners[c] = pi
	r.setLocked(c, reason)
}

// handOver makes pi the owner of its component, showing what it last
// reported.
func (r *readiness) handOver(pi *pluginInit) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.owners == nil {
		r.owners = map[string]*pluginInit{}
	}
	c := pi.component()
	r.owners[c] = pi
	r.setLocked(c, pi.reason)
}

// release forgets pi's component if pi owns it (a component a refused
// reload added).
func (r *readiness) release(pi *pluginInit) {
	r.mu.Lock()
	owns := r.owners[pi.component()] == pi
	r.mu.Unlock()
	if owns {
		r.forget(pi.component())
	}
}

func (r *readiness) setLocked(component, reason string) {
	if reason == "" {
		delete(r.notReady, component)
		r.gauge.WithLabelValues(component).Set(1)
		return
	}
	r.notReady[component] = reason
	r.gauge.WithLabelValues(component).Set(0)
}

// forget drops a component that no longer exists (removed by a reload).
func (r *readiness) forget(component string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.notReady, component)
	delete(r.owners, component)
	r.gauge.DeleteLabelValues(component)
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
	// The same refusals as the http source's (a missing type, too many
	// events, numbers scripts could not read), as an *sdk.RejectedError
	// naming each event: the plugin host answers it as a rejection.
	if err := sdk.CheckBatch(events); err != nil {
		return err
	}
	now := time.Now().UTC()
	producerID := make([]bool, len(events))
	for i := range events {
		producerID[i] = events[i].ID != ""
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
	return s.e.PublishProducerIDs(ctx, s.source, events, producerID)
}

// startSources starts every plugin source of rt not running yet, until
// it is removed or changed by a reload, or Shutdown. As with sinks, every
// config a plugin rejects is returned at once, and a plugin that cannot
// initialise (hangs past init_timeout, crashes) is retried in the
// background while everything else runs.
func (a *App) startSources(rt *runtime) error {
	var problems config.Errors
	cfg := rt.cfg
	for _, name := range cfg.SourceNames() {
		c := cfg.Sources[name]
		if registry.Default.IsIngest(c.Type) || rt.sources[name] != nil {
			continue
		}
		raw, err := c.RawConfig()
		if err != nil {
			problems = append(problems, config.Error{Path: "sources." + name + ".config", Message: err.Error()})
			continue
		}
		if src, ok := registry.Default.NewSource(c.Type); ok {
			// A source type built in and registered: no process to start.
			ctx, cancel := context.WithCancel(a.runCtx)
			if err := src.Init(ctx, raw); err != nil {
				cancel()
				problems = append(problems, *configErrors("sources."+name+".config", err)...)
				continue
			}
			si := &sourceInst{fp: componentPrint(cfg, c), cancel: cancel, done: make(chan struct{})}
			rt.sources[name] = si
			go a.runSource(ctx, name, src, si.done)
			continue
		}
		p, ok := cfg.Plugins[c.Type]
		if !ok {
			problems = append(problems, config.Error{Path: "sources." + name + ".type", Message: fmt.Sprintf("%q is neither a built-in type nor a declared plugin", c.Type)})
			continue
		}
		var src sdk.Source
		pi := newPluginInit(a, sdk.KindSource, name, c, p, func(ctx context.Context, pl *pluginhost.Plugin) (err error) {
			if err := pl.Validate(ctx, sdk.KindSource, raw); err != nil {
				return err
			}
			src, err = pl.Source(ctx, raw)
			return err
		})
		ctx, cancel := context.WithCancel(a.runCtx)
		err = pi.attempt(ctx)
		if isConfigRejection(err) {
			cancel()
			pi.close()
			problems = append(problems, *configErrors("sources."+name+".config", err)...)
			continue
		}
		si := &sourceInst{fp: componentPrint(cfg, c), pi: pi, cancel: cancel, done: make(chan struct{})}
		rt.sources[name] = si
		if err == nil {
			go a.runSource(ctx, name, src, si.done)
			continue
		}
		pi.failed(err)
		go func() {
			if pi.retry(ctx) {
				a.runSource(ctx, name, src, si.done)
				return
			}
			close(si.done)
		}()
	}
	if len(problems) > 0 {
		return &problems
	}
	return nil
}

// runSource runs a source until ctx ends, restarting it when it fails,
// then closes it and closes done.
func (a *App) runSource(ctx context.Context, name string, src sdk.Source, done chan struct{}) {
	defer close(done)
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
// validation. Problems are *config.Errors carrying the block's key path
// (config.Locate adds the file's lines). Plugins are checked in
// parallel, each within its init_timeout: a plugin that does not answer in
// time is reported as such, naming the component.
func ValidatePlugins(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	host := pluginhost.New(log, nil)
	defer host.Close()
	type job struct {
		kind, section, name string
		c                   config.Component
		errs                config.Errors
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
	var errs config.Errors
	for _, j := range jobs {
		errs = append(errs, j.errs...)
	}
	if len(errs) == 0 {
		return nil
	}
	return &errs
}

// validatePlugin checks one component's config block with its plugin.
func validatePlugin(ctx context.Context, host *pluginhost.Host, kind, base string, c config.Component, p config.Plugin) config.Errors {
	raw, err := c.RawConfig()
	if err == nil && kind == "sink" {
		// The shared settings are hookbus's (config.Load checked them).
		raw, _, _ = sinkopts.Split(raw)
	}
	if err == nil {
		timeout := p.InitTimeoutOrDefault()
		cctx, cancel := context.WithTimeout(ctx, timeout)
		deadline, _ := cctx.Deadline()
		err = host.Validate(cctx, c.Type, PluginSpec(p), kind, raw)
		// gRPC ends the call on its own timer for the deadline, which may
		// fire before cctx's: the clock, not cctx.Err, tells a timeout.
		if err != nil && (errors.Is(cctx.Err(), context.DeadlineExceeded) || !time.Now().Before(deadline)) {
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
		return config.Errors{{Path: base, Message: err.Error()}}
	}
	var out config.Errors
	for _, ce := range ces {
		path := base
		if ce.Field != "" {
			path += "." + ce.Field
		}
		out = append(out, config.Error{Path: path, Message: ce.Message})
	}
	return out
}

// collectConfigErrors gathers every *sdk.ConfigError in err's tree, also
// below a wrapping error (a rejection the init step wrapped keeps all its fields).
func collectConfigErrors(err error, out *[]*sdk.ConfigError) {
	if ce, ok := err.(*sdk.ConfigError); ok {
		*out = append(*out, ce)
		return
	}
	switch u := err.(type) {
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			collectConfigErrors(e, out)
		}
	case interface{ Unwrap() error }:
		if e := u.Unwrap(); e != nil {
			collectConfigErrors(e, out)
		}
	}
}
