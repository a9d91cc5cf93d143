package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hookbus/hookbus/internal/testenv"
)

// runBounded runs the binary, killing it after timeout (a second instance
// that wrongly starts would otherwise run forever), and returns its output
// and exit code (-1 when it had to be killed).
func runBounded(t *testing.T, timeout time.Duration, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		return out.String(), -1
	}
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		return out.String(), ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return out.String(), 0
}

// TestDataDirIsLockedByTheRunningInstance: while `hookbus run` uses a
// data_dir, a second `hookbus run` on it (even on another port) and a local
// `dead-letters replay --config` refuse, naming the running process' pid;
// the replay points to --url. Once it stopped, the local replay works.
func TestDataDirIsLockedByTheRunningInstance(t *testing.T) {
	rcv := newSink(t)
	addr := freeAddr(t)
	cfgPath := embeddedConfig(t, addr, rcv.srv.URL, "")
	p := startHookbus(t, cfgPath, addr)
	pid := strconv.Itoa(p.cmd.Process.Pid)

	// The same data_dir, another port: only the lock can tell.
	y, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(t.TempDir(), "other.yaml")
	if err := os.WriteFile(other, bytes.ReplaceAll(y, []byte(addr), []byte(freeAddr(t))), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code := runBounded(t, testenv.Timeout(60*time.Second), "run", "--config", other)
	if code == 0 || code == -1 {
		t.Fatalf("a second hookbus run on the same data_dir: exit %d, want a refusal; output:\n%s", code, out)
	}
	for _, want := range []string{"data_dir", "in use", "process " + pid} {
		if !strings.Contains(out, want) {
			t.Errorf("second run's error does not mention %q:\n%s", want, out)
		}
	}

	out, code = runBounded(t, testenv.Timeout(60*time.Second), "dead-letters", "replay", "--config", cfgPath, "--all")
	if code == 0 || code == -1 {
		t.Fatalf("replay --config against a running instance: exit %d, want a refusal; output:\n%s", code, out)
	}
	for _, want := range []string{"process " + pid, "--url http://" + addr} {
		if !strings.Contains(out, want) {
			t.Errorf("replay's error does not mention %q:\n%s", want, out)
		}
	}
	// The refused attempts did not disturb the running instance.
	if got := runCLI(t, "dead-letters", "list", "--url", "http://"+addr); !strings.Contains(got, "ID") {
		t.Errorf("list through the running instance: %s", got)
	}

	p.stop()
	if out, code := runBounded(t, testenv.Timeout(60*time.Second), "dead-letters", "replay", "--config", cfgPath, "--all"); code != 0 || !strings.Contains(out, "replayed 0") {
		t.Errorf("replay after the stop: exit %d\n%s", code, out)
	}
}
