//go:build !linux

package e2e

import "syscall"

// browserProcAttr puts a process of the browser tests (Chromium, node) in a process group of its own, which Cleanup
// kills whole.
func browserProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
