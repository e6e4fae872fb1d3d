package bench

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/flovyn/eventhook/sidecar/config"
	"github.com/flovyn/eventhook/sidecar/event"
)

// TestParseStatCPU reads utime and stime from /proc/<pid>/stat lines, whose command name may hold spaces and
// parentheses.
func TestParseStatCPU(t *testing.T) {
	for _, tc := range []struct {
		line string
		want time.Duration
		ok   bool
	}{
		{"1234 (eventhook) S 1 1234 1234 0 -1 4194560 2000 0 0 0 150 25 0 0 20 0 9 0 100 0 0", 175 * clockTick, true},
		{"77 (a (b) c) R 1 77 77 0 -1 0 0 0 0 0 3 4 0 0 20 0 1 0 5 0 0", 7 * clockTick, true},
		{"77 no parenthesis", 0, false},
		{"77 (short) S 1 2", 0, false},
		{"77 (x) S 1 77 77 0 -1 0 0 0 0 0 a b 0 0", 0, false},
	} {
		got, err := parseStatCPU([]byte(tc.line))
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseStatCPU(%q) = %v, %v; want %v, ok %v", tc.line, got, err, tc.want, tc.ok)
		}
	}
}

// TestCPUTimeOfSelf reads this process's CPU time from /proc, and sees it grow while the process works.
func TestCPUTimeOfSelf(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc is Linux's")
	}
	before, err := cpuTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	x := 0
	for start := time.Now(); time.Since(start) < 100*time.Millisecond; {
		x++
	}
	after, err := cpuTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if after-before < 5*clockTick {
		t.Errorf("CPU time grew by %v over 100 ms of work (%d loops)", after-before, x)
	}
	if _, err := cpuTime(-1); err == nil {
		t.Error("cpuTime of no process: no error")
	}
}

// TestDaemonConfig checks that the configurations the production scenario writes for its daemons load and validate:
// one on an external server, one on its embedded server, both on the socket only.
func TestDaemonConfig(t *testing.T) {
	dir := t.TempDir()
	for _, natsURL := range []string{"nats://127.0.0.1:4999", ""} {
		path := filepath.Join(dir, "config.yaml")
		if err := os.WriteFile(path, []byte(daemonConfig(dir, filepath.Join(dir, "eh.sock"), natsURL)), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Load(path)
		if err != nil {
			t.Fatalf("nats %q: %v", natsURL, err)
		}
		if cfg.Backend != "jetstream" || cfg.HTTP.Listen != "" || cfg.HTTP.UnixSocket != filepath.Join(dir, "eh.sock") ||
			cfg.NATS.IsEmbedded() != (natsURL == "") {
			t.Errorf("nats %q: %+v", natsURL, cfg)
		}
		if natsURL != "" && (len(cfg.NATS.URLs) != 1 || cfg.NATS.URLs[0] != natsURL) {
			t.Errorf("urls = %v, want %s", cfg.NATS.URLs, natsURL)
		}
	}
}

// TestProductionPayloads checks what the production scenario publishes: lifecycle events with a workflow and a fresh
// task id (valid, so the sidecar indexes them), and tokens the sidecar accepts.
func TestProductionPayloads(t *testing.T) {
	wfs := []string{newUUID(), newUUID()}
	spec := eventSpec{tenant: newUUID(), eventType: "task.completed", workflows: wfs}
	var tasks []string
	for seq := range int64(3) {
		b, _ := spec.appendEvent(nil, seq, time.Now())
		e, err := event.DecodeEvent(b)
		if err != nil {
			t.Fatalf("DecodeEvent(%s): %v", b, err)
		}
		if err := e.Validate(); err != nil {
			t.Fatalf("Validate(%s): %v", b, err)
		}
		if e.WorkflowExecutionID == nil || e.WorkflowExecutionID.String() != wfs[seq%2] || e.TaskExecutionID == nil {
			t.Fatalf("event %d names workflow %v and task %v, want %s and a task", seq, e.WorkflowExecutionID, e.TaskExecutionID, wfs[seq%2])
		}
		tasks = append(tasks, e.TaskExecutionID.String())
	}
	if tasks[0] == tasks[1] {
		t.Error("two events share a task id")
	}
	tok := tokenSpec{tenant: newUUID(), workflow: newUUID(), task: newUUID()}
	b := tok.appendToken(nil, 7, time.Now())
	s, err := event.DecodeStreamEvent(b)
	if err != nil {
		t.Fatalf("DecodeStreamEvent(%s): %v", b, err)
	}
	if s.Type != event.StreamToken || s.Sequence != 7 || s.Key() != tok.workflow || tok.subject() != "flovyn.streams.workflow."+tok.workflow {
		t.Errorf("token %s: %+v", b, s)
	}
}

// TestServeNoop serves the parsing no-op handler on a socket: it answers /readyz, 202 to an event and to a token it
// parses, 400 to a body that is not JSON, and stops with its context.
func TestServeNoop(t *testing.T) {
	dir, err := os.MkdirTemp("", "ehnoop")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "noop.sock")
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() { served <- ServeNoop(ctx, sock, "") }()
	tg := newHTTPTarget("no-op handler", "unix", sock, "", "")
	defer tg.close()
	var ready error
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if _, ready = tg.get(ctx, "/readyz"); ready == nil {
			break
		}
	}
	if ready != nil {
		t.Fatal(ready)
	}
	spec := eventSpec{tenant: newUUID(), eventType: "task.completed", workflows: []string{newUUID()}}
	b, _ := spec.appendEvent(nil, 1, time.Now())
	if err := tg.post(ctx, "/v1/events", "application/json", b, http.StatusAccepted); err != nil {
		t.Error(err)
	}
	tok := tokenSpec{tenant: spec.tenant, workflow: newUUID(), task: newUUID()}
	if err := tg.postHeader(ctx, "/v1/streams", "application/json", "Flovyn-Tenant-Id", tok.tenant, tok.appendToken(nil, 1, time.Now()),
		http.StatusAccepted); err != nil {
		t.Error(err)
	}
	if err := tg.post(ctx, "/v1/events", "application/json", []byte("not json"), http.StatusBadRequest); err != nil {
		t.Error(err)
	}
	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("ServeNoop returned %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ServeNoop still serving after its context ended")
	}
}

// TestChild starts and stops child processes: the output of one that exits is kept for the error, and stop ends one
// that runs.
func TestChild(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no /bin/sh")
	}
	c, err := startChild("quitter", "/bin/sh", []string{"EH_TEST_WORD=gone"}, "-c", "echo $EH_TEST_WORD; exit 3")
	if err != nil {
		t.Fatal(err)
	}
	<-c.done
	if err := c.exited(); err == nil || !strings.Contains(err.Error(), "gone") || !strings.Contains(err.Error(), "quitter") {
		t.Errorf("exited() = %v; want the name and the output", err)
	}
	c, err = startChild("sleeper", "/bin/sh", nil, "-c", "sleep 30")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.exited(); err != nil {
		t.Fatalf("running child reported exited: %v", err)
	}
	start := time.Now()
	c.stop()
	if err := c.exited(); err == nil || time.Since(start) > 10*time.Second {
		t.Errorf("stop took %v, exited() = %v", time.Since(start), err)
	}
	var tb tailBuffer
	for range 3000 {
		tb.Write([]byte("0123456789"))
	}
	if n := len(tb.String()); n > 8<<10 {
		t.Errorf("tailBuffer kept %d bytes, want at most 8 KiB", n)
	}
}
