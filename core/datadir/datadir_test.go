package datadir

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestAcquireIsExclusiveAndNamesTheHolder(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data") // created by Acquire
	l, err := Acquire(dir, "hookbus run")
	if err != nil {
		t.Fatal(err)
	}
	// flock locks per open file: a second open in this process conflicts
	// just as another process would.
	_, err = Acquire(dir, "hookbus dead-letters replay")
	var le *LockedError
	if !errors.Is(err, ErrLocked) || !errors.As(err, &le) {
		t.Fatalf("second Acquire = %v, want a *LockedError", err)
	}
	if le.Holder.PID != os.Getpid() || le.Holder.Command != "hookbus run" || le.Holder.Since.IsZero() {
		t.Errorf("holder = %+v, want this process' pid %d, its command and start time", le.Holder, os.Getpid())
	}
	for _, want := range []string{dir, "process " + strconv.Itoa(os.Getpid()), "hookbus run"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	l2, err := Acquire(dir, "hookbus run")
	if err != nil {
		t.Fatalf("Acquire after Release: %v", err)
	}
	if err := l2.Release(); err != nil {
		t.Fatal(err)
	}
}
