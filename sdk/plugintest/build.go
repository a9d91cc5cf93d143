package plugintest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// builds caches Build's binaries for the test process, by package.
var builds sync.Map // key string -> *build

type build struct {
	once sync.Once
	path string
	err  error
}

// Build builds the plugin binary of the Go package pkg with `go build` and
// returns its path, for RunSinkBinary, RunSourceBinary and Describe:
//
//	plugintest.RunSinkBinary(t, plugintest.Build(t, "./cmd/acme"), opts)
//
// pkg is a directory relative to the test's package (as go test runs it)
// or an import path. The first call of a test process builds the package,
// so the suite never tests a stale or missing binary; later calls (also
// from parallel tests) wait for that build and reuse it. A test binary
// built with -race builds the plugin with -race too. A failed build fails
// t with the compiler's output.
//
// Binaries go to a directory of the user's cache (os.UserCacheDir, else
// os.TempDir) under hookbus/plugintest, one per package, replaced in one
// step by each build (so concurrent test processes do not disturb one
// another); the go tool is found on PATH.
func Build(t testing.TB, pkg string) string {
	t.Helper()
	key := pkg
	if strings.HasPrefix(pkg, ".") || filepath.IsAbs(pkg) {
		abs, err := filepath.Abs(pkg)
		if err != nil {
			t.Fatalf("plugintest.Build %s: %v", pkg, err)
		}
		key = abs
	}
	v, _ := builds.LoadOrStore(key, &build{})
	b := v.(*build)
	b.once.Do(func() { b.path, b.err = goBuild(pkg, key) })
	if b.err != nil {
		t.Fatalf("plugintest.Build: %v", b.err)
	}
	return b.path
}

// goBuild builds pkg into its directory of the cache and returns the path.
func goBuild(pkg, key string) (string, error) {
	gotool, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("build %s: the go tool is not on PATH: %w", pkg, err)
	}
	root, err := os.UserCacheDir()
	if err != nil {
		root = os.TempDir()
	}
	sum := sha256.Sum256([]byte(fmt.Sprintf("%s\x00%s/%s\x00race=%t", key, runtime.GOOS, runtime.GOARCH, raceEnabled)))
	dir := filepath.Join(root, "hookbus", "plugintest", hex.EncodeToString(sum[:8]))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("build %s: %w", pkg, err)
	}
	name := filepath.Base(key)
	if name == "." || name == string(filepath.Separator) {
		name = "plugin"
	}
	if runtime.GOOS == "windows" {
		name += ".exe"
	}
	tmp, err := os.MkdirTemp(dir, "build-")
	if err != nil {
		return "", fmt.Errorf("build %s: %w", pkg, err)
	}
	defer os.RemoveAll(tmp)
	out := filepath.Join(tmp, name)
	args := []string{"build", "-o", out}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.Command(gotool, append(args, pkg)...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	path := filepath.Join(dir, name)
	if err := os.Rename(out, path); err != nil {
		return "", fmt.Errorf("build %s: %w", pkg, err)
	}
	return path, nil
}
