//go:build unix

// Package nodesink_test runs hookbus' conformance suite and an end-to-end
// test against the example Node.js sink plugin in this directory.
package nodesink_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hookbus/hookbus/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var (
	installOnce sync.Once
	installErr  error
	installLog  string
	logOnce     sync.Once
)

// launcher returns the absolute path of the plugin's launcher script
// (bin/hookbus-node-sink), after `npm ci` installed the pinned
// dependencies into this directory's node_modules. npm ci runs at most
// once per test process, and not at all while node_modules is newer than
// package-lock.json and package.json. Without node or npm the test is
// skipped, or fails in CI.
func launcher(t testing.TB) string {
	t.Helper()
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			if testenv.CI() {
				t.Fatalf("%s is not on PATH (required in CI; Debian packages nodejs and npm): %v", tool, err)
			}
			t.Skipf("%s is not on PATH (Debian packages nodejs and npm): %v", tool, err)
		}
	}
	installOnce.Do(func() { installLog, installErr = install() })
	if installErr != nil {
		t.Fatal(installErr)
	}
	if installLog != "" {
		logOnce.Do(func() { t.Log(installLog) })
	}
	abs, err := filepath.Abs(filepath.Join("bin", "hookbus-node-sink"))
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// install runs npm ci unless node_modules is up to date. A lock file keeps
// concurrent test processes (go test -race and without, say) from
// installing over one another.
func install() (string, error) {
	lock, err := os.OpenFile(filepath.Join(os.TempDir(), "hookbus-node-sink-npm.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("lock for npm ci: %w", err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if upToDate() {
		return "", nil
	}
	start := time.Now()
	cmd := exec.Command("npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("npm ci in %s: %v\n%s", mustAbs("."), err, out)
	}
	return fmt.Sprintf("npm ci installed node_modules in %s", time.Since(start).Round(time.Millisecond)), nil
}

// upToDate tells whether npm's record of what it installed is newer than
// the lock file and package.json.
func upToDate() bool {
	installed, err := os.Stat(filepath.Join("node_modules", ".package-lock.json"))
	if err != nil {
		return false
	}
	for _, f := range []string{"package-lock.json", "package.json"} {
		st, err := os.Stat(f)
		if err != nil || st.ModTime().After(installed.ModTime()) {
			return false
		}
	}
	return true
}

func mustAbs(p string) string {
	abs, err := filepath.Abs(p)
	if err != nil {
		return p
	}
	return abs
}
