// Package e2e holds black-box tests: they build the eventhook binary and real nats-server binaries (from the Go module
// the project already requires), run them as processes on 127.0.0.1 only, and drive them over the Unix socket and HTTP.
package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/flovyn/eventhook/sidecar/client"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// binaries builds eventhook and nats-server once per test run and returns their paths.
func binaries(t testing.TB) (eventhook, natsServer string) {
	t.Helper()
	buildOnce.Do(func() {
		removeStaleBinaries()
		binDir, buildErr = os.MkdirTemp("", fmt.Sprintf("eh-e2e-bin-%d-", os.Getpid()))
		if buildErr != nil {
			return
		}
		for _, b := range []struct{ out, pkg string }{
			{"eventhook", "github.com/flovyn/eventhook"},
			{"nats-server", "github.com/nats-io/nats-server/v2"},
		} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(binDir, b.out), b.pkg)
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go build %s: %v\n%s", b.pkg, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, "eventhook"), filepath.Join(binDir, "nats-server")
}

// removeStaleBinaries removes the binaries of earlier runs whose test binary is gone without its cleanup (it was
// killed): their directory names the pid that made them.
func removeStaleBinaries() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "eh-e2e-bin-*"))
	for _, d := range dirs {
		var pid int
		if _, err := fmt.Sscanf(filepath.Base(d), "eh-e2e-bin-%d-", &pid); err != nil || pid <= 0 {
			continue
		}
		if syscall.Kill(pid, 0) == syscall.ESRCH { // no such process
			os.RemoveAll(d)
		}
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// shortDir returns a temporary directory with a short path (Unix socket paths are limited to 108 bytes).
func shortDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "eh")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// proc is a running process with its output kept for failure reports.
type proc struct {
	name string
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  strings.Builder
	done chan struct{}
	err  error
}

func start(t testing.TB, name string, bin string, args ...string) *proc {
	t.Helper()
	return startEnv(t, name, nil, bin, args...)
}

// startEnv is start with env added to the process's environment.
func startEnv(t testing.TB, name string, env []string, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, cmd: exec.Command(bin, args...), done: make(chan struct{})}
	if len(env) > 0 {
		p.cmd.Env = append(os.Environ(), env...)
	}
	dieWithTest(p.cmd)
	pipe, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stderr = p.cmd.Stdout
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { // ends when the process closes its output
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			p.mu.Lock()
			p.out.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
		}
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("output of %s:\n%s", p.name, p.output())
		}
	})
	return p
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

func (p *proc) signal(sig syscall.Signal) { _ = p.cmd.Process.Signal(sig) }

func (p *proc) kill() {
	select {
	case <-p.done:
	default:
		p.signal(syscall.SIGKILL)
		<-p.done
	}
}

// wait waits for the process to exit and returns its exit code.
func (p *proc) wait(t testing.TB, d time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(d):
		t.Fatalf("%s still running after %v", p.name, d)
		return -1
	}
}

// natsServer starts a nats-server with JetStream on a free port, storing under dir.
func natsServer(t testing.TB, bin string, port int, dir string, extra ...string) *proc {
	t.Helper()
	args := append([]string{"-a", "127.0.0.1", "-p", fmt.Sprint(port), "-js", "-sd", dir}, extra...)
	p := start(t, fmt.Sprintf("nats-server:%d", port), bin, args...)
	waitFor(t, 20*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 100*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil
	}, "nats-server on port %d", port)
	return p
}

// sidecarProc is a running eventhook daemon with a client for its socket.
type sidecarProc struct {
	*proc
	dir    string
	socket string
	client *client.Sidecar
}

// startSidecar writes a config (the YAML given) into dir and starts eventhook serve on it; it returns once /readyz
// answers 200 over the socket.
func startSidecar(t testing.TB, bin, dir, yaml string) *sidecarProc {
	t.Helper()
	return startSidecarEnv(t, bin, dir, yaml, "")
}

// startSidecarEnv is startSidecar with GOMEMLIMIT set for the daemon when memLimit is not empty.
func startSidecarEnv(t testing.TB, bin, dir, yaml, memLimit string) *sidecarProc {
	t.Helper()
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &sidecarProc{dir: dir, socket: filepath.Join(dir, "eh.sock")}
	var env []string
	if memLimit != "" {
		env = []string{"GOMEMLIMIT=" + memLimit}
	}
	s.proc = startEnv(t, "eventhook", env, bin, "serve", "-config", cfgPath)
	c, err := client.New(s.socket, "")
	if err != nil {
		t.Fatal(err)
	}
	s.client = c
	t.Cleanup(c.Close)
	waitFor(t, 30*time.Second, func() bool { return s.ready() }, "eventhook ready on %s", s.socket)
	return s
}

func (s *sidecarProc) ready() bool {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", s.client.BaseURL()+"/readyz", nil)
	resp, err := s.client.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == 200
}

// waitFor polls cond until it holds, failing the test after d.
func waitFor(t testing.TB, d time.Duration, cond func() bool, what string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for "+what, append([]any{d}, args...)...)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// metric reads one unlabelled metric of the sidecar from its /metrics, or -1 when it cannot.
func (s *sidecarProc) metric(t testing.TB, name string) float64 {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, s.client.BaseURL()+"/metrics", nil)
	if err != nil {
		return -1
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				return f
			}
		}
	}
	return -1
}
