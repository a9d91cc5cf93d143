package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/hookbus/hookbus/core/aggregate"
	"github.com/hookbus/hookbus/core/circuit"
	"github.com/hookbus/hookbus/core/config"
	"github.com/hookbus/hookbus/core/pipeline"
	"github.com/hookbus/hookbus/core/queue"
	"github.com/hookbus/hookbus/core/registry"
	"github.com/hookbus/hookbus/core/script"
	"github.com/hookbus/hookbus/core/sinkopts"
	"github.com/hookbus/hookbus/plugins/subscriptions"
	"github.com/hookbus/hookbus/sdk"
)

// runtime is what one validated configuration builds on the host: its
// sinks, compiled scripts and pipelines, and its plugin sources. A reload
// builds the next runtime from the new configuration, reusing every part
// whose configuration (and scripts) did not change, and applies the
// difference to the running engine (see apply). The host (App) outlives
// every runtime: listener, queue, store, plugin host, metrics.
type runtime struct {
	cfg     *config.Config
	sinks   map[string]*sinkInst
	pipes   map[string]*pipeInst
	sources map[string]*sourceInst // plugin sources (http sources are served by the host)
	scripts map[string]*scriptInst // by script path
}

// scriptInst is a compiled script and what it was compiled from.
type scriptInst struct {
	key string // hash of the source and the script options
	s   *script.Script
}

// pipeInst is a pipeline as the engine runs it, with its fingerprint.
type pipeInst struct {
	fp string
	p  pipeline.Pipeline
}

// sinkInst is one built sink: what the engine delivers to, and what must
// be closed when it goes (the sinks it initialised, its plugin process).
type sinkInst struct {
	fp   string
	spec pipeline.Sink
	pi   *pluginInit // plugin sinks; its plugin is read only after done

	// cancel ends a plugin sink's background initialisation; done is
	// closed once it is over (at once for sinks without one).
	cancel context.CancelFunc
	done   chan struct{}

	mu    sync.Mutex
	owned []sdk.Sink

	// subs is the sink when it is a subscriptions sink.
	subs *subscriptions.Sink
}

func (si *sinkInst) addSink(s sdk.Sink) {
	si.mu.Lock()
	si.owned = append(si.owned, s)
	si.mu.Unlock()
}

// close stops a background initialisation and closes the sink and its
// plugin. The engine no longer delivers to it.
func (si *sinkInst) close() error {
	if si.cancel != nil {
		si.cancel()
	}
	<-si.done
	si.mu.Lock()
	owned := si.owned
	si.owned = nil
	si.mu.Unlock()
	var errs []error
	for _, s := range owned {
		if err := s.Close(context.Background()); err != nil {
			errs = append(errs, fmt.Errorf("sink %s: %w", si.spec.Name, err))
		}
	}
	if si.pi != nil {
		si.pi.close()
	}
	return errors.Join(errs...)
}

// sourceInst is a running plugin source.
type sourceInst struct {
	fp     string
	pi     *pluginInit
	cancel context.CancelFunc
	done   chan struct{} // closed when the source stopped and was closed
}

func (si *sourceInst) close() {
	si.cancel()
	<-si.done
	if si.pi != nil {
		si.pi.close()
	}
}

// fingerprint hashes the JSON of v: equal configurations, equal prints.
func fingerprint(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		// Not expected for a loaded config; a fresh print rebuilds the part.
		return "unprintable:" + err.Error()
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// componentPrint is what makes a source or sink what it is: its block and,
// for a plugin type, the plugin entry it runs.
func componentPrint(cfg *config.Config, c config.Component) string {
	p, isPlugin := cfg.Plugins[c.Type]
	return fingerprint(struct {
		C      config.Component
		Plugin *config.Plugin `json:",omitempty"`
	}{c, ptrIf(isPlugin, p)})
}

func ptrIf[T any](ok bool, v T) *T {
	if !ok {
		return nil
	}
	return &v
}

// buildRuntime builds the runtime of cfg. Parts of prev with the same
// fingerprint are taken over as they are (prev may be nil). Sources are
// not started here (see startSources). Every sink's config problems are
// reported together (*config.Errors), as `hookbus validate` does; on any
// error, whatever this call built is closed again.
func (a *App) buildRuntime(ctx context.Context, cfg *config.Config, prev *runtime) (rt *runtime, err error) {
	rt = &runtime{cfg: cfg, sinks: map[string]*sinkInst{}, pipes: map[string]*pipeInst{}, sources: map[string]*sourceInst{}, scripts: map[string]*scriptInst{}}
	if prev == nil {
		prev = &runtime{}
	}
	var built []*sinkInst
	defer func() {
		if err != nil {
			for _, si := range built {
				_ = si.close()
				if si.pi != nil {
					a.readiness.release(si.pi)
				}
			}
		}
	}()
	var problems config.Errors
	for _, name := range cfg.SinkNames() {
		c := cfg.Sinks[name]
		fp := componentPrint(cfg, c)
		if c.Type == subscriptions.Name {
			// Its subscriptions' filters run under the script limits.
			fp = fingerprint([]any{fp, cfg.Scripts})
		}
		if old := prev.sinks[name]; old != nil && old.fp == fp {
			rt.sinks[name] = old
			continue
		}
		si, err := a.buildSink(ctx, cfg, name, c)
		var ce *config.Errors
		if errors.As(err, &ce) {
			problems = append(problems, *ce...)
			continue
		}
		if err != nil {
			return nil, err
		}
		si.fp = fp
		built = append(built, si)
		rt.sinks[name] = si
	}
	if len(problems) > 0 {
		return nil, &problems
	}
	if err := rt.buildPipelines(prev, a.log); err != nil {
		return nil, err
	}
	for _, name := range cfg.SourceNames() {
		if old := prev.sources[name]; old != nil && old.fp == componentPrint(cfg, cfg.Sources[name]) {
			rt.sources[name] = old
		}
	}
	return rt, nil
}

// buildSink builds one sink: a type registered in registry.Default, or a
// plugin's (which may still be initialising in the background when this
// returns). hookbus applies the settings every sink shares (retry,
// max_in_flight): the type gets the rest of its block.
func (a *App) buildSink(ctx context.Context, cfg *config.Config, name string, c config.Component) (*sinkInst, error) {
	raw, err := c.RawConfig()
	if err != nil {
		return nil, &config.Errors{{Path: "sinks." + name + ".config", Message: err.Error()}}
	}
	raw, settings, err := sinkopts.Split(raw)
	if err != nil {
		return nil, configErrors("sinks."+name+".config", err)
	}
	if t, err := registry.Default.Sink(c.Type); err == nil {
		if err := t.CheckCircuit(settings); err != nil {
			return nil, configErrors("sinks."+name+".config", err)
		}
	}
	s, ok := registry.Default.NewSink(c.Type, settings)
	if !ok {
		return a.pluginSink(ctx, cfg, name, c, raw, settings)
	}
	if _, fan := s.(pipeline.Fanout); fan && settings.Ordering.On() {
		return nil, &config.Errors{{Path: "sinks." + name + ".config.ordering", Message: orderingFanoutMessage(c.Type)}}
	}
	subs, _ := s.(*subscriptions.Sink)
	if subs != nil {
		subs.Provision(subscriptions.Host{Sink: name, Index: a.Subscriptions, Store: a.Store, Changes: &a.subChanges,
			Scripts: ScriptOptions(cfg, a.log), Operational: a.ops, Metrics: a.Metrics, Logger: a.log})
	}
	info, err := s.Init(ctx, raw)
	if err != nil {
		return nil, configErrors("sinks."+name+".config", err)
	}
	si := &sinkInst{done: closedChan(), owned: []sdk.Sink{s}, subs: subs}
	si.spec = pipeline.Sink{Name: name, Sink: s, MaxInFlight: settings.Window(info.MaxInFlight), Schedule: settings.Schedule(), Circuit: settings.Breaker(),
		Ordering: settings.Ordering.Path()}
	if f, ok := s.(pipeline.Fanout); ok {
		// Its targets have circuits of their own (registry.Sink.OwnCircuits).
		si.spec.Fanout, si.spec.Circuit = f, circuit.Settings{}
	}
	return si, nil
}

// orderingFanoutMessage is the error of an ordering block on a fan-out
// sink type.
func orderingFanoutMessage(typ string) string {
	return fmt.Sprintf("not supported for %s sinks yet (only for sinks that deliver each event once: webhook and plugin sinks)", typ)
}

func closedChan() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}

// buildPipelines compiles the scripts of rt.cfg (those whose source and
// options are unchanged are taken from prev) and builds its pipelines.
func (rt *runtime) buildPipelines(prev *runtime, log *slog.Logger) error {
	cfg := rt.cfg
	sopts := ScriptOptions(cfg, log)
	optsPrint := fingerprint([]any{cfg.Scripts, cfg.File})
	for _, name := range cfg.PipelineNames() {
		p := cfg.Pipelines[name]
		pp := pipeline.Pipeline{Name: name, From: p.From, To: p.To}
		var keys []string
		for i, st := range p.Steps {
			if st.Aggregate != nil {
				step, key, err := rt.aggregateStep(prev, name, i, *st.Aggregate, optsPrint, sopts)
				if err != nil {
					return err
				}
				keys = append(keys, key)
				pp.Steps = append(pp.Steps, step)
				continue
			}
			path := st.Filter
			if path == "" {
				path = st.Transform
			}
			sc, err := rt.script(prev, path, optsPrint, sopts)
			if err != nil {
				return fmt.Errorf("pipelines.%s.steps[%d]: %w", name, i, err)
			}
			keys = append(keys, sc.key)
			if st.Filter != "" {
				if !sc.s.HasFilter() {
					return fmt.Errorf("pipelines.%s.steps[%d].filter: %s defines no filter function", name, i, path)
				}
				pp.Steps = append(pp.Steps, filterStep{sc.s})
			} else {
				if !sc.s.HasTransform() {
					return fmt.Errorf("pipelines.%s.steps[%d].transform: %s defines no transform function", name, i, path)
				}
				pp.Steps = append(pp.Steps, transformStep{sc.s})
			}
		}
		fp := fingerprint([]any{p, keys})
		if old := prev.pipes[name]; old != nil && old.fp == fp {
			rt.pipes[name] = old
			continue
		}
		rt.pipes[name] = &pipeInst{fp: fp, p: pp}
	}
	return nil
}

// aggregateStep builds the aggregate step at pipelines.<name>.steps[i],
// compiling its script (if any) as rt.script does; key is the script's
// fingerprint ("" without one).
func (rt *runtime) aggregateStep(prev *runtime, name string, i int, a config.Aggregate, optsPrint string, sopts script.Options) (*pipeline.AggregateStep, string, error) {
	at := fmt.Sprintf("pipelines.%s.steps[%d].aggregate", name, i)
	keyPath, err := aggregate.ParsePath(a.Key)
	if err != nil {
		return nil, "", fmt.Errorf("%s.key: %w", at, err)
	}
	step := &pipeline.AggregateStep{Path: keyPath, Spec: aggregate.Spec{Key: a.Key, Window: a.Window, MaxEvents: a.MaxEvents, MaxKeys: a.MaxKeys}.WithDefaults()}
	if a.Script == "" {
		return step, "", nil
	}
	sc, err := rt.script(prev, a.Script, optsPrint, sopts)
	if err != nil {
		return nil, "", fmt.Errorf("%s.script: %w", at, err)
	}
	if !sc.s.HasAggregate() {
		return nil, "", fmt.Errorf("%s.script: %s defines no aggregate function", at, a.Script)
	}
	step.Script = aggregateScript{sc.s}
	return step, sc.key, nil
}

// script returns the compiled script at path, compiling it unless prev
// (or rt) has it compiled from the same source with the same options.
func (rt *runtime) script(prev *runtime, path, optsPrint string, opts script.Options) (*scriptInst, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(append(src, optsPrint...))
	key := hex.EncodeToString(sum[:])
	for _, have := range []*scriptInst{rt.scripts[path], prev.scripts[path]} {
		if have != nil && have.key == key {
			rt.scripts[path] = have
			return have, nil
		}
	}
	s, err := script.CompileSource(scriptName(rt.cfg, path), string(src), opts)
	if err != nil {
		return nil, err
	}
	si := &scriptInst{key: key, s: s}
	rt.scripts[path] = si
	return si, nil
}

// engineSinks and enginePipelines are rt's parts as pipeline.New takes them.
func (rt *runtime) engineSinks() map[string]pipeline.Sink {
	out := make(map[string]pipeline.Sink, len(rt.sinks))
	for name, si := range rt.sinks {
		out[name] = si.spec
	}
	return out
}

func (rt *runtime) enginePipelines() []pipeline.Pipeline {
	var out []pipeline.Pipeline
	for _, name := range slices.Sorted(maps.Keys(rt.pipes)) {
		out = append(out, rt.pipes[name].p)
	}
	return out
}

// closeAll closes every sink and source of rt (at shutdown, once the
// engine stopped).
func (rt *runtime) closeAll() error {
	var errs []error
	for _, si := range rt.sources {
		si.close()
	}
	for _, si := range rt.sinks {
		errs = append(errs, si.close())
	}
	return errors.Join(errs...)
}

// Changes lists what a reload changed, each entry "pipeline <name>",
// "sink <name>" or "source <name>".
type Changes struct {
	Added   []string `json:"added"`
	Changed []string `json:"changed"`
	Removed []string `json:"removed"`
}

// Empty tells whether nothing changed.
func (c Changes) Empty() bool { return len(c.Added)+len(c.Changed)+len(c.Removed) == 0 }

// diff lists what differs between prev and next.
func diff(prev, next *runtime) Changes {
	// Empty lists, not null, in the JSON of a reload's result.
	c := Changes{Added: []string{}, Changed: []string{}, Removed: []string{}}
	add := func(kind string, inPrev, inNext map[string]bool, same func(string) bool) {
		for _, n := range slices.Sorted(maps.Keys(inNext)) {
			switch {
			case !inPrev[n]:
				c.Added = append(c.Added, kind+" "+n)
			case !same(n):
				c.Changed = append(c.Changed, kind+" "+n)
			}
		}
		for _, n := range slices.Sorted(maps.Keys(inPrev)) {
			if !inNext[n] {
				c.Removed = append(c.Removed, kind+" "+n)
			}
		}
	}
	add("sink", keySet(prev.sinks), keySet(next.sinks), func(n string) bool { return prev.sinks[n] == next.sinks[n] })
	add("pipeline", keySet(prev.pipes), keySet(next.pipes), func(n string) bool { return prev.pipes[n] == next.pipes[n] })
	add("source", sourceSet(prev.cfg), sourceSet(next.cfg), func(n string) bool {
		return componentPrint(prev.cfg, prev.cfg.Sources[n]) == componentPrint(next.cfg, next.cfg.Sources[n])
	})
	return c
}

func keySet[V any](m map[string]V) map[string]bool {
	out := make(map[string]bool, len(m))
	for k := range m {
		out[k] = true
	}
	return out
}

func sourceSet(cfg *config.Config) map[string]bool { return keySet(cfg.Sources) }

// apply makes the engine run next instead of prev, touching only what
// changed: the removed and changed plugin sources stop first, and what the
// removed ones queued is read by their pipelines (see drainSources); then
// new and changed sinks (a changed one is swapped once its deliveries in
// progress are done, then closed), new and changed pipelines (each event
// runs through one version of the steps), the removed pipelines (after
// their events in progress) and the removed sinks; then the new plugin
// sources start. Errors of single parts are returned together; the other
// parts are applied.
func (a *App) apply(ctx context.Context, prev, next *runtime) error {
	var errs []error
	// Before any pipeline stops reading them: what a source emits once no
	// pipeline reads its topic would wait there for good.
	for name, si := range prev.sources {
		if next.sources[name] != si {
			si.close()
			a.readiness.forget(sdk.KindSource + " " + name)
		}
	}
	errs = append(errs, a.drainSources(ctx, prev, next))
	for _, name := range slices.Sorted(maps.Keys(next.sinks)) {
		si, old := next.sinks[name], prev.sinks[name]
		if si == old {
			continue
		}
		if err := a.Engine.SetSink(ctx, si.spec); err != nil {
			errs = append(errs, err)
			continue
		}
		// From now on the replacement's initialisation is what /readyz shows.
		if si.pi != nil {
			a.readiness.handOver(si.pi)
		} else if old != nil && old.pi != nil {
			a.readiness.forget(sdk.KindSink + " " + name)
		}
		if old != nil {
			errs = append(errs, old.close())
		}
	}
	for _, name := range slices.Sorted(maps.Keys(next.pipes)) {
		if pi := next.pipes[name]; pi != prev.pipes[name] {
			errs = append(errs, a.Engine.SetPipeline(ctx, pi.p))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(prev.pipes)) {
		if next.pipes[name] == nil {
			a.Engine.RemovePipeline(name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(prev.sinks)) {
		if next.sinks[name] != nil {
			continue
		}
		if err := a.Engine.RemoveSink(name); err != nil {
			errs = append(errs, err)
			continue
		}
		old := prev.sinks[name]
		errs = append(errs, old.close())
		a.readiness.forget(sdk.KindSink + " " + name)
	}
	errs = append(errs, a.startSources(next))
	return errors.Join(errs...)
}

// sourceDrainPoll is how often drainSources looks at the queue's backlog.
const sourceDrainPoll = 20 * time.Millisecond

// drainSources waits until the pipelines of prev have read what the
// plugin sources next removes had queued for them (stopped by then): once
// a pipeline no longer reads a source's topic, nothing would ever read
// what is left there. It waits at most server.shutdown_timeout, and only
// with a queue that reports its backlog (queue.BacklogReporter); with
// others the events a pipeline had not taken yet wait for the source to
// come back. Removed http sources take requests until the reload is
// applied, so they are not waited for.
func (a *App) drainSources(ctx context.Context, prev, next *runtime) error {
	br, ok := a.Queue.(queue.BacklogReporter)
	if !ok {
		return nil
	}
	// group -> topic of a removed source it reads.
	left := map[[2]string]bool{}
	for name, p := range prev.pipes {
		for _, src := range p.p.From {
			if _, kept := next.cfg.Sources[src]; !kept && prev.sources[src] != nil {
				left[[2]string{"pipeline-" + name, queue.SourceTopic(src)}] = true
			}
		}
	}
	if len(left) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, orDefault(a.boot.Server.ShutdownTimeout, 10*time.Second))
	defer cancel()
	for {
		bl, err := br.Backlog(ctx)
		waiting := uint64(0)
		for _, b := range bl {
			if left[[2]string{b.Group, b.Topic}] {
				waiting += b.Pending + b.Unacked
			}
		}
		if err == nil && waiting == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = fmt.Errorf("%d events still queued", waiting)
			}
			return fmt.Errorf("removed sources: their pipelines did not read what they had queued within %s; it waits until the sources come back: %w",
				orDefault(a.boot.Server.ShutdownTimeout, 10*time.Second), err)
		case <-time.After(sourceDrainPoll):
		}
	}
}
