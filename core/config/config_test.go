package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/go-viper/mapstructure/v2"

	"github.com/hookbus/hookbus/core/registry"
	"github.com/hookbus/hookbus/core/sinkopts"
	"github.com/hookbus/hookbus/sdk"
)

// writeConfig writes config.yaml plus the given extra files into a fresh
// directory and returns the config path.
func writeConfig(t *testing.T, yaml string, files ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range files {
		p := filepath.Join(dir, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("// "+f+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// webhookValidator mimics a real sink validator: url must be absolute http(s).
func webhookValidator(raw json.RawMessage) error {
	var c struct {
		URL     string `json:"url"`
		Timeout string `json:"timeout"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return err
	}
	var errs []error
	if !strings.HasPrefix(c.URL, "http://") && !strings.HasPrefix(c.URL, "https://") {
		errs = append(errs, &sdk.ConfigError{Field: "url", Message: "must be an absolute http(s) URL"})
	}
	if c.Timeout != "" {
		if _, err := time.ParseDuration(c.Timeout); err != nil {
			errs = append(errs, &sdk.ConfigError{Field: "timeout", Message: "invalid duration"})
		}
	}
	return errors.Join(errs...)
}

// checkFunc is a Spec made of a validator, for the test registry.
type checkFunc func(json.RawMessage) error

func (f checkFunc) Check(raw json.RawMessage) error { return f(raw) }
func (checkFunc) Schema() json.RawMessage           { return json.RawMessage(`{"type": "object"}`) }

// testRegistry knows the component types and queue drivers the tests use,
// without importing them.
func testRegistry() *registry.Registry {
	r := registry.New()
	ok := checkFunc(func(json.RawMessage) error { return nil })
	r.RegisterSource(registry.Source{Name: "http", Spec: ok, Ingest: true})
	newSink := func(sinkopts.Settings) sdk.Sink { return nil }
	r.RegisterSink(registry.Sink{Name: "webhook", Spec: checkFunc(webhookValidator), New: newSink})
	r.RegisterSink(registry.Sink{Name: "subscriptions", Spec: ok, New: newSink})
	r.RegisterSink(registry.Sink{Name: "broken", Spec: checkFunc(func(json.RawMessage) error { return errors.New("broken beyond repair") }), New: newSink})
	open := struct{}{} // never called: config only reads the specs
	r.RegisterQueueDriver(registry.QueueDriver{Name: QueueEmbedded, UsesDataDir: true, Open: open})
	r.RegisterQueueDriver(registry.QueueDriver{Name: QueueNATS, NeedsURL: true, Open: open})
	r.RegisterQueueDriver(registry.QueueDriver{Name: QueueRedis, NeedsURL: true, Open: open})
	r.RegisterQueueDriver(registry.QueueDriver{Name: QueuePostgres, NeedsURL: true, Open: open})
	r.RegisterQueueDriver(registry.QueueDriver{Name: QueueKafka, Unsupported: "kafka is not supported yet; use embedded, nats, redis or postgres"})
	r.RegisterQueueDriver(registry.QueueDriver{Name: QueueMemory, Open: open})
	return r
}

func testCheckers() Checkers {
	return Checkers{Registry: testRegistry()}
}

const fullYAML = `version: 1
server:
  listen: 0.0.0.0:9090
  api_keys: ["${TEST_API_KEY}", "static-key"]
  max_body: 512KB
  shutdown_timeout: 5s
  memory_limit: 256MiB
data_dir: ./state
queue:
  driver: nats
  url: nats://localhost:4222
  dedup_window: 1h
store:
  driver: postgres
  dsn: postgres://u@localhost/hookbus
plugins:
  acme:
    path: ./bin/acme-plugin
    args: [--verbose]
    env: {ACME_REGION: eu, PORT: 8080}
sources:
  shop:
    type: http
  feed:
    type: acme
sinks:
  partner:
    type: webhook
    config:
      url: https://partner.example/hooks
      secret: whsec_abc
      timeout: 10s
      max_in_flight: 64
      retry: {schedule: [5s, 5m]}
  everyone:
    type: subscriptions
pipelines:
  paid-orders:
    from: [shop, feed]
    steps:
      - filter: scripts/only_paid.js
      - transform: scripts/to_partner_format.js
    to: [partner, everyone]
scripts:
  timeout: 250ms
  pool_size: 4
  max_payload: 2MiB
  max_memory: 32MiB
log:
  level: debug
  format: json
`

func TestLoadYAML(t *testing.T) {
	t.Parallel()
	path := writeConfig(t, fullYAML, "bin/acme-plugin", "scripts/only_paid.js", "scripts/to_partner_format.js")
	dir := filepath.Dir(path)
	var compiled []string
	chk := testCheckers()
	chk.Script = func(p string) error { compiled = append(compiled, p); return nil }

	cfg, err := Load(path, LoadOptions{Env: []string{"TEST_API_KEY=secret-1"}, Checkers: chk})
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Version: 1,
		Server: Server{
			Listen:          "0.0.0.0:9090",
			APIKeys:         []string{"secret-1", "static-key"},
			MaxBody:         512000,
			ShutdownTimeout: 5 * time.Second,
			MemoryLimit:     256 * MiB,
			ReadTimeout:     30 * time.Second,
			WriteTimeout:    60 * time.Second,
			IdleTimeout:     120 * time.Second,
			MaxConnections:  4096,
		},
		DataDir: filepath.Join(dir, "state"),
		Queue:   Queue{Driver: "nats", URL: "nats://localhost:4222", DedupWindow: time.Hour, Namespace: "hookbus", MaxDeliveries: 10, Replicas: 1, AckWait: 30 * time.Second},
		Store: Store{Driver: "postgres", DSN: "postgres://u@localhost/hookbus", AttemptLog: true,
			EventRetention: DefaultEventRetention, AttemptRetention: DefaultAttemptRetention},
		Plugins: map[string]Plugin{"acme": {
			Path: filepath.Join(dir, "bin/acme-plugin"),
			Args: []string{"--verbose"},
			Env:  map[string]string{"ACME_REGION": "eu", "PORT": "8080"},
		}},
		Sources: map[string]Component{"shop": {Type: "http"}, "feed": {Type: "acme"}},
		Sinks: map[string]Component{
			"partner": {Type: "webhook", Config: map[string]any{
				"url":           "https://partner.example/hooks",
				"secret":        "whsec_abc",
				"timeout":       "10s",
				"max_in_flight": 64,
				"retry":         map[string]any{"schedule": []any{"5s", "5m"}},
			}},
			"everyone": {Type: "subscriptions"},
		},
		Pipelines: map[string]Pipeline{"paid-orders": {
			From: []string{"shop", "feed"},
			Steps: []Step{
				{Filter: filepath.Join(dir, "scripts/only_paid.js")},
				{Transform: filepath.Join(dir, "scripts/to_partner_format.js")},
			},
			To: []string{"partner", "everyone"},
		}},
		Scripts: Scripts{Timeout: 250 * time.Millisecond, PoolSize: 4, MaxPayload: 2 * MiB, MaxMemory: 32 * MiB, MaxTimeouts: 3},
		Log:     Log{Level: "debug", Format: "json"},
		Reload:  Reload{Watch: true},
		File:    path,

		OperationalEvents: OperationalEvents{FailingAfter: 5},
		Console:           Default().Console,
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("loaded config differs:\n got %#v\nwant %#v", cfg, want)
	}
	wantCompiled := []string{filepath.Join(dir, "scripts/only_paid.js"), filepath.Join(dir, "scripts/to_partner_format.js")}
	if !reflect.DeepEqual(compiled, wantCompiled) {
		t.Errorf("Script checker got %v, want %v", compiled, wantCompiled)
	}
	if got := cfg.SinkNames(); !reflect.DeepEqual(got, []string{"everyone", "partner"}) {
		t.Errorf("SinkNames = %v", got)
	}
	if got := cfg.SourceNames(); !reflect.DeepEqual(got, []string{"feed", "shop"}) {
		t.Errorf("SourceNames = %v", got)
	}
	raw, err := cfg.Sinks["partner"].RawConfig()
	if err != nil || !strings.Contains(string(raw), `"max_in_flight":64`) {
		t.Errorf("RawConfig = %s, %v", raw, err)
	}
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	path := writeConfig(t, "version: 1\n")
	cfg, err := Load(path, LoadOptions{Env: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.DataDir = filepath.Join(filepath.Dir(path), "data")
	want.File = path
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("defaults differ:\n got %#v\nwant %#v", cfg, want)
	}
	if err := Default().Validate(Checkers{}); err != nil {
		t.Errorf("Default() does not validate: %v", err)
	}
}

func TestLoadWithoutFile(t *testing.T) {
	t.Parallel()
	cfg, err := Load("", LoadOptions{Env: []string{"HOOKBUS_VERSION=1", "HOOKBUS_LOG__LEVEL=warn"}})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Log.Level != "warn" || cfg.File != "" || !filepath.IsAbs(cfg.DataDir) {
		t.Errorf("got log %+v file %q data_dir %q", cfg.Log, cfg.File, cfg.DataDir)
	}
}

func TestEnvOverrides(t *testing.T) {
	t.Parallel()
	const base = `version: 1
server:
  listen: 127.0.0.1:8080
sources:
  shop: {type: http}
sinks:
  partner:
    type: webhook
    config:
      url: https://old.example/hooks
      max_in_flight: 8
pipelines:
  p: {from: [shop], to: [partner]}
`
	tests := []struct {
		name  string
		env   []string
		check func(t *testing.T, c *Config)
	}{
		{"nested component config", []string{"HOOKBUS_SINKS__PARTNER__CONFIG__URL=https://new.example/in"}, func(t *testing.T, c *Config) {
			if got := c.Sinks["partner"].Config["url"]; got != "https://new.example/in" {
				t.Errorf("url = %v", got)
			}
			if got := c.Sinks["partner"].Config["max_in_flight"]; got != 8 {
				t.Errorf("untouched sibling max_in_flight = %v", got)
			}
		}},
		{"server listen", []string{"HOOKBUS_SERVER__LISTEN=0.0.0.0:1234"}, func(t *testing.T, c *Config) {
			if c.Server.Listen != "0.0.0.0:1234" {
				t.Errorf("listen = %q", c.Server.Listen)
			}
		}},
		{"single underscore stays in key", []string{"HOOKBUS_SERVER__MAX_BODY=2MiB", "HOOKBUS_QUEUE__DEDUP_WINDOW=90m", "HOOKBUS_DATA_DIR=/var/lib/hookbus"}, func(t *testing.T, c *Config) {
			if c.Server.MaxBody != 2*MiB || c.Queue.DedupWindow != 90*time.Minute || c.DataDir != "/var/lib/hookbus" {
				t.Errorf("max_body %v dedup_window %v data_dir %q", c.Server.MaxBody, c.Queue.DedupWindow, c.DataDir)
			}
		}},
		{"typed scalars from strings", []string{"HOOKBUS_VERSION=1", "HOOKBUS_SCRIPTS__POOL_SIZE=3"}, func(t *testing.T, c *Config) {
			if c.Version != 1 || c.Scripts.PoolSize != 3 {
				t.Errorf("version %d pool_size %d", c.Version, c.Scripts.PoolSize)
			}
			if c.Queue.MaxDeliveries != 10 || c.Scripts.MaxTimeouts != 3 {
				t.Errorf("defaults: max_deliveries %d max_timeouts %d, want 10 and 3", c.Queue.MaxDeliveries, c.Scripts.MaxTimeouts)
			}
		}},
		{"delivery and timeout limits", []string{"HOOKBUS_QUEUE__MAX_DELIVERIES=4", "HOOKBUS_SCRIPTS__MAX_TIMEOUTS=5"}, func(t *testing.T, c *Config) {
			if c.Queue.MaxDeliveries != 4 || c.Scripts.MaxTimeouts != 5 {
				t.Errorf("max_deliveries %d max_timeouts %d", c.Queue.MaxDeliveries, c.Scripts.MaxTimeouts)
			}
		}},
		{"api keys comma list", []string{"HOOKBUS_SERVER__API_KEYS=k1, k2,,"}, func(t *testing.T, c *Config) {
			if !reflect.DeepEqual(c.Server.APIKeys, []string{"k1", "k2"}) {
				t.Errorf("api_keys = %q", c.Server.APIKeys)
			}
		}},
		{"flow list", []string{"HOOKBUS_PIPELINES__P__TO=[partner]", "HOOKBUS_SERVER__API_KEYS=[a, 'b,c']"}, func(t *testing.T, c *Config) {
			if !reflect.DeepEqual(c.Pipelines["p"].To, []string{"partner"}) || !reflect.DeepEqual(c.Server.APIKeys, []string{"a", "b,c"}) {
				t.Errorf("to %q api_keys %q", c.Pipelines["p"].To, c.Server.APIKeys)
			}
		}},
		{"config values typed as YAML", []string{
			"HOOKBUS_SINKS__PARTNER__CONFIG__MAX_IN_FLIGHT=32",
			"HOOKBUS_SINKS__PARTNER__CONFIG__ALLOW_PRIVATE_NETWORKS=true",
			`HOOKBUS_SINKS__PARTNER__CONFIG__SECRET="123456"`,
			"HOOKBUS_SINKS__PARTNER__CONFIG__NOTE=a: b",
		}, func(t *testing.T, c *Config) {
			cfg := c.Sinks["partner"].Config
			if cfg["max_in_flight"] != 32 || cfg["allow_private_networks"] != true || cfg["secret"] != "123456" || cfg["note"] != "a: b" {
				t.Errorf("config = %#v", cfg)
			}
		}},
		{"new sink from env", []string{"HOOKBUS_SINKS__AUDIT__TYPE=webhook", "HOOKBUS_SINKS__AUDIT__CONFIG__URL=http://audit.example"}, func(t *testing.T, c *Config) {
			if got := c.Sinks["audit"]; got.Type != "webhook" || got.Config["url"] != "http://audit.example" {
				t.Errorf("audit = %#v", got)
			}
		}},
		{"non-override HOOKBUS_ variables ignored", []string{"HOOKBUS_API_KEY=x", "HOOKBUS_=y", "OTHER__SERVER__LISTEN=bad"}, func(t *testing.T, c *Config) {
			if c.Server.Listen != "127.0.0.1:8080" {
				t.Errorf("listen = %q", c.Server.Listen)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := Load(writeConfig(t, base), LoadOptions{Env: tc.env, Checkers: testCheckers()})
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, cfg)
		})
	}
}

func TestExpand(t *testing.T) {
	t.Parallel()
	lookup := envLookup([]string{"A=alpha", "EMPTY=", "B=x=y"})
	tests := []struct{ in, want string }{
		{"plain", "plain"},
		{"${A}", "alpha"},
		{"pre-${A}-post", "pre-alpha-post"},
		{"${B}", "x=y"},
		{"${UNSET}", ""},
		{"${UNSET:-fallback}", "fallback"},
		{"${EMPTY:-fallback}", "fallback"},
		{"${A:-fallback}", "alpha"},
		{"$$", "$"},
		{"$${A}", "${A}"},
		{"pa$word $1 $", "pa$word $1 $"},
		{"${A", "${A"},
	}
	for _, tc := range tests {
		if got := expand(tc.in, lookup); got != tc.want {
			t.Errorf("expand(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestExpandInLoad(t *testing.T) {
	t.Parallel()
	path := writeConfig(t, `version: 1
server:
  listen: ${HOST}:${PORT:-8080}
  api_keys: ["${KEY_ONE}", "${KEY_UNSET}", "", "lit$$eral"]
sources:
  shop: {type: http}
sinks:
  partner:
    type: webhook
    config:
      url: ${PARTNER_URL}
      headers: [ "X-Token: ${TOKEN}" ]
pipelines:
  p: {from: [shop], to: [partner]}
`)
	env := []string{"HOST=10.0.0.1", "KEY_ONE=k1", "PARTNER_URL=https://p.example", "TOKEN=t0k", "HOOKBUS_STORE__DSN=${HOST}"}
	cfg, err := Load(path, LoadOptions{Env: env, Checkers: testCheckers()})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Server.Listen != "10.0.0.1:8080" {
		t.Errorf("listen = %q", cfg.Server.Listen)
	}
	if !reflect.DeepEqual(cfg.Server.APIKeys, []string{"k1", "lit$eral"}) {
		t.Errorf("api_keys = %q (empty entries must be dropped)", cfg.Server.APIKeys)
	}
	if got := cfg.Sinks["partner"].Config; got["url"] != "https://p.example" || !reflect.DeepEqual(got["headers"], []any{"X-Token: t0k"}) {
		t.Errorf("sink config = %#v", got)
	}
	if cfg.Store.DSN != "10.0.0.1" {
		t.Errorf("env-sourced values are expanded too: dsn = %q", cfg.Store.DSN)
	}
}

// The encryption key usually comes from the environment; a bad one is
// named by its key and never shown.
func TestStoreEncryptionKeyFromEnvironment(t *testing.T) {
	t.Parallel()
	path := writeConfig(t, "version: 1\nstore:\n  encryption_key: ${HOOKBUS_ENCRYPTION_KEY}\n  old_encryption_keys: [\"${HOOKBUS_OLD_ENCRYPTION_KEY}\"]\n")
	const good = "qUoX5ZpKx1oVbq9m0HfFq8h8y7bX9rXk4Y1pYh0m3aU="
	cfg, err := Load(path, LoadOptions{Env: []string{"HOOKBUS_ENCRYPTION_KEY=" + good}})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Store.EncryptionKey != good || len(cfg.Store.OldEncryptionKeys) != 0 {
		t.Fatalf("store = %+v", cfg.Store)
	}
	const bad = "c2VjcmV0LWJ1dC10b28tc2hvcnQ="
	_, err = Load(path, LoadOptions{Env: []string{"HOOKBUS_ENCRYPTION_KEY=" + bad, "HOOKBUS_OLD_ENCRYPTION_KEY=" + bad}})
	var errs *Errors
	if !errors.As(err, &errs) || len(*errs) != 2 || (*errs)[0].Path != "store.encryption_key" || (*errs)[1].Path != "store.old_encryption_keys[0]" {
		t.Fatalf("Load = %v; want errors at store.encryption_key and store.old_encryption_keys[0]", err)
	}
	if strings.Contains(err.Error(), bad) || strings.Contains(err.Error(), "c2VjcmV0") {
		t.Fatalf("the error shows the key: %v", err)
	}
}

// The delivery log is on by default, with 7 days of events and 30 days
// of attempts; the file and the environment change them.
func TestDeliveryLogKeys(t *testing.T) {
	t.Parallel()
	cfg, err := Load(writeConfig(t, "version: 1\n"), LoadOptions{Env: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Store.AttemptLog || cfg.Store.EventRetention != 168*time.Hour || cfg.Store.AttemptRetention != 720*time.Hour {
		t.Fatalf("defaults: store = %+v", cfg.Store)
	}
	cfg, err = Load(writeConfig(t, "version: 1\nstore:\n  attempt_log: false\n  event_retention: 24h\n"),
		LoadOptions{Env: []string{"HOOKBUS_STORE__ATTEMPT_RETENTION=48h"}})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Store.AttemptLog || cfg.Store.EventRetention != 24*time.Hour || cfg.Store.AttemptRetention != 48*time.Hour {
		t.Fatalf("set: store = %+v", cfg.Store)
	}
}

func TestAPIKeysAllEmpty(t *testing.T) {
	t.Parallel()
	cfg, err := Load(writeConfig(t, "version: 1\nserver:\n  api_keys: [\"${HOOKBUS_API_KEY}\"]\n"), LoadOptions{Env: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Server.APIKeys) != 0 {
		t.Errorf("api_keys = %q, want none", cfg.Server.APIKeys)
	}
}

// wantErr is an expected problem; Message is matched as a substring.
type wantErr struct {
	Path    string
	Line    int
	Message string
}

func TestErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		yaml  string
		files []string
		env   []string
		want  []wantErr
	}{
		{
			name: "unknown key with path and line",
			yaml: "version: 1\nserver:\n  listn: :8080\n",
			want: []wantErr{{"server.listn", 3, `unknown key (did you mean "listen"?)`}},
		},
		{
			name: "unknown top-level and step keys",
			yaml: `version: 1
sources: {shop: {type: http}}
sinks: {s: {type: subscriptions}}
pipelines:
  p:
    from: [shop]
    steps:
      - filtr: x.js
    to: [s]
colour: blue
`,
			want: []wantErr{
				{"pipelines.p.steps[0]", 8, "a step needs filter or transform"},
				{"pipelines.p.steps[0].filtr", 8, "unknown key"},
				{"colour", 10, "unknown key (valid keys: console, data_dir, log,"},
			},
		},
		{
			name: "multiple errors reported together, sorted by line",
			yaml: `version: 2
server:
  listen: localhost
queue:
  driver: rabbit
store:
  driver: postgres
log:
  level: loud
`,
			want: []wantErr{
				{"version", 1, "unsupported version 2"},
				{"server.listen", 3, "must be host:port"},
				{"queue.driver", 5, `unknown driver "rabbit" (one of embedded, nats, redis, postgres, kafka, memory)`},
				{"store", 6, `dsn: required for store driver "postgres"`},
				{"log.level", 9, `unknown level "loud"`},
			},
		},
		{
			name: "missing version and queue url",
			yaml: "queue:\n  driver: redis\n",
			want: []wantErr{
				{"version", 0, "missing: add `version: 1`"},
				{"queue", 1, `url: required for queue driver "redis"`},
			},
		},
		{
			name: "ordering where the driver or the sink type cannot order, a bad key, a short ack_wait",
			yaml: `version: 1
queue: {driver: redis, url: "redis://127.0.0.1:6379", ack_wait: 10ms}
sources: {shop: {type: http}}
sinks:
  partner:
    type: webhook
    config:
      url: https://partner.example/hooks
      ordering: {key: subject}
  bad:
    type: webhook
    config:
      url: https://partner.example/hooks
      ordering: {key: "data..id"}
  everyone:
    type: subscriptions
    config:
      ordering: {key: subject}
  batched:
    type: webhook
    config:
      url: https://partner.example/hooks
      ordering: {key: subject}
      batch: {max_events: 10}
pipelines:
  p: {from: [shop], to: [partner, bad, everyone, batched]}
`,
			want: []wantErr{
				{"queue.ack_wait", 2, "must be at least 1s"},
				{"sinks.partner.config.ordering", 9, "the redis queue driver cannot deliver in order: use queue.driver embedded or nats"},
				{"sinks.bad.config.ordering", 14, "the redis queue driver cannot deliver in order"},
				{"sinks.bad.config.ordering.key", 14, `"data..id": segment 2 is empty`},
				{"sinks.everyone.config.ordering", 18, "not supported for subscriptions sinks yet"},
				{"sinks.everyone.config.ordering", 18, "the redis queue driver cannot deliver in order"},
				{"sinks.batched.config.ordering", 23, "cannot be combined with batch yet"},
				{"sinks.batched.config.ordering", 23, "the redis queue driver cannot deliver in order"},
			},
		},
		{
			name: "delivery and timeout limits must be positive",
			yaml: "version: 1\nqueue:\n  max_deliveries: -1\nscripts:\n  max_timeouts: -2\n",
			want: []wantErr{
				{"queue.max_deliveries", 3, "must be at least 1"},
				{"scripts.max_timeouts", 5, "must be at least 1"},
			},
		},
		{
			name: "replicas need a NATS cluster",
			yaml: "version: 1\nqueue:\n  replicas: 3\n",
			want: []wantErr{
				{"queue.replicas", 3, `3 replicas need a NATS JetStream cluster (queue.driver: nats); queue driver "embedded" keeps one copy`},
			},
		},
		{
			name: "replicas within JetStream's bound",
			yaml: "version: 1\nqueue:\n  driver: nats\n  url: nats://n1:4222\n  replicas: 7\n",
			want: []wantErr{
				{"queue.replicas", 5, "must be 1 to 5"},
			},
		},
		{
			name: "kafka is not offered",
			yaml: "version: 1\nqueue:\n  driver: kafka\n  url: kafka:9092\n",
			want: []wantErr{
				{"queue.driver", 3, "kafka is not supported yet"},
			},
		},
		{
			name: "a typo inside a sink does not hide the sink",
			yaml: `version: 1
sources: {shop: {type: http}}
sinks:
  partner: {type: webhook, confg: {url: "https://p.example"}}
pipelines:
  p: {from: [shop], to: [partner], steps: [{filter: {}}]}
`,
			want: []wantErr{
				{"sinks.partner.confg", 4, `unknown key (did you mean "config"?)`},
				{"sinks.partner.config.url", 4, "must be an absolute http(s) URL"},
				{"pipelines.p.steps[0].filter", 6, "expected a string, got a mapping"},
			},
		},
		{
			name: "missing sink and source references",
			yaml: `version: 1
sources: {shop: {type: http}, web: {type: http}}
sinks: {partner: {type: webhook, config: {url: "https://p.example"}}}
pipelines:
  paid-orders:
    from: [shoop]
    to: [partner, partnr, partner]
  empty:
    to: [partner]
`,
			want: []wantErr{
				{"pipelines.paid-orders.from[0]", 6, `unknown source "shoop" (defined sources: shop, web)`},
				{"pipelines.paid-orders.to[1]", 7, `unknown sink "partnr" (defined sinks: partner)`},
				{"pipelines.paid-orders.to[2]", 7, `sink "partner" is listed twice`},
				{"pipelines.empty", 8, "from: must name at least one source (defined: shop, web)"},
			},
		},
		{
			name: "bad duration and size with path",
			yaml: "version: 1\nqueue:\n  dedup_window: soon\nserver:\n  shutdown_timeout: 30\n  max_body: 1 megabyte\nscripts:\n  timeout: [1s]\n",
			want: []wantErr{
				{"queue.dedup_window", 3, `invalid duration "soon"`},
				{"server.shutdown_timeout", 5, "a duration needs a unit"},
				{"server.max_body", 6, `invalid size "1 megabyte"`},
				{"scripts.timeout", 8, "expected a duration like 10s, got a list"},
			},
		},
		{
			name: "server limits must stay on",
			yaml: "version: 1\nserver:\n  read_timeout: 0s\n  write_timeout: -1s\n  idle_timeout: 0s\n  max_connections: 0\n",
			want: []wantErr{
				{"server.read_timeout", 3, "must be a positive duration, like 30s"},
				{"server.write_timeout", 4, "must be a positive duration, like 30s"},
				{"server.idle_timeout", 5, "must be a positive duration, like 30s"},
				{"server.max_connections", 6, "must be a positive number of connections, like 4096"},
			},
		},
		{
			name: "memory limit too small or negative",
			yaml: "version: 1\nserver:\n  memory_limit: 1MiB\n",
			want: []wantErr{
				{"server.memory_limit", 3, "must be 0 (no limit) or at least 32MiB"},
			},
		},
		{
			name: "script memory bound",
			yaml: "version: 1\nscripts:\n  max_memory: 0\n",
			want: []wantErr{
				{"scripts.max_memory", 3, "must be a positive size, like 64MiB"},
			},
		},
		{
			name: "wrong types",
			yaml: "version: one\nsources: [a, b]\nserver:\n  api_keys: {a: b}\n",
			want: []wantErr{
				{"version", 1, `expected an integer, got the string "one"`},
				{"sources", 2, "expected a mapping, got a list"},
				{"server.api_keys", 4, "expected a list, got a mapping"},
			},
		},
		{
			name:  "bad script path and step with both kinds",
			files: []string{"scripts/ok.js", "scripts/dir/x.js"},
			yaml: `version: 1
sources: {shop: {type: http}}
sinks: {s: {type: subscriptions}}
pipelines:
  x:
    from: [shop]
    steps:
      - filter: scripts/ok.js
      - transform: scripts/missing.js
      - filter: scripts/dir
      - {filter: scripts/ok.js, transform: scripts/ok.js}
    to: [s]
`,
			want: []wantErr{
				{"pipelines.x.steps[1].transform", 9, "script scripts/missing.js not found"},
				{"pipelines.x.steps[2].filter", 10, "is a directory"},
				{"pipelines.x.steps[3]", 11, "set exactly one of filter, transform or aggregate"},
			},
		},
		{
			name: "component validator errors prefixed",
			yaml: `version: 1
sinks:
  partner:
    type: webhook
    config:
      url: ftp://partner.example
      timeout: forever
  other:
    type: broken
  nothing:
    type: webhook
`,
			want: []wantErr{
				{"sinks.partner.config.url", 6, "must be an absolute http(s) URL"},
				{"sinks.partner.config.timeout", 7, "invalid duration"},
				{"sinks.other.config", 8, "broken beyond repair"},
				{"sinks.nothing.config.url", 10, "must be an absolute http(s) URL"},
			},
		},
		{
			name:  "unknown types, plugin types allowed, plugin checks",
			files: []string{"bin/acme"},
			yaml: `version: 1
plugins:
  acme: {path: bin/acme, sha256: "abc"}
  gone: {path: bin/gone}
  nopath: {}
sources:
  a: {type: acme}
  b: {type: kafka}
  c: {}
  "bad name": {type: http}
`,
			want: []wantErr{
				{"plugins.acme.sha256", 3, "must be 64 hexadecimal characters"},
				{"plugins.gone.path", 4, "plugin executable bin/gone not found"},
				{"plugins.nopath", 5, "path: required"},
				{"sources.b.type", 8, `unknown type "kafka" (known source types: acme, gone, http, nopath)`},
				{"sources.c", 9, "type: required"},
				{"sources.bad name", 10, `invalid name "bad name"`},
			},
		},
		{
			name: "env-sourced problems have no line and name the variable",
			yaml: "version: 1\nserver:\n  listen: 127.0.0.1:8080\nsources:\n  shop: {type: kafka}\n",
			env: []string{"HOOKBUS_SERVER__LISTN=:1", "HOOKBUS_SERVER__LISTEN=nope", "HOOKBUS_QUEUE__DEDUP_WINDOW=x",
				"HOOKBUS_SINKS__AUDIT__CONFIG__TIMEOUT=x", "HOOKBUS_SOURCES__SHOP__CONFIG__PATH=/x"},
			want: []wantErr{
				{"queue.dedup_window", 0, `invalid duration "x": use a number with a unit, like 500ms, 10s, 5m or 2h (from environment variable HOOKBUS_QUEUE__DEDUP_WINDOW)`},
				{"server.listen", 0, "(from environment variable HOOKBUS_SERVER__LISTEN)"},
				{"server.listn", 0, "unknown key (did you mean \"listen\"?) (from environment variable HOOKBUS_SERVER__LISTN)"},
				{"sinks.audit", 0, "type: required"},
				{"sources.shop.type", 5, `unknown type "kafka"`},
			},
		},
		{
			name: "store encryption keys must be base64 of 32 bytes",
			yaml: `version: 1
store:
  encryption_key: c2hvcnQ=
  old_encryption_keys:
    - 6g8u8bCqkQ9Xz1mYbN0m1bXJ2p9k3pY4r8QeYb1x2Zs=
    - not base64!
`,
			want: []wantErr{
				{"store.encryption_key", 3, "must be the base64 of 32 random bytes (make one with: openssl rand -base64 32); this decodes to 5 bytes"},
				{"store.old_encryption_keys[1]", 6, "this is not valid base64"},
			},
		},
		{
			name: "delivery log retention must be a positive duration",
			yaml: "version: 1\nstore:\n  attempt_log: maybe\n  event_retention: 0s\n  attempt_retention: -1h\n",
			want: []wantErr{
				{"store.attempt_log", 3, "expected true or false"},
				{"store.event_retention", 4, "must be a positive duration, like 168h (got 0s)"},
				{"store.attempt_retention", 5, "must be a positive duration, like 720h (got -1h0m0s)"},
			},
		},
		{
			name: "not a mapping",
			yaml: "- a\n- b\n",
			want: []wantErr{{"", 1, "the file must be a mapping of keys"}},
		},
		{
			name: "duplicate key",
			yaml: "version: 1\nversion: 1\n",
			want: []wantErr{{"", 2, `mapping key "version" already defined at line 1`}},
		},
		{
			name: "scalar where a mapping belongs",
			yaml: "version: 1\nserver: 5\nsources:\n  a: x\n",
			want: []wantErr{{"server", 2, "expected a mapping, got a number"}, {"sources.a", 4, "expected a mapping, got a string"}},
		},
		{
			name: "yaml syntax error",
			yaml: "version: 1\nserver:\n  listen: [\n",
			want: []wantErr{{"", 3, "did not find expected node content"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := writeConfig(t, tc.yaml, tc.files...)
			env := tc.env
			if env == nil {
				env = []string{}
			}
			cfg, err := Load(path, LoadOptions{Env: env, Checkers: testCheckers()})
			var errs *Errors
			if !errors.As(err, &errs) {
				t.Fatalf("Load = %v, %v; want *Errors", cfg, err)
			}
			if cfg != nil {
				t.Errorf("config returned with errors")
			}
			checkErrors(t, *errs, tc.want)
			for _, e := range *errs {
				if e.File != path {
					t.Errorf("error %v has File %q, want %q", e, e.File, path)
				}
			}
		})
	}
}

// checkErrors matches got against want in order. A want path "a" with message
// "b: c" stands for an error at "a.b" with message "c" when written so in want.
func checkErrors(t *testing.T, got Errors, want []wantErr) {
	t.Helper()
	var lines []string
	for _, e := range got {
		lines = append(lines, fmt.Sprintf("%d %s: %s", e.Line, e.Path, e.Message))
	}
	if len(got) != len(want) {
		t.Fatalf("got %d errors, want %d:\n%s", len(got), len(want), strings.Join(lines, "\n"))
	}
	for i, w := range want {
		g := got[i]
		path, msg := w.Path, w.Message
		// "store" + "dsn: msg" is shorthand for path "store.dsn".
		if g.Path != path {
			if sub, rest, ok := strings.Cut(msg, ": "); ok && g.Path == path+"."+sub {
				path, msg = g.Path, rest
			}
		}
		if g.Path != path || g.Line != w.Line || !strings.Contains(g.Message, msg) {
			t.Errorf("error %d = %d %s: %s\nwant      %d %s: ...%s...\nall:\n%s", i, g.Line, g.Path, g.Message, w.Line, path, msg, strings.Join(lines, "\n"))
		}
	}
}

func TestErrorFormat(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  Error
		want string
	}{
		{Error{File: "config.yaml", Line: 12, Path: "sinks.partner.config.url", Message: "must be an absolute http(s) URL"},
			"config.yaml:12: sinks.partner.config.url: must be an absolute http(s) URL"},
		{Error{File: "config.yaml", Path: "version", Message: "missing"}, "config.yaml: version: missing"},
		{Error{Line: 3, Message: "bad"}, "line 3: bad"},
		{Error{Path: "a.b", Message: "bad"}, "a.b: bad"},
	}
	for _, tc := range tests {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
	}
	errs := Errors{tests[0].err, tests[1].err}
	if got := errs.Error(); got != tests[0].want+"\n"+tests[1].want {
		t.Errorf("Errors.Error() = %q", got)
	}
}

func TestMissingFile(t *testing.T) {
	t.Parallel()
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"), LoadOptions{Env: []string{}})
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("err = %v, want fs.ErrNotExist", err)
	}
}

func TestScriptChecker(t *testing.T) {
	t.Parallel()
	path := writeConfig(t, `version: 1
sources: {shop: {type: http}}
sinks: {s: {type: subscriptions}}
pipelines:
  a: {from: [shop], steps: [{filter: bad.js}], to: [s]}
  b: {from: [shop], steps: [{transform: ./bad.js}, {filter: good.js}], to: [s]}
`, "bad.js", "good.js")
	calls := map[string]int{}
	chk := testCheckers()
	chk.Script = func(p string) error {
		calls[p]++
		if filepath.Base(p) == "bad.js" {
			return errors.New("bad.js:3:7 SyntaxError: Unexpected token")
		}
		return nil
	}
	_, err := Load(path, LoadOptions{Env: []string{}, Checkers: chk})
	var errs *Errors
	if !errors.As(err, &errs) {
		t.Fatalf("err = %v", err)
	}
	checkErrors(t, *errs, []wantErr{
		{"pipelines.a.steps[0].filter", 5, "bad.js:3:7 SyntaxError"},
		{"pipelines.b.steps[0].transform", 6, "bad.js:3:7 SyntaxError"},
	})
	dir := filepath.Dir(path)
	if want := map[string]int{filepath.Join(dir, "bad.js"): 1, filepath.Join(dir, "good.js"): 1}; !reflect.DeepEqual(calls, want) {
		t.Errorf("checker calls = %v, want each file compiled once: %v", calls, want)
	}
}

func TestNilComponentsSkipsTypeCheck(t *testing.T) {
	t.Parallel()
	path := writeConfig(t, "version: 1\nsources: {s: {type: anything}}\n")
	if _, err := Load(path, LoadOptions{Env: []string{}}); err != nil {
		t.Errorf("with a nil Checkers.Registry types are not checked, got %v", err)
	}
	if _, err := Load(path, LoadOptions{Env: []string{}, Checkers: Checkers{Registry: registry.New()}}); err == nil {
		t.Errorf("with an empty registry, type anything must be unknown")
	}
}

func TestValidateInCode(t *testing.T) {
	t.Parallel()
	c := Default()
	c.Sources["shop"] = Component{Type: "http"}
	c.Pipelines["p"] = Pipeline{From: []string{"shop"}, To: []string{"gone"}}
	err := c.Validate(testCheckers())
	var errs *Errors
	if !errors.As(err, &errs) {
		t.Fatalf("err = %v", err)
	}
	checkErrors(t, *errs, []wantErr{{"pipelines.p.to[0]", 0, `unknown sink "gone" (defined sinks: none)`}})
}

func TestByteSize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    ByteSize
		wantErr bool
	}{
		{"1048576", MiB, false},
		{"1MiB", MiB, false},
		{"1 mib", MiB, false},
		{"512KB", 512000, false},
		{"512KiB", 512 * KiB, false},
		{"1.5MiB", 3 * MiB / 2, false},
		{"2GB", 2e9, false},
		{"10B", 10, false},
		{"", 0, true},
		{"MiB", 0, true},
		{"1 megabyte", 0, true},
		{"0.5B", 0, true},
		{"-1", 0, true},
	}
	for _, tc := range tests {
		got, err := ParseByteSize(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("ParseByteSize(%q) = %v, %v; want %v, err %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
	for _, b := range []ByteSize{0, 10, KiB, 1536 * KiB, MiB, 3 * GiB, 1000} {
		text, _ := b.MarshalText()
		var back ByteSize
		if err := back.UnmarshalText(text); err != nil || back != b {
			t.Errorf("round trip %d -> %s -> %d, %v", b, text, back, err)
		}
	}
}

func TestKeyPath(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"config.Config":                   "",
		"server.listen":                   "server.listen",
		"sinks[partner].config":           "sinks.partner.config",
		"pipelines[p].steps[1].filter":    "pipelines.p.steps[1].filter",
		"pipelines[7].from[0]":            "pipelines.7.from[0]",
		"plugins[acme].env[PORT]":         "plugins.acme.env.PORT",
		"sinks[partner].config[url][0]":   "sinks.partner.config.url[0]",
		"server.api_keys[2]":              "server.api_keys[2]",
		"pipelines[paid-orders].steps[0]": "pipelines.paid-orders.steps[0]",
	}
	for in, want := range tests {
		if got := keyPath(in); got != want {
			t.Errorf("keyPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLines(t *testing.T) {
	t.Parallel()
	ix, err := parseLines([]byte(`version: 1
base: &base
  type: webhook
sinks:
  a:
    <<: *base
    config:
      url: x
pipelines:
  p:
    to:
      - a
      - b
`))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path  string
		line  int
		exact bool
	}{
		{"version", 1, true},
		{"sinks.a.config.url", 8, true},
		{"sinks.a.type", 3, true},
		{"pipelines.p.to[1]", 13, true},
		{"pipelines.p.to[5]", 11, false},
		{"pipelines.p.from", 10, false},
		{"nothing.here", 0, false},
	}
	for _, tc := range tests {
		line, exact := ix.line(tc.path)
		if line != tc.line || exact != tc.exact {
			t.Errorf("line(%q) = %d, %v; want %d, %v", tc.path, line, exact, tc.line, tc.exact)
		}
	}
}

func TestDecodeHook(t *testing.T) {
	t.Parallel()
	type target struct {
		D    time.Duration `koanf:"d"`
		B    ByteSize      `koanf:"b"`
		I    int           `koanf:"i"`
		U    uint16        `koanf:"u"`
		F    float64       `koanf:"f"`
		OK   bool          `koanf:"ok"`
		List []string      `koanf:"list"`
		S    string        `koanf:"s"`
	}
	tests := []struct {
		name    string
		in      map[string]any
		want    target
		wantErr string
	}{
		{"strings from env", map[string]any{"d": envString("1m30s"), "b": envString("2KiB"), "i": envString("-3"), "u": envString("8"), "f": envString("0.5"), "ok": envString("true"), "list": envString("a, b"), "s": envString("x")},
			target{D: 90 * time.Second, B: 2048, I: -3, U: 8, F: 0.5, OK: true, List: []string{"a", "b"}, S: "x"}, ""},
		{"native YAML types", map[string]any{"d": 0, "b": 4096, "i": 7, "f": 2, "ok": false, "list": []any{"a"}, "s": 8080},
			target{B: 4096, I: 7, F: 2, List: []string{"a"}, S: "8080"}, ""},
		{"whole float size", map[string]any{"b": 1024.0, "s": true}, target{B: 1024, S: "true"}, ""},
		{"zero duration string", map[string]any{"d": "0"}, target{}, ""},
		{"duration without unit", map[string]any{"d": 5}, target{}, "a duration needs a unit"},
		{"fractional size", map[string]any{"b": 1.5}, target{}, "not a whole number of bytes"},
		{"bad int", map[string]any{"i": envString("many")}, target{}, `expected an integer, got "many"`},
		{"negative uint", map[string]any{"u": envString("-1")}, target{}, "expected a non-negative integer"},
		{"bad float", map[string]any{"f": envString("x")}, target{}, "expected a number"},
		{"bad bool", map[string]any{"ok": envString("yes please")}, target{}, "expected true or false"},
		// Strings written in YAML are not numbers: weak typing is off.
		{"YAML string into int", map[string]any{"i": "32"}, target{}, `expected an integer, got the string "32"`},
		{"YAML string into float", map[string]any{"f": "0.5"}, target{}, `expected a number, got the string "0.5"`},
		{"YAML string into bool", map[string]any{"ok": "true"}, target{}, `expected true or false, got the string "true"`},
		{"bad flow list", map[string]any{"list": "[a, {b"}, target{}, "expected a list of strings"},
		{"bool into int", map[string]any{"i": true}, target{}, "expected an integer, got the boolean true"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got target
			d, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{DecodeHook: DecodeHook(), TagName: "koanf", Result: &got, ErrorUnused: true})
			if err != nil {
				t.Fatal(err)
			}
			err = d.Decode(tc.in)
			if tc.wantErr != "" {
				problems := decodeProblems(err)
				if len(problems) != 1 || !strings.Contains(problems[0].message, tc.wantErr) {
					t.Errorf("problems = %+v, want one containing %q", problems, tc.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestSlogLevel(t *testing.T) {
	t.Parallel()
	for level, want := range map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError, "": slog.LevelInfo} {
		if got := (Log{Level: level}).SlogLevel(); got != want {
			t.Errorf("SlogLevel(%q) = %v, want %v", level, got, want)
		}
	}
}
