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

func testLogger(t testing.TB) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: "plugin", Output: testWriter{t}, Level: hclog.Info})
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", p)
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
