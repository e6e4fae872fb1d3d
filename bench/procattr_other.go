//go:build !linux

package bench

import "os/exec"

// setChildAttrs does nothing here: only Linux can kill a child when its parent dies.
func setChildAttrs(*exec.Cmd) {}
