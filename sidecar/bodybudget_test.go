package sidecar

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"
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
