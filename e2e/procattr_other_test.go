//go:build !linux

package e2e

import "os/exec"

// dieWithTest does nothing where the system cannot tie a child's life to its parent's; t.Cleanup still kills it.
func dieWithTest(*exec.Cmd) {}
