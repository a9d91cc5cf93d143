// Package testenv holds what hookbus' tests share: checks for the machine's
// services, waits on conditions instead of fixed sleeps, generous deadlines
// that hold on a busy machine, and binaries built once per test binary.
package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// CI reports whether the tests run in CI (CI=true), where a missing service
// is a failure rather than a skip.
func CI() bool { return os.Getenv("CI") == "true" }

// NeedService skips the test (fails it in CI) when nothing listens on addr.
// An empty addr needs nothing.
func NeedService(t testing.TB, addr string) {
	t.Helper()
	if addr == "" {
		return
	}
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		if CI() {
			t.Fatalf("service at %s is not running (required in CI): %v", addr, err)
		}
		t.Skipf("service at %s is not running: %v", addr, err)
	}
	c.Close()
}

// NeedCommand returns the path of the command name on PATH, or skips the
// test (fails it in CI) when there is none.
func NeedCommand(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if CI() {
			t.Fatalf("%s is not installed (required in CI): %v", name, err)
		}
		t.Skipf("%s is not installed: %v", name, err)
	}
	return path
}

// Slow is the factor deadlines that are not themselves under test are
// stretched by: HOOKBUS_TEST_SLOW when set (e.g. 3 on a loaded machine),
// else 2 under the race detector, else 1.
func Slow() float64 {
	if v := os.Getenv("HOOKBUS_TEST_SLOW"); v != "" {
		var f float64
		if _, err := fmt.Sscan(v, &f); err == nil && f > 0 {
			return f
		}
	}
	if raceEnabled {
		return 2
	}
	return 1
}

// Timeout scales d by Slow.
func Timeout(d time.Duration) time.Duration { return time.Duration(float64(d) * Slow()) }

// Eventually polls cond every 10ms until it is true, failing the test with
// what when it is still false after timeout (scaled by Slow).
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if !Wait(timeout, cond) {
		t.Fatalf("timed out after %v waiting for %s", Timeout(timeout), what)
	}
}

// Wait polls cond until it is true or timeout (scaled by Slow) passes, and
// reports whether it became true.
func Wait(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(Timeout(timeout))
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var (
	buildMu  sync.Mutex
	built    = map[string]string{}
	buildDir string
)

// BuildBinary builds the Go main package pkg (an import path, or a
// directory relative to the test's package) once per test binary and
// returns the path of the executable. Later calls with the same pkg reuse it.
func BuildBinary(t testing.TB, pkg string) string {
	t.Helper()
	p, err := Build(pkg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Build is BuildBinary for TestMain, where there is no testing.TB yet.
func Build(pkg string) (string, error) {
	buildMu.Lock()
	defer buildMu.Unlock()
	if p, ok := built[pkg]; ok {
		return p, nil
	}
	if buildDir == "" {
		d, err := os.MkdirTemp("", "hookbus-testbin-")
		if err != nil {
			return "", err
		}
		buildDir = d
	}
	name := strings.NewReplacer("/", "_", ".", "_").Replace(strings.Trim(pkg, "./"))
	if name == "" {
		name = "main"
	}
	out := filepath.Join(buildDir, name)
	if runtime.GOOS == "windows" {
		out += ".exe"
	}
	if b, err := exec.Command("go", "build", "-o", out, pkg).CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	built[pkg] = out
	return out, nil
}

// Main runs a package's tests after building the binaries of pkgs (paths
// relative to the package), exiting with the tests' code; every binary
// built is removed afterwards. Call it at the end of TestMain.
func Main(m *testing.M, pkgs ...string) {
	for _, pkg := range pkgs {
		MustBuild(pkg)
	}
	code := m.Run()
	Cleanup()
	os.Exit(code)
}

// MustBuild is Build for TestMain: on failure it prints the error, removes
// what was built and exits 1.
func MustBuild(pkg string) string {
	p, err := Build(pkg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		Cleanup()
		os.Exit(1)
	}
	return p
}

// Cleanup removes the binaries BuildBinary made; call it from TestMain
// after m.Run.
func Cleanup() {
	buildMu.Lock()
	defer buildMu.Unlock()
	if buildDir != "" {
		os.RemoveAll(buildDir)
		buildDir = ""
		built = map[string]string{}
	}
}
