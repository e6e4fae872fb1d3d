//go:build unix

package holder

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// LockFile is the name of the lock file LockDir keeps in a directory.
const LockFile = "eventhook.lock"

// ErrLocked is returned by LockDir when another process holds the directory.
var ErrLocked = errors.New("holder: directory locked")

// Lock is an exclusive lock on a directory, held until Unlock or the end of the process.
type Lock struct{ f *os.File }

// LockDir takes an exclusive lock on dir (creating it), for as long as the process lives or until Unlock: a second
// process that asks for it fails at once with an error wrapping ErrLocked that names the directory and the holder's
// pid. The lock is the kernel's (flock), so a holder killed with SIGKILL leaves no stale lock behind: its lock ends
// with it. Other errors say what failed.
func LockDir(dir string) (*Lock, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder := "another process"
		if b, rerr := os.ReadFile(path); rerr == nil {
			if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil && pid > 0 {
				holder = describe(strconv.Itoa(pid))
			}
		}
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s is held by %s; one daemon per store: stop it, or give this one another nats.store_dir: %w",
				dir, holder, ErrLocked)
		}
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &Lock{f: f}, nil
}

// Unlock releases the lock. It returns nil when called again.
func (l *Lock) Unlock() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close() // closing the descriptor releases the flock
	l.f = nil
	return err
}
