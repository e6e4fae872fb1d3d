//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package bench

// raiseNoFile does nothing on systems without RLIMIT_NOFILE.
func raiseNoFile(uint64) error { return nil }
