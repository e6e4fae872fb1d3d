package sidecar

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/flovyn/eventhook/subjects"
)

// NATSBus is the nats backend: core NATS, fire-and-forget, the original Milestone 0 behaviour. A publish is a NATS
// publish followed by a flush; nothing is stored. Subscribers are fed, as with JetStream, by one core subscription per
// tenant (and per workflow stream) with subscribers, into the same hub; sequences are this process's, so a cursor resumes
// within the hub's ring only, and a cursor of an earlier process, or from before a NATS outage, gets a reset gap. Event
// ids are deduplicated for this sidecar's own publishes only.
//
// A stream event without a tenant goes to the owner of its key (see owners.go): with core NATS, nothing is stored, so
// the owner is the first tenant this process saw name the key in a lifecycle event: its own publishes, and, from its
// first stream subscriber on, every lifecycle event on flovyn.events.> (so a sidecar with stream subscribers receives
// the lifecycle events of the whole cluster).
// A stream event whose owner is not known yet waits in a queue of its key (memory.stream_buffer events at most) until
// a lifecycle event names it. The owners live in the process: a restart, or another sidecar, learns them anew.
type NATSBus struct {
	cfg     *Config
	log     *slog.Logger
	conn    *natsConn
	events  *hub[FlovynEvent]
	streams *hub[StreamEvent]
	linger  time.Duration
	stats   busStats
	epochs  atomic.Uint64 // the last epoch handed out

	owners     ownerTable // the tenants of stream keys, as this process has seen them named
	untenanted uuid.UUID  // streams.untenanted_tenant_id

	mu      sync.Mutex
	claims  *nats.Subscription        // every lifecycle event, for owners; from the first untenanted stream event on
	waiting map[string][]*StreamEvent // stream events without a tenant whose owner is not known yet, by key
	feeds   map[string]*coreFeed
	dedup   map[uuid.UUID]*dedupTable // per tenant: this sidecar's own publishes
	pubSeq  map[uuid.UUID]uint64      // per tenant: sequence numbers of this sidecar's publishes
	closed  bool
	dedupWn time.Duration
}

var (
	_ Bus            = (*NATSBus)(nil)
	_ Pinger         = (*NATSBus)(nil)
	_ PayloadLimiter = (*NATSBus)(nil)
	_ DropCounter    = (*NATSBus)(nil)
)

// coreFeed is one core NATS subscription feeding the hub.
type coreFeed struct {
	sub    *nats.Subscription
	refs   int
	linger *time.Timer
	topics map[topicKey]bool
}

// NewNATSBus connects to NATS (starting the embedded server when configured) and returns the bus. linger keeps a feed
// open after its last subscriber leaves (negative: close at once).
func NewNATSBus(ctx context.Context, cfg *Config, linger time.Duration, log *slog.Logger) (*NATSBus, error) {
	b := &NATSBus{cfg: cfg, log: log, linger: linger, feeds: map[string]*coreFeed{}, waiting: map[string][]*StreamEvent{},
		untenanted: cfg.UntenantedTenant(),
		dedup:      map[uuid.UUID]*dedupTable{}, pubSeq: map[uuid.UUID]uint64{}, dedupWn: cfg.JetStream.DuplicateWindow.D()}
	b.epochs.Store(bootEpoch())
	conn, err := connectNATS(ctx, cfg.NATS, "eventhook", log)
	if err != nil {
		return nil, err
	}
	b.conn = conn
	epoch := b.epochs.Load()
	arrival := new(atomic.Uint64)
	b.events = newHub[FlovynEvent](hubConfig[FlovynEvent]{capacity: cfg.Memory.EventBuffer, idleTTL: time.Hour,
		maxBytes: cfg.Memory.MaxBytes / 2, sizeOf: eventSize, encode: lifecycleWire(cfg.Events.TenantKey)}, epoch, arrival)
	b.streams = newHub[StreamEvent](hubConfig[StreamEvent]{capacity: cfg.Memory.StreamBuffer, idleTTL: time.Hour,
		maxBytes: cfg.Memory.MaxBytes / 2, sizeOf: streamSize, encode: streamFrameWire(cfg.Events.TenantKey)}, epoch, arrival)
	conn.nc.SetReconnectHandler(func(nc *nats.Conn) {
		conn.setUp(true)
		log.Info("NATS reconnected; open streams get a reset gap", slog.String("server", nc.ConnectedUrlRedacted()))
		b.restartAll()
	})
	return b, nil
}

// restartAll gives every topic a new epoch after an outage: what was published meanwhile is lost, and subscribers are
// told so with a reset gap.
func (b *NATSBus) restartAll() {
	b.mu.Lock()
	var ev, st []topicKey
	for _, f := range b.feeds {
		for k := range f.topics {
			if k.stream == "" {
				ev = append(ev, k)
			} else {
				st = append(st, k)
			}
		}
	}
	b.mu.Unlock()
	for _, k := range ev {
		b.events.restart(k, b.epochs.Add(1))
	}
	for _, k := range st {
		b.streams.restart(k, b.epochs.Add(1))
	}
}

// Ping implements Pinger: a flush round trip to the server.
func (b *NATSBus) Ping(ctx context.Context) error {
	if !b.conn.connected() {
		return fmt.Errorf("not connected to NATS")
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Second)
		defer cancel()
	}
	return b.conn.nc.FlushWithContext(ctx)
}

// MaxPayload implements PayloadLimiter.
func (b *NATSBus) MaxPayload() int { return int(b.conn.nc.MaxPayload()) }

// Dropped implements DropCounter.
func (b *NATSBus) Dropped() (invalid, untenanted uint64) {
	return b.stats.invalid.Load(), b.stats.untenanted.Load()
}

// publish sends m and flushes, failing at once while disconnected.
func (b *NATSBus) publish(ctx context.Context, m *nats.Msg) error {
	if !b.conn.connected() {
		return fmt.Errorf("publish: %w: not connected to NATS", ErrUnavailable)
	}
	if err := b.conn.nc.PublishMsg(m); err != nil {
		return unavailable("publish", err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Second)
		defer cancel()
	}
	if err := b.conn.nc.FlushWithContext(ctx); err != nil {
		return unavailable("flush", err)
	}
	return nil
}

// PublishEvent implements EventPublisher: publish and flush. An id this sidecar published for the tenant within the
// dedup window is answered as a duplicate without publishing.
func (b *NATSBus) PublishEvent(ctx context.Context, e *FlovynEvent) (PublishResult, error) {
	m, err := eventMsg(e, b.cfg.Events.TenantKey)
	if err != nil {
		return PublishResult{}, err
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return PublishResult{}, ErrClosed
	}
	d := b.dedup[e.TenantID]
	if d == nil {
		d = &dedupTable{}
		b.dedup[e.TenantID] = d
	}
	now := time.Now()
	if seq, ok := d.seen(e.ID, now, b.dedupWn); ok {
		b.mu.Unlock()
		return PublishResult{Sequence: seq, Duplicate: true}, nil
	}
	b.pubSeq[e.TenantID]++
	seq := b.pubSeq[e.TenantID]
	d.add(e.ID, seq, now, 100_000)
	b.mu.Unlock()
	if err := b.publish(ctx, m); err != nil {
		b.mu.Lock()
		delete(d.ids, e.ID) // not published: a retry must go through
		b.mu.Unlock()
		return PublishResult{}, err
	}
	b.learn(e)
	return PublishResult{Sequence: seq}, nil
}

// PublishStream implements StreamPublisher.
func (b *NATSBus) PublishStream(ctx context.Context, s *StreamEvent) (PublishResult, error) {
	m, err := streamMsg(s)
	if err != nil {
		return PublishResult{}, err
	}
	if b.isClosed() {
		return PublishResult{}, ErrClosed
	}
	return PublishResult{}, b.publish(ctx, m)
}

func (b *NATSBus) isClosed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}

// acquire starts (or joins) the core subscription on subject, which feeds topic key; the caller releases it.
func (b *NATSBus) acquire(subject string, key topicKey, handler nats.MsgHandler) (*coreFeed, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, ErrClosed
	}
	f := b.feeds[subject]
	if f == nil {
		if !b.conn.connected() {
			return nil, fmt.Errorf("subscribe %s: %w: not connected to NATS", subject, ErrUnavailable)
		}
		sub, err := b.conn.nc.Subscribe(subject, handler)
		if err != nil {
			return nil, unavailable("subscribe "+subject, err)
		}
		sub.SetPendingLimits(64<<10, 64<<20)
		f = &coreFeed{sub: sub, topics: map[topicKey]bool{}}
		b.feeds[subject] = f
		if key.stream != "" {
			b.watchClaims() // its stream events may come without a tenant: learn the owners from now on
		}
	}
	if !f.topics[key] {
		f.topics[key] = true
		// A new feed, or a new tenant on a stream feed: what came before is not held, so a new epoch.
		if key.stream == "" {
			b.events.restart(key, b.epochs.Add(1))
		} else {
			b.streams.restart(key, b.epochs.Add(1))
		}
	}
	f.refs++
	if f.linger != nil {
		f.linger.Stop()
		f.linger = nil
	}
	return f, nil
}

func (b *NATSBus) release(subject string, f *coreFeed) {
	b.mu.Lock()
	defer b.mu.Unlock()
	f.refs--
	if f.refs > 0 || b.closed || b.feeds[subject] != f {
		return
	}
	stop := func() {
		_ = f.sub.Unsubscribe()
		if key, ok := strings.CutPrefix(subject, subjects.StreamsPrefix); ok {
			delete(b.waiting, key) // no subscriber left to deliver them to; under b.mu
		}
		for k := range f.topics {
			if k.stream == "" {
				b.events.removeTopic(k, nil)
			} else {
				b.streams.removeTopic(k, nil)
			}
		}
	}
	if b.linger < 0 {
		delete(b.feeds, subject)
		stop()
		return
	}
	f.linger = time.AfterFunc(b.linger, func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		if f.refs == 0 && b.feeds[subject] == f && !b.closed {
			delete(b.feeds, subject)
			stop()
		}
	})
}

// coreSub is a hub subscription that releases its feed when it ends.
type coreSub[T any] struct {
	*subscriber[T]
	once    sync.Once
	release func()
}

// Close implements Subscription.
func (s *coreSub[T]) Close() error {
	err := s.subscriber.Close()
	s.once.Do(s.release)
	return err
}

// SubscribeEvents implements EventSubscriber.
func (b *NATSBus) SubscribeEvents(ctx context.Context, p EventPattern, from Start) (Subscription[FlovynEvent], error) {
	if err := validatePattern(&p); err != nil {
		return nil, err
	}
	key := topicKey{tenant: p.TenantID}
	subject, _ := subjects.EventFilter(p.TenantID.String(), "")
	f, err := b.acquire(subject, key, func(m *nats.Msg) {
		now := time.Now()
		e, ok := decodeReceivedEvent(b.cfg.Events.DefaultSource, m.Subject, m.Data, now, func() string { return fmt.Sprintf("core/%d", now.UnixNano()) })
		if !ok || e.TenantID != p.TenantID {
			b.stats.invalid.Add(1)
			return
		}
		b.learn(e)
		var buf [3]indexKey
		b.events.publish(key, e, 0, 0, eventIndex(e, &buf), uuid.Nil, time.Now())
	})
	if err != nil {
		return nil, errorf("subscribe events", err)
	}
	s, err := b.events.subscribe(context.Background(), key, patternIndex(&p), p.matcher(), from)
	if err != nil {
		b.release(subject, f)
		return nil, errorf("subscribe events", err)
	}
	cs := &coreSub[FlovynEvent]{subscriber: s, release: func() { b.release(subject, f) }}
	if ctx.Done() != nil {
		s.stopCtx = context.AfterFunc(ctx, func() { cs.Close() })
	}
	return cs, nil
}

// SubscribeStream implements StreamSubscriber.
func (b *NATSBus) SubscribeStream(ctx context.Context, tenant uuid.UUID, key string, from Start) (Subscription[StreamEvent], error) {
	key, err := streamKey(tenant, key)
	if err != nil {
		return nil, err
	}
	tk := topicKey{tenant: tenant, stream: key}
	subject := subjects.StreamsPrefix + key
	f, err := b.acquire(subject, tk, func(m *nats.Msg) { b.onStream(subject, key, m) })
	if err != nil {
		return nil, errorf("subscribe stream", err)
	}
	s, err := b.streams.subscribe(context.Background(), tk, indexKey{}, nil, from)
	if err != nil {
		b.release(subject, f)
		return nil, errorf("subscribe stream", err)
	}
	cs := &coreSub[StreamEvent]{subscriber: s, release: func() { b.release(subject, f) }}
	if ctx.Done() != nil {
		s.stopCtx = context.AfterFunc(ctx, func() { cs.Close() })
	}
	return cs, nil
}

// onStream hands a stream event to the topic of its tenant: the one of its Flovyn-Tenant-Id header, else the owner of
// its key, else the configured fallbacks; else it waits for its owner (see NATSBus).
func (b *NATSBus) onStream(subject, key string, m *nats.Msg) {
	s, err := DecodeStreamEvent(m.Data)
	if err != nil || s.Key() != key {
		b.stats.invalid.Add(1)
		return
	}
	switch t, has, valid := headerTenant(m.Header); {
	case has && !valid:
		b.stats.invalid.Add(1)
	case has:
		b.deliverStream(key, s, []uuid.UUID{t}, time.Now())
	default:
		b.onUntenanted(subject, key, s)
	}
}

// onUntenanted delivers a stream event without a tenant. Under b.mu, so that the events of a key that waited for its
// owner are delivered before the ones after them.
func (b *NATSBus) onUntenanted(subject, key string, s *StreamEvent) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	if t, ok := b.owners.get(key); ok {
		b.deliverStream(key, s, []uuid.UUID{t}, time.Now())
		return
	}
	b.stats.untenanted.Add(1)
	switch {
	case b.untenanted != uuid.Nil:
		b.deliverStream(key, s, []uuid.UUID{b.untenanted}, time.Now())
		return
	case b.cfg.Streams.AcceptUntenanted:
		var tenants []uuid.UUID
		if f := b.feeds[subject]; f != nil {
			for k := range f.topics {
				tenants = append(tenants, k.tenant)
			}
		}
		b.deliverStream(key, s, tenants, time.Now())
		return
	}
	b.watchClaims()
	q := b.waiting[key]
	if len(q) >= b.cfg.Memory.StreamBuffer {
		q = q[1:] // the oldest is lost: core NATS keeps nothing
	}
	b.waiting[key] = append(q, s)
}

// watchClaims subscribes to every lifecycle event, to learn the owners of stream keys, unless it has already. The
// caller holds b.mu.
func (b *NATSBus) watchClaims() {
	if b.claims != nil {
		return
	}
	sub, err := b.conn.nc.Subscribe(subjects.AllEvents, b.onClaim)
	if err != nil {
		b.log.Warn("cannot watch lifecycle events for the tenants of untenanted streams", slog.Any("err", err))
		return
	}
	sub.SetPendingLimits(64<<10, 64<<20)
	b.claims = sub
}

// deliverStream hands s to the topic of each tenant of key that has one.
func (b *NATSBus) deliverStream(key string, s *StreamEvent, tenants []uuid.UUID, now time.Time) {
	legacy := s.Legacy()
	all := [1]indexKey{}
	for _, t := range tenants {
		v, ok := s.forTenant(t, legacy, b.cfg.Events.DefaultSource, now)
		if !ok {
			b.stats.invalid.Add(1)
			return
		}
		b.streams.publishIfExists(topicKey{tenant: t, stream: key}, v, all[:])
	}
}

// onClaim learns owners from a lifecycle event seen on NATS.
func (b *NATSBus) onClaim(m *nats.Msg) {
	now := time.Now()
	e, ok := decodeReceivedEvent(b.cfg.Events.DefaultSource, m.Subject, m.Data, now, func() string { return fmt.Sprintf("core/%d", now.UnixNano()) })
	if ok {
		b.learn(e)
	}
}

// learn makes e's tenant the owner of the keys e names that have none, and delivers what waited for them, in order:
// under b.mu, as onUntenanted.
func (b *NATSBus) learn(e *FlovynEvent) {
	var buf [2]string
	for _, key := range claimsOf(e, &buf) {
		if _, known := b.owners.get(key); known {
			continue // the usual case: no lock
		}
		b.mu.Lock()
		if owner, isNew := b.owners.claimNew(key, e.TenantID); isNew {
			q := b.waiting[key]
			delete(b.waiting, key)
			now := time.Now()
			for _, s := range q {
				b.deliverStream(key, s, []uuid.UUID{owner}, now)
			}
		}
		b.mu.Unlock()
	}
}

// Close implements Bus.
func (b *NATSBus) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	if b.claims != nil {
		_ = b.claims.Unsubscribe()
	}
	b.mu.Unlock()
	b.events.close()
	b.streams.close()
	b.conn.close()
	return nil
}

// Connected implements Connectivity.
func (b *NATSBus) Connected() bool { return b.conn.connected() }
