package natsbus

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flovyn/eventhook/sidecar/bus"
	"github.com/flovyn/eventhook/sidecar/event"
	"github.com/flovyn/eventhook/subjects"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
)

// Core is the nats backend: core NATS, fire-and-forget, the original Milestone 0 behaviour. A publish is a NATS
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
type Core struct {
	o       Options
	log     *slog.Logger
	conn    *natsConn
	events  *bus.Hub[event.FlovynEvent]
	streams *bus.Hub[event.StreamEvent]
	linger  time.Duration
	stats   busStats
	epochs  atomic.Uint64 // the last epoch handed out

	owners     ownerTable // the tenants of stream keys, as this process has seen them named
	untenanted uuid.UUID  // streams.untenanted_tenant_id

	mu      sync.Mutex
	claims  *nats.Subscription              // every lifecycle event, for owners; from the first untenanted stream event on
	waiting map[string][]*event.StreamEvent // stream events without a tenant whose owner is not known yet, by key
	feeds   map[string]*coreFeed
	dedup   map[uuid.UUID]*bus.DedupTable // per tenant: this sidecar's own publishes
	pubSeq  map[uuid.UUID]uint64          // per tenant: sequence numbers of this sidecar's publishes
	closed  bool
	dedupWn time.Duration
}

var (
	_ bus.Bus            = (*Core)(nil)
	_ bus.Pinger         = (*Core)(nil)
	_ bus.PayloadLimiter = (*Core)(nil)
	_ bus.DropCounter    = (*Core)(nil)
	_ bus.Connectivity   = (*Core)(nil)
)

// coreFeed is one core NATS subscription feeding the hub.
type coreFeed struct {
	sub    *nats.Subscription
	refs   int
	linger *time.Timer
	topics map[bus.TopicKey]bool
}

// NewCore connects to NATS (starting the embedded server when o.Conn says so) and returns the bus. It reads o.Conn,
// o.Feed, o.TenantKey, o.DefaultSource, the untenanted rules and o.Linger (a feed's linger after its last subscriber;
// 0: a minute). It returns the connection's error when NATS cannot be reached.
func NewCore(ctx context.Context, o Options, log *slog.Logger) (*Core, error) {
	o = o.withDefaults()
	if o.Linger == 0 {
		o.Linger = time.Minute
	}
	b := &Core{o: o, log: log, linger: o.Linger, feeds: map[string]*coreFeed{}, waiting: map[string][]*event.StreamEvent{},
		untenanted: o.UntenantedTenant,
		dedup:      map[uuid.UUID]*bus.DedupTable{}, pubSeq: map[uuid.UUID]uint64{}, dedupWn: o.Feed.DedupWindow}
	b.stats.log = log
	b.epochs.Store(bus.NewEpoch())
	conn, err := connectNATS(ctx, o.Conn, "eventhook", log)
	if err != nil {
		return nil, err
	}
	b.conn = conn
	epoch := b.epochs.Load()
	arrival := new(atomic.Uint64)
	b.events = bus.NewHub[event.FlovynEvent](bus.HubConfig[event.FlovynEvent]{Capacity: o.Feed.EventBuffer, IdleTTL: time.Hour,
		MaxBytes: o.Feed.MaxBytes / 2, SizeOf: bus.EventSize, Encode: o.Feed.Encoders.Event}, epoch, arrival)
	b.streams = bus.NewHub[event.StreamEvent](bus.HubConfig[event.StreamEvent]{Capacity: o.Feed.StreamBuffer, IdleTTL: time.Hour,
		MaxBytes: o.Feed.MaxBytes / 2, SizeOf: bus.StreamSize, Encode: o.Feed.Encoders.Stream}, epoch, arrival)
	conn.nc.SetReconnectHandler(func(nc *nats.Conn) {
		conn.setUp(true)
		log.Info("NATS reconnected; open streams get a reset gap", slog.String("server", nc.ConnectedUrlRedacted()))
		b.restartAll()
	})
	return b, nil
}

// restartAll gives every topic a new epoch after an outage: what was published meanwhile is lost, and subscribers are
// told so with a reset gap.
func (b *Core) restartAll() {
	b.mu.Lock()
	var ev, st []bus.TopicKey
	for _, f := range b.feeds {
		for k := range f.topics {
			if k.Stream == "" {
				ev = append(ev, k)
			} else {
				st = append(st, k)
			}
		}
	}
	b.mu.Unlock()
	for _, k := range ev {
		b.events.Restart(k, b.epochs.Add(1))
	}
	for _, k := range st {
		b.streams.Restart(k, b.epochs.Add(1))
	}
}

// Ping implements Pinger: a flush round trip to the server.
func (b *Core) Ping(ctx context.Context) error {
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
func (b *Core) MaxPayload() int { return int(b.conn.nc.MaxPayload()) }

// Dropped implements DropCounter.
func (b *Core) Dropped() (invalid, untenanted uint64) {
	return b.stats.invalid.Load(), b.stats.untenanted.Load()
}

// publish sends m and flushes, failing at once while disconnected.
func (b *Core) publish(ctx context.Context, m *nats.Msg) error {
	if !b.conn.connected() {
		return fmt.Errorf("publish: %w: not connected to NATS", bus.ErrUnavailable)
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
func (b *Core) PublishEvent(ctx context.Context, e *event.FlovynEvent) (bus.PublishResult, error) {
	m, err := eventMsg(e, b.o.TenantKey)
	if err != nil {
		return bus.PublishResult{}, err
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return bus.PublishResult{}, bus.ErrClosed
	}
	d := b.dedup[e.TenantID]
	if d == nil {
		d = &bus.DedupTable{}
		b.dedup[e.TenantID] = d
	}
	now := time.Now()
	if seq, ok := d.Seen(e.ID, now, b.dedupWn); ok {
		b.mu.Unlock()
		return bus.PublishResult{Sequence: seq, Duplicate: true}, nil
	}
	b.pubSeq[e.TenantID]++
	seq := b.pubSeq[e.TenantID]
	d.Add(e.ID, seq, now, 100_000)
	b.mu.Unlock()
	if err := b.publish(ctx, m); err != nil {
		b.mu.Lock()
		d.Forget(e.ID) // not published: a retry must go through
		b.mu.Unlock()
		return bus.PublishResult{}, err
	}
	b.learn(e)
	return bus.PublishResult{Sequence: seq}, nil
}

// PublishStream implements StreamPublisher.
func (b *Core) PublishStream(ctx context.Context, s *event.StreamEvent) (bus.PublishResult, error) {
	m, err := streamMsg(s)
	if err != nil {
		return bus.PublishResult{}, err
	}
	if b.isClosed() {
		return bus.PublishResult{}, bus.ErrClosed
	}
	return bus.PublishResult{}, b.publish(ctx, m)
}

func (b *Core) isClosed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}

// acquire starts (or joins) the core subscription on subject, which feeds topic key; the caller releases it.
func (b *Core) acquire(subject string, key bus.TopicKey, handler nats.MsgHandler) (*coreFeed, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, bus.ErrClosed
	}
	f := b.feeds[subject]
	if f == nil {
		if !b.conn.connected() {
			return nil, fmt.Errorf("subscribe %s: %w: not connected to NATS", subject, bus.ErrUnavailable)
		}
		sub, err := b.conn.nc.Subscribe(subject, handler)
		if err != nil {
			return nil, unavailable("subscribe "+subject, err)
		}
		sub.SetPendingLimits(64<<10, 64<<20)
		f = &coreFeed{sub: sub, topics: map[bus.TopicKey]bool{}}
		b.feeds[subject] = f
		if key.Stream != "" {
			b.watchClaims() // its stream events may come without a tenant: learn the owners from now on
		}
	}
	if !f.topics[key] {
		f.topics[key] = true
		// A new feed, or a new tenant on a stream feed: what came before is not held, so a new epoch.
		if key.Stream == "" {
			b.events.Restart(key, b.epochs.Add(1))
		} else {
			b.streams.Restart(key, b.epochs.Add(1))
		}
	}
	f.refs++
	if f.linger != nil {
		f.linger.Stop()
		f.linger = nil
	}
	return f, nil
}

func (b *Core) release(subject string, f *coreFeed) {
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
			if k.Stream == "" {
				b.events.RemoveTopic(k, nil)
			} else {
				b.streams.RemoveTopic(k, nil)
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
	*bus.Subscriber[T]
	once    sync.Once
	release func()
}

// Close implements Subscription.
func (s *coreSub[T]) Close() error {
	err := s.Subscriber.Close()
	s.once.Do(s.release)
	return err
}

// SubscribeEvents implements EventSubscriber.
func (b *Core) SubscribeEvents(ctx context.Context, p event.EventPattern, from bus.Start) (bus.Subscription[event.FlovynEvent], error) {
	if err := bus.ValidatePattern(&p); err != nil {
		return nil, err
	}
	key := bus.TopicKey{Tenant: p.TenantID}
	subject, _ := subjects.EventFilter(p.TenantID.String(), "")
	f, err := b.acquire(subject, key, func(m *nats.Msg) {
		now := time.Now()
		e, why := decodeReceivedEvent(b.o.DefaultSource, m.Subject, m.Data, now, func() string { return fmt.Sprintf("core/%d", now.UnixNano()) })
		if why == "" && e.TenantID != p.TenantID {
			why = dropOtherTenant
		}
		if why != "" {
			b.stats.dropInvalid(m.Subject, why)
			return
		}
		b.learn(e)
		var buf [3]bus.IndexKey
		b.events.Publish(key, e, 0, 0, bus.EventIndex(e, &buf), uuid.Nil, time.Now())
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe events: %w", err)
	}
	s, err := b.events.Subscribe(context.Background(), key, bus.PatternIndex(&p), p.Matcher(), from)
	if err != nil {
		b.release(subject, f)
		return nil, fmt.Errorf("subscribe events: %w", err)
	}
	cs := &coreSub[event.FlovynEvent]{Subscriber: s, release: func() { b.release(subject, f) }}
	s.CloseWhenDone(ctx, func() { cs.Close() })
	return cs, nil
}

// SubscribeStream implements StreamSubscriber.
func (b *Core) SubscribeStream(ctx context.Context, tenant uuid.UUID, key string, from bus.Start) (bus.Subscription[event.StreamEvent], error) {
	key, err := bus.StreamKey(tenant, key)
	if err != nil {
		return nil, err
	}
	tk := bus.TopicKey{Tenant: tenant, Stream: key}
	subject := subjects.StreamsPrefix + key
	f, err := b.acquire(subject, tk, func(m *nats.Msg) { b.onStream(subject, key, m) })
	if err != nil {
		return nil, fmt.Errorf("subscribe stream: %w", err)
	}
	s, err := b.streams.Subscribe(context.Background(), tk, bus.IndexKey{}, nil, from)
	if err != nil {
		b.release(subject, f)
		return nil, fmt.Errorf("subscribe stream: %w", err)
	}
	cs := &coreSub[event.StreamEvent]{Subscriber: s, release: func() { b.release(subject, f) }}
	s.CloseWhenDone(ctx, func() { cs.Close() })
	return cs, nil
}

// onStream hands a stream event to the topic of its tenant: the one of its Flovyn-Tenant-Id header, else the owner of
// its key, else the configured fallbacks; else it waits for its owner (see Core).
func (b *Core) onStream(subject, key string, m *nats.Msg) {
	s, err := event.DecodeStreamEvent(m.Data)
	switch {
	case err != nil:
		b.stats.dropInvalid(m.Subject, dropNotEvent)
		return
	case s.Key() != key:
		b.stats.dropInvalid(m.Subject, dropWrongKey)
		return
	}
	switch t, has, valid := headerTenant(m.Header); {
	case has && !valid:
		b.stats.dropInvalid(m.Subject, dropBadHeader)
	case has:
		b.deliverStream(key, s, []uuid.UUID{t}, time.Now())
	default:
		b.onUntenanted(subject, key, s)
	}
}

// onUntenanted delivers a stream event without a tenant. Under b.mu, so that the events of a key that waited for its
// owner are delivered before the ones after them.
func (b *Core) onUntenanted(subject, key string, s *event.StreamEvent) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	if t, ok := b.owners.get(key); ok {
		b.deliverStream(key, s, []uuid.UUID{t}, time.Now())
		return
	}
	switch {
	case b.untenanted != uuid.Nil:
		b.stats.untenanted.Add(1)
		b.deliverStream(key, s, []uuid.UUID{b.untenanted}, time.Now())
		return
	case b.o.AcceptUntenanted:
		b.stats.untenanted.Add(1)
		var tenants []uuid.UUID
		if f := b.feeds[subject]; f != nil {
			for k := range f.topics {
				tenants = append(tenants, k.Tenant)
			}
		}
		b.deliverStream(key, s, tenants, time.Now())
		return
	}
	b.watchClaims()
	b.stats.dropUntenanted(subject, dropHeldNoTenant)
	q := b.waiting[key]
	if len(q) >= b.o.Feed.StreamBuffer {
		q = q[1:] // the oldest is lost: core NATS keeps nothing
		b.stats.report(subject, dropNoTenant+": the oldest of those waiting was lost (memory.stream_buffer)")
	}
	b.waiting[key] = append(q, s)
}

// watchClaims subscribes to every lifecycle event, to learn the owners of stream keys, unless it has already. The
// caller holds b.mu.
func (b *Core) watchClaims() {
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
func (b *Core) deliverStream(key string, s *event.StreamEvent, tenants []uuid.UUID, now time.Time) {
	legacy := s.Legacy()
	all := [1]bus.IndexKey{}
	for _, t := range tenants {
		v, ok := s.ForTenant(t, legacy, b.o.DefaultSource, now)
		if !ok {
			b.stats.dropInvalid(subjects.StreamsPrefix+key, dropBadLegacy)
			return
		}
		b.streams.PublishIfExists(bus.TopicKey{Tenant: t, Stream: key}, v, all[:])
	}
}

// onClaim learns owners from a lifecycle event seen on NATS.
func (b *Core) onClaim(m *nats.Msg) {
	now := time.Now()
	if e, why := decodeReceivedEvent(b.o.DefaultSource, m.Subject, m.Data, now, func() string { return fmt.Sprintf("core/%d", now.UnixNano()) }); why == "" {
		b.learn(e)
	}
}

// learn makes e's tenant the owner of the keys e names that have none, and delivers what waited for them, in order:
// under b.mu, as onUntenanted.
func (b *Core) learn(e *event.FlovynEvent) {
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
func (b *Core) Close() error {
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
	b.events.Close()
	b.streams.Close()
	b.conn.close()
	return nil
}

// Connected implements Connectivity.
func (b *Core) Connected() bool { return b.conn.connected() }

// Conn returns the bus' NATS connection, to publish on NATS as another producer would (tests, tools). The bus owns it:
// do not close or drain it.
func (b *Core) Conn() *nats.Conn { return b.conn.nc }

// Owner returns the tenant that owns the stream key as this process has learnt it (see owners.go), and whether one
// does. The error is always nil.
func (b *Core) Owner(_ context.Context, key string) (uuid.UUID, bool, error) {
	o, ok := b.owners.get(key)
	return o, ok, nil
}
