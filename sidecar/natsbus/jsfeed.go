package natsbus

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/flovyn/eventhook/sidecar/bus"
	"github.com/flovyn/eventhook/sidecar/event"
	"github.com/flovyn/eventhook/subjects"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// jsFeed is one ordered consumer that feeds the hub: the lifecycle events of one tenant (flovyn.events.<tenant>.>), or
// one generic stream (flovyn.streams.workflow.<key>), whose topics are per tenant. It lives while it has subscribers,
// and Options.Linger after.
type jsFeed struct {
	b       *JetStream
	subject string
	isEvent bool
	tenant  uuid.UUID // event feeds
	key     string    // stream feeds

	ready chan struct{} // closed when started (or failed: err)
	err   error
	cc    jetstream.ConsumeContext
	cons  jetstream.Consumer
	sname string

	// Guarded by b.mu.
	refs   int
	linger *time.Timer

	// mu serialises the handler with the creation of stream topics, so that a topic created at head+1 misses nothing.
	held      int         // messages of the current burst whose wake-ups are held (event feeds; handler only)
	holdTimer *time.Timer // ends a hold that no further message ends
	mu        sync.Mutex
	head      uint64                                      // last stream sequence handled
	topic     *bus.Topic[event.FlovynEvent]               // event feeds: the topic it feeds
	tenants   map[uuid.UUID]*bus.Topic[event.StreamEvent] // stream feeds: the topic of each tenant with subscribers

	// Stream feeds: the owner of the key, for events without a tenant (jsowner.go). Guarded by mu.
	owner      uuid.UUID                               // uuid.Nil until known
	looked     bool                                    // the index was asked
	unresolved bool                                    // an event without a tenant waits for the owner
	watching   bool                                    // watchOwner runs
	subs       map[*jsSub[event.StreamEvent]]uuid.UUID // the feed's subscriptions, with their tenant

	ctx    context.Context // cancelled when the feed stops: ends watchOwner
	cancel context.CancelFunc
}

// acquireEventFeed returns the running feed of tenant's lifecycle events, starting it when needed; the caller releases it.
func (b *JetStream) acquireEventFeed(ctx context.Context, tenant uuid.UUID) (*jsFeed, error) {
	subj, _ := subjects.EventFilter(tenant.String(), "")
	return b.acquireFeed(ctx, subj, func(f *jsFeed) { f.isEvent, f.tenant = true, tenant })
}

// acquireStreamFeed returns the running feed of the generic stream key with a topic for tenant.
func (b *JetStream) acquireStreamFeed(ctx context.Context, tenant uuid.UUID, key string) (*jsFeed, error) {
	f, err := b.acquireFeed(ctx, subjects.StreamsPrefix+key, func(f *jsFeed) {
		f.key, f.tenants, f.subs = key, map[uuid.UUID]*bus.Topic[event.StreamEvent]{}, map[*jsSub[event.StreamEvent]]uuid.UUID{}
	})
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	if f.tenants[tenant] == nil {
		f.tenants[tenant] = b.stream.hub.ResetTopic(bus.TopicKey{Tenant: tenant, Stream: key}, f.head+1)
	}
	f.mu.Unlock()
	return f, nil
}

func (b *JetStream) acquireFeed(ctx context.Context, subject string, init func(*jsFeed)) (*jsFeed, error) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, bus.ErrClosed
	}
	f := b.feeds[subject]
	if f != nil {
		f.refs++
		if f.linger != nil {
			f.linger.Stop()
			f.linger = nil
		}
		b.mu.Unlock()
		select {
		case <-f.ready:
		case <-ctx.Done():
			b.releaseFeed(f)
			return nil, ctx.Err()
		}
		if f.err != nil {
			b.releaseFeed(f)
			return nil, f.err
		}
		return f, nil
	}
	f = &jsFeed{b: b, subject: subject, ready: make(chan struct{}), refs: 1}
	f.ctx, f.cancel = context.WithCancel(b.ctx)
	init(f)
	b.feeds[subject] = f
	b.mu.Unlock()
	f.err = f.start(ctx)
	close(f.ready)
	if f.err != nil {
		f.cancel()
		b.mu.Lock()
		if b.feeds[subject] == f {
			delete(b.feeds, subject)
		}
		b.mu.Unlock()
		return nil, f.err
	}
	return f, nil
}

// start reads the stream's last sequence S-1, makes the topic(s) start at S, and consumes from S: the topics see every
// message from S on, and everything before S is in the store.
func (f *jsFeed) start(ctx context.Context) error {
	kindStream := f.b.stream.stream
	name := f.b.stream.name
	if f.isEvent {
		kindStream, name = f.b.events.stream, f.b.events.name
	}
	if !f.b.conn.connected() {
		return fmt.Errorf("feed %s: %w: not connected to NATS", f.subject, bus.ErrUnavailable)
	}
	info, err := kindStream.Info(ctx)
	if err != nil {
		return unavailable("feed "+f.subject, err)
	}
	start := info.State.LastSeq + 1
	f.head = start - 1
	if f.isEvent {
		f.topic = f.b.events.hub.ResetTopic(bus.TopicKey{Tenant: f.tenant}, start)
	}
	cons, err := f.b.js.OrderedConsumer(ctx, name, jetstream.OrderedConsumerConfig{
		FilterSubjects:    []string{f.subject},
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       start,
		InactiveThreshold: 10 * time.Second,
	})
	if err != nil {
		return unavailable("feed "+f.subject, err)
	}
	f.cons, f.sname = cons, name
	handler := f.handleStream
	if f.isEvent {
		handler = f.handleEvent
	}
	f.cc, err = cons.Consume(handler, jetstream.PullExpiry(5*time.Second), jetstream.PullHeartbeat(time.Second),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			f.b.log.Debug("feed", slog.String("subject", f.subject), slog.Any("err", err))
		}))
	if err != nil {
		return unavailable("feed "+f.subject, err)
	}
	return nil
}

func (f *jsFeed) handleEvent(msg jetstream.Msg) {
	if f.b.o.feedHook != nil {
		f.b.o.feedHook()
	}
	md, err := msg.Metadata()
	if err != nil {
		f.endHold()
		return
	}
	e, why := f.b.decodeEventMsg(msg.Subject(), msg.Data(), md)
	if why == "" && e.TenantID != f.tenant {
		why = dropOtherTenant
	}
	if why != "" {
		f.b.stats.dropInvalid(msg.Subject(), why)
		f.endHold()
		return
	}
	key := bus.TopicKey{Tenant: f.tenant}
	// While the consumer says more messages are right behind, hold the subscribers' wake-ups (at most 256 messages, at
	// most 2 ms): a burst then costs each subscriber one wake-up and one write, not one per event.
	hold := md.NumPending > 0 && f.held < 256
	if hold && f.held == 0 {
		f.b.events.hub.SetHolding(key, true)
		if f.holdTimer == nil {
			f.holdTimer = time.AfterFunc(2*time.Millisecond, func() { f.b.events.hub.SetHolding(key, false) })
		} else {
			f.holdTimer.Reset(2 * time.Millisecond)
		}
	}
	var buf [3]bus.IndexKey
	f.b.events.hub.Publish(key, e, md.Sequence.Stream, uint64(md.Timestamp.UnixNano()), bus.EventIndex(e, &buf), uuid.Nil, time.Now())
	if hold {
		f.held++
	} else if f.held > 0 {
		f.held = 0
		f.b.events.hub.SetHolding(key, false)
	}
}

// endHold wakes the subscribers whose wake-ups a burst held.
func (f *jsFeed) endHold() {
	if f.held > 0 {
		f.held = 0
		f.b.events.hub.SetHolding(bus.TopicKey{Tenant: f.tenant}, false)
	}
}

// decodeEventMsg reads an event received from JetStream (see decodeReceivedEvent).
func (b *JetStream) decodeEventMsg(subject string, data []byte, md *jetstream.MsgMetadata) (*event.FlovynEvent, string) {
	return decodeReceivedEvent(b.o.DefaultSource, subject, data, md.Timestamp, func() string {
		return fmt.Sprintf("%s/%d/%d", md.Stream, md.Timestamp.UnixNano(), md.Sequence.Stream)
	})
}

// decodeReceivedEvent reads an event received from NATS. Another producer's event may lack what the sidecar stamps: the
// tenant comes from the subject, the id from idSeed (the stream position; called only for an event without id), the
// time from ts. An event whose body names another tenant or type than its subject, or that is not valid, is dropped:
// the reason says which ("" for an event to deliver).
func decodeReceivedEvent(defaultSource, subject string, data []byte, ts time.Time, idSeed func() string) (*event.FlovynEvent, string) {
	tenantStr, eventType, err := subjects.ParseEvent(subject)
	if err != nil {
		return nil, dropNotEvent
	}
	tenant, err := uuid.Parse(tenantStr)
	if err != nil {
		return nil, dropNotEvent
	}
	if !utf8.Valid(data) {
		return nil, dropNotUTF8
	}
	e, err := event.DecodeEvent(data)
	if err != nil {
		return nil, dropNotEvent
	}
	if e.TenantID == uuid.Nil {
		e.TenantID = tenant
	}
	if e.EventType == "" {
		e.EventType = eventType
	}
	if e.ID == uuid.Nil {
		e.ID = uuid.NewSHA1(event.LegacyNamespace, []byte(idSeed()))
	}
	e.Stamp(defaultSource, ts)
	switch {
	case e.TenantID != tenant || e.EventType != eventType:
		return nil, dropOtherTenant
	case e.Validate() != nil:
		return nil, dropNotEvent
	}
	return e, ""
}

func (f *jsFeed) handleStream(msg jetstream.Msg) {
	if f.b.o.feedHook != nil {
		f.b.o.feedHook()
	}
	md, err := msg.Metadata()
	if err != nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.head = md.Sequence.Stream
	s, err := event.DecodeStreamEvent(msg.Data())
	switch {
	case err != nil:
		f.b.stats.dropInvalid(msg.Subject(), dropNotEvent)
		return
	case s.Key() != f.key:
		f.b.stats.dropInvalid(msg.Subject(), dropWrongKey)
		return
	}
	var buf [1]uuid.UUID
	tenants := buf[:0]
	switch t, has, valid := headerTenant(msg.Headers()); {
	case has && !valid:
		f.b.stats.dropInvalid(msg.Subject(), dropBadHeader)
		return
	case has:
		tenants = append(tenants, t)
	default:
		tenants = f.untenantedTenants(tenants)
	}
	var legacy *event.StateEventPayload
	parsed := false
	all := [1]bus.IndexKey{}
	for _, t := range tenants {
		if f.tenants[t] == nil {
			continue // no subscriber of this tenant on this stream
		}
		if !parsed {
			legacy, parsed = s.Legacy(), true
		}
		v, ok := s.ForTenant(t, legacy, f.b.o.DefaultSource, md.Timestamp)
		if !ok {
			f.b.stats.dropInvalid(msg.Subject(), dropBadLegacy)
			return
		}
		f.b.stream.hub.Publish(bus.TopicKey{Tenant: t, Stream: f.key}, v, md.Sequence.Stream, uint64(md.Timestamp.UnixNano()), all[:], uuid.Nil, time.Now())
	}
}

// decodeStored reads a stored stream event of the feed's key for a replay to tenant: nil, false when it is not
// tenant's (see owners.go) or not valid.
func (f *jsFeed) decodeStored(tenant uuid.UUID, h nats.Header, data []byte, ts time.Time) (*event.StreamEvent, bool) {
	v, err := event.DecodeStreamEvent(data)
	if err != nil || v.Key() != f.key {
		return nil, false
	}
	switch t, has, valid := headerTenant(h); {
	case has && (!valid || t != tenant):
		return nil, false
	case !has && !f.untenantedFor(tenant):
		return nil, false
	}
	return v.ForTenant(tenant, v.Legacy(), f.b.o.DefaultSource, ts)
}

// releaseFeed drops a reference; the last one stops the feed after Options.Linger.
func (b *JetStream) releaseFeed(f *jsFeed) {
	b.mu.Lock()
	defer b.mu.Unlock()
	f.refs--
	if f.refs > 0 || b.closed || b.feeds[f.subject] != f {
		return
	}
	if b.o.Linger < 0 {
		delete(b.feeds, f.subject)
		go f.stop() // not under b.mu: stop waits for the handler
		return
	}
	f.linger = time.AfterFunc(b.o.Linger, func() {
		b.mu.Lock()
		idle := f.refs == 0 && b.feeds[f.subject] == f && !b.closed
		if idle {
			delete(b.feeds, f.subject)
		}
		b.mu.Unlock()
		if idle {
			f.stop()
		}
	})
}

// stop ends the consumer, waits until its handler has returned, and drops the topics it fed: they no longer see every
// message.
func (f *jsFeed) stop() {
	<-f.ready
	f.cancel()
	if f.cc != nil {
		f.cc.Stop()
		select {
		case <-f.cc.Closed():
		case <-time.After(5 * time.Second):
		}
		if f.holdTimer != nil {
			f.holdTimer.Stop()
		}
		f.b.deleteConsumer(f.sname, f.cons)
	}
	if f.isEvent {
		if f.topic != nil {
			f.b.events.hub.RemoveTopic(bus.TopicKey{Tenant: f.tenant}, f.topic)
		}
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for t, tp := range f.tenants {
		f.b.stream.hub.RemoveTopic(bus.TopicKey{Tenant: t, Stream: f.key}, tp)
	}
}

// deleteConsumer removes the server side of an ordered consumer that is done, rather than leaving it to expire.
func (b *JetStream) deleteConsumer(stream string, cons jetstream.Consumer) {
	info := cons.CachedInfo()
	if info == nil || !b.conn.connected() {
		return // it expires by its inactive threshold
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = b.js.DeleteConsumer(ctx, stream, info.Name)
}
