package natsbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flovyn/eventhook/sidecar/bus"
	"github.com/flovyn/eventhook/sidecar/event"
	"github.com/flovyn/eventhook/subjects"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// replayBatch is how many stored messages a replay reads at a time, and how many it keeps waiting for the reader.
const replayBatch = 256

// jsSub is a JetStream subscription: deliveries from the store (prefix) until it joins the hub's live feed (live). When
// live traffic overtakes it, it goes back to the store from its last delivery: no gap, no hole.
type jsSub[T any] struct {
	b      *JetStream
	kind   *jsKind[T]
	feed   *jsFeed
	key    bus.TopicKey
	idx    bus.IndexKey
	match  func(*T) bool
	scan   string // the filter subject of a store scan
	index  string // the index subject of a per-workflow or per-task replay; "" to scan
	decode func(subject string, h nats.Header, data []byte, md *jetstream.MsgMetadata) (*T, bool)

	notify  atomic.Pointer[func()] // shared with the live hub subscriber
	done    chan struct{}
	ctx     context.Context // cancelled by Close: ends the replay worker
	cancel  context.CancelFunc
	stopCtx func() bool
	stopBus func() bool
	onClose func() // when set, runs once the subscription is closed

	mu       sync.Mutex
	prefix   []bus.Entry[T]
	live     *bus.Subscriber[T]
	last     uint64 // sequence of the last delivery
	examined uint64 // every sequence up to here is delivered, in prefix, or does not match
	gap      *event.Gap
	checked  uint64        // the position the store was last asked about (see replay)
	drained  chan struct{} // signalled when the prefix empties: the replay worker reads on
	restart  bool          // set by refeed while a replay runs: it starts over after the last delivery
	closed   bool
}

// errRefeed ends a replay pass that refeed made obsolete: the worker starts another after the last delivery.
var errRefeed = errors.New("natsbus: replay starts over")

var _ bus.Subscription[event.FlovynEvent] = (*jsSub[event.FlovynEvent])(nil)

func newJSSub[T any](b *JetStream, kind *jsKind[T], feed *jsFeed, key bus.TopicKey, idx bus.IndexKey, match func(*T) bool) *jsSub[T] {
	s := &jsSub[T]{b: b, kind: kind, feed: feed, key: key, idx: idx, match: match,
		done: make(chan struct{}), drained: make(chan struct{}, 1)}
	s.ctx, s.cancel = context.WithCancel(b.ctx)
	s.stopBus = context.AfterFunc(b.ctx, func() { s.Close() })
	return s
}

// begin starts the subscription at from: live at once, from the ring when it holds everything after the cursor, else
// with a replay worker reading the store.
func (s *jsSub[T]) begin(ctx context.Context, from bus.Start) {
	if ctx.Done() != nil {
		s.stopCtx = context.AfterFunc(ctx, func() { s.Close() })
	}
	after := uint64(0)
	cursor, isAfter := from.After()
	switch {
	case from.IsLive():
		s.attach(0, nil, bus.AttachLive)
		return
	case isAfter:
		if cursor.Epoch != s.kind.epoch {
			s.gap = &event.Gap{Reason: event.GapReset, Missed: -1} // another stream (or backend) numbered this cursor
		} else {
			after = cursor.Seq
			s.mu.Lock()
			s.last = after // where a refeed starts over
			s.mu.Unlock()
			if s.attach(after, nil, bus.AttachCovered) {
				return
			}
		}
	}
	s.examined = after
	s.startWorker(after)
}

// attach joins the live feed after the position; it returns false when mode refuses.
func (s *jsSub[T]) attach(after uint64, stored []bus.Entry[T], mode bus.AttachMode) bool {
	sub, merged, at, ok, err := s.kind.hub.Attach(s.key, s.idx, s.match, after, stored, mode, &s.notify)
	if err != nil || !ok {
		return false
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		sub.Close()
		return true
	}
	if s.restart { // refeed came while the replay ran: the worker reads again, and sees restart at its next push
		s.mu.Unlock()
		sub.Close()
		return false
	}
	s.prefix = append(s.prefix, merged...)
	s.live = sub
	s.examined = max(s.examined, at)
	if mode == bus.AttachLive {
		s.last = max(s.last, at) // where a refeed starts over
	}
	s.mu.Unlock()
	s.wake()
	return true
}

func (s *jsSub[T]) wake() {
	if f := s.notify.Load(); f != nil {
		(*f)()
	}
}

// SetNotify implements Subscription.
func (s *jsSub[T]) SetNotify(f func()) { s.notify.Store(&f) }

func (s *jsSub[T]) startWorker(after uint64) {
	if s.ctx.Err() != nil {
		return // closing
	}
	s.b.wg.Add(1)
	go s.run(after) // ends when the replay has joined the live feed, or when the subscription closes
}

// run replays from the store, retrying while NATS is unavailable, until it joins the live feed.
func (s *jsSub[T]) run(after uint64) {
	defer s.b.wg.Done()
	for attempt := 0; ; attempt++ {
		err := s.replay(after)
		if err == nil || s.ctx.Err() != nil {
			return
		}
		s.b.log.LogAttrs(s.ctx, slog.LevelDebug, "replay failed; retrying", slog.String("subject", s.scan), slog.Any("err", err))
		s.mu.Lock()
		after = s.examined // what was read stays read
		s.mu.Unlock()
		if errors.Is(err, errRefeed) {
			attempt = -1
			continue
		}
		select {
		case <-time.After(min(time.Duration(attempt+1)*250*time.Millisecond, 2*time.Second)):
		case <-s.ctx.Done():
			return
		}
	}
}

// replay reads the store after the position until it joins the live feed. Every pass that starts after an event (a
// resume, a re-feed of an overtaken reader or after a refeed, a retry) first asks the store whether what follows that
// event is still held, and gives an expired gap when it may not be: the events may have gone (retention, another
// writer's purge) while the reader was away. A retry from where the last check was made does not ask again.
func (s *jsSub[T]) replay(after uint64) error {
	s.mu.Lock()
	ask := after > 0 && after != s.checked
	s.mu.Unlock()
	if ask {
		expired, err := s.cursorExpired(after)
		if err != nil {
			return err
		}
		s.mu.Lock()
		s.checked = after
		if expired {
			s.gap = &event.Gap{Reason: event.GapExpired, Missed: -1}
		}
		s.mu.Unlock()
		if expired {
			s.wake()
		}
	}
	if s.index != "" {
		return s.replayIndex(after)
	}
	return s.replayScan(after)
}

// replayScan reads the stored messages of the scan subject after the position, in batches, until it can join the live
// feed without a hole.
func (s *jsSub[T]) replayScan(after uint64) error {
	cons, err := s.b.js.OrderedConsumer(s.ctx, s.kind.name, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{s.scan}, DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: after + 1,
		InactiveThreshold: 10 * time.Second,
	})
	if err != nil {
		return err
	}
	defer s.b.deleteConsumer(s.kind.name, cons)
	q := after
	for {
		batch, err := cons.FetchNoWait(replayBatch)
		if err != nil {
			return err
		}
		var entries []bus.Entry[T]
		n, pending := 0, uint64(0)
		for msg := range batch.Messages() {
			md, err := msg.Metadata()
			if err != nil {
				continue
			}
			n++
			q, pending = md.Sequence.Stream, md.NumPending
			if v, ok := s.decode(msg.Subject(), msg.Headers(), msg.Data(), md); ok && (s.match == nil || s.match(v)) {
				entries = append(entries, s.kind.hub.Entry(q, uint64(md.Timestamp.UnixNano()), v))
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return err
		}
		if ok, err := s.push(entries, q); !ok {
			return err
		}
		mode := bus.AttachCovered
		if n == 0 || pending == 0 {
			mode = bus.AttachCaughtUp
		}
		if s.attach(q, nil, mode) {
			return nil
		}
		if n == 0 { // caught up with the store, but the live feed has not seen it yet: wait for it
			select {
			case <-time.After(20 * time.Millisecond):
			case <-s.ctx.Done():
				return nil
			}
		}
	}
}

// push hands replayed entries to the reader and waits until it has taken most of them (bounding memory). It returns
// false when the pass must end: with nil when the subscription is closed, with errRefeed when refeed made the pass
// obsolete.
func (s *jsSub[T]) push(entries []bus.Entry[T], examined uint64) (bool, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return false, nil
	}
	if s.restart {
		s.restart = false
		s.mu.Unlock()
		return false, errRefeed
	}
	s.prefix = append(s.prefix, entries...)
	s.examined = max(s.examined, examined)
	full := len(s.prefix) >= replayBatch
	s.mu.Unlock()
	if len(entries) > 0 {
		s.wake()
	}
	for full {
		select {
		case <-s.drained:
		case <-s.ctx.Done():
			return false, nil
		}
		s.mu.Lock()
		full = len(s.prefix) >= replayBatch && !s.closed
		s.mu.Unlock()
	}
	return true, nil
}

// refeed makes the subscription read the stream again after its last delivery, dropping what it has not delivered
// yet: what it may deliver has changed (the owner of its key became known, see jsFeed.resolve). A subscription on the
// live feed leaves it for a new replay; a replay under way starts over.
func (s *jsSub[T]) refeed() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.prefix, s.examined = nil, s.last
	select {
	case s.drained <- struct{}{}: // a push waiting for room
	default:
	}
	if s.live == nil {
		s.restart = true
		return
	}
	live := s.live
	s.live = nil
	go live.Close() // not under s.mu: Close takes the topic's lock
	s.startWorker(s.last)
}

// replayIndex reads the per-workflow (or per-task) index up to the indexer's ack floor, fetches those events by
// sequence, then scans the tenant's subjects after the floor (the events the indexer has not reached yet) and joins the
// live feed as a scan does.
func (s *jsSub[T]) replayIndex(after uint64) error {
	floor, err := s.b.indexFloor(s.ctx)
	if err != nil {
		return err
	}
	if floor <= after {
		return s.replayScan(after)
	}
	cons, err := s.b.js.OrderedConsumer(s.ctx, s.b.index.CachedInfo().Config.Name, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{s.index}, DeliverPolicy: jetstream.DeliverAllPolicy, InactiveThreshold: 10 * time.Second,
	})
	if err != nil {
		return err
	}
	defer s.b.deleteConsumer(s.b.index.CachedInfo().Config.Name, cons)
	var seqs []uint64
	for {
		batch, err := cons.FetchNoWait(1024)
		if err != nil {
			return err
		}
		n, pending := 0, uint64(0)
		for msg := range batch.Messages() {
			n++
			if md, err := msg.Metadata(); err == nil {
				pending = md.NumPending
			}
			if seq, err := strconv.ParseUint(string(msg.Data()), 10, 64); err == nil && seq > after && seq <= floor {
				seqs = append(seqs, seq)
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return err
		}
		if n == 0 || pending == 0 {
			break
		}
	}
	slices.Sort(seqs)
	seqs = slices.Compact(seqs)
	entries := make([]bus.Entry[T], 0, len(seqs))
	for _, seq := range seqs {
		raw, err := s.kind.stream.GetMsg(s.ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // expired or deleted since it was indexed
		}
		if err != nil {
			return err
		}
		md := &jetstream.MsgMetadata{Sequence: jetstream.SequencePair{Stream: seq}, Timestamp: raw.Time, Stream: s.kind.name}
		if v, ok := s.decode(raw.Subject, raw.Header, raw.Data, md); ok && (s.match == nil || s.match(v)) {
			entries = append(entries, s.kind.hub.Entry(seq, uint64(raw.Time.UnixNano()), v))
		}
	}
	if ok, err := s.push(entries, floor); !ok {
		return err
	}
	return s.replayScan(floor)
}

// Done implements Subscription.
func (s *jsSub[T]) Done() <-chan struct{} { return s.done }

// Next implements Subscription: a gap notice first, then what the replay read, then the live feed. When the live feed
// reports the subscriber overtaken, it goes back to the store from its last delivery instead.
func (s *jsSub[T]) Next() (bus.Delivery[T], bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return bus.Delivery[T]{}, false
	}
	if s.gap != nil {
		g := s.gap
		s.gap = nil
		return bus.Delivery[T]{Gap: g}, true
	}
	if len(s.prefix) > 0 {
		e := s.prefix[0]
		s.prefix[0] = bus.Entry[T]{}
		s.prefix = s.prefix[1:]
		if len(s.prefix) == 0 {
			s.prefix = nil
			select {
			case s.drained <- struct{}{}:
			default:
			}
		}
		s.last = e.Seq
		return e.Delivery(s.kind.epoch), true
	}
	if s.live == nil {
		return bus.Delivery[T]{}, false
	}
	d, ok := s.live.Next()
	if !ok {
		return bus.Delivery[T]{}, false
	}
	if d.Gap != nil { // overtaken: re-feed from the store
		live := s.live
		s.live = nil
		go live.Close() // not under s.mu: Close takes the topic's lock
		s.examined = max(s.examined, s.last)
		s.startWorker(s.examined)
		return bus.Delivery[T]{}, false
	}
	s.last = d.Pos.Seq
	return d, true
}

// Settled implements Subscription: true once the subscription has joined the live feed (or ended), when a replay no
// longer runs.
func (s *jsSub[T]) Settled() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.live != nil || s.closed
}

// Close implements Subscription.
func (s *jsSub[T]) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	live := s.live
	s.live, s.prefix, s.gap = nil, nil, nil
	s.mu.Unlock()
	s.cancel()
	if live != nil {
		live.Close()
	}
	if s.stopCtx != nil {
		s.stopCtx()
	}
	s.stopBus()
	if s.onClose != nil {
		s.onClose()
	}
	s.b.releaseFeed(s.feed)
	close(s.done)
	s.wake()
	return nil
}

// SubscribeEvents implements EventSubscriber. A pattern with a workflow or task id replays through the per-workflow
// index; any other pattern replays by reading the tenant's subjects (narrowed by the type prefix) in the store.
func (b *JetStream) SubscribeEvents(ctx context.Context, p event.EventPattern, from bus.Start) (bus.Subscription[event.FlovynEvent], error) {
	if err := bus.ValidatePattern(&p); err != nil {
		return nil, err
	}
	feed, err := b.acquireEventFeed(ctx, p.TenantID)
	if err != nil {
		return nil, fmt.Errorf("subscribe events: %w", err)
	}
	s := newJSSub(b, b.events, feed, bus.TopicKey{Tenant: p.TenantID}, bus.PatternIndex(&p), p.Matcher())
	s.scan = p.Subject()
	if id := p.IndexID(); id.Field != event.NoID {
		s.index = indexSubject(p.TenantID.String(), indexKind(id.Field), id.ID.String())
	}
	s.decode = func(subject string, _ nats.Header, data []byte, md *jetstream.MsgMetadata) (*event.FlovynEvent, bool) {
		e, why := b.decodeEventMsg(subject, data, md)
		return e, why == ""
	}
	s.begin(ctx, from)
	return s, nil
}

// SubscribeStream implements StreamSubscriber: one feed per stream key with subscribers, shared by every tenant, and
// each tenant sees only the events published for it.
func (b *JetStream) SubscribeStream(ctx context.Context, tenant uuid.UUID, key string, from bus.Start) (bus.Subscription[event.StreamEvent], error) {
	key, err := bus.StreamKey(tenant, key)
	if err != nil {
		return nil, err
	}
	feed, err := b.acquireStreamFeed(ctx, tenant, key)
	if err != nil {
		return nil, fmt.Errorf("subscribe stream: %w", err)
	}
	s := newJSSub(b, b.stream, feed, bus.TopicKey{Tenant: tenant, Stream: key}, bus.IndexKey{}, nil)
	s.scan = subjects.StreamsPrefix + key
	s.decode = func(_ string, h nats.Header, data []byte, md *jetstream.MsgMetadata) (*event.StreamEvent, bool) {
		return feed.decodeStored(tenant, h, data, md.Timestamp)
	}
	s.onClose = func() {
		feed.mu.Lock()
		delete(feed.subs, s)
		feed.mu.Unlock()
	}
	// Under the feed's lock, so that an owner found meanwhile (jsFeed.resolve) refeeds s only once s has attached or
	// its replay runs.
	feed.mu.Lock()
	defer feed.mu.Unlock()
	feed.subs[s] = tenant
	s.begin(ctx, from)
	return s, nil
}
