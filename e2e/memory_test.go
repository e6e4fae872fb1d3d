package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/flovyn/eventhook/sidecar/event"
)

// procStatus reads a field of /proc/<pid>/status in KiB (VmRSS, VmHWM), or skips the test where there is no /proc.
func procStatus(t testing.TB, pid int, field string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("no /proc to read the daemon's memory from: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// TestBodyBudgetBoundsMemory sends eight 30 MiB batch bodies at once, with small publishes beside them, to a daemon
// whose Go memory limit is what it sets itself in a container of 120 MiB (80 %, here through GOMEMLIMIT): its peak
// resident memory grows by less than http.body_budget plus a stated margin, every big body is stored or answered 503
// with Retry-After, and the small publishes all succeed. Before the budget the peak grew by half a GiB.
func TestBodyBudgetBoundsMemory(t *testing.T) {
	const (
		budget   = 32 << 20
		bodies   = 8
		margin   = 4 * budget // the events decoded from a body, their encodings, and the garbage collector's headroom
		memLimit = "96MiB"
	)
	for _, backend := range []string{"memory", "jetstream"} {
		t.Run(backend, func(t *testing.T) {
			eh, ns := binaries(t)
			dir := shortDir(t)
			natsCfg := fmt.Sprintf("{embedded: true, embedded_listen: \"\", store_dir: %q}", filepath.Join(dir, "data"))
			if backend == "jetstream" { // as in production: the NATS server, and what it stores, in a process of its own
				port := freePort(t)
				natsServer(t, ns, port, t.TempDir())
				natsCfg = fmt.Sprintf("{urls: [\"nats://127.0.0.1:%d\"]}", port)
			}
			side := startSidecarEnv(t, eh, dir, fmt.Sprintf(`
backend: %s
http: {listen: "", unix_socket: %q, body_budget: %d}
nats: %s
jetstream: {events_max_bytes: 1073741824}
`, backend, filepath.Join(dir, "eh.sock"), budget, natsCfg), memLimit)
			pid := side.cmd.Process.Pid
			tenant := uuid.New()
			batch := bigBatch(tenant, 30<<20)
			before := procStatus(t, pid, "VmRSS")

			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			var wg sync.WaitGroup
			var stored, refused atomic.Int64
			var bad atomic.Value
			for range bodies {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, err := side.client.PublishBatch(ctx, batch, "")
					var p *event.Problem
					switch {
					case err == nil:
						stored.Add(1)
					case errors.As(err, &p) && p.Status == http.StatusServiceUnavailable && p.RetryAfter > 0:
						refused.Add(1)
					default:
						bad.Store(err)
					}
				}()
			}
			bigDone := make(chan struct{})
			go func() { wg.Wait(); close(bigDone) }()
			small := 0
			for done := false; !done; {
				select {
				case <-bigDone:
					done = true
				default:
				}
				body := fmt.Sprintf(`{"tenant_id":%q,"event_type":"small.n%d"}`, tenant, small)
				if _, err := side.client.PublishEvent(ctx, []byte(body), ""); err != nil {
					t.Fatalf("small publish %d beside the big bodies: %v", small, err)
				}
				small++
			}
			if err := bad.Load(); err != nil {
				t.Fatalf("a big body got %.300v; want 202, or 503 with Retry-After", err)
			}
			peak := procStatus(t, pid, "VmHWM")
			grew := (peak - before) << 10
			t.Logf("%s: RSS %d MiB before, peak %d MiB (+%d MiB; budget %d MiB, margin %d MiB); %d bodies stored, %d refused; %d small publishes beside them",
				backend, before>>10, peak>>10, grew>>20, budget>>20, margin>>20, stored.Load(), refused.Load(), small)
			if grew > budget+margin {
				t.Errorf("the peak RSS grew by %d MiB; want at most the budget plus the margin, %d MiB", grew>>20, (budget+margin)>>20)
			}
			if stored.Load() == 0 {
				t.Errorf("no big body was stored")
			}
		})
	}
}

// bigBatch is an NDJSON batch of about size bytes: 1000 events of tenant with large data.
func bigBatch(tenant uuid.UUID, size int) []byte {
	pad := strings.Repeat("x", size/1000-200)
	var b bytes.Buffer
	for i := range 1000 {
		fmt.Fprintf(&b, `{"tenant_id":%q,"event_type":"big.n%d","data":{"pad":%q}}`+"\n", tenant, i, pad)
	}
	return b.Bytes()
}
