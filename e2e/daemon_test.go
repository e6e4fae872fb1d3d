package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/flovyn/eventhook/sidecar/client"
	"github.com/flovyn/eventhook/sidecar/event"
	"github.com/google/uuid"
)

func embeddedConfig(dir string) string {
	return fmt.Sprintf(`
backend: jetstream
http: {listen: "", unix_socket: %q}
nats: {embedded: true, embedded_listen: "", store_dir: %q}
log: {level: debug}
`, dir+"/eh.sock", dir+"/data")
}

// load publishes from several clients until finished, recording the acked ids and the errors seen.
type load struct {
	mu    sync.Mutex
	acked []string
	errs  []error
	stop  chan struct{}
	wg    sync.WaitGroup
}

func startLoad(client *client.Sidecar, tenant uuid.UUID, workers int) *load {
	l := &load{stop: make(chan struct{})}
	for w := range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				id := uuid.NewString()
				body := fmt.Sprintf(`{"id":%q,"tenant_id":%q,"event_type":"load.w%d"}`, id, tenant, w)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, err := client.PublishEvent(ctx, []byte(body), "")
				cancel()
				l.mu.Lock()
				if err == nil {
					l.acked = append(l.acked, id)
				} else {
					l.errs = append(l.errs, err)
				}
				l.mu.Unlock()
				if err != nil {
					time.Sleep(5 * time.Millisecond) // back off before the next attempt
				}
			}
		}()
	}
	return l
}

// ackedAtLeast reports whether n publishes have been acked: the load is in full flow.
func (l *load) ackedAtLeast(n int) func() bool {
	return func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return len(l.acked) >= n
	}
}

// finish stops the publishers, waits for them and returns what they saw.
func (l *load) finish() (acked []string, errs []error) {
	close(l.stop)
	l.wg.Wait()
	return l.acked, l.errs
}

// storedIDs reads the lifecycle events of tenant the sidecar holds (earliest), in order, until enough says it has them.
func storedIDs(t testing.TB, client *client.Sidecar, tenant uuid.UUID, enough func(ids []string) bool) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	r, closer, err := client.Stream(ctx, "/events/stream", url.Values{"tenant_id": {tenant.String()}}, "earliest")
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	var ids []string
	for !enough(ids) {
		ev, err := r.Next()
		if err != nil { // the caller's checks say what is missing
			t.Errorf("reading the stored events stopped after %d: %v", len(ids), err)
			break
		}
		if ev.Event == "lifecycle" {
			var e struct{ ID string }
			json.Unmarshal([]byte(ev.Data), &e)
			ids = append(ids, e.ID)
		}
	}
	return ids
}

// atLeast is enough for storedIDs once n events are read.
func atLeast(n int) func([]string) bool { return func(ids []string) bool { return len(ids) >= n } }

// covering is enough for storedIDs once every id of want is read. Events stored but not acknowledged (their publish
// failed with the process) may come among them, so a count of want's length is not.
func covering(want []string) func([]string) bool {
	missing := map[string]bool{}
	for _, id := range want {
		missing[id] = true
	}
	read := 0
	return func(ids []string) bool {
		for ; read < len(ids); read++ {
			delete(missing, ids[read])
		}
		return len(missing) == 0
	}
}

// TestKillNineKeepsAcked kills the sidecar (embedded JetStream) with SIGKILL under load and starts it again: the stale
// socket is replaced, and every acknowledged event is there, once.
func TestKillNineKeepsAcked(t *testing.T) {
	eh, _ := binaries(t)
	dir := shortDir(t)
	side := startSidecar(t, eh, dir, embeddedConfig(dir))
	tenant := uuid.New()
	l := startLoad(side.client, tenant, 8)
	// The kill must land while publishes are in flight.
	waitFor(t, 20*time.Second, l.ackedAtLeast(1000), "1000 acked publishes")
	side.signal(syscall.SIGKILL)
	side.wait(t, 5*time.Second)
	acked, errs := l.finish()
	if _, err := os.Lstat(side.socket); err != nil {
		t.Fatalf("after SIGKILL the socket file should be left behind (stale): %v", err)
	}
	restarted := startSidecar(t, eh, dir, embeddedConfig(dir))
	ids := storedIDs(t, restarted.client, tenant, covering(acked))
	checkExactlyOnce(t, acked, ids, false)
	t.Logf("acked %d before kill -9 (%d failed with the process), all %d found after restart", len(acked), len(errs), len(acked))
}

// TestSIGTERMUnderLoad stops the sidecar with SIGTERM while publishes are in flight: each one is answered 2xx (and then
// stored) or fails cleanly, the process exits 0 within a few seconds, and the socket is removed.
func TestSIGTERMUnderLoad(t *testing.T) {
	eh, _ := binaries(t)
	dir := shortDir(t)
	side := startSidecar(t, eh, dir, embeddedConfig(dir))
	tenant := uuid.New()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	stream, closer, err := side.client.Stream(ctx, "/events/stream", url.Values{"tenant_id": {tenant.String()}}, "")
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	streamEnded := make(chan error, 1)
	go func() {
		for {
			if _, err := stream.Next(); err != nil {
				streamEnded <- err
				return
			}
		}
	}()
	l := startLoad(side.client, tenant, 8)
	waitFor(t, 20*time.Second, l.ackedAtLeast(300), "300 acked publishes")
	start := time.Now()
	side.signal(syscall.SIGTERM)
	code := side.wait(t, 10*time.Second)
	took := time.Since(start)
	acked, errs := l.finish()
	if code != 0 {
		t.Fatalf("exit code %d after SIGTERM; want 0", code)
	}
	if took > 5*time.Second {
		t.Errorf("shutdown took %v", took)
	}
	select {
	case err := <-streamEnded:
		if !errors.Is(err, io.EOF) && err != nil && !strings.Contains(err.Error(), "EOF") {
			t.Logf("stream ended with %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("the open SSE stream did not end at shutdown")
	}
	if _, err := os.Lstat(side.socket); !os.IsNotExist(err) {
		t.Errorf("socket still there after SIGTERM: %v", err)
	}
	for _, err := range errs {
		var p *event.Problem
		if errors.As(err, &p) && p.Status != 503 {
			t.Errorf("a publish during shutdown got %d: %s", p.Status, p.Detail)
		}
	}
	restarted := startSidecar(t, eh, dir, embeddedConfig(dir))
	ids := storedIDs(t, restarted.client, tenant, covering(acked))
	checkExactlyOnce(t, acked, ids, false)
	t.Logf("SIGTERM under load: exit 0 in %v; %d acked (all stored), %d failed cleanly", took.Round(time.Millisecond), len(acked), len(errs))
}

// TestCLIPublishAndTail publishes with `eventhook publish` over the socket and reads with `eventhook tail -json`.
func TestCLIPublishAndTail(t *testing.T) {
	eh, _ := binaries(t)
	dir := shortDir(t)
	side := startSidecar(t, eh, dir, embeddedConfig(dir))
	tenant, wf := uuid.NewString(), uuid.NewString()
	run := func(stdin string, args ...string) string {
		t.Helper()
		cmd := exec.Command(eh, args...)
		cmd.Stdin = strings.NewReader(stdin)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			t.Fatalf("eventhook %v: %v\n%s", args, err, errb.String())
		}
		return out.String()
	}
	run("", "publish", "-socket", side.socket, "-tenant", tenant, "-type", "workflow.started", "-workflow", wf, "-data", `{"n":1}`)
	ndjson := fmt.Sprintf(`{"event_type":"task.started","workflow_execution_id":%q}`+"\n"+`{"event_type":"workflow.completed","workflow_execution_id":%q}`+"\n", wf, wf)
	run(ndjson, "publish", "-socket", side.socket, "-tenant", tenant)
	run(fmt.Sprintf(`{"workflowExecutionId":%q,"type":"TOKEN","payload":"Hello"}`+"\n", wf), "publish", "-stream", "-socket", side.socket, "-tenant", tenant)

	out := run("", "tail", "-socket", side.socket, "-tenant", tenant, "-workflow", wf, "-json", "-n", "4")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	want := []string{"workflow.started", "task.started", "workflow.completed", "token"}
	if len(lines) != len(want) {
		t.Fatalf("tail printed %d lines; want %d:\n%s", len(lines), len(want), out)
	}
	for i, line := range lines {
		var f struct {
			ID    string          `json:"id"`
			Event string          `json:"event"`
			Data  json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal([]byte(line), &f); err != nil || f.ID == "" {
			t.Fatalf("line %d not a JSON frame: %s (%v)", i, line, err)
		}
		if !strings.Contains(string(f.Data), want[i]) && f.Event != want[i] {
			t.Errorf("line %d = %s; want %s", i, line, want[i])
		}
	}
}

// TestSIGHUPReloadsTokens rewrites the configuration's tokens and sends SIGHUP: the old token is refused, the new one
// accepted, and the daemon keeps running; a configuration with an error is refused and changes nothing.
func TestSIGHUPReloadsTokens(t *testing.T) {
	eh, _ := binaries(t)
	dir := shortDir(t)
	config := func(token string) string {
		sum := sha256.Sum256([]byte(token))
		return embeddedConfig(dir) + fmt.Sprintf(`auth:
  unix_socket: token
  tokens: [{name: worker, sha256: %q, tenants: ["*"], allow: [publish, subscribe]}]
`, hex.EncodeToString(sum[:]))
	}
	side := startSidecar(t, eh, dir, config("alpha"))
	tenant := uuid.New()
	publishWith := func(token string) error {
		c, err := client.New(side.socket, token)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, err = c.PublishEvent(t.Context(), []byte(fmt.Sprintf(`{"tenant_id":%q,"event_type":"hup.test"}`, tenant)), "")
		return err
	}
	refused := func(token string) func() bool {
		return func() bool {
			var p *event.Problem
			return errors.As(publishWith(token), &p) && p.Status == 401
		}
	}
	if err := publishWith("alpha"); err != nil {
		t.Fatalf("the configured token: %v", err)
	}
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(config("beta")+"bogus_key: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	side.signal(syscall.SIGHUP)
	waitFor(t, 10*time.Second, func() bool { return strings.Contains(side.output(), "was not reloaded") }, "the invalid configuration to be refused")
	if err := publishWith("alpha"); err != nil {
		t.Fatalf("after a refused reload the old token no longer works: %v", err)
	}
	if err := os.WriteFile(cfgPath, []byte(config("beta")), 0o600); err != nil {
		t.Fatal(err)
	}
	side.signal(syscall.SIGHUP)
	waitFor(t, 10*time.Second, refused("alpha"), "the old token to be refused after SIGHUP")
	if err := publishWith("beta"); err != nil {
		t.Fatalf("the new token after SIGHUP: %v", err)
	}
	if !side.ready() {
		t.Fatal("the daemon is not ready after SIGHUP")
	}
}
