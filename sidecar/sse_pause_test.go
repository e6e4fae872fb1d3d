package sidecar

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/flovyn/eventhook/sidecar/bus"
	"github.com/flovyn/eventhook/sidecar/bus/bustest"
	"github.com/flovyn/eventhook/sidecar/client"
	"github.com/flovyn/eventhook/sidecar/config"
	"github.com/flovyn/eventhook/sidecar/event"
	"github.com/google/uuid"
)

// TestPausedReaderGetsNoHole pauses SSE readers in the middle of a burst too large for the socket buffers (from before
// the rest of the burst is published until 1.5 × sse.write_timeout after), then reads on. Every frame a reader gets must parse, and every event must arrive exactly once and in
// order, across the reconnect (with Last-Event-ID) of a reader the server disconnected; a jump is allowed only after a
// gap notice. A write that timed out used to leave a frame cut in the middle, followed by later frames on the same
// connection: a hole no cursor could mend.
func TestPausedReaderGetsNoHole(t *testing.T) {
	for _, backend := range []string{"memory", "jetstream"} {
		t.Run(backend, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.SSE.WriteTimeout = config.Duration(300 * time.Millisecond)
			var eb bus.Bus
			if backend == "jetstream" {
				js := newJetStreamTestBus(t)
				t.Cleanup(func() { js.Close() })
				eb = js
			}
			h := newHarness(t, cfg, eb)
			testPausedReader(t, h, cfg.SSE.WriteTimeout.D()*3/2)
		})
	}
}

func testPausedReader(t *testing.T, h *harness, pause time.Duration) {
	const (
		readers = 3
		events  = 600      // 600 × 16 KiB: more than the server's send buffer and the reader's receive buffer hold
		before  = 20       // events each reader takes before it pauses
		pad     = 16 << 10 // bytes of data per event
		rcvBuf  = 4 << 10  // the readers' socket receive buffer
		within  = 30 * time.Second
	)
	tenant, wf := uuid.New(), uuid.New()
	path := fmt.Sprintf("/workflow-executions/%s/stream?tenant_id=%s&types=events", wf, tenant)
	filler := strings.Repeat("x", pad)

	type result struct {
		got        []int
		reconnects int
		err        error
	}
	results := make([]result, readers)
	paused := make(chan struct{}, readers)
	published := make(chan struct{}) // closed when the whole burst is published: the readers pause from then on
	var wg sync.WaitGroup
	opened := make(chan struct{}, readers)
	for i := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &results[i]
			r.err = readUntil(h.srv.Addr().String(), path, rcvBuf, events, func(n int) {
				if n == before-1 {
					paused <- struct{}{}
					<-published
					time.Sleep(pause) // the behaviour under test: a reader that stops reading for a while
				}
			}, opened, &r.got, &r.reconnects)
		}()
	}
	for range readers {
		select {
		case <-opened:
		case <-time.After(within):
			t.Fatal("the streams did not open")
		}
	}
	mk := func(n int) *event.FlovynEvent {
		e := bustest.Event(tenant, "task.progress").WithWorkflow(wf)
		e.Data = json.RawMessage(fmt.Sprintf(`{"n":%d,"pad":%q}`, n, filler))
		return e
	}
	for n := range before {
		bustest.PublishEvent(t, h.bus, mk(n))
	}
	for range readers {
		select {
		case <-paused:
		case <-time.After(within):
			t.Fatal("the readers did not get the first events")
		}
	}
	// The rest of the burst while every reader pauses, pipelined where the backend can.
	rest := make([]*event.FlovynEvent, 0, events-before)
	for n := before; n < events; n++ {
		rest = append(rest, mk(n))
	}
	if bp, ok := h.bus.(bus.BatchPublisher); ok {
		for _, err := range mustBatch(bp.PublishBatch(t.Context(), rest, nil)) {
			t.Fatal(err)
		}
	} else {
		for _, e := range rest {
			bustest.PublishEvent(t, h.bus, e)
		}
	}
	close(published)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(within):
		t.Fatal("the readers did not get every event in time")
	}
	reconnected := 0
	for i, r := range results {
		if r.err != nil {
			t.Errorf("reader %d: %v", i, r.err)
		}
		if r.reconnects > 0 {
			reconnected++
		}
	}
	if reconnected == 0 {
		t.Fatal("no paused reader was disconnected: the burst did not make the server's writes time out")
	}
	t.Logf("%d of %d paused readers were disconnected and resumed", reconnected, readers)
}

// mustBatch returns the errors of a batch publish that are not nil.
func mustBatch(_ []bus.PublishResult, errs []error) []error {
	var out []error
	for _, err := range errs {
		if err != nil {
			out = append(out, err)
		}
	}
	return out
}

// readUntil reads the SSE stream at path over TCP, with a small receive buffer, until it has the lifecycle event with
// data n = last-1, reconnecting with Last-Event-ID when the server ends the stream. It calls seen after each event,
// records every n in got, and fails on a frame that does not parse, a repeated or missing n not announced by a gap.
func readUntil(addr, path string, rcvBuf, total int, seen func(n int), opened chan<- struct{}, got *[]int, reconnects *int) error {
	last := ""
	expect := 0
	gapped := false
	for attempt := 0; ; attempt++ {
		if attempt > 20 {
			return fmt.Errorf("gave up after %d reconnects", attempt)
		}
		conn, err := dialSmall(addr, rcvBuf)
		if err != nil {
			return err
		}
		req := "GET " + path + " HTTP/1.1\r\nHost: x\r\n"
		if last != "" {
			req += "Last-Event-ID: " + last + "\r\n"
		}
		if _, err := io.WriteString(conn, req+"\r\n"); err != nil {
			conn.Close()
			return err
		}
		br := bufio.NewReader(conn)
		if status, err := br.ReadString('\n'); err != nil || !strings.Contains(status, " 200 ") {
			conn.Close()
			return fmt.Errorf("status %q: %v", status, err)
		}
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				conn.Close()
				return fmt.Errorf("headers: %v", err)
			}
			if line == "\r\n" {
				break
			}
		}
		if attempt == 0 {
			opened <- struct{}{}
		}
		r := client.NewSSEReader(br)
		for {
			frame, err := r.Next()
			if err != nil {
				conn.Close()
				last = r.LastEventID()
				*reconnects++
				break // the server ended the stream: resume after the last whole frame
			}
			switch frame.Event {
			case "gap":
				gapped = true
				continue
			case "lifecycle":
			default:
				conn.Close()
				return fmt.Errorf("unexpected frame %q", frame.Event)
			}
			var e struct {
				Data struct{ N int } `json:"data"`
			}
			if err := json.Unmarshal([]byte(frame.Data), &e); err != nil {
				conn.Close()
				return fmt.Errorf("frame after n=%d does not parse (%v): %.120q…", expect-1, err, frame.Data)
			}
			n := e.Data.N
			switch {
			case n == expect:
			case n > expect && gapped:
			default:
				conn.Close()
				return fmt.Errorf("got n=%d after n=%d with no gap notice", n, expect-1)
			}
			gapped = false
			*got = append(*got, n)
			expect = n + 1
			seen(n)
			if n == total-1 {
				conn.Close()
				return nil
			}
		}
	}
}

// dialSmall connects to addr with a receive buffer of size bytes, so that a reader that stops reading makes the
// server's writes block soon.
func dialSmall(addr string, size int) (net.Conn, error) {
	d := net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, size) })
		if err != nil {
			return err
		}
		return serr
	}}
	return d.Dial("tcp", addr)
}
