package e2e

import (
	"os/exec"
	"syscall"
)

// dieWithTest makes the process get SIGKILL when the test binary dies, even when it is killed itself (no cleanup runs
// then), so that no nats-server or eventhook outlives a test run.
func dieWithTest(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
