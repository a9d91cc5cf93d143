//go:build !unix

package datadir

import (
	"errors"
	"os"
)

var errWouldBlock = errors.New("would block")

// tryLock does nothing where flock is not available: the data directory
// is then not guarded.
func tryLock(*os.File) error { return nil }
