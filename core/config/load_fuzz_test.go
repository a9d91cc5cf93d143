package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hookbus/hookbus/internal/testenv"
)

// FuzzLoad feeds the loader arbitrary YAML and an arbitrary environment
// (HOOKBUS_* overrides and ${VAR} values, one NAME=value per line). Any
// input may be rejected, but never with a panic, and a rejection must be a
// readable error: *Errors whose every entry says what is wrong.
func FuzzLoad(f *testing.F) {
	example, err := os.ReadFile(filepath.Join("..", "..", "config.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(example, "")
	f.Add([]byte(fullYAML), "TEST_API_KEY=secret\nHOOKBUS_SERVER__MAX_BODY=1MB")
	f.Add([]byte(fullYAML), "HOOKBUS_SINKS__PARTNER__CONFIG__TIMEOUT=${T}\nT=5s\nHOOKBUS_QUEUE__DRIVER=memory")
	f.Add([]byte("version: 1\nserver: {listen: \"${ADDR:-127.0.0.1:0}\"}\n"), "ADDR=[::1]:0")
	f.Add([]byte("version: 1\nsinks:\n  s: {type: webhook, config: {url: \"${U}\", timeout: 1s}}\n"), "U=${U}")
	f.Add([]byte("a: &a [*a, *a]\n"), "")
	f.Add([]byte("version: 1\nserver:\n  max_body: -1KB\n  shutdown_timeout: 9999999999h\n"), "HOOKBUS_SERVER=x")
	f.Add([]byte("{"), "HOOKBUS_=\n=\nHOOKBUS_PIPELINES__P__STEPS=1")
	// One file for all inputs: a worker runs them one at a time.
	path := filepath.Join(f.TempDir(), "config.yaml")
	f.Fuzz(func(t *testing.T, yaml []byte, env string) {
		// The fuzzing engine does not notice a hang; a configuration that
		// takes this long to load is one (hookbus would never start), so
		// crash the worker and let the engine save the input.
		watchdog := time.AfterFunc(testenv.Timeout(10*time.Second), func() {
			panic(fmt.Sprintf("Load hangs on YAML %q with environment %q", yaml, env))
		})
		defer watchdog.Stop()
		if err := os.WriteFile(path, yaml, 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, err := Load(path, LoadOptions{Env: strings.Split(env, "\n"), Checkers: testCheckers()})
		if err == nil {
			if cfg == nil {
				t.Fatal("Load returned neither a configuration nor an error")
			}
			return
		}
		var errs *Errors
		if !errors.As(err, &errs) {
			return // an I/O or environment error, wrapped with context
		}
		if len(*errs) == 0 {
			t.Fatal("Load returned an empty *Errors")
		}
		for _, e := range *errs {
			if e.Message == "" {
				t.Fatalf("error without a message: %+v", e)
			}
		}
	})
}
