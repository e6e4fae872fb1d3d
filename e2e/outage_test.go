package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/flovyn/eventhook/sidecar/client"
	"github.com/flovyn/eventhook/sidecar/event"
	"github.com/google/uuid"
)

// collector follows a tenant stream over SSE, reconnecting with Last-Event-ID if the stream ever ends, and records the
// lifecycle event ids it receives.
type collector struct {
	mu         sync.Mutex
	ids        []string
	reconnects int
	comments   int // of the readers before the current one
	cur        *client.SSEReader
	gaps       []string
}

func (c *collector) run(ctx context.Context, t testing.TB, client *client.Sidecar, path string, q url.Values) {
	last := ""
	for ctx.Err() == nil {
		r, closer, err := client.Stream(ctx, path, q, last)
		if err != nil {
			time.Sleep(50 * time.Millisecond) // the sidecar may be restarting: try again
			continue
		}
		stop := context.AfterFunc(ctx, func() { closer.Close() })
		c.mu.Lock()
		c.cur = r
		c.mu.Unlock()
		for {
			ev, err := r.Next()
			if err != nil {
				break
			}
			last = ev.ID
			c.mu.Lock()
			switch ev.Event {
			case "lifecycle":
				i := strings.Index(ev.Data, `"id":"`)
				c.ids = append(c.ids, ev.Data[i+6:i+42])
			case "gap":
				c.gaps = append(c.gaps, ev.Data)
			}
			c.mu.Unlock()
		}
		stop()
		closer.Close()
		c.mu.Lock()
		c.reconnects++
		c.comments += r.Comments()
		c.cur = nil
		c.mu.Unlock()
	}
}

func (c *collector) snapshot() (ids []string, comments, reconnects int, gaps []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	comments = c.comments
	if c.cur != nil {
		comments += c.cur.Comments()
	}
	return append([]string(nil), c.ids...), comments, c.reconnects, append([]string(nil), c.gaps...)
}

// publisher publishes events at a steady rate and records what was acknowledged.
type publisher struct {
	mu        sync.Mutex
	acked     []string
	spans     []span // of the acked publishes, in order
	failed    int
	slowFail  time.Duration // the slowest failed publish
	noRetry   int           // 503s without Retry-After
	lastError string
}

func (p *publisher) run(ctx context.Context, client *client.Sidecar, tenant uuid.UUID, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for i := 0; ctx.Err() == nil; i++ {
		id := uuid.NewString()
		body := fmt.Sprintf(`{"id":%q,"tenant_id":%q,"event_type":"load.n%d"}`, id, tenant, i)
		start := time.Now()
		pctx, cancel := context.WithTimeout(context.Background(), 15*time.Second) // above the sidecar's publish_timeout
		_, err := client.PublishEvent(pctx, []byte(body), "")
		cancel()
		took := time.Since(start)
		p.mu.Lock()
		var prob *event.Problem
		switch {
		case err == nil:
			p.acked = append(p.acked, id)
			p.spans = append(p.spans, span{start, took})
		case errors.As(err, &prob) && prob.Status == http.StatusServiceUnavailable:
			p.failed++
			p.slowFail = max(p.slowFail, took)
			if prob.RetryAfter <= 0 {
				p.noRetry++
			}
			p.lastError = prob.Detail
		default:
			p.failed++
			p.lastError = err.Error()
		}
		p.mu.Unlock()
		select {
		case <-tick.C:
		case <-ctx.Done():
		}
	}
}

// span is when a publish started and how long it took.
type span struct {
	start time.Time
	took  time.Duration
}

func (p *publisher) counts() (acked, failed int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.acked), p.failed
}

// TestExternalNATSOutage runs the sidecar against an external nats-server process, stops the server under load and
// starts it again: publishes answer 503 with Retry-After within a second while it is down (never a hang, never a 2xx
// without an ack), readiness turns false, the SSE stream stays open with keep-alives, and afterwards publishing resumes
// and the stream goes on with every acknowledged event exactly once.
func TestExternalNATSOutage(t *testing.T) {
	eh, ns := binaries(t)
	dir := shortDir(t)
	port := freePort(t)
	store := t.TempDir()
	srv := natsServer(t, ns, port, store)
	side := startSidecar(t, eh, dir, fmt.Sprintf(`
backend: jetstream
http: {listen: "", unix_socket: %q}
nats: {urls: ["nats://127.0.0.1:%d"], connect_timeout: 5s}
sse: {heartbeat: 1s}
log: {level: debug}
`, dir+"/eh.sock", port))

	tenant := uuid.New()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	col := &collector{}
	go col.run(ctx, t, side.client, "/events/stream", url.Values{"tenant_id": {tenant.String()}})
	// The tenant stream starts live: it must be open before the first publish, or that publish is not for it.
	waitFor(t, 10*time.Second, col.connected, "the SSE stream to open")
	pub := &publisher{}
	pubCtx, stopPub := context.WithCancel(ctx)
	pubDone := make(chan struct{})
	go func() { pub.run(pubCtx, side.client, tenant, 5*time.Millisecond); close(pubDone) }()

	waitFor(t, 10*time.Second, func() bool { a, _ := pub.counts(); return a >= 100 }, "100 acked publishes")
	outage := time.Now()
	srv.signal(syscall.SIGKILL)
	srv.wait(t, 10*time.Second)
	waitFor(t, 5*time.Second, func() bool { _, f := pub.counts(); return f >= 20 }, "failed publishes during the outage")
	waitFor(t, 5*time.Second, func() bool { return !side.ready() }, "/readyz to turn false")
	_, commentsBefore, _, _ := col.snapshot()
	waitFor(t, 5*time.Second, func() bool { _, c, _, _ := col.snapshot(); return c > commentsBefore }, "a keep-alive during the outage")

	natsServer(t, ns, port, store) // the same port and store: the sidecar reconnects to it
	restarted := time.Now()
	ackedAtRestart, _ := pub.counts()
	waitFor(t, 20*time.Second, func() bool { a, _ := pub.counts(); return a >= ackedAtRestart+100 }, "publishing to resume")
	recovered := time.Now()
	waitFor(t, 5*time.Second, side.ready, "/readyz to turn true")
	stopPub()
	<-pubDone

	pub.mu.Lock()
	acked, failed, slow, noRetry := append([]string(nil), pub.acked...), pub.failed, pub.slowFail, pub.noRetry
	pub.mu.Unlock()
	if slow > time.Second {
		t.Errorf("the slowest failed publish took %v; want a 503 within 1s", slow)
	}
	if noRetry > 0 {
		t.Errorf("%d 503 answers without Retry-After", noRetry)
	}
	waitFor(t, 20*time.Second, func() bool { ids, _, _, _ := col.snapshot(); return len(ids) >= len(acked) },
		"the stream to deliver every acked event (%d acked, %v delivered)", len(acked),
		lazy(func() string { ids, _, _, _ := col.snapshot(); return fmt.Sprint(len(ids)) }))
	ids, _, reconnects, gaps := col.snapshot()
	checkExactlyOnce(t, acked, ids, true)
	if reconnects != 0 || len(gaps) != 0 {
		t.Errorf("the stream was reconnected %d times and reported gaps %v; want it to stay open without a gap", reconnects, gaps)
	}
	t.Logf("sent %d, acked %d, failed %d (503 within %v), delivered %d; publishing resumed %v after the server came back (outage %v)",
		len(acked)+failed, len(acked), failed, slow, len(ids), recovered.Sub(restarted).Round(time.Millisecond),
		restarted.Sub(outage).Round(time.Millisecond))
}

// checkExactlyOnce requires every acked id among the delivered ones exactly once, and, when ordered (one publisher at a
// time), in the acked order.
func checkExactlyOnce(t testing.TB, acked, delivered []string, ordered bool) {
	t.Helper()
	seen := map[string]int{}
	for _, id := range delivered {
		seen[id]++
	}
	for id, n := range seen {
		if n > 1 {
			t.Errorf("event %s delivered %d times", id, n)
		}
	}
	pos := map[string]int{}
	for i, id := range delivered {
		pos[id] = i
	}
	last := -1
	for _, id := range acked {
		p, ok := pos[id]
		if !ok {
			t.Errorf("acked event %s was never delivered", id)
			continue
		}
		if ordered && p < last {
			t.Errorf("acked event %s delivered out of order", id)
		}
		last = p
	}
}
