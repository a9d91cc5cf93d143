package plugintest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/hookbus/hookbus/sdk"
	"github.com/hookbus/hookbus/sdk/plugintest"
	"github.com/hookbus/hookbus/sdk/plugintest/internal/fake"
	"github.com/hookbus/hookbus/sdk/remote"
)

const fakePlugin = "./internal/fake/cmd/fakeplugin"

// binEnv hands the fake plugin binary, built once by the parent, to the
// child processes.
const binEnv = "PLUGINTEST_FAKE_BIN"

func fakeOptions() plugintest.SinkOptions {
	return plugintest.SinkOptions{Config: fake.Config, BadConfig: fake.BadConfig}
}

// runSinkHelper runs, in a child process, the sink suite named by suite:
// "sink-<mode>" against fake.Sink in that mode, "bin-<mode>" against the
// built fake plugin in that mode.
func runSinkHelper(t *testing.T, suite string) {
	switch {
	case strings.HasPrefix(suite, "sink-"):
		mode := strings.TrimPrefix(suite, "sink-")
		plugintest.RunSink(t, func() sdk.Sink { return &fake.Sink{Mode: mode} }, fakeOptions())
	case strings.HasPrefix(suite, "bin-"):
		t.Setenv(fake.ModeEnv, strings.TrimPrefix(suite, "bin-"))
		plugintest.RunSinkBinary(t, os.Getenv(binEnv), fakeOptions())
	default:
		t.Fatalf("unknown helper suite %q", suite)
	}
}

// TestSinkSuite: the suite passes a sink that keeps the contract and fails
// each way of breaking it, saying what is wrong; in process and, for the
// checks that go over the wire, against the built plugin.
func TestSinkSuite(t *testing.T) {
	tests := []struct {
		suite string
		want  string // "" means the suite passes
	}{
		{"sink-" + fake.Good, ""},
		{"sink-" + fake.OKOnCancel, "Deliver on a cancelled context: delivery 0: outcome ok, want retry"},
		{"sink-" + fake.BadSchema, "ConfigSchema is not a valid JSON Schema"},
		{"sink-" + fake.SchemaRejectsConfig, "Config does not pass the plugin's ConfigSchema, so hookbus validate refuses it: url: got string, want integer"},
		{"sink-" + fake.LaxValidate, "hookbus validate accepts BadConfig"},
		{"sink-" + fake.StrictValidate, "ValidateConfig rejects Config, which Init must accept (hookbus validate and hookbus run would disagree): url: no URL is good enough"},
		{"bin-" + fake.Good, ""},
		{"bin-" + fake.BadSchema, "ConfigSchema is not a valid JSON Schema"},
		{"bin-" + fake.LaxValidate, "hookbus validate accepts BadConfig"},
	}
	t.Setenv(binEnv, plugintest.Build(t, fakePlugin))
	for _, tt := range tests {
		t.Run(tt.suite, func(t *testing.T) {
			out, passed := runHelper(t, tt.suite)
			switch {
			case tt.want == "" && !passed:
				t.Fatalf("the suite failed a sink that keeps the contract:\n%s", out)
			case tt.want != "" && passed:
				t.Fatalf("the suite passed a %s sink:\n%s", tt.suite, out)
			case tt.want != "" && !strings.Contains(out, tt.want):
				t.Fatalf("the failure does not say %q:\n%s", tt.want, out)
			}
		})
	}
}

// TestBuildIsCachedAndShared: parallel callers get one binary, built once
// per test process, that the suite can start.
func TestBuildIsCachedAndShared(t *testing.T) {
	paths := make(chan string, 4)
	t.Run("group", func(t *testing.T) {
		for range 4 {
			t.Run("build", func(t *testing.T) {
				t.Parallel()
				paths <- plugintest.Build(t, fakePlugin)
			})
		}
	})
	close(paths)
	first := <-paths
	for p := range paths {
		if p != first {
			t.Fatalf("Build gave %s and %s for one package", first, p)
		}
	}
	m := plugintest.Describe(t, first)
	if m.Name != "fake" || len(m.Kinds) != 1 || m.Kinds[0] != sdk.KindSink {
		t.Fatalf("manifest of the built plugin = %+v", m)
	}
}

// TestBuildFailsOnCompileError: a package that does not build fails the
// test with the compiler's output (checked through a recorder).
func TestBuildFailsOnCompileError(t *testing.T) {
	r := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		plugintest.Build(r, "./internal/nosuchpackage")
	}()
	<-done
	if !r.failed || !strings.Contains(r.msg, "go build ./internal/nosuchpackage") {
		t.Fatalf("Build of a missing package: failed=%v, message %q", r.failed, r.msg)
	}
}

// fatalRecorder records a Fatalf and ends the goroutine, as testing.T does.
type fatalRecorder struct {
	testing.TB
	failed bool
	msg    string
}

func (r *fatalRecorder) Helper() {}

func (r *fatalRecorder) Fatalf(format string, args ...any) {
	r.failed = true
	r.msg = strings.TrimSpace(fmt.Sprintf(format, args...))
	runtime.Goexit()
}

// TestBinaryTakesLargeBatches: a Deliver request above gRPC's default 4
// MiB message limit (hookbus batches up to 64 deliveries of events that
// may be 1 MiB each) reaches a plugin served by sdk.Serve.
func TestBinaryTakesLargeBatches(t *testing.T) {
	t.Setenv(fake.ModeEnv, fake.Good)
	c, err := remote.Start(remote.Options{Cmd: exec.Command(plugintest.Build(t, fakePlugin)), CallTimeout: plugintest.Timeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Kill)
	ctx, cancel := context.WithTimeout(context.Background(), plugintest.Timeout)
	defer cancel()
	s := c.Sink()
	if _, err := s.Init(ctx, fake.Config); err != nil {
		t.Fatal(err)
	}
	batch := plugintest.SampleEvents(8)
	for i := range batch {
		batch[i].Event.Data = json.RawMessage(`"` + strings.Repeat("x", sdk.MaxEventBytes-1024) + `"`)
	}
	for i, r := range s.Deliver(ctx, batch) {
		if r.Outcome != sdk.OK {
			t.Fatalf("delivery %d of a batch of %d events of about 1 MiB: %v (%s)", i, len(batch), r.Outcome, r.Reason)
		}
	}
}
