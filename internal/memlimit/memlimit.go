// Package memlimit gives the Go runtime a soft memory limit from the container the process runs in, so that the garbage
// collector works harder as the heap nears the container's limit instead of letting the kernel kill the process.
package memlimit

import (
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// Fraction is the part of the container's memory limit given to the Go runtime as its soft limit; the rest is left for
// what the runtime does not count (the stacks of the OS, cgo, file caches charged to the container).
const Fraction = 0.8

// cgroupFiles are where cgroup v2 and v1 say the memory limit of this process's container.
var cgroupFiles = []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}

// Set sets the runtime's soft memory limit to Fraction of the container's memory limit, unless GOMEMLIMIT is set (it
// wins) or no limit is found (no container, or an unlimited one). It returns the limit set, or 0 when it set none.
func Set() int64 {
	if os.Getenv("GOMEMLIMIT") != "" {
		return 0
	}
	limit := containerLimit(cgroupFiles)
	if limit <= 0 {
		return 0
	}
	soft := int64(float64(limit) * Fraction)
	debug.SetMemoryLimit(soft)
	return soft
}

// containerLimit returns the memory limit in the first of files that holds one, or 0.
func containerLimit(files []string) int64 {
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		v := strings.TrimSpace(string(b))
		if v == "max" {
			return 0
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 || n >= 1<<60 { // cgroup v1 writes a huge number for "no limit"
			return 0
		}
		return n
	}
	return 0
}
