package sidecar

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/flovyn/eventhook/sidecar/bus/bustest"
	"github.com/flovyn/eventhook/sidecar/event"
	"github.com/google/uuid"
)

func TestBodyBudget(t *testing.T) {
	b := newBodyBudget(100)
	big, err := b.acquire(t.Context(), 80, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// A small one fits beside it at once; one that does not fit waits for room, and gets it when room is freed.
	small, err := b.acquire(t.Context(), 20, time.Millisecond)
	if err != nil {
		t.Fatalf("a request that fits waited: %v", err)
	}
	got := make(chan error, 1)
	go func() {
		release, err := b.acquire(context.Background(), 50, 10*time.Second)
		if err == nil {
			release()
		}
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("a request that does not fit got through at once (%v)", err)
	case <-time.After(50 * time.Millisecond): // it is waiting, as it must
	}
	big()
	if err := <-got; err != nil {
		t.Fatalf("after room was freed: %v", err)
	}
	// No room in time: a 503 with Retry-After.
	_, err = b.acquire(t.Context(), 90, 20*time.Millisecond)
	var es *errStatus
	if !errors.As(err, &es) || es.status != http.StatusServiceUnavailable || es.retryAfter == 0 {
		t.Fatalf("acquire with no room = %v; want a 503 with Retry-After", err)
	}
	small()
	// More than the whole budget waits for all of it.
	all, err := b.acquire(t.Context(), 1000, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	all()
	if b.free != b.total {
		t.Fatalf("%d of %d free after every release", b.free, b.total)
	}
}

// TestChunkedBodyHoldsWhatItSent: a body sent without a Content-Length (chunked) reserves the budget as it is read, so
// a slow chunked upload does not shut out the publishes beside it; and a chunked body larger than the whole budget is
// still read and stored, as one with a Content-Length is.
func TestChunkedBodyHoldsWhatItSent(t *testing.T) {
	cfg := testConfig(t)
	cfg.HTTP.BodyBudget = 1 << 20
	h := newHarness(t, cfg, nil)
	tenant, wf := uuid.NewString(), uuid.NewString()
	pad := strings.Repeat("x", 4000)
	token := func(i int) string {
		return fmt.Sprintf(`{"workflowExecutionId":%q,"type":"TOKEN","payload":"t%d %s"}`+"\n", wf, i, pad)
	}

	pr, pw := io.Pipe()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, h.unix.BaseURL()+"/v1/streams", pr)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	req.Header.Set(event.TenantHeader, tenant)
	answered := make(chan *http.Response, 1)
	go func() {
		resp, err := h.unix.Do(req)
		if err != nil {
			t.Errorf("the chunked upload: %v", err)
			close(answered)
			return
		}
		answered <- resp
	}()
	if _, err := io.WriteString(pw, token(0)); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(bustest.WaitFor); ; {
		h.srv.bodies.mu.Lock()
		holding := h.srv.bodies.free < h.srv.bodies.total
		h.srv.bodies.mu.Unlock()
		if holding {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the chunked upload never took part of the body budget")
		}
		time.Sleep(time.Millisecond)
	}

	// Beside the open upload, small publishes go through at once.
	for i := range 3 {
		body := fmt.Sprintf(`{"tenant_id":%q,"event_type":"beside.upload","data":%d}`, tenant, i)
		if status, _, b := h.do(t, http.MethodPost, "/v1/events", "application/json", body); status != http.StatusAccepted {
			t.Fatalf("a small publish beside a chunked upload: %d %s; want 202", status, b)
		}
	}

	// The upload goes on past the whole budget (1 MiB: 900 tokens of 4 KB) and is stored.
	n := 900
	for i := 1; i < n; i++ {
		if _, err := io.WriteString(pw, token(i)); err != nil {
			t.Fatal(err)
		}
	}
	pw.Close()
	resp := <-answered
	if resp == nil {
		t.FailNow()
	}
	defer resp.Body.Close()
	if b, _ := io.ReadAll(resp.Body); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("the chunked upload of %d tokens: %d %s; want 202", n, resp.StatusCode, b)
	}
	h.srv.bodies.mu.Lock()
	defer h.srv.bodies.mu.Unlock()
	if h.srv.bodies.free != h.srv.bodies.total {
		t.Fatalf("%d of %d free after the upload was answered", h.srv.bodies.free, h.srv.bodies.total)
	}
}
