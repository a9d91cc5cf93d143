package remote

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestStartErrorsSuitAnyLanguage: what hookbus says about a program that
// is not a plugin points to the protocol, not only to the Go SDK.
func TestStartErrorsSuitAnyLanguage(t *testing.T) {
	for name, script := range map[string]string{
		"prints to stdout": "echo hello from node\nsleep 5\n",
		"exits":            "exit 1\n",
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "not-a-plugin")
			if err := os.WriteFile(path, []byte("#!/bin/sh\n"+script), 0o755); err != nil {
				t.Fatal(err)
			}
			_, err := Start(Options{Cmd: exec.Command(path)})
			if err == nil {
				t.Fatal("Start succeeded")
			}
			msg := err.Error()
			if !strings.Contains(msg, "sdk/PROTOCOL.md") || !strings.Contains(msg, "handshake") {
				t.Errorf("error %q does not point to the protocol", msg)
			}
		})
	}
}
