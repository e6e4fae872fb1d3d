package bench

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/flovyn/eventhook/sidecar/client"
)

// subscriber reads one SSE stream with the sidecar's own SSE reader (the one eventhook tail uses) and records the
// bench's events it receives: which of the expected sequence numbers arrived, and how long after they were sent.
//
// The fields are written by the reading goroutine; read them only after close (or after exited is closed).
type subscriber struct {
	expect int
	seen   []uint64 // bit i: the event numbered i arrived

	distinct int             // expected events received
	dups     int             // expected events received again
	foreign  int             // other lifecycle events
	lat      []time.Duration // receive time − send time of each expected event, at its first arrival
	last     time.Time       // arrival of the last expected event
	gaps     []string        // data of the gap frames received
	err      error           // why the stream ended

	done     chan struct{} // closed when every expected event arrived, or the stream ended
	doneOnce sync.Once
	exited   chan struct{} // closed when the reading goroutine returns
	cancel   context.CancelFunc
	body     io.Closer
}

func newSubscriber(expect int) *subscriber {
	return &subscriber{expect: expect, seen: make([]uint64, (expect+63)/64), lat: make([]time.Duration, 0, expect),
		done: make(chan struct{}), exited: make(chan struct{})}
}

// subscribe opens the SSE stream at path and starts reading it in a goroutine of its own; expect is how many events
// (numbered 0 to expect−1) the caller will wait for.
func (t *httpTarget) subscribe(ctx context.Context, path string, expect int) (*subscriber, error) {
	sctx, cancel := context.WithCancel(ctx)
	req, err := t.newRequest(sctx, http.MethodGet, path, nil)
	if err != nil {
		cancel()
		return nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := t.client.Do(req)
	if err != nil {
		cancel()
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		err := statusError(t.name, "GET "+path, resp)
		resp.Body.Close()
		cancel()
		return nil, err
	}
	s := newSubscriber(expect)
	s.cancel, s.body = cancel, resp.Body
	go func() {
		defer close(s.exited)
		s.consume(resp.Body)
	}()
	return s, nil
}

// consume reads events until the stream ends.
func (s *subscriber) consume(r io.Reader) {
	defer s.finish()
	rd := client.NewSSEReader(r)
	for {
		ev, err := rd.Next()
		if err != nil {
			s.err = err
			return
		}
		now := time.Now()
		switch ev.Event {
		case "gap":
			s.gaps = append(s.gaps, ev.Data)
		case "lifecycle":
			s.record(ev.Data, now)
		}
	}
}

// record counts one lifecycle event received at now.
func (s *subscriber) record(data string, now time.Time) {
	seq, sent, ok := eventMarks(data)
	if !ok || seq < 0 || seq >= int64(s.expect) {
		s.foreign++
		return
	}
	word, bit := seq/64, uint64(1)<<(seq%64)
	if s.seen[word]&bit != 0 {
		s.dups++
		return
	}
	s.seen[word] |= bit
	s.distinct++
	s.lat = append(s.lat, now.Sub(time.Unix(0, sent)))
	s.last = now
	if s.distinct == s.expect {
		s.finish()
	}
}

func (s *subscriber) finish() { s.doneOnce.Do(func() { close(s.done) }) }

// close ends the stream and waits for the reading goroutine.
func (s *subscriber) close() {
	if s.cancel != nil {
		s.cancel()
	}
	if s.body != nil {
		s.body.Close()
	}
	<-s.exited
}

// missing is the number of expected events that did not arrive.
func (s *subscriber) missing() int { return s.expect - s.distinct }

// subscribeMany opens n streams, the i-th at path(i), at most parallel at a time. On error the streams opened are
// closed.
func (t *httpTarget) subscribeMany(ctx context.Context, n, parallel int, path func(i int) string, expect int) ([]*subscriber, error) {
	subs := make([]*subscriber, n)
	errs := make([]error, n)
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			subs[i], errs[i] = t.subscribe(ctx, path(i), expect)
		}()
	}
	wg.Wait()
	if err := firstError(errs); err != nil {
		closeAll(subs)
		return nil, err
	}
	return subs, nil
}

// firstError returns the first non-nil error of errs, and how many others there were.
func firstError(errs []error) error {
	var first error
	others := 0
	for _, err := range errs {
		switch {
		case err == nil:
		case first == nil:
			first = err
		default:
			others++
		}
	}
	if others > 0 {
		return errors.Join(first, errors.New("(and "+strconv.Itoa(others)+" more errors)"))
	}
	return first
}

// closeAll closes every subscriber (nil entries skipped), in parallel.
func closeAll(subs []*subscriber) {
	var wg sync.WaitGroup
	for _, s := range subs {
		if s != nil {
			wg.Add(1)
			go func() { defer wg.Done(); s.close() }()
		}
	}
	wg.Wait()
}

// waitAll waits until every subscriber has its events (or its stream ended), or until timeout; it reports whether
// all of them finished.
func waitAll(ctx context.Context, subs []*subscriber, timeout time.Duration) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for _, s := range subs {
		select {
		case <-s.done:
		case <-deadline.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
	return true
}
