package main

import (
	"os/exec"
	"testing"
)

// runCLI runs the built binary and returns its stdout; it fails the test on a non-zero exit.
func runCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(binary, args...).Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("hookbus %v: %v\n%s%s", args, err, out, stderr)
	}
	return string(out)
}
