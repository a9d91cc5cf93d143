package plugintest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/hookbus/hookbus/sdk"
	"github.com/hookbus/hookbus/sdk/plugintest"
)

// tickSource produces events on its own, without ids, offering a batch
// again until it is acked.
type tickSource struct {
	noType bool
}

func (s *tickSource) Init(context.Context, json.RawMessage) error { return nil }
func (s *tickSource) Close(context.Context) error                 { return nil }

func (s *tickSource) Run(ctx context.Context, emit sdk.Emitter) error {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for n := 0; ; n++ {
		ev := sdk.Event{Type: "tick", Time: time.Now(), Data: json.RawMessage(fmt.Sprint(n))}
		if s.noType {
			ev.Type = ""
		}
		batch := []sdk.Event{ev, ev}
		batch[1].Data = json.RawMessage(fmt.Sprint(-n))
		for emit.Emit(ctx, batch) != nil {
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// describedTick is a tickSource that publishes a config schema.
type describedTick struct {
	tickSource
	schema string
}

func (s *describedTick) Describe() sdk.Manifest {
	return sdk.Manifest{Name: "tick", ConfigSchema: json.RawMessage(s.schema)}
}

// TestSuiteFailsSourceWithBadSchema: the source suite checks the config
// schema as the sink suite does.
func TestSuiteFailsSourceWithBadSchema(t *testing.T) {
	out, passed := runHelper(t, "source-bad-schema")
	if passed || !strings.Contains(out, "ConfigSchema is not a valid JSON Schema") {
		t.Fatalf("the suite passed, or did not name the schema (passed %v):\n%s", passed, out)
	}
}

// TestSourceWithoutFeedOrIDs: a source that produces events on its own,
// leaving ids to hookbus, passes the suite without a Feed.
func TestSourceWithoutFeedOrIDs(t *testing.T) {
	plugintest.RunSource(t, func() sdk.Source { return &tickSource{} }, plugintest.SourceOptions{})
}

// helperEnv names the suite run in a child test process.
const helperEnv = "PLUGINTEST_HELPER"

// TestHelperSuites runs one suite in a child process (see runHelper), so
// the parent can check that it fails, and how.
func TestHelperSuites(t *testing.T) {
	switch os.Getenv(helperEnv) {
	case "":
		t.Skip("only run as a child of TestSuiteFails*")
	case "notype":
		plugintest.RunSource(t, func() sdk.Source { return &tickSource{noType: true} }, plugintest.SourceOptions{})
	case "noid":
		plugintest.RunSource(t, func() sdk.Source { return &tickSource{} }, plugintest.SourceOptions{})
	case "source-bad-schema":
		plugintest.RunSource(t, func() sdk.Source {
			return &describedTick{schema: `{"type": "object", "required": "url"}`}
		}, plugintest.SourceOptions{})
	default:
		runSinkHelper(t, os.Getenv(helperEnv))
	}
}

// runHelper runs TestHelperSuites with the suite name in a child process
// and returns its verbose output and whether it passed.
func runHelper(t *testing.T, suite string) (string, bool) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperSuites$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"="+suite)
	out, err := cmd.CombinedOutput()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatal(err)
	}
	return string(out), err == nil
}

// TestSuiteFailsSourceWithoutType: a source whose events lack a type fails
// the suite with hookbus' rejection, said once, not once per event.
func TestSuiteFailsSourceWithoutType(t *testing.T) {
	out, passed := runHelper(t, "notype")
	if passed {
		t.Fatalf("the suite passed a source whose events have no type:\n%s", out)
	}
	const msg = "the source emitted a batch hookbus rejects"
	if n := strings.Count(out, msg); n != 1 {
		t.Fatalf("%q appears %d times, want once:\n%s", msg, n, out)
	}
	if !strings.Contains(out, `event 0: field "type": required`) {
		t.Fatalf("the failure does not name the event and field:\n%s", out)
	}
}

// TestSuiteNotesMissingIDsOnce: events without ids pass, with one note.
func TestSuiteNotesMissingIDsOnce(t *testing.T) {
	out, passed := runHelper(t, "noid")
	if !passed {
		t.Fatalf("the suite failed a source that leaves ids to hookbus:\n%s", out)
	}
	if n := strings.Count(out, "events have no id"); n != 1 {
		t.Fatalf("the missing-id note appears %d times, want once:\n%s", n, out)
	}
}
