package sidecar

import (
	"context"
	"io"
	"net/http"
	"sync"
	"time"
)

// bodyWait is how long a publish waits for room in the body budget before it is answered 503.
const bodyWait = 2 * time.Second

// bodyChunk is what a body of unknown length (chunked) reserves first; it reserves more as it is read.
const bodyChunk = 64 << 10

// bodyBudget bounds the bytes of publish request bodies the daemon reads and holds at once (http.body_budget), so that
// memory stays bounded whatever clients send: eight 30 MiB bodies at once would otherwise take a quarter of a GiB
// before the first is decoded. A request reserves its Content-Length before its body is read, and gives it back when it
// is answered. A body without a Content-Length (chunked) reserves bodyChunk, then twice what it holds each time it has
// read what it reserved, up to the most its endpoint takes: so a slow chunked upload holds what it has sent, not the
// endpoint's whole limit, and cannot shut other publishers out. A request that finds no room waits up to bodyWait, then
// gets 503 with Retry-After. A request larger than the whole budget waits for all of it.
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
		n, most := limit(), int64(0)
		switch {
		case r.ContentLength >= 0:
			n = min(n, r.ContentLength)
		case n > bodyChunk: // unknown length: reserve as it is read, up to the whole budget (as a known length would)
			n, most = bodyChunk, min(n, s.bodies.total)
		}
		release, err := s.bodies.acquire(r.Context(), n, bodyWait)
		if err != nil {
			s.reject(err)
			s.writeError(w, r, err)
			return
		}
		if most > 0 {
			body := &budgetedBody{ReadCloser: r.Body, b: s.bodies, ctx: r.Context(), reserved: n, most: most,
				releases: []func(){release}}
			defer body.release()
			r.Body = body
		} else {
			defer release()
		}
		h(w, r)
	}
}

// budgetedBody is the body of a request of unknown length: it reserves more of the budget as it is read.
type budgetedBody struct {
	io.ReadCloser
	b        *bodyBudget
	ctx      context.Context
	read     int64
	reserved int64 // of the budget, by releases
	most     int64 // the most it reserves: what the endpoint reads, or the whole budget when that is less
	releases []func()
}

// Read reads from the body, first reserving twice what it holds when it has read all it reserved. No room in time is
// the budget's 503 error, which the handler answers as such.
func (r *budgetedBody) Read(p []byte) (int, error) {
	if r.read >= r.reserved && r.reserved < r.most {
		more := min(r.reserved, r.most-r.reserved) // doubles the reservation
		release, err := r.b.acquire(r.ctx, more, bodyWait)
		if err != nil {
			return 0, err
		}
		r.releases = append(r.releases, release)
		r.reserved += more
	}
	if r.reserved < r.most {
		p = p[:min(int64(len(p)), r.reserved-r.read)]
	}
	n, err := r.ReadCloser.Read(p)
	r.read += int64(n)
	return n, err
}

func (r *budgetedBody) release() {
	for _, f := range r.releases {
		f()
	}
}
