package natsbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flovyn/eventhook/sidecar/bus"
	"github.com/flovyn/eventhook/sidecar/event"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The JetStream backend stores every lifecycle event in the stream FLOVYN_EVENTS (flovyn.events.>, file storage) and
// every generic stream event in FLOVYN_STREAMS (flovyn.streams.workflow.>, memory storage unless
// jetstream.streams_storage says file), acknowledged before the client gets 2xx. Flovyn's own server may own
// FLOVYN_STREAMS: jsstreams.go creates, adopts or verifies the streams at start.
//
// Live delivery never opens a NATS consumer per SSE client: one ordered consumer per tenant with subscribers (and one
// per workflow stream with subscribers) feeds the in-process hub, which fans out with the same indexed fan-out as the
// memory backend. Whatever reaches the subjects is delivered, whoever published it.
//
// Replay (a cursor, earliest, a late subscriber, a subscriber overtaken by live traffic) reads the store, then attaches
// to the hub under the topic's lock at a sequence both sides agree on, so there is no hole and no repeat at the seam.
//
// Per-workflow replay uses an index kept in JetStream and written by a shared durable consumer: see jsindex.go.

// IndexPrefix starts the subjects of the per-workflow index.
const IndexPrefix = "flovyn.index."

// JetStream is the jetstream backend. See the package documentation and the comments of this file for its design.
type JetStream struct {
	o      Options
	log    *slog.Logger
	conn   *natsConn
	js     jetstream.JetStream
	events *jsKind[event.FlovynEvent]
	stream *jsKind[event.StreamEvent]
	index  jetstream.Stream
	// indexer is the durable consumer that writes the per-workflow index (see jsindex.go); nil when it could not be made.
	indexer jetstream.Consumer
	// acks publishes asynchronously and matches the PubAcks (jsacks.go): the publish path and the indexer use it.
	acks *acker

	stats busStats
	store storeHealth // whether the store can write (jsstore.go)

	owners     ownerTable // the tenants of stream keys, read from the index (jsowner.go)
	untenanted uuid.UUID  // streams.untenanted_tenant_id

	ctx    context.Context // cancelled by Close: ends replay workers
	cancel context.CancelFunc
	wg     sync.WaitGroup // replay workers

	mu     sync.Mutex
	feeds  map[string]*jsFeed // by filter subject
	closed bool
}

var (
	_ bus.Bus            = (*JetStream)(nil)
	_ bus.BatchPublisher = (*JetStream)(nil)
	_ bus.Pinger         = (*JetStream)(nil)
	_ bus.PayloadLimiter = (*JetStream)(nil)
	_ bus.DropCounter    = (*JetStream)(nil)
	_ bus.ResendCounter  = (*JetStream)(nil)
	_ bus.Connectivity   = (*JetStream)(nil)
)

// Resent implements ResendCounter.
func (b *JetStream) Resent() uint64 { return b.stats.resent.Load() }

// Dropped implements DropCounter.
func (b *JetStream) Dropped() (invalid, untenanted uint64) {
	return b.stats.invalid.Load(), b.stats.untenanted.Load()
}

// jsKind is one family of feeds: lifecycle events or generic streams.
type jsKind[T any] struct {
	stream jetstream.Stream
	name   string
	hub    *bus.Hub[T]
	epoch  uint64
}

// NewJetStream connects to NATS (starting the embedded server when configured), creates or verifies the streams, and
// returns the bus. It returns an error saying what failed: the server, the connection, or the streams.
func NewJetStream(ctx context.Context, o Options, log *slog.Logger) (*JetStream, error) {
	o = o.withDefaults()
	if o.Linger == 0 {
		o.Linger = 30 * time.Second
	}
	conn, err := connectNATS(ctx, o.Conn, "eventhook", log)
	if err != nil {
		return nil, err
	}
	b, err := newJetStream(ctx, o, log, conn)
	if err != nil {
		conn.close()
		return nil, err
	}
	return b, nil
}

func newJetStream(ctx context.Context, o Options, log *slog.Logger, conn *natsConn) (*JetStream, error) {
	// An ack that never comes (its stream leader died) is given up after publish_timeout, so that its pending entry
	// does not stay behind: nats.go stalls publishing when 4000 are pending.
	js, err := jetstream.New(conn.nc, jetstream.WithPublishAsyncTimeout(o.Streams.PublishTimeout))
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, max(o.Conn.ConnectTimeout, 5*time.Second))
	defer cancel()
	evs, idx, sts, err := ensureStreams(ctx, js, o, log)
	if err != nil {
		return nil, err
	}
	arrival := new(atomic.Uint64)

	b := &JetStream{o: o, log: log, conn: conn, js: js, index: idx, feeds: map[string]*jsFeed{},
		untenanted: o.UntenantedTenant}
	b.stats.log = log
	b.events = &jsKind[event.FlovynEvent]{stream: evs, name: o.Streams.EventsStream, epoch: streamEpoch(evs)}
	// A subscriber may have 4 × the ring pending before it is overtaken: its queue holds 48-byte references to shared entries,
	// and an overtaken subscriber is re-fed from the store through a consumer of its own, which under a burst to many
	// subscribers costs far more than the queue (see README, "Live delivery").
	evCfg := bus.HubConfig[event.FlovynEvent]{Capacity: o.Feed.EventBuffer, Pending: 4 * o.Feed.EventBuffer, IdleTTL: time.Hour,
		MaxBytes: o.Feed.MaxBytes / 2, SizeOf: bus.EventSize, Encode: o.Feed.Encoders.Event}
	stCfg := bus.HubConfig[event.StreamEvent]{Capacity: o.Feed.StreamBuffer, Pending: 4 * o.Feed.StreamBuffer, IdleTTL: time.Hour,
		MaxBytes: o.Feed.MaxBytes / 2, SizeOf: bus.StreamSize, Encode: o.Feed.Encoders.Stream}
	b.events.hub = bus.NewHub[event.FlovynEvent](evCfg, b.events.epoch, arrival)
	b.stream = &jsKind[event.StreamEvent]{stream: sts, name: o.Streams.StreamsStream, epoch: streamEpoch(sts)}
	b.stream.hub = bus.NewHub[event.StreamEvent](stCfg, b.stream.epoch, arrival)
	b.ctx, b.cancel = context.WithCancel(context.Background())
	if b.acks, err = newAcker(b.ctx, &b.wg, conn.nc, o.Streams.PublishTimeout); err != nil {
		b.cancel()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	if err := b.startIndexer(ctx); err != nil {
		// Late workflow subscribers then scan the tenant's subjects instead: slower, still complete.
		log.Warn("the per-workflow indexer could not start; late subscribers will scan", slog.Any("err", err))
	}
	return b, nil
}

// streamEpoch identifies a stream's numbering: its creation time. A stream deleted and created again numbers anew, and
// cursors of the old one are recognised (a reset gap).
func streamEpoch(s jetstream.Stream) uint64 {
	return uint64(s.CachedInfo().Created.UnixMilli())
}

// indexStreamName is the name of the per-workflow index stream.
func indexStreamName(o *StreamOptions) string { return o.EventsStream + "_INDEX" }

// Ping implements Pinger: it stores a probe, so that a store that cannot write is not ready (see jsstore.go).
func (b *JetStream) Ping(ctx context.Context) error {
	if !b.conn.connected() {
		return errors.New("not connected to NATS")
	}
	return b.probe(ctx) // a store that cannot write is not ready, though it may still answer reads
}

// MaxPayload implements PayloadLimiter.
func (b *JetStream) MaxPayload() int { return int(b.conn.nc.MaxPayload()) }

// unavailable maps a NATS error to ErrUnavailable (keeping the cause) unless it is the caller's context.
func unavailable(op string, err error) error {
	if errors.Is(err, context.Canceled) {
		return err
	}
	return fmt.Errorf("%s: %w: %w", op, bus.ErrUnavailable, err)
}

func (b *JetStream) isClosed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}

// Close implements Bus: it ends every subscription and feed, waits for replay workers, drains the connection and shuts
// the embedded server down.
func (b *JetStream) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	feeds := b.feeds
	b.feeds = map[string]*jsFeed{}
	b.mu.Unlock()
	b.cancel() // ends the indexer (jsindex.go) and the replay workers
	b.events.hub.Close()
	b.stream.hub.Close()
	for _, f := range feeds {
		f.stop()
	}
	b.wg.Wait()
	b.conn.close()
	return nil
}

// Connected implements Connectivity.
func (b *JetStream) Connected() bool { return b.conn.connected() }

// Conn returns the bus' NATS connection, to publish on NATS as another producer would (tests, tools). The bus owns it:
// do not close or drain it.
func (b *JetStream) Conn() *nats.Conn { return b.conn.nc }

// Owner returns the tenant that owns the stream key as the per-workflow index says (see owners.go), and whether one
// does. It returns the store's error when the index cannot be read.
func (b *JetStream) Owner(ctx context.Context, key string) (uuid.UUID, bool, error) {
	return b.lookupOwner(ctx, key)
}
