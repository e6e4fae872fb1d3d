//go:build unix

package natsbus

import "syscall"

// freeBytes returns the bytes free for unprivileged use on the filesystem of dir.
func freeBytes(dir string) (uint64, bool) {
	var st syscall.Statfs_t
	if syscall.Statfs(dir, &st) != nil {
		return 0, false
	}
	return st.Bavail * uint64(st.Bsize), true
}
