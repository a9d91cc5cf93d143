// Package config loads, merges and validates the hookbus configuration.
//
// Layers, later wins: built-in defaults, the YAML file, then environment
// variables prefixed HOOKBUS_ where "__" separates key levels
// (HOOKBUS_SINKS__PARTNER__CONFIG__URL sets sinks.partner.config.url).
// After the merge, ${VAR} in string values is expanded from the environment.
// Unknown keys are errors, and every problem is reported at once with its
// key path and, when it comes from the file, its line (see Errors).
package config

import (
	"encoding/json"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/hookbus/hookbus/core/subscription"
)

// Config is the whole hookbus configuration.
type Config struct {
	// Version of the file format; must be 1.
	Version int `koanf:"version"`
	// Server is the HTTP listener for ingest, management API, metrics and health.
	Server Server `koanf:"server"`
	// DataDir holds the embedded queue and store. Default ./data, relative
	// to the configuration file's directory; Load makes it absolute.
	DataDir string `koanf:"data_dir"`
	// Queue selects the message queue.
	Queue Queue `koanf:"queue"`
	// Store selects the database for deliveries, subscriptions and dead letters.
	Store Store `koanf:"store"`
	// Plugins are out-of-process plugin binaries by name; a source or sink
	// whose type is a plugin name is served by that plugin.
	Plugins map[string]Plugin `koanf:"plugins"`
	// Sources produce events, by name.
	Sources map[string]Component `koanf:"sources"`
	// Sinks consume events, by name.
	Sinks map[string]Component `koanf:"sinks"`
	// Pipelines connect sources through script steps to sinks, by name.
	Pipelines map[string]Pipeline `koanf:"pipelines"`
	// Scripts bounds the JavaScript filter and transform runtime.
	Scripts Scripts `koanf:"scripts"`
	// Log configures structured logging.
	Log Log `koanf:"log"`
	// Reload configures how a running instance picks up changes.
	Reload Reload `koanf:"reload"`
	// OperationalEvents, when its source is set, makes hookbus publish
	// its operational events into that source.
	OperationalEvents OperationalEvents `koanf:"operational_events"`
	// Console configures the operator console (/console) and the
	// application portal (/portal) the binary serves.
	Console Console `koanf:"console"`

	// File is the absolute path of the loaded configuration file, "" when
	// none was loaded. Relative paths in the configuration are resolved
	// against its directory. It is not a configuration key.
	File string `koanf:"-"`
}

// Server configures the HTTP listener.
type Server struct {
	// Listen is the host:port to listen on. Default 127.0.0.1:8080.
	Listen string `koanf:"listen"`
	// APIKeys, when non-empty, are the bearer keys /v1/* requires. Entries
	// that are empty after ${VAR} expansion are dropped.
	APIKeys []string `koanf:"api_keys"`
	// MaxBody caps a request body. Default 1MiB.
	MaxBody ByteSize `koanf:"max_body"`
	// ShutdownTimeout bounds a graceful shutdown. Default 30s.
	ShutdownTimeout time.Duration `koanf:"shutdown_timeout"`
	// ReadTimeout bounds reading one whole request, headers and body, so a
	// client trickling its body cannot hold a connection. Default 30s.
	ReadTimeout time.Duration `koanf:"read_timeout"`
	// WriteTimeout bounds handling a request and writing its response.
	// Default 60s.
	WriteTimeout time.Duration `koanf:"write_timeout"`
	// IdleTimeout closes a keep-alive connection idle that long. Default 120s.
	IdleTimeout time.Duration `koanf:"idle_timeout"`
	// MaxConnections caps concurrent client connections; one over the cap
	// is answered 503 with Retry-After and closed. Default 4096.
	MaxConnections int `koanf:"max_connections"`
	// Pprof exposes the Go runtime profiles (net/http/pprof) at
	// /debug/pprof/ on this listener, behind the API keys like /v1/*.
	// Default false: a heap profile shows event contents.
	Pprof bool `koanf:"pprof"`
	// MemoryLimit is the Go runtime's soft memory limit for the process
	// (runtime/debug.SetMemoryLimit): near it the garbage collector runs
	// more often instead of letting the heap grow to twice what is live.
	// Default 0: none, or the GOMEMLIMIT environment variable when set.
	// Not a cap: a process that needs more gets it.
	MemoryLimit ByteSize `koanf:"memory_limit"`
}

// MinMemoryLimit is the smallest server.memory_limit: below it the
// collector would run almost without pause.
const MinMemoryLimit = 32 * MiB

// checkLimits reports server timeouts and caps that would disable a bound.
func (s Server) checkLimits(add func(key, msg string)) {
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"server.read_timeout", s.ReadTimeout}, {"server.write_timeout", s.WriteTimeout}, {"server.idle_timeout", s.IdleTimeout}} {
		if d.v <= 0 {
			add(d.key, "must be a positive duration, like 30s")
		}
	}
	if s.MaxConnections <= 0 {
		add("server.max_connections", "must be a positive number of connections, like 4096")
	}
}

// Queue drivers.
const (
	QueueEmbedded = "embedded"
	QueueNATS     = "nats"
	QueueRedis    = "redis"
	QueuePostgres = "postgres"
	QueueKafka    = "kafka"
	QueueMemory   = "memory"
)

// Queue selects the message queue.
type Queue struct {
	// Driver is embedded (NATS JetStream in-process, default), nats, redis,
	// postgres, kafka or memory (not durable; tests only).
	Driver string `koanf:"driver"`
	// URL locates the external queue; required for nats, redis, postgres and kafka.
	URL string `koanf:"url"`
	// DedupWindow is how long a producer-given event id is remembered. Default 24h.
	DedupWindow time.Duration `koanf:"dedup_window"`
	// Namespace prefixes every stream, topic and consumer group, so several
	// hookbus deployments can share one broker. Default "hookbus".
	Namespace string `koanf:"namespace"`
	// MaxDeliveries is how many times in a row a message may be delivered
	// without reaching an outcome (its processing crashed or hung) before
	// it is dead-lettered as poison, on drivers that count deliveries.
	// Default 10.
	MaxDeliveries int `koanf:"max_deliveries"`
	// Replicas is how many servers of a NATS JetStream cluster hold each
	// stream, key-value bucket and consumer of the namespace (nats driver):
	// 1 (default) or 3 on a three-node cluster (at most 5). Checked against
	// the cluster at start; existing streams and buckets are updated to it.
	Replicas int `koanf:"replicas"`
	// AckWait is how long a message handed to a consumer may stay
	// unacknowledged before the broker hands it out again (the JetStream
	// drivers; handlers that run longer keep it with in-progress signals):
	// how soon a message a killed instance held comes back. Default 30s.
	AckWait time.Duration `koanf:"ack_wait"`
}

// Store drivers.
const (
	StoreSQLite   = "sqlite"
	StorePostgres = "postgres"
)

// Store selects the database.
type Store struct {
	// Driver is sqlite (default, under data_dir) or postgres.
	Driver string `koanf:"driver"`
	// DSN is the connection string; required for postgres, optional for
	// sqlite (default: a file under data_dir).
	DSN string `koanf:"dsn"`
	// EncryptionKey, when set, encrypts subscription secrets at rest
	// (AES-256-GCM): the base64 of 32 random bytes (`openssl rand -base64
	// 32`), typically "${HOOKBUS_ENCRYPTION_KEY}". Empty: secrets are
	// stored in clear.
	EncryptionKey string `koanf:"encryption_key"`
	// OldEncryptionKeys are keys that only decrypt: the keys of a rotation
	// that secrets may still be encrypted under until `hookbus store
	// reencrypt` has moved them to EncryptionKey. Empty entries (an unset
	// variable) are no key.
	OldEncryptionKeys []string `koanf:"old_encryption_keys"`
	// AttemptLog records every delivery attempt of every sink in the
	// store (the delivery log), with the events on record. Default true;
	// false records nothing (the log already kept can still be read).
	// Only a restart changes it.
	AttemptLog bool `koanf:"attempt_log"`
	// EventRetention is how long the events on record (the payloads kept
	// to be looked at and sent again) are kept. Default 168h (7 days).
	// A reload applies it.
	EventRetention time.Duration `koanf:"event_retention"`
	// AttemptRetention is how long the attempts of the delivery log are
	// kept. Default 720h (30 days). A reload applies it.
	AttemptRetention time.Duration `koanf:"attempt_retention"`
}

// DefaultSessionTTL is console.session_ttl when unset.
const DefaultSessionTTL = 12 * time.Hour

// Defaults of the delivery log's retention.
const (
	DefaultEventRetention   = 168 * time.Hour
	DefaultAttemptRetention = 720 * time.Hour
)

// Plugin is an out-of-process plugin binary.
type Plugin struct {
	// Path of the executable, relative to the configuration file's
	// directory; Load makes it absolute.
	Path string `koanf:"path"`
	// SHA256, when set, is the hex digest the binary must have.
	SHA256 string `koanf:"sha256"`
	// Args are passed to the plugin process.
	Args []string `koanf:"args"`
	// Env is added to the plugin process's environment.
	Env map[string]string `koanf:"env"`
	// InitTimeout bounds starting the plugin and its answer to Init (for a
	// sink) or to the config check of `hookbus validate`. A plugin sink
	// that does not answer in time is retried in the background. Zero
	// means DefaultPluginInitTimeout.
	InitTimeout time.Duration `koanf:"init_timeout"`
	// Reattach, when set, is the address of the plugin serving in debug
	// mode, as it printed it ("unix:/tmp/plugin123" or "tcp:host:port"):
	// hookbus attaches to that process instead of starting Path, so that
	// it can run under a debugger (see sdk.DebugEnv). For development only;
	// usually set through HOOKBUS_PLUGINS__<NAME>__REATTACH.
	Reattach string `koanf:"reattach"`
}

// DefaultPluginInitTimeout is plugins.<name>.init_timeout when unset.
const DefaultPluginInitTimeout = 10 * time.Second

// InitTimeoutOrDefault is InitTimeout, or DefaultPluginInitTimeout when unset.
func (p Plugin) InitTimeoutOrDefault() time.Duration {
	if p.InitTimeout > 0 {
		return p.InitTimeout
	}
	return DefaultPluginInitTimeout
}

// Component is a source or a sink.
type Component struct {
	// Type is a built-in type (http, webhook, subscriptions, ...) or the
	// name of an entry of plugins.
	Type string `koanf:"type"`
	// Config is the type's own configuration block, kept raw; the type's
	// validator checks it.
	Config map[string]any `koanf:"config"`
}

// RawConfig returns the Config block as JSON ("{}" when absent), the form
// sdk.Source.Init and sdk.Sink.Init take.
func (c Component) RawConfig() (json.RawMessage, error) {
	if c.Config == nil {
		return json.RawMessage("{}"), nil
	}
	return json.Marshal(c.Config)
}

// Pipeline routes events from sources through steps to sinks.
type Pipeline struct {
	// From names sources; at least one.
	From []string `koanf:"from"`
	// Steps run in order.
	Steps []Step `koanf:"steps"`
	// To names sinks; at least one.
	To []string `koanf:"to"`
}

// Step is one step; exactly one of Filter, Transform and Aggregate is
// set. Script paths are relative to the configuration file's directory;
// Load makes them absolute.
type Step struct {
	// Filter is a script file defining filter(event, ctx).
	Filter string `koanf:"filter"`
	// Transform is a script file defining transform(event, ctx).
	Transform string `koanf:"transform"`
	// Aggregate collects events into windows by key and closes each into
	// a digest (at most one per pipeline).
	Aggregate *Aggregate `koanf:"aggregate"`
}

// Scripts returns the script files the step runs (none for an aggregate
// step without a script).
func (s Step) Scripts() []string {
	var out []string
	for _, f := range []string{s.Filter, s.Transform} {
		if f != "" {
			out = append(out, f)
		}
	}
	if s.Aggregate != nil && s.Aggregate.Script != "" {
		out = append(out, s.Aggregate.Script)
	}
	return out
}

// Aggregate configures an aggregate step: events with the same key share
// a window, which closes Window after its first event or once it holds
// MaxEvents, into one event (or what Script makes of it).
type Aggregate struct {
	// Key is a dotted path into the event whose value groups events
	// (data.customer_id, subject, metadata.tenant, application); ""
	// (the default) puts every event in one window.
	Key string `koanf:"key"`
	// Window is how long a window stays open after its first event.
	// Required.
	Window time.Duration `koanf:"window"`
	// MaxEvents closes a window as soon as it holds this many events.
	// Default 1000, at most 100000.
	MaxEvents int `koanf:"max_events"`
	// MaxKeys caps the open windows of the step (per sink of the
	// pipeline); opening one more closes the oldest at once. Default 10000.
	MaxKeys int `koanf:"max_keys"`
	// Script is a script file defining aggregate(events, ctx); without
	// it a window closes into one event whose data is the array of its
	// events (type "<type>.batch").
	Script string `koanf:"script"`
}

// Scripts bounds the script runtime.
type Scripts struct {
	// Timeout is the deadline of one script call. Default 100ms.
	Timeout time.Duration `koanf:"timeout"`
	// PoolSize bounds the runtimes per script; 0 (default) means two per CPU.
	PoolSize int `koanf:"pool_size"`
	// MaxPayload caps the JSON size of an event handed to or returned by a
	// script. Default 1MiB.
	MaxPayload ByteSize `koanf:"max_payload"`
	// MaxMemory bounds what one script call may allocate: built-ins that
	// would build a larger value throw a RangeError, and a call whose heap
	// growth passes it is interrupted. Default 64MiB.
	MaxMemory ByteSize `koanf:"max_memory"`
	// MaxTimeouts is how many times the scripts of an event may time out
	// before it is dead-lettered; the event is tried again after 1s, 2s,
	// 4s... in between. Default 3.
	MaxTimeouts int `koanf:"max_timeouts"`
}

// Reload configures hot reload.
type Reload struct {
	// Watch reloads the configuration when its file, or a script it uses,
	// changes on disk. Default true. SIGHUP and POST /v1/admin/reload
	// reload whatever it is.
	Watch bool `koanf:"watch"`
}

// OperationalEvents configures hookbus' operational events
// (delivery.exhausted, delivery.failing, subscription.disabled,
// subscription.recovered): ordinary events published into a source of
// their own, which pipelines name in `from` to route them to any sink.
type OperationalEvents struct {
	// Source names the source the events are published into. It is not
	// declared under sources (it has no type: only hookbus publishes
	// into it, nothing can be sent to it from outside), and some pipeline
	// must read it. Empty (the default): no operational events.
	Source string `koanf:"source"`
	// FailingAfter is how many failed attempts in a row to one
	// subscription make a delivery.failing event. Default 5.
	FailingAfter int `koanf:"failing_after"`
}

// Console configures the operator console and the application portal.
// Every key but portal.frame_ancestors is read once at start (a reload
// that changes one is refused); frame_ancestors a reload applies.
type Console struct {
	// Enabled serves the operator console at /console and the portal at
	// /portal. Default true.
	Enabled bool `koanf:"enabled"`
	// PublicURL is the base URL of portal links, like
	// "https://hooks.example.com": an http(s) URL without query or
	// fragment. Empty (the default): the scheme and Host of the request
	// that makes the link (set it behind a proxy that terminates TLS).
	PublicURL string `koanf:"public_url"`
	// SessionTTL is how long a console login lasts. Default 12h.
	SessionTTL time.Duration `koanf:"session_ttl"`
	// SessionKey seals the session cookies: a secret of at least 32
	// characters, typically "${HOOKBUS_CONSOLE_SESSION_KEY}". Empty (the
	// default): a random key per process, so sessions end on restart; set
	// it when several instances share a load balancer.
	SessionKey string `koanf:"session_key"`
	// Portal configures the application portal.
	Portal Portal `koanf:"portal"`
}

// MinSessionKey is the shortest console.session_key.
const MinSessionKey = 32

// Portal configures the application portal.
type Portal struct {
	// LinkTTL is the default lifetime of a portal link, and the longest a
	// portal session lasts (it ends earlier, with its link), from 1m to
	// 24h. Default 1h.
	LinkTTL time.Duration `koanf:"link_ttl"`
	// FrameAncestors are the origins allowed to embed /portal in an
	// iframe (its Content-Security-Policy frame-ancestors): each an origin
	// (scheme://host[:port], like "https://dev.example.com") or "'self'".
	// Empty (the default): nobody may frame it. A reload applies it.
	FrameAncestors []string `koanf:"frame_ancestors"`
}

// Log configures logging.
type Log struct {
	// Level is debug, info (default), warn or error.
	Level string `koanf:"level"`
	// Format is text (default) or json.
	Format string `koanf:"format"`
}

// SlogLevel returns Level as a slog.Level (info when unrecognised).
func (l Log) SlogLevel() slog.Level {
	switch l.Level {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// defaults is the first configuration layer. Default builds the same values.
func defaults() map[string]any {
	return map[string]any{
		"server": map[string]any{
			"listen":           "127.0.0.1:8080",
			"max_body":         "1MiB",
			"shutdown_timeout": "30s",
			"read_timeout":     "30s",
			"write_timeout":    "60s",
			"idle_timeout":     "120s",
			"max_connections":  4096,
			"pprof":            false,
			"memory_limit":     0,
		},
		"data_dir": "./data",
		"queue": map[string]any{
			"driver":         QueueEmbedded,
			"dedup_window":   "24h",
			"namespace":      "hookbus",
			"max_deliveries": 10,
			"replicas":       1,
			"ack_wait":       "30s",
		},
		"store": map[string]any{
			"driver":            StoreSQLite,
			"attempt_log":       true,
			"event_retention":   DefaultEventRetention.String(),
			"attempt_retention": DefaultAttemptRetention.String(),
		},
		"scripts": map[string]any{
			"timeout":      "100ms",
			"pool_size":    0,
			"max_payload":  "1MiB",
			"max_memory":   "64MiB",
			"max_timeouts": 3,
		},
		"log": map[string]any{
			"level":  "info",
			"format": "text",
		},
		"reload": map[string]any{
			"watch": true,
		},
		"operational_events": map[string]any{
			"source":        "",
			"failing_after": 5,
		},
		"console": map[string]any{
			"enabled":     true,
			"public_url":  "",
			"session_ttl": DefaultSessionTTL.String(),
			"session_key": "",
			"portal": map[string]any{
				"link_ttl":        subscription.DefaultPortalLinkTTL.String(),
				"frame_ancestors": []string{},
			},
		},
	}
}

// Default returns the built-in defaults with Version 1 and empty maps: a
// valid configuration with nothing wired. Load starts from the same values,
// except that the file must state its version.
func Default() *Config {
	return &Config{
		Version: 1,
		Server: Server{
			Listen:          "127.0.0.1:8080",
			MaxBody:         MiB,
			ShutdownTimeout: 30 * time.Second,
			ReadTimeout:     30 * time.Second,
			WriteTimeout:    60 * time.Second,
			IdleTimeout:     120 * time.Second,
			MaxConnections:  4096,
		},
		DataDir:   "./data",
		Queue:     Queue{Driver: QueueEmbedded, DedupWindow: 24 * time.Hour, Namespace: "hookbus", MaxDeliveries: 10, Replicas: 1, AckWait: 30 * time.Second},
		Store:     Store{Driver: StoreSQLite, AttemptLog: true, EventRetention: DefaultEventRetention, AttemptRetention: DefaultAttemptRetention},
		Plugins:   map[string]Plugin{},
		Sources:   map[string]Component{},
		Sinks:     map[string]Component{},
		Pipelines: map[string]Pipeline{},
		Scripts:   Scripts{Timeout: 100 * time.Millisecond, MaxPayload: MiB, MaxMemory: 64 * MiB, MaxTimeouts: 3},
		Log:       Log{Level: "info", Format: "text"},
		Reload:    Reload{Watch: true},

		OperationalEvents: OperationalEvents{FailingAfter: 5},
		Console: Console{Enabled: true, SessionTTL: DefaultSessionTTL,
			Portal: Portal{LinkTTL: subscription.DefaultPortalLinkTTL, FrameAncestors: []string{}}},
	}
}

// SourceNames returns the source names, sorted.
func (c *Config) SourceNames() []string { return slices.Sorted(maps.Keys(c.Sources)) }

// PipelineSources returns the sources a pipeline may read, sorted: the
// declared ones and the operational events' source.
func (c *Config) PipelineSources() []string {
	names := c.SourceNames()
	if src := c.OperationalEvents.Source; validName.MatchString(src) && !slices.Contains(names, src) {
		names = append(names, src)
		slices.Sort(names)
	}
	return names
}

// SinkNames returns the sink names, sorted.
func (c *Config) SinkNames() []string { return slices.Sorted(maps.Keys(c.Sinks)) }

// PipelineNames returns the pipeline names, sorted.
func (c *Config) PipelineNames() []string { return slices.Sorted(maps.Keys(c.Pipelines)) }

// PluginNames returns the plugin names, sorted.
func (c *Config) PluginNames() []string { return slices.Sorted(maps.Keys(c.Plugins)) }
