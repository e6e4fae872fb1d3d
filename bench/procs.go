package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The production scenario runs its own processes: a nats-server, eventhook daemons and a no-op HTTP server, each a
// process of its own so that its CPU can be read from /proc.

// child is a process the bench started, with the tail of its output kept for error messages.
type child struct {
	name string
	cmd  *exec.Cmd
	out  *tailBuffer
	done chan struct{} // closed when the process has exited
	err  error         // why it exited; read after done
}

// tailBuffer keeps the last 8 KiB written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

// Write implements io.Writer.
func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - 8<<10; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(bytes.TrimSpace(t.buf))
}

// startChild starts bin with args and env (added to the bench's environment, without EVENTHOOK_PPROF unless env sets
// it). The process is killed if the bench dies (Linux).
func startChild(name, bin string, env []string, args ...string) (*child, error) {
	c := &child{name: name, cmd: exec.Command(bin, args...), out: &tailBuffer{}, done: make(chan struct{})}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "EVENTHOOK_PPROF=") {
			c.cmd.Env = append(c.cmd.Env, kv)
		}
	}
	c.cmd.Env = append(c.cmd.Env, env...)
	c.cmd.Stdout, c.cmd.Stderr = c.out, c.out
	c.cmd.WaitDelay = 2 * time.Second // a grandchild holding the output open does not hold up Wait
	setChildAttrs(c.cmd)
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s (%s): %w", name, bin, err)
	}
	go func() {
		c.err = c.cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

// pid is the process id.
func (c *child) pid() int { return c.cmd.Process.Pid }

// exited reports an error when the process is gone, with the end of its output.
func (c *child) exited() error {
	select {
	case <-c.done:
		return fmt.Errorf("%s exited (%v): %s", c.name, c.err, c.out.String())
	default:
		return nil
	}
}

// stop ends the process: SIGTERM, and SIGKILL after 5 s.
func (c *child) stop() {
	select {
	case <-c.done:
		return
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

// cpuTime returns the CPU time (user and system) process pid has used, from /proc/<pid>/stat.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("CPU time of process %d: %w (the production scenario reads /proc: Linux only)", pid, err)
	}
	return parseStatCPU(b)
}

// clockTick is the unit of the times in /proc/<pid>/stat (USER_HZ, 100 on every Linux platform Go supports).
const clockTick = 10 * time.Millisecond

// parseStatCPU reads utime and stime (fields 14 and 15) of a /proc/<pid>/stat line. The command name (field 2) is in
// parentheses and may hold spaces, so the fields are counted after its closing parenthesis.
func parseStatCPU(stat []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("/proc stat: no command name")
	}
	f := strings.Fields(string(stat[i+1:])) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc stat: %d fields after the command name, want at least 13", len(f))
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 64)
	stime, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc stat: %w", err)
	}
	return time.Duration(utime+stime) * clockTick, nil
}

// freeTCPPort returns a loopback TCP port that was free a moment ago.
func freeTCPPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// buildNATSServer builds nats-server from the Go module the project requires (the version in go.mod) into dir, as the
// e2e tests do. It needs the go command and the eventhook module as the working directory.
func buildNATSServer(ctx context.Context, dir string) (string, error) {
	out := filepath.Join(dir, "nats-server")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "github.com/nats-io/nats-server/v2")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build nats-server (run the bench in the eventhook module, or give -nats-server a "+
			"nats-server binary): %v: %s", err, bytes.TrimSpace(b))
	}
	return out, nil
}

// startNATSServer starts a nats-server with JetStream on a free loopback port, storing under dir, and waits until it
// accepts connections.
func startNATSServer(ctx context.Context, bin, dir string) (*child, string, error) {
	port, err := freeTCPPort()
	if err != nil {
		return nil, "", err
	}
	c, err := startChild("nats-server", bin, nil, "-a", "127.0.0.1", "-p", strconv.Itoa(port), "-js", "-sd", dir)
	if err != nil {
		return nil, "", err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	for deadline := time.Now().Add(20 * time.Second); ; {
		conn, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err == nil {
			conn.Close()
			return c, "nats://" + addr, nil
		}
		if err := c.exited(); err != nil {
			return nil, "", err
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			c.stop()
			return nil, "", fmt.Errorf("nats-server not listening on %s after 20s: %s", addr, c.out.String())
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			c.stop()
			return nil, "", err
		}
	}
}

// daemonConfig is the configuration of a daemon the production scenario starts: the jetstream backend on the NATS
// server at natsURL, or on an embedded server storing under dir when natsURL is empty; the API on the Unix socket
// only.
func daemonConfig(dir, socket, natsURL string) string {
	nats := "  embedded: false\n  urls: [\"" + natsURL + "\"]\n"
	if natsURL == "" {
		nats = "  embedded: true\n  embedded_listen: \"\"\n  store_dir: \"" + filepath.Join(dir, "data") + "\"\n"
	}
	return `http:
  listen: ""
  unix_socket: "` + socket + `"
  console: false
backend: jetstream
nats:
` + nats + `jetstream:
  events_max_bytes: 2147483648
sse:
  max_subscribers: 1000
log:
  level: warn
`
}

// startDaemon writes the configuration into dir and starts bin serve on it (with env added), then waits until
// /readyz answers on the socket.
func startDaemon(ctx context.Context, name, bin, dir, natsURL string, env []string) (*child, *httpTarget, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, err
	}
	socket := filepath.Join(dir, "eh.sock")
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte(daemonConfig(dir, socket, natsURL)), 0o600); err != nil {
		return nil, nil, err
	}
	c, err := startChild(name, bin, env, "serve", "-config", cfg)
	if err != nil {
		return nil, nil, err
	}
	t := newHTTPTarget(name, "unix", socket, "", "")
	if err := waitReady(ctx, c, t); err != nil {
		c.stop()
		t.close()
		return nil, nil, err
	}
	return c, t, nil
}

// waitReady polls the target's /readyz until it answers 200, the process exits, or 30 s pass.
func waitReady(ctx context.Context, c *child, t *httpTarget) error {
	var last error
	for deadline := time.Now().Add(30 * time.Second); ; {
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		_, last = t.get(rctx, "/readyz")
		cancel()
		if last == nil {
			return nil
		}
		if err := c.exited(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after 30s: %v; its output: %s", c.name, last, c.out.String())
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}
