package natsbus

import (
	"bytes"
	"context"
	"encoding/json"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// acker publishes to JetStream asynchronously and matches the PubAcks to their publishes: what nats.go's
// jetstream.PublishMsgAsync does, with less work per message. The profile of the daemon at 1000 events/s had nats.go's
// reply handler at 10 % of the samples, most of it decoding each PubAck with encoding/json, and every publish armed a
// timer of its own for the ack timeout. Here a PubAck in the server's own form ({"stream":…,"seq":…}, with
// "domain" and "duplicate" when set) is read without reflection (anything else goes through encoding/json, errors
// included), and one sweep per fraction of the timeout fails the publishes whose ack never came.
//
// It keeps the rest of nats.go's behaviour: a publish that no stream answers (a 503 "no responders" status: in a
// cluster, the stream has no leader) is sent again twice, 250 ms apart, before it fails with
// jetstream.ErrNoStreamResponse; an ack that does not come within the timeout fails with
// jetstream.ErrAsyncPublishTimeout; an API error is a *jetstream.APIError; when the connection drops, every publish
// still waiting fails with nats.ErrDisconnected.
type acker struct {
	nc      *nats.Conn
	prefix  string // the reply subjects: prefix + token
	timeout time.Duration
	next    atomic.Uint64

	mu      sync.Mutex
	pending map[string]*ackFuture // by token
}

// The resends of a publish that no stream answered, as nats.go's jetstream package makes them.
const (
	noResponderRetries = 2
	noResponderWait    = 250 * time.Millisecond
)

// ackFuture is one publish awaiting its PubAck; it implements jetstream.PubAckFuture. Exactly one of ok and err
// receives, once.
type ackFuture struct {
	msg     *nats.Msg
	reply   string
	token   string
	ok      chan *jetstream.PubAck
	err     chan error
	sent    int64 // unix nanoseconds of the last send
	retries int
}

// Ok implements jetstream.PubAckFuture.
func (f *ackFuture) Ok() <-chan *jetstream.PubAck { return f.ok }

// Err implements jetstream.PubAckFuture.
func (f *ackFuture) Err() <-chan error { return f.err }

// Msg implements jetstream.PubAckFuture.
func (f *ackFuture) Msg() *nats.Msg { return f.msg }

// newAcker subscribes to its reply subjects on nc and sweeps timed-out publishes until ctx ends (wg counts the
// sweeper).
func newAcker(ctx context.Context, wg *sync.WaitGroup, nc *nats.Conn, timeout time.Duration) (*acker, error) {
	a := &acker{nc: nc, prefix: nc.NewInbox() + ".", timeout: timeout, pending: map[string]*ackFuture{}}
	sub, err := nc.Subscribe(a.prefix+"*", a.handle)
	if err != nil {
		return nil, err
	}
	_ = sub.SetPendingLimits(-1, -1) // acks are never dropped: a publish waits for its own
	status := nc.StatusChanged(nats.RECONNECTING, nats.CLOSED)
	wg.Add(2)
	go a.sweep(ctx, wg, sub)           // ends with ctx
	go a.onDisconnect(ctx, wg, status) // ends with ctx, or when the connection closes
	return a, nil
}

// onDisconnect fails every publish still waiting when the connection drops, as nats.go does: their acks, if any, were
// lost with it.
func (a *acker) onDisconnect(ctx context.Context, wg *sync.WaitGroup, status chan nats.Status) {
	defer wg.Done()
	defer a.nc.RemoveStatusListener(status)
	for {
		select {
		case <-ctx.Done():
			return
		case s, ok := <-status:
			if !ok || s == nats.CLOSED {
				return
			}
			a.mu.Lock()
			lost := a.pending
			a.pending = map[string]*ackFuture{}
			a.mu.Unlock()
			for _, f := range lost {
				f.err <- nats.ErrDisconnected
			}
		}
	}
}

// publish sends m with a reply subject of the acker's and returns the future of its PubAck.
func (a *acker) publish(m *nats.Msg) (jetstream.PubAckFuture, error) {
	var buf [16]byte
	token := string(strconv.AppendUint(buf[:0], a.next.Add(1), 36))
	f := &ackFuture{msg: m, reply: a.prefix + token, token: token, ok: make(chan *jetstream.PubAck, 1),
		err: make(chan error, 1), sent: time.Now().UnixNano()}
	a.mu.Lock()
	a.pending[token] = f
	a.mu.Unlock()
	if err := a.send(f); err != nil {
		a.mu.Lock()
		delete(a.pending, token)
		a.mu.Unlock()
		return nil, err
	}
	return f, nil
}

// send publishes the future's message with its reply subject.
func (a *acker) send(f *ackFuture) error {
	return a.nc.PublishMsg(&nats.Msg{Subject: f.msg.Subject, Reply: f.reply, Header: f.msg.Header, Data: f.msg.Data})
}

// handle receives a reply: a PubAck, an API error, or a no-responders status.
func (a *acker) handle(m *nats.Msg) {
	if len(m.Subject) <= len(a.prefix) {
		return
	}
	token := m.Subject[len(a.prefix):]
	a.mu.Lock()
	f := a.pending[token]
	if f == nil {
		a.mu.Unlock()
		return // timed out, or answered already
	}
	noResponders := len(m.Data) == 0 && m.Header.Get("Status") == "503"
	if noResponders && f.retries < noResponderRetries {
		f.retries++
		f.sent = time.Now().UnixNano() + int64(noResponderWait)
		a.mu.Unlock()
		time.AfterFunc(noResponderWait, func() {
			a.mu.Lock()
			live := a.pending[token] == f
			a.mu.Unlock()
			if live {
				if err := a.send(f); err != nil {
					a.fail(token, f, err)
				}
			}
		})
		return
	}
	delete(a.pending, token)
	a.mu.Unlock()
	if noResponders {
		f.err <- jetstream.ErrNoStreamResponse
		return
	}
	ack, err := parsePubAck(m.Data)
	if err != nil {
		f.err <- err
		return
	}
	f.ok <- ack
}

// fail ends the future of token with err, unless it has ended already.
func (a *acker) fail(token string, f *ackFuture, err error) {
	a.mu.Lock()
	live := a.pending[token] == f
	if live {
		delete(a.pending, token)
	}
	a.mu.Unlock()
	if live {
		f.err <- err
	}
}

// sweep fails, a few times per timeout, the publishes whose ack has not come within it (their stream leader died, or
// the connection dropped), so that nothing waits forever and nothing stays behind; it ends with ctx.
func (a *acker) sweep(ctx context.Context, wg *sync.WaitGroup, sub *nats.Subscription) {
	defer wg.Done()
	every := max(a.timeout/4, 50*time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			_ = sub.Unsubscribe()
			return
		case now := <-t.C:
			limit := now.UnixNano() - int64(a.timeout)
			var late []*ackFuture
			a.mu.Lock()
			for token, f := range a.pending {
				if f.sent < limit {
					delete(a.pending, token)
					late = append(late, f)
				}
			}
			a.mu.Unlock()
			for _, f := range late {
				f.err <- jetstream.ErrAsyncPublishTimeout
			}
		}
	}
}

// parsePubAck reads a publish's answer: a PubAck, or the API error JetStream answered.
func parsePubAck(b []byte) (*jetstream.PubAck, error) {
	if ack, ok := fastPubAck(b); ok {
		return ack, nil
	}
	var r struct {
		Error *jetstream.APIError `json:"error"`
		*jetstream.PubAck
	}
	r.PubAck = &jetstream.PubAck{}
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, jetstream.ErrInvalidJSAck
	}
	if r.Error != nil {
		return nil, r.Error
	}
	if r.Stream == "" {
		return nil, jetstream.ErrInvalidJSAck
	}
	return r.PubAck, nil
}

// fastPubAck reads a PubAck in the form nats-server writes it: {"stream":"S","seq":N}, with "domain":"D" before
// "seq" when the server has a domain, and ,"duplicate": true (with or without the space) after it for a duplicate.
// ok is false for anything else, which parsePubAck then decodes in full.
func fastPubAck(b []byte) (_ *jetstream.PubAck, ok bool) {
	ack := &jetstream.PubAck{}
	var s []byte
	if b, ok = cut(b, `{"stream":`); !ok {
		return nil, false
	}
	if s, b, ok = plainJSONString(b); !ok {
		return nil, false
	}
	ack.Stream = string(s)
	if rest, found := cut(b, `,"domain":`); found {
		if s, b, ok = plainJSONString(rest); !ok {
			return nil, false
		}
		ack.Domain = string(s)
	}
	if b, ok = cut(b, `,"seq":`); !ok {
		return nil, false
	}
	n := 0
	for n < len(b) && b[n] >= '0' && b[n] <= '9' {
		n++
	}
	seq, err := strconv.ParseUint(string(b[:n]), 10, 64)
	if err != nil {
		return nil, false
	}
	ack.Sequence = seq
	switch b = b[n:]; {
	case string(b) == "}":
	case string(b) == `,"duplicate": true}` || string(b) == `,"duplicate":true}`:
		ack.Duplicate = true
	default:
		return nil, false
	}
	return ack, ack.Stream != ""
}

// cut returns b after prefix, and whether b starts with it.
func cut(b []byte, prefix string) ([]byte, bool) {
	if !bytes.HasPrefix(b, []byte(prefix)) {
		return b, false
	}
	return b[len(prefix):], true
}

// plainJSONString reads a JSON string without escapes at the start of b: its content and what follows it.
func plainJSONString(b []byte) (s, rest []byte, ok bool) {
	if len(b) == 0 || b[0] != '"' {
		return nil, b, false
	}
	end := bytes.IndexByte(b[1:], '"')
	if end < 0 || bytes.IndexByte(b[1:1+end], '\\') >= 0 {
		return nil, b, false
	}
	return b[1 : 1+end], b[2+end:], true
}
