package natsbus

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/flovyn/eventhook/sidecar/bus"
	"github.com/flovyn/eventhook/sidecar/event"
	"github.com/flovyn/eventhook/subjects"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// eventMsg builds the NATS message of an event: its subject, Nats-Msg-Id <tenant>:<id> (so one tenant can never
// suppress another's event), and its JSON with the tenant under key (events.tenant_key).
func eventMsg(e *event.FlovynEvent, key event.TenantKey) (*nats.Msg, error) {
	subj, err := e.Subject()
	if err != nil {
		return nil, err
	}
	m := &nats.Msg{Subject: subj, Header: nats.Header{}, Data: e.AppendJSONAs(make([]byte, 0, 256+len(e.Data)), key)}
	m.Header.Set(jetstream.MsgIDHeader, e.TenantID.String()+":"+e.ID.String())
	return m, nil
}

// PublishEvent implements EventPublisher: it returns after JetStream's PubAck, or ErrUnavailable at once when NATS is
// not connected.
func (b *JetStream) PublishEvent(ctx context.Context, e *event.FlovynEvent) (bus.PublishResult, error) {
	res, errs := b.PublishBatch(ctx, []*event.FlovynEvent{e}, nil)
	return res[0], errs[0]
}

// PublishEvents publishes lifecycle events as PublishBatch does.
func (b *JetStream) PublishEvents(ctx context.Context, events []*event.FlovynEvent) ([]bus.PublishResult, []error) {
	return b.PublishBatch(ctx, events, nil)
}

// PublishBatch implements BatchPublisher: every entry is published asynchronously, in order, then every ack awaited. A
// retried lifecycle event is answered as a duplicate with its original sequence.
func (b *JetStream) PublishBatch(ctx context.Context, events []*event.FlovynEvent, streams []*event.StreamEvent) ([]bus.PublishResult, []error) {
	n := max(len(events), len(streams))
	results := make([]bus.PublishResult, n)
	errs := make([]error, n)
	if b.isClosed() {
		for i := range errs {
			errs[i] = bus.ErrClosed
		}
		return results, errs
	}
	msgs := make([]*nats.Msg, n)
	for i := range n {
		var err error
		if i < len(events) && events[i] != nil {
			msgs[i], err = eventMsg(events[i], b.o.TenantKey)
		} else {
			msgs[i], err = streamMsg(streams[i])
		}
		errs[i] = err
	}
	if !b.conn.connected() {
		down := fmt.Errorf("publish: %w: not connected to NATS", bus.ErrUnavailable)
		for i := range errs {
			errs[i] = cmp.Or(errs[i], down)
		}
		return results, errs
	}
	if down := b.storeDownErr(); down != nil { // fail at once rather than wait for a store that cannot write
		for i := range errs {
			errs[i] = cmp.Or(errs[i], down)
		}
		return results, errs
	}
	acks := b.publishAll(ctx, msgs, errs)
	b.noteStore(errs)
	for i, a := range acks {
		if errs[i] == nil {
			// A stream event's id is this publish's own: a duplicate can only be its resend's, the first send stored.
			lifecycle := i < len(events) && events[i] != nil
			results[i] = bus.PublishResult{Sequence: a.Sequence, Duplicate: a.Duplicate && lifecycle}
		}
	}
	return results, errs
}

// resendAfter is how long a publish waits without any ack of its request before the events still unacked are sent
// again. Their Nats-Msg-Id (the event's for a lifecycle event, one made for the publish for a stream event) makes
// JetStream store each once, so a resend only ever helps: it rides out the election of a new stream leader — after the
// old one died with the first send unanswered, or while no leader answers at all — within jetstream.publish_timeout
// (10 s, above nats-server's election timeout of 4–9 s), instead of failing the publish.
const resendAfter = time.Second

// reconnectGrace is how long a publish caught by a dropped connection waits for the client to reconnect before it
// fails: a reconnect to another server of a cluster takes milliseconds; longer is an outage, answered at once.
const reconnectGrace = 500 * time.Millisecond

// noLeader reports a publish that no stream answered: in a cluster, the stream is electing a leader.
func noLeader(err error) bool {
	return errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders)
}

// publishAll publishes msgs (nil entries skipped) asynchronously and waits for every ack, within ctx. When no ack
// comes for resendAfter, it sends the events still unanswered again (see resendAfter) and keeps waiting; the first
// send's answer is preferred when both have come, and a send that no stream answers (no leader) waits for the next.
// A resend answered as a duplicate means the first send was stored after all: JetStream's answer (duplicate, with the
// original sequence) is what the caller gets.
func (b *JetStream) publishAll(ctx context.Context, msgs []*nats.Msg, errs []error) []jetstream.PubAck {
	acks := make([]jetstream.PubAck, len(msgs))
	futures := make([]sends, len(msgs))
	for i, m := range msgs {
		if m == nil {
			continue
		}
		send := m
		if b.o.firstSend != nil {
			send = b.o.firstSend(m)
		}
		f, err := b.acks.publish(send)
		if err != nil {
			errs[i] = unavailable("publish", err)
			continue
		}
		futures[i] = sends{first: f.Ok(), last: f, sent: true}
	}
	lost := b.conn.lost()
	outage := false // the connection dropped and did not come back within reconnectGrace
	timer := time.NewTimer(resendAfter)
	defer timer.Stop()
	for i := range futures {
		f := &futures[i]
		if !f.sent || f.answered {
			continue
		}
		if down := b.storeDownErr(); down != nil { // found out during this publish: the rest need not wait either
			select {
			case a := <-f.first:
				acks[i], f.answered = *a, true
			default:
				errs[i] = down
			}
			continue
		}
		timer.Reset(resendAfter) // resendAfter without any progress
		for !f.answered && errs[i] == nil {
			lastOk, lastErr := f.pending()
			select {
			case a := <-f.first:
				acks[i], f.answered = *a, true
			case a := <-lastOk:
				acks[i], f.answered = *a, true
				select {
				case a := <-f.first: // the first send's answer too: prefer it
					acks[i] = *a
				default:
				}
			case err := <-lastErr:
				switch {
				case noLeader(err): // electing a leader: the next resend may find it
					f.last = nil // answered by nobody: nothing to wait for until the resend
				case errors.Is(err, nats.ErrDisconnected) || errors.Is(err, nats.ErrConnectionReconnecting):
					// The connection dropped under the send: the lost branch below sends it again once the client
					// has reconnected (or fails it when the server does not come back in time).
					f.last = nil
				case errors.Is(err, jetstream.ErrAsyncPublishTimeout) || f.resent:
					// Sent and unanswered (a resend's error says nothing of the first send, which may be stored).
					errs[i] = fmt.Errorf("publish: %w: %w: %w", bus.ErrUnavailable, bus.ErrUnconfirmed, err)
				default:
					errs[i] = unavailable("publish", err)
				}
			case <-timer.C:
				if why := b.diskFull(); why != "" { // no answer because the embedded store cannot write: say so now
					b.storeDown(why)
					errs[i] = b.storeDownErr()
					continue
				}
				b.resend(msgs[i:], futures[i:], acks[i:])
				timer.Reset(resendAfter)
			case <-ctx.Done():
				errs[i] = fmt.Errorf("publish: %w: %w: %w", bus.ErrUnavailable, bus.ErrUnconfirmed, ctx.Err())
			case <-lost:
				// The connection dropped with sends unanswered: a client of a cluster reconnects to another server
				// within moments, and then they are sent again, stored once by their Nats-Msg-Id. A server that does
				// not come back within reconnectGrace is an outage: the publish fails now, not at its deadline.
				if outage {
					errs[i] = fmt.Errorf("publish: %w: %w: the connection to NATS dropped before the ack", bus.ErrUnavailable, bus.ErrUnconfirmed)
					continue
				}
				grace := time.NewTimer(reconnectGrace)
				select {
				case <-b.conn.back():
					lost = b.conn.lost()
					b.resend(msgs[i:], futures[i:], acks[i:])
					timer.Reset(resendAfter)
				case <-grace.C:
					outage = true
					errs[i] = fmt.Errorf("publish: %w: %w: the connection to NATS dropped before the ack", bus.ErrUnavailable, bus.ErrUnconfirmed)
				case <-ctx.Done():
					errs[i] = fmt.Errorf("publish: %w: %w: %w", bus.ErrUnavailable, bus.ErrUnconfirmed, ctx.Err())
				}
				grace.Stop()
			}
		}
	}
	return acks
}

// sends is what publishAll knows of one message: the first send's answer, the last send (the first until a resend;
// nil once no stream answered it, until the next resend).
type sends struct {
	first    <-chan *jetstream.PubAck
	last     jetstream.PubAckFuture
	sent     bool // sent at least once (a future exists or existed)
	resent   bool
	answered bool
}

// pending returns the channels of the last send's answer, nil (never ready) while there is no send to wait for.
func (f *sends) pending() (<-chan *jetstream.PubAck, <-chan error) {
	if f.last == nil {
		return nil, nil
	}
	return f.last.Ok(), f.last.Err()
}

// resend sends again the lifecycle events that have no answer yet; msgs, futures and acks are indexed alike.
func (b *JetStream) resend(msgs []*nats.Msg, futures []sends, acks []jetstream.PubAck) {
	for j := range futures {
		f := &futures[j]
		if !f.sent || f.answered || msgs[j].Header.Get(jetstream.MsgIDHeader) == "" {
			continue
		}
		select {
		case a := <-f.first: // answered meanwhile: nothing to resend
			acks[j], f.answered = *a, true
			continue
		default:
		}
		if nf, err := b.acks.publish(msgs[j]); err == nil {
			f.last, f.resent = nf, true
		}
	}
	b.stats.resent.Add(1)
}

// PublishStream implements StreamPublisher: the event goes to flovyn.streams.workflow.<key> with its tenant in the
// Flovyn-Tenant-Id header.
func (b *JetStream) PublishStream(ctx context.Context, s *event.StreamEvent) (bus.PublishResult, error) {
	res, errs := b.PublishBatch(ctx, nil, []*event.StreamEvent{s})
	return res[0], errs[0]
}

func streamMsg(s *event.StreamEvent) (*nats.Msg, error) {
	key, err := bus.StreamKey(s.TenantID, s.Key())
	if err != nil {
		return nil, err
	}
	m := &nats.Msg{Subject: subjects.StreamsPrefix + key, Header: nats.Header{}, Data: s.AppendJSON(make([]byte, 0, 128+len(s.Payload)))}
	m.Header.Set(event.TenantHeader, s.TenantID.String())
	// A stream event has no id of its own; one made for this publish lets JetStream store a resend once (see
	// resendAfter). A client that sends the event again makes another.
	m.Header.Set(jetstream.MsgIDHeader, "s:"+nuid.Next())
	return m, nil
}

// tenantHeader returns the tenant a stream message received from NATS names: its Flovyn-Tenant-Id header, else its
// Flovyn-Org-Id header (the other name, for producers that call the tenant an org); "" when it has neither. When both
// are set and differ it returns them joined by ", ", which is no UUID: the message is then invalid, never untenanted.
func tenantHeader(h nats.Header) string {
	t, o := h.Get(event.TenantHeader), h.Get(event.OrgHeader)
	switch {
	case o == "":
		return t
	case t == "":
		return o
	case strings.EqualFold(strings.TrimSpace(t), strings.TrimSpace(o)):
		return t
	}
	return t + ", " + o
}
