package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/flovyn/eventhook/sidecar/client"
	"github.com/flovyn/eventhook/sidecar/event"
)

// TestFullDisk runs the daemon with its embedded store on a small filesystem (a tmpfs mounted in a mount namespace of
// the daemon's own, so that it goes with the daemon whatever happens to the test), fills the filesystem, then frees it:
//
//   - /readyz turns 503 within one probe, saying the disk is full;
//   - publishes fail fast, in milliseconds, with a 503 that says the store is out of space;
//   - once space is back the sidecar brings the store back by itself, publishing resumes within a few seconds, and
//     every event acknowledged before, during and after is stored exactly once.
func TestFullDisk(t *testing.T) {
	if runtime.GOOS != "linux" || os.Geteuid() != 0 {
		t.Skip("full disk test: needs Linux and root to mount a tmpfs in a mount namespace")
	}
	if err := exec.Command("unshare", "--mount", "true").Run(); err != nil {
		t.Skipf("full disk test: cannot make a mount namespace here (unshare --mount: %v)", err)
	}
	eh, _ := binaries(t)
	dir := shortDir(t)
	store := filepath.Join(dir, "store")
	if err := os.Mkdir(store, 0o755); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "eh.sock")
	cfgPath := filepath.Join(dir, "config.yaml")
	cfg := fmt.Sprintf(`
backend: jetstream
http: {listen: "", unix_socket: %q}
nats: {embedded: true, embedded_listen: "", store_dir: %q}
`, sock, filepath.Join(store, "data"))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	p := start(t, "eventhook", "unshare", "--mount", "--propagation", "private", "sh", "-c",
		fmt.Sprintf("mount -t tmpfs -o size=32m tmpfs %s && exec %s serve -config %s", store, eh, cfgPath))
	c, err := client.New(sock, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	side := &sidecarProc{proc: p, dir: dir, socket: sock, client: c}
	waitFor(t, 30*time.Second, side.ready, "eventhook ready on %s", sock)
	// The daemon's view of the store: through its own root, in its mount namespace.
	inside := filepath.Join("/proc", fmt.Sprint(p.cmd.Process.Pid), "root", store)

	tenant := uuid.New()
	var acked []string
	publish := func(i int) (time.Duration, error) {
		id := uuid.NewString()
		body := fmt.Sprintf(`{"id":%q,"tenant_id":%q,"event_type":"disk.n%d","data":{"pad":%q}}`, id, tenant, i,
			strings.Repeat("x", 1000))
		ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
		defer cancel()
		began := time.Now()
		_, err := c.PublishEvent(ctx, []byte(body), "")
		if err == nil {
			acked = append(acked, id)
		}
		return time.Since(began), err
	}
	for i := range 20 {
		if _, err := publish(i); err != nil {
			t.Fatalf("publish %d before the disk fills: %v", i, err)
		}
	}

	// A subscriber open through it all.
	lctx, lcancel := context.WithTimeout(t.Context(), time.Minute)
	defer lcancel()
	live, lcloser, err := c.Stream(lctx, "/events/stream", url.Values{"tenant_id": {tenant.String()}}, "")
	if err != nil {
		t.Fatal(err)
	}
	defer lcloser.Close()

	fill(t, filepath.Join(inside, "filler"))
	began := time.Now()
	waitFor(t, 10*time.Second, func() bool { return !side.ready() }, "/readyz to turn 503")
	detected := time.Since(began)
	if detected > 5*time.Second {
		t.Errorf("/readyz took %v to turn 503; want one probe (about 2 s)", detected)
	}
	status, body := readyz(t, side)
	if status != http.StatusServiceUnavailable || !strings.Contains(body, "full") {
		t.Errorf("/readyz: %d %s; want 503 saying the disk is full", status, body)
	}
	for i := range 10 {
		took, err := publish(100 + i)
		var pr *event.Problem
		if !errors.As(err, &pr) || pr.Status != http.StatusServiceUnavailable || !strings.Contains(pr.Detail, "out of space") {
			t.Fatalf("publish on a full disk: %v; want a 503 saying the store is out of space", err)
		}
		if took > 200*time.Millisecond {
			t.Errorf("publish on a full disk took %v; want a fast 503", took)
		}
	}

	if err := os.Remove(filepath.Join(inside, "filler")); err != nil {
		t.Fatal(err)
	}
	freed := time.Now()
	waitFor(t, 20*time.Second, func() bool { _, err := publish(200); return err == nil }, "publishing to resume")
	resumed := time.Since(freed)
	waitFor(t, 5*time.Second, side.ready, "/readyz to turn 200")
	for i := range 20 {
		if _, err := publish(300 + i); err != nil {
			t.Fatalf("publish %d after recovery: %v", i, err)
		}
	}
	// The open stream goes on: it gets the events published after the recovery.
	for got := ""; got != "disk.n319"; {
		ev, err := live.Next()
		if err != nil {
			t.Fatalf("the stream open during the outage ended: %v", err)
		}
		if ev.Event == "lifecycle" {
			got = ev.Data[strings.Index(ev.Data, `"event_type":"`)+14:]
			got = got[:strings.IndexByte(got, '"')]
		}
	}

	// Every acknowledged event is stored, once.
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	r, closer, err := c.Stream(ctx, "/events/stream", url.Values{"tenant_id": {tenant.String()}}, event.CursorEarliest)
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	seen := map[string]int{}
	for len(seen) < len(acked) {
		ev, err := r.Next()
		if err != nil {
			t.Fatalf("replay after %d of %d events: %v", len(seen), len(acked), err)
		}
		if ev.Event == "lifecycle" {
			i := strings.Index(ev.Data, `"id":"`)
			seen[ev.Data[i+6:i+42]]++
		}
	}
	for _, id := range acked {
		if seen[id] != 1 {
			t.Errorf("acked event %s stored %d times; want once", id, seen[id])
		}
	}
	t.Logf("%d acked; /readyz turned 503 %v after the disk filled; publishing resumed %v after space was freed",
		len(acked), detected.Round(time.Millisecond), resumed.Round(time.Millisecond))
}

// fill writes the file at path until its filesystem has no room.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for {
		if _, err := f.Write(buf); err != nil {
			break // ENOSPC
		}
	}
	for _, n := range []int{64 << 10, 4 << 10, 512, 1} { // the last bytes too
		for {
			if _, err := f.Write(buf[:n]); err != nil {
				break
			}
		}
	}
}

// readyz returns the status and body of the sidecar's /readyz.
func readyz(t *testing.T, s *sidecarProc) (int, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, s.client.BaseURL()+"/readyz", nil)
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp.StatusCode, b.String()
}
