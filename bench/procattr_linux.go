package bench

import (
	"os/exec"
	"syscall"
)

// setChildAttrs makes the kernel kill the child when the bench dies, so that no daemon outlives a killed bench.
func setChildAttrs(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
