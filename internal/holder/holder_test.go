package holder

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestListenErrorNamesTheHolder(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	addr := l.Addr().String()
	_, err = net.Listen("tcp", addr)
	if err == nil {
		t.Fatal("a second listen on the same address succeeded")
	}
	got := ListenError(addr, err).Error()
	if !strings.Contains(got, addr+" is already in use by pid "+fmt.Sprint(os.Getpid())) {
		t.Fatalf("ListenError = %q; want it to name %s and this process", got, addr)
	}
	other := errors.New("something else")
	if ListenError(addr, other) != other {
		t.Fatal("ListenError changed an error that is not address-in-use")
	}
}

// TestLockDir: a second lock on a directory fails at once naming the holder's pid; after the holder unlocks, or dies
// with SIGKILL, the directory can be locked again.
func TestLockDir(t *testing.T) {
	dir := t.TempDir()
	l, err := LockDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = LockDir(dir)
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) {
		t.Fatalf("second LockDir = %v; want ErrLocked naming %s and pid %d", err, dir, os.Getpid())
	}
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
	l2, err := LockDir(dir)
	if err != nil {
		t.Fatalf("LockDir after Unlock: %v", err)
	}
	l2.Unlock()

	// A holder killed with SIGKILL leaves no stale lock.
	cmd := exec.Command(os.Args[0], "-test.run=^TestHoldLockHelper$")
	cmd.Env = append(os.Environ(), "HOLDER_TEST_DIR="+dir)
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	buf := make([]byte, 6)
	if _, err := out.Read(buf); err != nil || string(buf[:6]) != "locked" {
		t.Fatalf("the helper did not lock: %q %v", buf, err)
	}
	if _, err := LockDir(dir); !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", cmd.Process.Pid)) {
		t.Fatalf("LockDir while the helper holds it = %v; want ErrLocked naming pid %d", err, cmd.Process.Pid)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for {
		l3, err := LockDir(dir)
		if err == nil {
			l3.Unlock()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("LockDir after the holder was killed: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestHoldLockHelper is run by TestLockDir in a child process: it locks HOLDER_TEST_DIR and waits to be killed.
func TestHoldLockHelper(t *testing.T) {
	dir := os.Getenv("HOLDER_TEST_DIR")
	if dir == "" {
		t.Skip("run by TestLockDir")
	}
	if _, err := LockDir(dir); err != nil {
		t.Fatal(err)
	}
	fmt.Print("locked")
	time.Sleep(time.Minute)
}
