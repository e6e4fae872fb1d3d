package sidecar

import (
	"context"
	"net/http"
	"sync"
	"time"
)

// bodyWait is how long a publish waits for room in the body budget before it is answered 503.
const bodyWait = 2 * time.Second

// bodyBudget bounds the bytes of publish request bodies the daemon reads and holds at once (http.body_budget), so that
// memory stays bounded whatever clients send: eight 30 MiB bodies at once would otherwise take a quarter of a GiB
// before the first is decoded. A request reserves its Content-Length (or, without one, the most its endpoint takes)
// before its body is read, and gives it back when it is answered. A request that finds no room waits up to bodyWait,
// then gets 503 with Retry-After. A request larger than the whole budget waits for all of it.
//
// Waiting is not first come, first served: whoever fits when room is freed goes, so that small publishes are not held
// behind a large one that waits.
type bodyBudget struct {
	mu      sync.Mutex
	total   int64
	free    int64
	waiting int           // requests waiting for room
	freed   chan struct{} // closed, and replaced, when bytes are given back while requests wait
}

func newBodyBudget(total int64) *bodyBudget {
	return &bodyBudget{total: total, free: total, freed: make(chan struct{})}
}

// acquire reserves n bytes (at most the whole budget), waiting up to wait for them, and returns the function that gives
// them back. It returns a 503 error when there was no room in time, or the context's error.
func (b *bodyBudget) acquire(ctx context.Context, n int64, wait time.Duration) (release func(), err error) {
	n = min(max(n, 1), b.total)
	var timer *time.Timer
	for {
		b.mu.Lock()
		if n <= b.free {
			b.free -= n
			b.mu.Unlock()
			if timer != nil {
				timer.Stop()
			}
			return func() { b.release(n) }, nil
		}
		freed := b.freed
		b.waiting++
		b.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(wait)
			defer timer.Stop()
		}
		var err error
		select {
		case <-freed:
		case <-timer.C:
			err = &errStatus{status: http.StatusServiceUnavailable, retryAfter: 1,
				detail: "too many request bodies are being read at once (http.body_budget); send it again shortly"}
		case <-ctx.Done():
			err = ctx.Err()
		}
		b.mu.Lock()
		b.waiting--
		b.mu.Unlock()
		if err != nil {
			return nil, err
		}
	}
}

func (b *bodyBudget) release(n int64) {
	b.mu.Lock()
	b.free += n
	if b.waiting > 0 { // nobody to wake on the common path: no channel to close and make again
		close(b.freed)
		b.freed = make(chan struct{})
	}
	b.mu.Unlock()
}

// budgeted runs a publish handler once its body has room in the budget: limit is the most the endpoint reads.
func (s *Server) budgeted(limit func() int64, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		n := limit()
		if r.ContentLength >= 0 && r.ContentLength < n {
			n = r.ContentLength
		}
		release, err := s.bodies.acquire(r.Context(), n, bodyWait)
		if err != nil {
			s.reject(err)
			s.writeError(w, r, err)
			return
		}
		defer release()
		h(w, r)
	}
}
