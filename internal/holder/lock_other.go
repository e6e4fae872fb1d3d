//go:build !unix

package holder

import (
	"errors"
	"os"
)

// LockFile is the name of the lock file LockDir keeps in a directory.
const LockFile = "eventhook.lock"

// ErrLocked is returned by LockDir when another process holds the directory.
var ErrLocked = errors.New("holder: directory locked")

// Lock is an exclusive lock on a directory; on this system it is not enforced.
type Lock struct{}

// LockDir creates dir; this system has no flock, so a second daemon on the same store is not detected.
func LockDir(dir string) (*Lock, error) { return &Lock{}, os.MkdirAll(dir, 0o755) }

// Unlock does nothing here.
func (l *Lock) Unlock() error { return nil }
