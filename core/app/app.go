// Package app wires a hookbus instance from its configuration: queue,
// store, sinks, scripts, the pipeline router and the HTTP server.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hookbus/hookbus/core/api"
	"github.com/hookbus/hookbus/core/config"
	"github.com/hookbus/hookbus/core/datadir"
	"github.com/hookbus/hookbus/core/metrics"
	"github.com/hookbus/hookbus/core/pipeline"
	"github.com/hookbus/hookbus/core/pluginhost"
	"github.com/hookbus/hookbus/core/queue"
	"github.com/hookbus/hookbus/core/registry"
	"github.com/hookbus/hookbus/core/script"
	"github.com/hookbus/hookbus/core/sinkopts"
	"github.com/hookbus/hookbus/core/store"
	httpsource "github.com/hookbus/hookbus/plugins/http"
	"github.com/hookbus/hookbus/sdk"

	// Registers the webhook sink type (the http source and the queue
	// drivers register from the packages imported above).
	_ "github.com/hookbus/hookbus/plugins/webhook"
)

// Checkers returns the validators `hookbus validate` and Load use: the
// component types and queue drivers registered in registry.Default, and
// scripts.
func Checkers(opts script.Options) config.Checkers {
	return config.Checkers{
		Registry: registry.Default,
		Script: func(path string) error {
			_, err := script.Compile(path, opts)
			return err
		},
	}
}

// ScriptOptions derives script options from the configuration.
func ScriptOptions(cfg *config.Config, log *slog.Logger) script.Options {
	return script.Options{Timeout: cfg.Scripts.Timeout, PoolSize: cfg.Scripts.PoolSize, MaxPayload: int(cfg.Scripts.MaxPayload),
		MaxMemory: int64(cfg.Scripts.MaxMemory), Logger: log}
}

// App is a running hookbus instance.
type App struct {
	cfg     *config.Config
	log     *slog.Logger
	Metrics *metrics.Metrics
	Queue   queue.Queue
	Store   *store.Store
	Engine  *pipeline.Engine
	api     *api.Server
	srv     *http.Server
	ln      net.Listener
	sinks   []sdk.Sink
	cancel  context.CancelFunc
	served  chan error

	host      *pluginhost.Host
	sourcesWG sync.WaitGroup

	// readiness lists the components that cannot work yet (/readyz).
	readiness *readiness
	// bgCtx ends background work started by New (plugin sinks retrying
	// their initialisation); bgWG waits for it.
	bgCtx    context.Context
	bgCancel context.CancelFunc
	bgWG     sync.WaitGroup
	sinksMu  sync.Mutex
	lock     *datadir.Lock
}

// addSink records an initialised sink, to be closed with the app.
func (a *App) addSink(s sdk.Sink) {
	a.sinksMu.Lock()
	a.sinks = append(a.sinks, s)
	a.sinksMu.Unlock()
}

// UsesDataDir reports whether the configuration keeps state in data_dir
// (the embedded queue or the SQLite store), which one process at a time may
// use.
func UsesDataDir(cfg *config.Config) bool {
	d, err := registry.Default.QueueDriver(queueDriver(cfg))
	return err == nil && d.UsesDataDir ||
		cfg.Store.Driver == config.StoreSQLite || cfg.Store.Driver == ""
}

func queueDriver(cfg *config.Config) string {
	if cfg.Queue.Driver == "" {
		return config.QueueEmbedded
	}
	return cfg.Queue.Driver
}

// OpenQueue opens the configured queue driver, as registered in
// registry.Default.
func OpenQueue(ctx context.Context, cfg *config.Config, log *slog.Logger) (queue.Queue, error) {
	q, err := queue.Open(ctx, registry.Default, queueDriver(cfg), queue.OpenOptions{DataDir: cfg.DataDir, URL: cfg.Queue.URL,
		DedupWindow: cfg.Queue.DedupWindow, Namespace: cfg.Queue.Namespace, CloseGrace: cfg.Server.ShutdownTimeout, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("queue.driver: %w", err)
	}
	return q, nil
}

// New builds an instance; nothing listens or consumes until Start.
func New(ctx context.Context, cfg *config.Config, log *slog.Logger) (a *App, err error) {
	if log == nil {
		log = slog.Default()
	}
	a = &App{cfg: cfg, log: log, Metrics: metrics.New(), served: make(chan error, 1)}
	a.readiness = &readiness{gauge: a.Metrics.ComponentReady, notReady: map[string]string{}}
	a.bgCtx, a.bgCancel = context.WithCancel(context.WithoutCancel(ctx))
	built := a
	defer func() {
		if err != nil {
			built.closeResources()
		}
	}()
	if UsesDataDir(cfg) {
		// Before opening anything: a second process on the same files would
		// corrupt them or silently miss what the other writes.
		if a.lock, err = datadir.Acquire(cfg.DataDir, "hookbus run"); err != nil {
			return nil, err
		}
	}
	a.host = pluginhost.New(log, a.Metrics.Registry)
	if a.Queue, err = OpenQueue(ctx, cfg, log); err != nil {
		return nil, err
	}
	a.Metrics.RegisterBacklog(a.Queue)
	if a.Store, err = store.Open(ctx, cfg.Store.Driver, cfg.Store.DSN, cfg.DataDir); err != nil {
		return nil, err
	}
	sinks := map[string]pipeline.Sink{}
	// Every sink's config problems are reported together (*config.Errors),
	// as `hookbus validate` does, rather than the first one only.
	var problems config.Errors
	for _, name := range cfg.SinkNames() {
		c := cfg.Sinks[name]
		raw, err := c.RawConfig()
		if err != nil {
			problems = append(problems, config.Error{Path: "sinks." + name + ".config", Message: err.Error()})
			continue
		}
		// hookbus applies the settings every sink shares (retry,
		// max_in_flight): the type gets the rest of its block.
		raw, settings, err := sinkopts.Split(raw)
		if err != nil {
			problems = append(problems, *configErrors("sinks."+name+".config", err)...)
			continue
		}
		s, ok := registry.Default.NewSink(c.Type, settings)
		if !ok {
			ps, err := a.pluginSink(ctx, name, c, raw, settings)
			var ce *config.Errors
			if errors.As(err, &ce) {
				problems = append(problems, *ce...)
				continue
			}
			if err != nil {
				return nil, err
			}
			sinks[name] = ps
			continue
		}
		info, err := s.Init(ctx, raw)
		if err != nil {
			problems = append(problems, *configErrors("sinks."+name+".config", err)...)
			continue
		}
		a.addSink(s)
		sinks[name] = pipeline.Sink{Name: name, Sink: s, MaxInFlight: settings.Window(info.MaxInFlight), Schedule: settings.Schedule()}
	}
	if len(problems) > 0 {
		return nil, &problems
	}
	sopts := ScriptOptions(cfg, log)
	compiled := map[string]*script.Script{}
	var pipes []pipeline.Pipeline
	for _, name := range cfg.PipelineNames() {
		p := cfg.Pipelines[name]
		pp := pipeline.Pipeline{Name: name, From: p.From, To: p.To}
		for i, st := range p.Steps {
			path := st.Filter
			if path == "" {
				path = st.Transform
			}
			sc, ok := compiled[path]
			if !ok {
				if sc, err = compileScript(cfg, path, sopts); err != nil {
					return nil, fmt.Errorf("pipelines.%s.steps[%d]: %w", name, i, err)
				}
				compiled[path] = sc
			}
			if st.Filter != "" {
				if !sc.HasFilter() {
					return nil, fmt.Errorf("pipelines.%s.steps[%d].filter: %s defines no filter function", name, i, path)
				}
				pp.Steps = append(pp.Steps, filterStep{sc})
			} else {
				if !sc.HasTransform() {
					return nil, fmt.Errorf("pipelines.%s.steps[%d].transform: %s defines no transform function", name, i, path)
				}
				pp.Steps = append(pp.Steps, transformStep{sc})
			}
		}
		pipes = append(pipes, pp)
	}
	a.Engine, err = pipeline.New(pipeline.Options{
		Queue: a.Queue, Pipelines: pipes, Sinks: sinks, DeadLetters: a.Store, Metrics: a.Metrics, Logger: log,
		CloseTimeout: cfg.Server.ShutdownTimeout, MaxScriptTimeouts: cfg.Scripts.MaxTimeouts, MaxDeliveries: cfg.Queue.MaxDeliveries,
	})
	if err != nil {
		return nil, err
	}
	ingest := httpsource.NewHandler(a.Engine, httpsource.Options{
		MaxBody: int64(cfg.Server.MaxBody),
		Logger:  log,
		Sources: func(name string) bool {
			c, ok := cfg.Sources[name]
			return ok && registry.Default.IsIngest(c.Type) && a.Engine.HasSource(name)
		},
	})
	a.api = api.New(api.Options{Ingest: ingest, APIKeys: cfg.Server.APIKeys, Store: a.Store, Queue: a.Queue, Registry: a.Metrics.Registry, Logger: log,
		SinkKnown: func(name string) bool { _, ok := cfg.Sinks[name]; return ok },
		NotReady:  a.readiness.list})
	return a, nil
}

// Start begins consuming and serving HTTP on cfg.Server.Listen.
func (a *App) Start(ctx context.Context) error {
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	a.cancel = cancel
	if err := a.Engine.Start(rctx); err != nil {
		return fmt.Errorf("start router: %w", err)
	}
	a.handleStaleGroups(rctx)
	ln, err := net.Listen("tcp", a.cfg.Server.Listen)
	if err != nil {
		return fmt.Errorf("server.listen: %w", err)
	}
	a.ln = ln
	if err := a.startPluginSources(rctx); err != nil {
		return err
	}
	sc := a.cfg.Server
	a.srv = &http.Server{
		Handler: a.api,
		// ReadTimeout covers the body too: a client trickling its body is cut
		// off instead of holding a connection (and a slot) for minutes.
		ReadHeaderTimeout: min(10*time.Second, orDefault(sc.ReadTimeout, 30*time.Second)),
		ReadTimeout:       orDefault(sc.ReadTimeout, 30*time.Second),
		WriteTimeout:      orDefault(sc.WriteTimeout, 60*time.Second),
		IdleTimeout:       orDefault(sc.IdleTimeout, 120*time.Second),
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}
	if sc.MaxConnections > 0 {
		ll := newLimitListener(ln, sc.MaxConnections, a.log)
		if err := ll.register(a.Metrics.Registry); err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
		ln = ll
	}
	a.warnExposed(ln.Addr())
	go func() { a.served <- a.srv.Serve(ln) }()
	a.api.SetReady(true)
	a.log.Info("hookbus running", "listen", ln.Addr().String(), "queue", a.cfg.Queue.Driver, "data_dir", a.cfg.DataDir)
	return nil
}

// warnExposed warns when the API is reachable from other hosts without API
// keys: /v1/dead-letters hands out event bodies and replays them.
func (a *App) warnExposed(addr net.Addr) {
	if len(a.cfg.Server.APIKeys) > 0 {
		return
	}
	if ta, ok := addr.(*net.TCPAddr); ok && ta.IP.IsLoopback() {
		return
	}
	a.log.Warn("server.listen is not a loopback address and server.api_keys is empty: anyone who can reach "+
		addr.String()+" can send events, read dead letters (event bodies) and replay them; set server.api_keys",
		"listen", addr.String())
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// Addr is the address the HTTP server listens on.
func (a *App) Addr() string { return a.ln.Addr().String() }

// Handler is the HTTP handler (for tests that serve it themselves).
func (a *App) Handler() http.Handler { return a.api }

// Shutdown stops taking requests, drains in-flight work and closes everything.
func (a *App) Shutdown(ctx context.Context) error {
	var errs []error
	if a.api != nil {
		a.api.SetReady(false)
	}
	if a.srv != nil {
		if err := a.srv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("http: %w", err))
		}
	}
	if a.Engine != nil {
		if err := a.Engine.Close(); err != nil {
			errs = append(errs, fmt.Errorf("router: %w", err))
		}
	}
	if a.cancel != nil {
		a.cancel()
	}
	a.sourcesWG.Wait()
	errs = append(errs, a.closeResources())
	return errors.Join(errs...)
}

func (a *App) closeResources() error {
	var errs []error
	if a.bgCancel != nil {
		a.bgCancel()
		a.bgWG.Wait()
	}
	a.sinksMu.Lock()
	defer a.sinksMu.Unlock()
	for _, s := range a.sinks {
		if err := s.Close(context.Background()); err != nil {
			errs = append(errs, err)
		}
	}
	a.sinks = nil
	if a.host != nil {
		if err := a.host.Close(); err != nil {
			errs = append(errs, fmt.Errorf("plugins: %w", err))
		}
		a.host = nil
	}
	if a.Queue != nil {
		if err := a.Queue.Close(); err != nil {
			errs = append(errs, fmt.Errorf("queue: %w", err))
		}
		a.Queue = nil
	}
	if a.Store != nil {
		if err := a.Store.Close(); err != nil {
			errs = append(errs, fmt.Errorf("store: %w", err))
		}
		a.Store = nil
	}
	// Last: the queue and store files are closed.
	if err := a.lock.Release(); err != nil {
		errs = append(errs, fmt.Errorf("data_dir lock: %w", err))
	}
	a.lock = nil
	return errors.Join(errs...)
}

// compileScript compiles a step's script, naming it by its path relative to
// the configuration file, as the user wrote it, in logs and dead letters.
func compileScript(cfg *config.Config, path string, opts script.Options) (*script.Script, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	name := path
	if cfg.File != "" {
		if rel, err := filepath.Rel(filepath.Dir(cfg.File), path); err == nil && !strings.HasPrefix(rel, "..") {
			name = rel
		}
	}
	return script.CompileSource(name, string(src), opts)
}
