package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hookbus/hookbus/internal/testenv"
)

// TestLoadRefusesHugeAndSpecialFiles: a configuration path that is not a
// regular file, or a file over MaxFileSize, is refused at once with an
// error naming the path, instead of being read forever (or blocking).
func TestLoadRefusesHugeAndSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big.yaml")
	// Valid YAML (one long comment) just over the cap.
	if err := os.WriteFile(big, []byte("version: 1\n#"+strings.Repeat("x", MaxFileSize)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo.yaml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		path    string
		is      error
		mention string
	}{
		{"/dev/zero", ErrNotRegular, "character device"},
		{fifo, ErrNotRegular, "named pipe"},
		{dir, ErrNotRegular, "directory"},
		{big, ErrFileTooLarge, "4 MiB"},
	} {
		done := make(chan error, 1)
		go func() {
			_, err := Load(tt.path, LoadOptions{Env: []string{}})
			done <- err
		}()
		var err error
		select {
		case err = <-done:
		case <-time.After(testenv.Timeout(10 * time.Second)):
			t.Fatalf("Load(%s) still running after 10s", tt.path)
		}
		if !errors.Is(err, tt.is) {
			t.Errorf("Load(%s) = %v, want %v", tt.path, err, tt.is)
			continue
		}
		for _, want := range []string{tt.path, tt.mention} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("Load(%s) error %q does not mention %q", tt.path, err, want)
			}
		}
	}
	// A large file under the cap still loads.
	ok := filepath.Join(dir, "ok.yaml")
	if err := os.WriteFile(ok, []byte("version: 1\n#"+strings.Repeat("x", 1<<20)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(ok, LoadOptions{Env: []string{}}); err != nil {
		t.Errorf("a file under the cap: %v", err)
	}
}
