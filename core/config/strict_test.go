package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hookbus/hookbus/core/app"
	"github.com/hookbus/hookbus/core/config"
)

const strictSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// load loads y with hookbus' real component checkers.
func load(t *testing.T, y string, env []string) (*config.Config, error) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	if env == nil {
		env = []string{}
	}
	return config.Load(path, config.LoadOptions{Env: env, Checkers: app.Checkers(app.ScriptOptions(config.Default(), nil))})
}

const strictBase = `version: 1
queue: {driver: memory}
sources:
  shop: {type: http}
sinks:
  partner: {type: webhook, config: {url: "https://partner.example/hooks", secret: ` + strictSecret + `}}
pipelines:
  orders: {from: [shop], to: [partner]}
`

// TestUnknownKeysAndWrongTypesAreErrors: every component and top-level key
// is checked for unknown keys and types, each error naming its key path.
func TestUnknownKeysAndWrongTypesAreErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		yaml string
		path string // the key path the error names
		msg  string // a substring of its message
	}{
		{"http source config key", strings.Replace(strictBase, "shop: {type: http}", "shop: {type: http, config: {foo: 1}}", 1),
			"sources.shop.config.foo", "unknown key"},
		{"webhook max_in_flight as a string", strings.Replace(strictBase, "secret: "+strictSecret, "secret: "+strictSecret+`, max_in_flight: "32"`, 1),
			"sinks.partner.config.max_in_flight", `must be an integer, got "32"`},
		{"webhook boolean as a string", strings.Replace(strictBase, "secret: "+strictSecret, "secret: "+strictSecret+`, allow_private_networks: "true"`, 1),
			"sinks.partner.config.allow_private_networks", `must be true or false`},
		{"top-level integer as a string", strictBase + "scripts: {pool_size: \"4\"}\n",
			"scripts.pool_size", `expected an integer, got the string "4"`},
		{"top-level duration as a word", strictBase + "scripts: {timeout: fast}\n",
			"scripts.timeout", `invalid duration "fast"`},
		{"top-level duration as a bare number", strictBase + "server: {shutdown_timeout: 30}\n",
			"server.shutdown_timeout", "a duration needs a unit"},
		{"version as a string", strings.Replace(strictBase, "version: 1", `version: "1"`, 1),
			"version", `expected an integer, got the string "1"`},
		{"plugin entry unknown key", strictBase + "plugins:\n  x: {path: /bin/true, pth: y}\n",
			"plugins.x.pth", "unknown key"},
		{"plugin init_timeout as a string", strictBase + "plugins:\n  x: {path: /bin/true, init_timeout: \"soon\"}\n",
			"plugins.x.init_timeout", "invalid duration"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := load(t, tc.yaml, nil)
			var errs *config.Errors
			if !errors.As(err, &errs) {
				t.Fatalf("Load accepted it (err %v)", err)
			}
			for _, e := range *errs {
				if e.Path == tc.path && strings.Contains(e.Message, tc.msg) {
					return
				}
			}
			t.Errorf("no error at %s containing %q; got:\n%v", tc.path, tc.msg, err)
		})
	}
}

// TestEnvironmentValuesStillConvert: environment values are strings, so
// they (and ${VAR} references) still convert to numbers and durations.
func TestEnvironmentValuesStillConvert(t *testing.T) {
	t.Parallel()
	cfg, err := load(t, strictBase+"server: {shutdown_timeout: \"${GRACE}\"}\n",
		[]string{"HOOKBUS_SCRIPTS__POOL_SIZE=4", "HOOKBUS_SINKS__PARTNER__CONFIG__MAX_IN_FLIGHT=32", "GRACE=7s"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Scripts.PoolSize != 4 {
		t.Errorf("scripts.pool_size = %d from HOOKBUS_SCRIPTS__POOL_SIZE=4", cfg.Scripts.PoolSize)
	}
	if v := cfg.Sinks["partner"].Config["max_in_flight"]; v != 32 {
		t.Errorf("sinks.partner.config.max_in_flight = %#v, want 32", v)
	}
	if cfg.Server.ShutdownTimeout.String() != "7s" {
		t.Errorf("server.shutdown_timeout = %s from ${GRACE}", cfg.Server.ShutdownTimeout)
	}
	cfg, err = load(t, strictBase+"scripts: {pool_size: \"${POOL}\"}\n", []string{"POOL=3"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Scripts.PoolSize != 3 {
		t.Errorf("scripts.pool_size = %d from ${POOL}=3", cfg.Scripts.PoolSize)
	}
	_, err = load(t, strictBase, []string{"HOOKBUS_SCRIPTS__POOL_SIZE=many"})
	if err == nil || !strings.Contains(err.Error(), "HOOKBUS_SCRIPTS__POOL_SIZE") {
		t.Errorf("a bad environment value: %v, want an error naming the variable", err)
	}
}
