package e2e

import "syscall"

// browserProcAttr puts a process of the browser tests (Chromium, node) in a process group of its own, which Cleanup
// kills whole, and has it killed when the test binary dies, even when no cleanup runs then.
func browserProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
