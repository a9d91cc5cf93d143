package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/hookbus/hookbus/core/config"
	"github.com/hookbus/hookbus/core/problem"
	"github.com/hookbus/hookbus/sdk"
)

// LoadConfig loads and validates the configuration file at path with the
// checks of `hookbus validate` for the built-in components and scripts
// (plugin config blocks are checked by their plugins, see
// ValidatePlugins). Problems are *config.Errors.
func LoadConfig(path string, log *slog.Logger) (*config.Config, error) {
	probe := config.Default()
	return config.Load(path, config.LoadOptions{Checkers: Checkers(ScriptOptions(probe, log))})
}

// ReloadResult is the outcome of one reload.
type ReloadResult struct {
	// At is when the reload ran; Trigger what asked for it: "watch",
	// "signal" or "api".
	At      time.Time `json:"at"`
	Trigger string    `json:"trigger"`
	// OK: the new configuration runs (Errors may still list parts that
	// failed to start, see Applied).
	OK bool `json:"ok"`
	// Version is the configuration version running after the reload.
	Version int     `json:"version"`
	Hash    string  `json:"hash"`
	Changes Changes `json:"changes"`
	// Errors are the problems that refused the reload (nothing of it was
	// applied) or, with OK, the parts that could not be started.
	Errors []ReloadProblem `json:"errors,omitempty"`
}

// ReloadProblem is one problem of a reload, with the key path and the
// file and line where known.
type ReloadProblem struct {
	File    string `json:"file,omitempty"`
	Line    int    `json:"line,omitempty"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

// ReloadError is a refused reload: the new configuration is invalid, or
// it changes keys that only a restart can change. Nothing of it was
// applied; the running configuration goes on.
type ReloadError struct {
	Problems config.Errors
}

func (e *ReloadError) Error() string {
	return "configuration not reloaded:\n" + e.Problems.Error()
}

// Status is the running configuration, for GET /v1/admin/status.
type Status struct {
	// Version counts the configurations loaded since start (1 at start).
	Version int `json:"version"`
	// Hash is a SHA-256 of the configuration file and every script it
	// uses, as loaded.
	Hash       string        `json:"hash"`
	LoadedAt   time.Time     `json:"loaded_at"`
	File       string        `json:"file,omitempty"`
	Pipelines  []string      `json:"pipelines"`
	Sinks      []string      `json:"sinks"`
	LastReload *ReloadResult `json:"last_reload"`
}

// statusRecord keeps the running version and the last reload.
type statusRecord struct {
	mu       sync.Mutex
	version  int
	hash     string
	loadedAt time.Time
	file     string
	last     *ReloadResult
}

// loaded records a new running configuration of file, with its hash.
func (s *statusRecord) loaded(file, hash string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.version++
	s.hash = hash
	s.loadedAt = time.Now().UTC()
	s.file = file
}

func (s *statusRecord) current() (int, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.version, s.hash
}

func (s *statusRecord) record(r ReloadResult) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.last = &r
}

// configHash hashes what runs: the configuration file's bytes as read
// before it was loaded, and the scripts of rt as they were compiled (their
// keys hash the source and the script options), in a fixed order. Files
// read again later could already hold the next version.
func configHash(cfgBytes []byte, rt *runtime) string {
	h := sha256.New()
	fmt.Fprintf(h, "%d\x00", len(cfgBytes))
	h.Write(cfgBytes)
	for _, path := range slices.Sorted(maps.Keys(rt.scripts)) {
		fmt.Fprintf(h, "%s\x00%s\x00", path, rt.scripts[path].key)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// scriptPaths lists the scripts of cfg's pipelines, sorted, once each.
func scriptPaths(cfg *config.Config) []string {
	var out []string
	for _, p := range cfg.Pipelines {
		for _, st := range p.Steps {
			for _, f := range st.Scripts() {
				if !slices.Contains(out, f) {
					out = append(out, f)
				}
			}
		}
	}
	slices.Sort(out)
	return out
}

// Status reports the running configuration and the last reload.
func (a *App) Status() Status {
	a.status.mu.Lock()
	st := Status{Version: a.status.version, Hash: a.status.hash, LoadedAt: a.status.loadedAt, File: a.status.file, LastReload: a.status.last}
	a.status.mu.Unlock()
	if a.Engine != nil {
		st.Pipelines, st.Sinks = a.Engine.Pipelines(), a.Engine.Sinks()
	}
	return st
}

// Reload loads the configuration file again and applies what changed
// while everything else keeps running: new pipelines and sinks start,
// removed ones stop after their work in progress, a changed script is
// swapped so that each event runs through exactly one version, a changed
// sink is replaced once its deliveries in progress are done. The whole new
// configuration is checked first, as `hookbus validate` does (plugin
// config blocks of new and changed components included): when it is
// invalid, or changes a key only a restart can change, nothing is applied
// and the error is a *ReloadError. Reloads run one at a time.
func (a *App) Reload(ctx context.Context, trigger string) (ReloadResult, error) {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	res, err := a.reload(ctx, trigger)
	a.status.record(res)
	switch {
	case err != nil:
		var re *ReloadError
		if errors.As(err, &re) {
			for _, p := range re.Problems {
				a.log.Error("configuration not reloaded: "+p.Error(), "trigger", trigger)
			}
		} else {
			a.log.Error("configuration not reloaded", "trigger", trigger, "error", err)
		}
	case len(res.Errors) > 0:
		a.log.Error("configuration reloaded, but parts of it could not start", "trigger", trigger, "version", res.Version,
			"added", res.Changes.Added, "changed", res.Changes.Changed, "removed", res.Changes.Removed, "errors", len(res.Errors))
		for _, p := range res.Errors {
			a.log.Error("reload: " + p.Message)
		}
	default:
		a.log.Info("configuration reloaded", "trigger", trigger, "version", res.Version,
			"added", res.Changes.Added, "changed", res.Changes.Changed, "removed", res.Changes.Removed)
	}
	return res, err
}

func (a *App) reload(ctx context.Context, trigger string) (ReloadResult, error) {
	res := ReloadResult{At: time.Now().UTC(), Trigger: trigger}
	res.Version, res.Hash = a.status.current()
	refuse := func(errs config.Errors) (ReloadResult, error) {
		for _, e := range errs {
			res.Errors = append(res.Errors, ReloadProblem{File: e.File, Line: e.Line, Field: e.Path, Message: e.Message})
		}
		return res, &ReloadError{Problems: errs}
	}
	cur := a.rt.Load()
	if cur == nil {
		return refuse(config.Errors{{Message: "hookbus is shutting down"}})
	}
	file := a.boot.File
	if file == "" {
		return refuse(config.Errors{{Message: "hookbus was not started from a configuration file: nothing to reload"}})
	}
	// Read before the load: the hash is of this version even if the file
	// changes meanwhile (the watch then reloads again).
	cfgBytes, _ := os.ReadFile(file)
	cfg, err := LoadConfig(file, a.log)
	if err != nil {
		var ce *config.Errors
		if errors.As(err, &ce) {
			return refuse(*ce)
		}
		if errors.Is(err, fs.ErrNotExist) {
			return refuse(config.Errors{{File: file, Message: "configuration file not found"}})
		}
		return refuse(config.Errors{{File: file, Message: err.Error()}})
	}
	if keys := restartOnlyChanges(a.boot, cfg); len(keys) > 0 {
		var errs config.Errors
		for _, k := range keys {
			errs = append(errs, config.Error{File: file, Path: k, Message: "cannot change while hookbus runs; restart hookbus to apply it (nothing of this reload was applied)"})
		}
		return refuse(errs)
	}
	if errs := a.validateChangedPlugins(ctx, cur.cfg, cfg); len(errs) > 0 {
		return refuse(errs)
	}
	next, err := a.buildRuntime(ctx, cfg, cur)
	if err != nil {
		var ce *config.Errors
		if errors.As(err, &ce) {
			return refuse(*ce)
		}
		return refuse(config.Errors{{File: file, Message: err.Error()}})
	}
	res.Changes = diff(cur, next)
	applyErr := a.apply(ctx, cur, next)
	a.rt.Store(next)
	// After the pipelines that read a new source are applied.
	a.ops.Configure(operationalSettings(cfg))
	a.Metrics.Declare(next.topology())
	a.api.SetAPIKeys(cfg.Server.APIKeys)
	if a.console != nil {
		a.console.SetFrameAncestors(cfg.Console.Portal.FrameAncestors)
	}
	if hash := configHash(cfgBytes, next); hash != res.Hash || !res.Changes.Empty() {
		a.status.loaded(cfg.File, hash)
	}
	res.Version, res.Hash = a.status.current()
	res.OK = true
	for _, e := range config.Leaves(applyErr) {
		res.Errors = append(res.Errors, ReloadProblem{Message: e.Error()})
	}
	return res, nil
}

// restartOnlyChanges lists the keys that differ between the running
// configuration and next but belong to the host, which lives as long as
// the process: the listener, data_dir, the queue, the store, logging.
func restartOnlyChanges(cur, next *config.Config) []string {
	var keys []string
	check := func(key string, a, b any) {
		if !reflect.DeepEqual(a, b) {
			keys = append(keys, key)
		}
	}
	check("server.listen", cur.Server.Listen, next.Server.Listen)
	check("server.max_body", cur.Server.MaxBody, next.Server.MaxBody)
	check("server.shutdown_timeout", cur.Server.ShutdownTimeout, next.Server.ShutdownTimeout)
	check("server.read_timeout", cur.Server.ReadTimeout, next.Server.ReadTimeout)
	check("server.write_timeout", cur.Server.WriteTimeout, next.Server.WriteTimeout)
	check("server.idle_timeout", cur.Server.IdleTimeout, next.Server.IdleTimeout)
	check("server.max_connections", cur.Server.MaxConnections, next.Server.MaxConnections)
	check("server.pprof", cur.Server.Pprof, next.Server.Pprof)
	check("server.memory_limit", cur.Server.MemoryLimit, next.Server.MemoryLimit)
	check("data_dir", cur.DataDir, next.DataDir)
	check("queue.driver", cur.Queue.Driver, next.Queue.Driver)
	check("queue.url", cur.Queue.URL, next.Queue.URL)
	check("queue.dedup_window", cur.Queue.DedupWindow, next.Queue.DedupWindow)
	check("queue.namespace", cur.Queue.Namespace, next.Queue.Namespace)
	check("queue.max_deliveries", cur.Queue.MaxDeliveries, next.Queue.MaxDeliveries)
	check("queue.replicas", cur.Queue.Replicas, next.Queue.Replicas)
	check("queue.ack_wait", cur.Queue.AckWait, next.Queue.AckWait)
	check("store.driver", cur.Store.Driver, next.Store.Driver)
	check("store.dsn", cur.Store.DSN, next.Store.DSN)
	check("store.encryption_key", cur.Store.EncryptionKey, next.Store.EncryptionKey)
	check("store.old_encryption_keys", cur.Store.OldEncryptionKeys, next.Store.OldEncryptionKeys)
	// The engine records through the Writer it was built with; the
	// retentions are read by the pruner at each pass, so a reload applies
	// them.
	check("store.attempt_log", cur.Store.AttemptLog, next.Store.AttemptLog)
	check("log.level", cur.Log.Level, next.Log.Level)
	check("log.format", cur.Log.Format, next.Log.Format)
	check("reload.watch", cur.Reload.Watch, next.Reload.Watch)
	check("scripts.max_timeouts", cur.Scripts.MaxTimeouts, next.Scripts.MaxTimeouts)
	// The console and the API's portal links are built once with these;
	// only console.portal.frame_ancestors (read per request) a reload applies.
	check("console.enabled", cur.Console.Enabled, next.Console.Enabled)
	check("console.public_url", cur.Console.PublicURL, next.Console.PublicURL)
	check("console.session_ttl", cur.Console.SessionTTL, next.Console.SessionTTL)
	check("console.session_key", cur.Console.SessionKey, next.Console.SessionKey)
	check("console.portal.link_ttl", cur.Console.Portal.LinkTTL, next.Console.Portal.LinkTTL)
	return keys
}

// validateChangedPlugins checks, with their plugins, the config blocks of
// the plugin sources and sinks that are new or changed in next (the
// running ones passed when they started).
func (a *App) validateChangedPlugins(ctx context.Context, cur, next *config.Config) config.Errors {
	var errs config.Errors
	for _, sec := range []struct {
		kind, section string
		cur, next     map[string]config.Component
	}{{sdk.KindSource, "sources", cur.Sources, next.Sources}, {sdk.KindSink, "sinks", cur.Sinks, next.Sinks}} {
		for _, name := range slices.Sorted(maps.Keys(sec.next)) {
			c := sec.next[name]
			p, ok := next.Plugins[c.Type]
			if !ok {
				continue
			}
			if old, had := sec.cur[name]; had && componentPrint(cur, old) == componentPrint(next, c) {
				continue
			}
			errs = append(errs, validatePlugin(ctx, a.host, sec.kind, sec.section+"."+name+".config", c, p)...)
		}
	}
	return config.Locate(next.File, errs)
}

// AdminReload implements api.Admin: POST /v1/admin/reload.
func (a *App) AdminReload(ctx context.Context) (any, []problem.FieldError, error) {
	res, err := a.Reload(ctx, "api")
	var re *ReloadError
	if errors.As(err, &re) {
		var fes []problem.FieldError
		for _, p := range re.Problems {
			msg := p.Message
			if p.Line > 0 {
				msg = fmt.Sprintf("%s (line %d)", msg, p.Line)
			}
			fes = append(fes, problem.FieldError{Field: p.Path, Message: msg})
		}
		return res, fes, nil
	}
	return res, nil, err
}

// AdminStatus implements api.Admin: GET /v1/admin/status.
func (a *App) AdminStatus() any { return a.Status() }
