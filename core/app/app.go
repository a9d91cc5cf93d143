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
	"sync/atomic"
	"time"

	"github.com/hookbus/hookbus/core/api"
	"github.com/hookbus/hookbus/core/attempt"
	"github.com/hookbus/hookbus/core/config"
	"github.com/hookbus/hookbus/core/console"
	"github.com/hookbus/hookbus/core/datadir"
	"github.com/hookbus/hookbus/core/metrics"
	"github.com/hookbus/hookbus/core/operational"
	"github.com/hookbus/hookbus/core/pipeline"
	"github.com/hookbus/hookbus/core/pluginhost"
	"github.com/hookbus/hookbus/core/queue"
	"github.com/hookbus/hookbus/core/registry"
	"github.com/hookbus/hookbus/core/script"
	"github.com/hookbus/hookbus/core/store"
	"github.com/hookbus/hookbus/core/subscription"
	httpsource "github.com/hookbus/hookbus/plugins/http"
	"github.com/hookbus/hookbus/plugins/subscriptions"
	"github.com/hookbus/hookbus/sdk"

	"github.com/hookbus/hookbus/core/signing"
	// Also registers the webhook sink type (the http source, the
	// subscriptions sink and the queue drivers register from the packages
	// imported above).
	"github.com/hookbus/hookbus/plugins/webhook"
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

// App is a running hookbus instance: the host, which lives as long as the
// process (listener, queue, store, plugin host, metrics, the data_dir
// lock, the engine's router), and the runtime built from the current
// configuration (sinks, scripts, pipelines, plugin sources), which a
// reload replaces part by part (see Reload).
type App struct {
	log     *slog.Logger
	Metrics *metrics.Metrics
	Queue   queue.Queue
	Store   *store.Store
	// Subscriptions is the live index of the store's subscriptions, kept
	// current from its change feed: what the subscriptions sinks deliver
	// to. subChanges passes its changes on to them.
	Subscriptions *subscription.Live
	subChanges    subscriptions.Changes
	Engine        *pipeline.Engine
	// ops makes the operational events, published through Engine into
	// operational_events.source (none while it is unset).
	ops *operational.Emitter
	// Attempts is the delivery log (attempts, events on record, the
	// state of each delivery) on the store: what the API reads and what
	// resend and recover send again from. It is set even when
	// store.attempt_log is false (nothing new is recorded then).
	Attempts attempt.Store
	// attemptWriter records the engine's attempts in Attempts off the
	// delivery path (nil when store.attempt_log is false); pruneDone is
	// closed when the pruner has stopped.
	attemptWriter *attempt.Writer
	pruneDone     chan struct{}
	api           *api.Server
	console       *console.Console
	srv           *http.Server
	ln            net.Listener
	cancel        context.CancelFunc
	served        chan error

	host *pluginhost.Host
	// boot is the configuration the host was opened with: the keys that
	// cannot change while it runs are compared against it.
	boot *config.Config

	// readiness lists the components that cannot work yet (/readyz).
	readiness *readiness
	// bgCtx ends background work (plugin sinks retrying their
	// initialisation); runCtx is Start's, for plugin sources.
	bgCtx    context.Context
	bgCancel context.CancelFunc
	runCtx   context.Context
	lock     *datadir.Lock

	// reloadMu serialises reloads (and Shutdown against them); rt is the
	// runtime running now.
	reloadMu sync.Mutex
	rt       atomic.Pointer[runtime]
	status   statusRecord
	watcher  *watcher
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
		DedupWindow: cfg.Queue.DedupWindow, Namespace: cfg.Queue.Namespace, Replicas: cfg.Queue.Replicas, AckWait: cfg.Queue.AckWait,
		CloseGrace: cfg.Server.ShutdownTimeout, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("queue.driver: %w", err)
	}
	return q, nil
}

// OpenStore opens the configured store (store.driver, store.dsn; SQLite
// under data_dir by default) with its encryption keys and migrates its
// schema.
func OpenStore(ctx context.Context, cfg *config.Config) (*store.Store, error) {
	return store.Open(ctx, cfg.Store.Driver, cfg.Store.DSN, cfg.DataDir,
		store.EncryptionKeys(cfg.Store.EncryptionKey, cfg.Store.OldEncryptionKeys...))
}

// notReady lists what cannot work yet for /readyz: the components still
// initialising, and the queue while it cannot take or hand out messages
// (a JetStream stream without a leader, no server reachable).
func (a *App) notReady() []string {
	out := a.readiness.list()
	if hc, ok := a.Queue.(queue.HealthChecker); ok {
		ctx, cancel := context.WithTimeout(a.bgCtx, 3*time.Second)
		defer cancel()
		if err := hc.Health(ctx); err != nil {
			out = append(out, "queue: "+err.Error())
		}
	}
	return out
}

// New builds an instance; nothing listens or consumes until Start.
func New(ctx context.Context, cfg *config.Config, log *slog.Logger) (a *App, err error) {
	if log == nil {
		log = slog.Default()
	}
	a = &App{boot: cfg, log: log, Metrics: metrics.New(), served: make(chan error, 1)}
	// Before the sinks are built: the subscriptions sinks make events
	// through it. It publishes through the engine, built below, which no
	// delivery precedes.
	a.ops = operational.NewEmitter(operational.PublisherFunc(func(ctx context.Context, source string, evs []sdk.Event) error {
		return a.Engine.Publish(ctx, source, evs)
	}), operationalSettings(cfg), log)
	a.readiness = &readiness{gauge: a.Metrics.ComponentReady, notReady: map[string]string{}}
	a.bgCtx, a.bgCancel = context.WithCancel(context.WithoutCancel(ctx))
	a.runCtx = a.bgCtx
	built := a
	defer func() {
		if err != nil {
			built.closeResources()
		}
	}()
	if err := a.openHost(ctx, cfg); err != nil {
		return nil, err
	}
	rt, err := a.buildRuntime(ctx, cfg, nil)
	if err != nil {
		return nil, err
	}
	a.rt.Store(rt)
	a.Metrics.Declare(rt.topology())
	if err := a.openAttemptLog(cfg); err != nil {
		return nil, err
	}
	a.registerOldestWaiting()
	a.Engine, err = pipeline.New(pipeline.Options{
		Queue: a.Queue, Pipelines: rt.enginePipelines(), Sinks: rt.engineSinks(), DeadLetters: a.Store, Attempts: a.recorder(), Metrics: a.Metrics, Logger: log,
		CloseTimeout: cfg.Server.ShutdownTimeout, MaxScriptTimeouts: cfg.Scripts.MaxTimeouts, MaxDeliveries: cfg.Queue.MaxDeliveries,
		Operational: a.ops, Windows: a.Store,
	})
	if err != nil {
		return nil, err
	}
	ingest := httpsource.NewHandler(a.Engine, httpsource.Options{
		MaxBody: int64(cfg.Server.MaxBody),
		Logger:  log,
		Sources: func(name string) bool {
			c, ok := a.rt.Load().cfg.Sources[name]
			return ok && registry.Default.IsIngest(c.Type) && a.Engine.HasSource(name)
		},
	})
	attempts, resender := a.deliveryLogAPI()
	a.api = api.New(api.Options{Ingest: ingest, APIKeys: cfg.Server.APIKeys, Store: a.Store, Queue: a.Queue, Registry: a.Metrics.Registry, Logger: log,
		SinkKnown: func(name string) bool { _, ok := a.rt.Load().cfg.Sinks[name]; return ok },
		NotReady:  a.notReady,
		Admin:     a,
		Pprof:     cfg.Server.Pprof,
		// The platform API: applications, tokens, subscriptions.
		Subscriptions: refreshingStore{Store: a.Store, live: a.Subscriptions},
		// Test sends and the URL rule follow the running configuration's
		// first subscriptions sink.
		TestSend: func(ctx context.Context, sub subscription.Subscription, ev sdk.Event) (subscription.TestResult, error) {
			res, err := a.SubscriptionTestSend(ctx, sub, ev)
			if errors.Is(err, ErrNoSubscriptionsSink) {
				err = fmt.Errorf("%w: %w", api.ErrTestUnavailable, err)
			}
			return res, err
		},
		AllowPrivateNetworks:   a.AllowPrivateNetworks,
		SubscriptionMaxTimeout: a.SubscriptionMaxTimeout,
		// Receivers fetch a webhook sink's v1a public keys (public route).
		SinkPublicKeys: func(name string) ([]signing.PublicKey, bool) { return sinkPublicKeys(a.rt.Load().cfg.Sinks, name) },
		// The delivery log: attempts, events on record, stats, resend, recover.
		Attempts: attempts,
		Resender: resender,
		// Portal links (restart-only keys).
		PortalBaseURL: cfg.Console.PublicURL,
		PortalLinkTTL: cfg.Console.Portal.LinkTTL,
		// Filters compile under the configured script limits.
		CompileFilter: func(src string) error {
			return api.CheckFilter(script.CompileSource("filter", src, ScriptOptions(a.rt.Load().cfg, log)))
		}})
	// The console and the portal: pages made from the same API, in process.
	if cc := cfg.Console; cc.Enabled {
		a.console, err = console.New(console.Options{API: a.api, Logger: log, SessionTTL: cc.SessionTTL, SessionKey: cc.SessionKey,
			PortalTTL: cc.Portal.LinkTTL, FrameAncestors: cc.Portal.FrameAncestors, PublicURL: cc.PublicURL})
		if err != nil {
			return nil, fmt.Errorf("console: %w", err)
		}
	}
	cfgBytes, _ := os.ReadFile(cfg.File)
	a.status.loaded(cfg.File, configHash(cfgBytes, rt))
	return a, nil
}

// openHost opens what lives for the process: the data_dir lock, the
// plugin host, the queue and the store.
func (a *App) openHost(ctx context.Context, cfg *config.Config) (err error) {
	if UsesDataDir(cfg) {
		// Before opening anything: a second process on the same files would
		// corrupt them or silently miss what the other writes.
		if a.lock, err = datadir.Acquire(cfg.DataDir, "hookbus run"); err != nil {
			return err
		}
	}
	a.host = pluginhost.New(a.log, a.Metrics.Registry)
	if a.Queue, err = OpenQueue(ctx, cfg, a.log); err != nil {
		return err
	}
	registerBacklog(a.Metrics, a.Queue)
	if a.Store, err = OpenStore(ctx, cfg); err != nil {
		return err
	}
	// Before any sink: a subscriptions sink matches against it from its
	// first event. Cheap without subscriptions sinks (a poll of the change
	// feed), and ready for one a reload adds.
	a.Subscriptions = subscription.NewLive(a.Store, subscription.LiveOptions{Logger: a.log, OnChange: a.subChanges.OnChange})
	if err := a.Subscriptions.Start(ctx); err != nil {
		return fmt.Errorf("store: load subscriptions: %w", err)
	}
	return nil
}

// Start begins consuming and serving HTTP on cfg.Server.Listen.
func (a *App) Start(ctx context.Context) error {
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	a.cancel = cancel
	a.runCtx = rctx
	if err := a.Engine.Start(rctx); err != nil {
		return fmt.Errorf("start router: %w", err)
	}
	// Before the stale groups: the old retry groups would be dropped
	// with what they hold.
	if err := a.Engine.DrainRetryTopics(rctx, a.rt.Load().cfg.SinkNames()); err != nil {
		a.log.Error("retries left on old retry topics could not all be moved back; they stay there until the next start", "error", err)
	}
	a.handleStaleGroups(rctx)
	a.startPruner()
	sc := a.boot.Server
	ln, err := net.Listen("tcp", sc.Listen)
	if err != nil {
		return fmt.Errorf("server.listen: %w", err)
	}
	a.ln = ln
	if err := a.startSources(a.rt.Load()); err != nil {
		return err
	}
	a.srv = &http.Server{
		Handler: a.Handler(),
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
	if a.boot.Reload.Watch && a.boot.File != "" {
		a.watcher, err = a.watch(rctx)
		if err != nil {
			a.log.Warn("cannot watch the configuration for changes; reload with SIGHUP or POST /v1/admin/reload", "error", err)
		}
	}
	a.api.SetReady(true)
	a.log.Info("hookbus running", "listen", ln.Addr().String(), "queue", a.boot.Queue.Driver, "data_dir", a.boot.DataDir)
	return nil
}

// warnExposed warns when the API is reachable from other hosts without API
// keys: /v1/dead-letters hands out event bodies and replays them.
func (a *App) warnExposed(addr net.Addr) {
	if len(a.rt.Load().cfg.Server.APIKeys) > 0 {
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

// Handler is the HTTP handler: the console's and the portal's pages, and
// the API for everything else (tests serve it themselves).
func (a *App) Handler() http.Handler {
	if a.console == nil {
		return a.api
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if console.Owns(r.URL.Path) {
			a.console.ServeHTTP(w, r)
			return
		}
		a.api.ServeHTTP(w, r)
	})
}

// Shutdown stops taking requests, drains in-flight work and closes everything.
func (a *App) Shutdown(ctx context.Context) error {
	var errs []error
	if a.watcher != nil {
		a.watcher.close()
	}
	// A reload in progress finishes first; none starts after this.
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
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
	errs = append(errs, a.closeResources())
	return errors.Join(errs...)
}

func (a *App) closeResources() error {
	var errs []error
	if a.bgCancel != nil {
		a.bgCancel()
	}
	if rt := a.rt.Swap(nil); rt != nil {
		errs = append(errs, rt.closeAll())
	}
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
	if a.Subscriptions != nil {
		a.Subscriptions.Close()
		a.Subscriptions = nil
	}
	// The engine records no more (closed, or never started).
	a.closeAttemptLog()
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

// scriptName names a step's script by its path relative to the
// configuration file, as the user wrote it, in logs and dead letters.
func scriptName(cfg *config.Config, path string) string {
	if cfg.File != "" {
		if rel, err := filepath.Rel(filepath.Dir(cfg.File), path); err == nil && !strings.HasPrefix(rel, "..") {
			return rel
		}
	}
	return path
}

// operationalSettings are cfg's operational_events as the Emitter takes
// them.
func operationalSettings(cfg *config.Config) operational.Settings {
	return operational.Settings{Source: cfg.OperationalEvents.Source, FailingAfter: cfg.OperationalEvents.FailingAfter}
}

// sinkPublicKeys returns the public keys of the signing keys of the
// webhook sink name of sinks (the running configuration's), false when
// there is no such webhook sink.
func sinkPublicKeys(sinks map[string]config.Component, name string) ([]signing.PublicKey, bool) {
	c, ok := sinks[name]
	if !ok || c.Type != webhook.Name {
		return nil, false
	}
	raw, err := c.RawConfig()
	if err != nil {
		return nil, false
	}
	cfg, err := webhook.ParseConfig(raw)
	if err != nil {
		return nil, false
	}
	keys, err := cfg.PublicKeys()
	if err != nil {
		return nil, false
	}
	return keys, true
}
