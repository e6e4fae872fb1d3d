//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package bench

import (
	"fmt"
	"syscall"
)

// raiseNoFile makes sure this process may have need files open, raising its soft RLIMIT_NOFILE (up to the hard limit)
// when it is lower. It returns an error saying what to do when the hard limit is too low.
func raiseNoFile(need uint64) error {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return fmt.Errorf("getrlimit: %w", err)
	}
	if rl.Cur >= need {
		return nil
	}
	if rl.Max < need {
		return fmt.Errorf("this needs %d open files and the hard limit is %d: raise it (ulimit -Hn, or LimitNOFILE in systemd) or use fewer subscribers", need, rl.Max)
	}
	rl.Cur = need
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return fmt.Errorf("raise the open files limit to %d: %w", need, err)
	}
	return nil
}
