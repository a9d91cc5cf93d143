// Package plugintest is the conformance suite for hookbus plugins. Run it
// from your plugin's tests, against the Go value (RunSink, RunSource) and
// against the built binary started the way hookbus starts it
// (RunSinkBinary, RunSourceBinary):
//
//	func TestConformance(t *testing.T) {
//		plugintest.RunSink(t, func() sdk.Sink { return &MySink{} }, plugintest.SinkOptions{
//			Config:    json.RawMessage(`{"url": "..."}`),
//			BadConfig: json.RawMessage(`{}`),
//		})
//	}
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
