//go:build !unix

package natsbus

// freeBytes cannot tell here.
func freeBytes(string) (uint64, bool) { return 0, false }
