// Package datadir guards a hookbus data directory with an exclusive lock,
// so two processes never run the embedded queue or the SQLite store on the
// same files: a second `hookbus run` would share (and corrupt) them, and a
// replay written into them behind a running instance's back is not seen by it.
package datadir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// LockFile is the name of the lock file inside the data directory.
const LockFile = "hookbus.lock"

// ErrLocked is wrapped by the error Acquire returns when another process
// holds the lock.
var ErrLocked = errors.New("data directory is in use by another hookbus process")

// Holder describes the process holding a lock, as it wrote it into the file.
type Holder struct {
	PID     int       // 0 when unknown
	Since   time.Time // when it took the lock; zero when unknown
	Command string    // what it runs, e.g. "hookbus run"
}

// LockedError reports a data directory locked by another process.
type LockedError struct {
	Dir    string
	Holder Holder
}

func (e *LockedError) Error() string {
	who := "another process (pid unknown)"
	if e.Holder.PID > 0 {
		who = "process " + strconv.Itoa(e.Holder.PID)
		if e.Holder.Command != "" {
			who += " (" + e.Holder.Command + ")"
		}
		if !e.Holder.Since.IsZero() {
			who += ", running since " + e.Holder.Since.Format(time.RFC3339)
		}
	}
	return fmt.Sprintf("data_dir %s is in use by %s: stop it, or give this one its own data_dir", e.Dir, who)
}

func (e *LockedError) Unwrap() error { return ErrLocked }

// Lock is an exclusive lock on a data directory, held until Release (or
// until the process exits: the kernel drops a flock with its last file
// descriptor, so a killed process leaves no stale lock behind).
type Lock struct {
	f *os.File
}

// Acquire creates dir if needed and takes the exclusive lock on
// dir/hookbus.lock without waiting, recording this process' pid, start time
// and command in it. When another process holds it, Acquire returns a
// *LockedError naming that process.
func Acquire(dir, command string) (*Lock, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("data_dir: %w", err)
	}
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("data_dir lock: %w", err)
	}
	if err := tryLock(f); err != nil {
		defer f.Close()
		if errors.Is(err, errWouldBlock) {
			b, _ := os.ReadFile(path)
			return nil, &LockedError{Dir: dir, Holder: parseHolder(b)}
		}
		return nil, fmt.Errorf("data_dir lock %s: %w", path, err)
	}
	rec := fmt.Sprintf("pid=%d\nsince=%s\ncommand=%s\n", os.Getpid(), time.Now().UTC().Format(time.RFC3339Nano), command)
	if err := f.Truncate(0); err == nil {
		_, err = f.WriteAt([]byte(rec), 0)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("data_dir lock %s: %w", path, err)
	}
	return &Lock{f: f}, nil
}

// Release drops the lock. The file stays: removing it would let a process
// that opened it just before lock a file no one else sees.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close() // closing the descriptor drops the flock
	l.f = nil
	return err
}

func parseHolder(b []byte) Holder {
	var h Holder
	for line := range strings.SplitSeq(string(b), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		switch k {
		case "pid":
			h.PID, _ = strconv.Atoi(v)
		case "since":
			h.Since, _ = time.Parse(time.RFC3339Nano, v)
		case "command":
			h.Command = v
		}
	}
	return h
}
