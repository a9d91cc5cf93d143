// Package plugintest is the conformance suite for hookbus plugins. Run it
// from your plugin's tests, against the Go value (RunSink, RunSource) and
// against the built binary started the way hookbus starts it
// (RunSinkBinary, RunSourceBinary), and run those tests with the race
// detector, since hookbus calls Deliver concurrently:
//
//	// go test -race ./...
//	func TestConformance(t *testing.T) {
//		opts := plugintest.SinkOptions{
//			Config:    json.RawMessage(`{"url": "https://example.test"}`),
//			BadConfig: json.RawMessage(`{"url": "ftp://example.test"}`),
//		}
//		plugintest.RunSink(t, func() sdk.Sink { return &MySink{} }, opts)
//		// Build compiles ./cmd/acme once per test run (with -race here).
//		plugintest.RunSinkBinary(t, plugintest.Build(t, "./cmd/acme"), opts)
//	}
//
// Besides delivering (or emitting) and what follows from it, the suite
// checks the configuration contract. Describe's ConfigSchema must be a
// valid JSON Schema (draft 2020-12 unless its "$schema" names draft-04,
// -06, -07 or 2019-09, as hookbus reads it), Config must pass it and
// ValidateConfig, and BadConfig, which Init must reject, must be refused
// by the schema or ValidateConfig too, so that `hookbus validate` and
// `hookbus run` agree. A sink must answer Retry for every delivery of a
// Deliver call whose context is already done. On the Go value, the checks
// of Describe and ValidateConfig apply when the value implements
// sdk.Describer and sdk.ConfigValidator; over the wire they always do.
package plugintest

import (
	"context"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/hookbus/hookbus/sdk"
	"github.com/hookbus/hookbus/sdk/remote"
)

// Timeout bounds every wait of the suite.
const Timeout = 10 * time.Second

// startBinary starts path as hookbus would and stops it when the test ends.
func startBinary(t testing.TB, path string) *remote.Client {
	t.Helper()
	c, err := remote.Start(remote.Options{
		Cmd:         exec.Command(path),
		Logger:      testLogger(t),
		CallTimeout: Timeout,
	})
	if err != nil {
		t.Fatalf("start plugin %s: %v", path, err)
	}
	t.Cleanup(c.Kill)
	return c
}

// testLogger logs the plugin's lines (info and above) to the test's log.
// Registered before the plugin is started, its cleanup runs after the
// plugin was killed, and drops what arrives later (the testing package
// panics on a Logf after the test).
func testLogger(t testing.TB) hclog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return hclog.New(&hclog.LoggerOptions{Name: "plugin", Output: w, Level: hclog.Info})
}

type testWriter struct {
	t    testing.TB
	mu   sync.Mutex
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Logf("%s", p)
	}
	return len(p), nil
}

func ctxFor(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	t.Cleanup(cancel)
	return ctx
}

// Describe starts a plugin binary and returns its manifest.
func Describe(t testing.TB, path string) sdk.Manifest {
	t.Helper()
	m, err := startBinary(t, path).Describe(ctxFor(t))
	if err != nil {
		t.Fatalf("Describe: %v", err)
	}
	return m
}
