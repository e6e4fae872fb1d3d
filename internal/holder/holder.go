// Package holder tells who holds what a starting daemon needs: the process listening on a TCP address, and an
// exclusive lock on a directory (one daemon per store).
package holder

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ListenError describes a failed listen on addr: when the address is in use, it names the process that holds it, if
// this process may see it (Linux /proc). It returns err unchanged when the failure is something else.
func ListenError(addr string, err error) error {
	if !isAddrInUse(err) {
		return err
	}
	if who := tcpListener(addr); who != "" {
		return fmt.Errorf("%s is already in use by %s: %w", addr, who, err)
	}
	return fmt.Errorf("%s is already in use (by another process): %w", addr, err)
}

func isAddrInUse(err error) bool {
	var se *os.SyscallError
	return errors.As(err, &se) && strings.Contains(se.Err.Error(), "address already in use")
}

// tcpListener returns "pid N (command line)" of the process listening on addr's port, or "" when it cannot tell.
func tcpListener(addr string) string {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return ""
	}
	p, err := strconv.Atoi(port)
	if err != nil || p <= 0 {
		return ""
	}
	inodes := map[string]bool{}
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		for inode := range listeningInodes(table, p) {
			inodes[inode] = true
		}
	}
	if len(inodes) == 0 {
		return ""
	}
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, dir := range procs {
		fds, _ := os.ReadDir(filepath.Join(dir, "fd"))
		for _, fd := range fds {
			link, err := os.Readlink(filepath.Join(dir, "fd", fd.Name()))
			if err != nil || !strings.HasPrefix(link, "socket:[") {
				continue
			}
			if inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] {
				return describe(filepath.Base(dir))
			}
		}
	}
	return ""
}

// listeningInodes returns the socket inodes of a /proc/net/tcp table listening on port.
func listeningInodes(table string, port int) map[string]bool {
	f, err := os.Open(table)
	if err != nil {
		return nil
	}
	defer f.Close()
	out := map[string]bool{}
	sc := bufio.NewScanner(f)
	sc.Scan() // the header
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 || fields[3] != "0A" { // 0A: LISTEN
			continue
		}
		_, hexPort, ok := strings.Cut(fields[1], ":")
		if n, err := strconv.ParseInt(hexPort, 16, 32); ok && err == nil && int(n) == port {
			out[fields[9]] = true
		}
	}
	return out
}

// describe returns "pid N (command line)" for a pid, or "pid N" when its command line cannot be read.
func describe(pid string) string {
	cmd, err := os.ReadFile(filepath.Join("/proc", pid, "cmdline"))
	if err != nil || len(cmd) == 0 {
		return "pid " + pid
	}
	line := strings.TrimSpace(strings.ReplaceAll(string(cmd), "\x00", " "))
	if len(line) > 120 {
		line = line[:120] + "…"
	}
	return fmt.Sprintf("pid %s (%s)", pid, line)
}
