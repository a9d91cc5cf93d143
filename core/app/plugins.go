package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/hookbus/hookbus/core/config"
	"github.com/hookbus/hookbus/core/pipeline"
	"github.com/hookbus/hookbus/core/pluginhost"
	"github.com/hookbus/hookbus/core/retry"
	"github.com/hookbus/hookbus/sdk"
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

// pluginSink starts the plugin process for one sink.
func (a *App) pluginSink(ctx context.Context, sinkName string, c config.Component) (pipeline.Sink, error) {
	p, ok := a.cfg.Plugins[c.Type]
	if !ok {
		return pipeline.Sink{}, fmt.Errorf("sinks.%s.type: %q is neither a built-in type nor a declared plugin", sinkName, c.Type)
	}
	raw, err := c.RawConfig()
	if err != nil {
		return pipeline.Sink{}, err
	}
	raw, sched, err := splitRetry(raw)
	if err != nil {
		return pipeline.Sink{}, fmt.Errorf("sinks.%s.config.%w", sinkName, err)
	}
	pl, err := a.host.Start(ctx, c.Type+"/"+sinkName, PluginSpec(p))
	if err != nil {
		return pipeline.Sink{}, fmt.Errorf("sinks.%s: %w", sinkName, err)
	}
	s, info, err := pl.Sink(ctx, raw)
	if err != nil {
		return pipeline.Sink{}, fmt.Errorf("sinks.%s.config: %w", sinkName, err)
	}
	a.sinks = append(a.sinks, s)
	// A call to a plugin has a fixed cost (a gRPC message, a process
	// switch): merge concurrent deliveries into batches.
	return pipeline.Sink{Name: sinkName, Sink: s, MaxInFlight: info.MaxInFlight, Schedule: sched, Batch: 64}, nil
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
		// The same refusal as the http source's: scripts could not read it.
		if err := events[i].CheckNumbers(); err != nil {
			return fmt.Errorf("event %d: %w; nothing of the batch was queued", i, err)
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
// validation. Problems carry the block's key path.
func ValidatePlugins(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	host := pluginhost.New(log, nil)
	defer host.Close()
	var errs []error
	check := func(kind, section, name string, c config.Component) {
		p, ok := cfg.Plugins[c.Type]
		if !ok {
			return
		}
		raw, err := c.RawConfig()
		if err == nil && kind == "sink" {
			raw, _, err = splitRetry(raw)
		}
		if err == nil {
			err = host.Validate(ctx, c.Type, PluginSpec(p), kind, raw)
		}
		if err == nil {
			return
		}
		base := section + "." + name + ".config"
		var ces []*sdk.ConfigError
		collectConfigErrors(err, &ces)
		if len(ces) == 0 {
			errs = append(errs, fmt.Errorf("%s: %w", base, err))
			return
		}
		for _, ce := range ces {
			path := base
			if ce.Field != "" {
				path += "." + ce.Field
			}
			errs = append(errs, fmt.Errorf("%s: %s", path, ce.Message))
		}
	}
	for _, n := range cfg.SourceNames() {
		check("source", "sources", n, cfg.Sources[n])
	}
	for _, n := range cfg.SinkNames() {
		check("sink", "sinks", n, cfg.Sinks[n])
	}
	return errors.Join(errs...)
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
