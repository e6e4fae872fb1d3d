package bus

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flovyn/eventhook/sidecar/event"
	"github.com/google/uuid"
)

// TopicKey names a topic of a hub: a tenant, and for generic streams the stream key.
type TopicKey struct {
	// Tenant is the topic's tenant.
	Tenant uuid.UUID
	// Stream is the stream key (a workflow or task id) of a generic stream's topic; empty for a tenant's lifecycle feed.
	Stream string
}

// IndexKey names a bucket of a topic's subscriber index: every subscriber of the topic (the zero IndexKey), or those
// watching one workflow or one task (see event.EventPattern.IndexID).
type IndexKey = event.IndexID

// Entry is one item a hub holds or queues, with its encoding (HubConfig.Encode), made once for every subscriber.
type Entry[T any] struct {
	// Seq is the item's sequence in its topic.
	Seq uint64
	// Arrival orders items across the feeds of one bus (see Delivery.Arrival).
	Arrival uint64
	// Value is the item; shared by every subscriber, read-only.
	Value *T
	// Wire is the item's shared encoding, or nil.
	Wire []byte
}

// Delivery returns the delivery of e in a topic of the given epoch.
func (e Entry[T]) Delivery(epoch uint64) Delivery[T] {
	return Delivery[T]{Value: e.Value, Pos: event.Position{Epoch: epoch, Seq: e.Seq}, Arrival: e.Arrival, Wire: e.Wire}
}

// HubConfig holds a hub's settings. A backend builds it from its options (FeedOptions and its own).
type HubConfig[T any] struct {
	Capacity  int             // items held per topic, and pending per subscriber unless Pending says otherwise
	Pending   int             // items pending per subscriber before it is overtaken; 0: Capacity
	IdleTTL   time.Duration   // a topic with no subscriber and no publish for this long is removed
	Broadcast bool            // put every subscriber in one bucket (the design's per-tenant broadcast), for comparison
	Dedup     time.Duration   // dedup window; 0 disables dedup
	DedupMax  int             // ids remembered per topic at most
	MaxBytes  int64           // bound of the bytes held in every ring of the hub together (approximate); 0: none
	SizeOf    func(*T) int    // the approximate bytes an item holds
	Encode    func(*T) []byte // the shared encoding of an item (its SSE frame), or nil
}

// pendingMax is how many items a subscriber may have pending before the oldest is dropped (it is overtaken).
func (c *HubConfig[T]) pendingMax() int {
	if c.Pending > 0 {
		return c.Pending
	}
	return c.Capacity
}

// Hub is the fan-out of every backend: the topics of one kind of feed (lifecycle events, or stream events), each a ring
// of recent items and the subscribers of the topic, indexed (IndexKey) so that a publish only looks at the subscribers
// that can match it. The memory backend publishes into it directly; the NATS backends feed it from their NATS
// subscriptions, through the methods of fed.go.
//
// # Locking
//
// The hub's lock guards the topic map; a topic's lock guards its ring, index, dedup table and wake-up holding; a
// subscriber's lock guards its queue. They are taken in that order and never the other way round. No method blocks
// while holding them: a subscriber is woken through its SetNotify function, which must not block. Every method is safe
// for concurrent use.
//
// # Seams
//
// What a method does to a topic happens under the topic's lock, as one step: a subscriber registered by Subscribe or
// Attach gets every item published after the items it was handed, and none of those again.
type Hub[T any] struct {
	cfg     HubConfig[T]
	epoch   uint64
	arrival *atomic.Uint64 // shared by the hubs of one bus, so deliveries of both feeds can be merged in arrival order

	mu     sync.RWMutex
	topics map[TopicKey]*Topic[T]
	closed bool

	bytes atomic.Int64 // held in the rings, when cfg.sizeOf is set
}

// NewHub returns an empty hub whose topics number their items in epoch. arrival is the counter of the bus (shared by its
// hubs, so that deliveries of both feeds can be merged in arrival order).
func NewHub[T any](cfg HubConfig[T], epoch uint64, arrival *atomic.Uint64) *Hub[T] {
	return &Hub[T]{cfg: cfg, epoch: epoch, arrival: arrival, topics: make(map[TopicKey]*Topic[T])}
}

// Topic is one feed of a hub: its ring, its subscribers, its dedup table. Its fields are the hub's; a backend holds a
// *Topic only to name it back (RemoveTopic).
type Topic[T any] struct {
	mu       sync.Mutex
	ring     ring[T]
	nextSeq  uint64 // sequence of the next item; sequences start at 1
	dropped  uint64 // sequence of the newest item overwritten in the ring, 0 when none
	buckets  map[IndexKey][]*Subscriber[T]
	nsubs    int
	lastUsed time.Time
	removed  bool // set by the sweeper under hub.mu and topic.mu: callers holding a stale pointer retry
	dedup    DedupTable
	// epoch numbers the topic's sequences: the hub's, or a new one each time a core NATS feed (re)starts.
	epoch uint64
	// holding defers the wake-ups of a burst: pushes are queued quietly and the subscribers they reached are woken
	// once, when the feed says the burst is over (SetHolding false).
	holding bool
	dirty   []*Subscriber[T]
	// coverStart is the first sequence a fed topic has seen every item from (the start of its NATS feed); items before
	// it are only in the store. 0 for the memory backend, whose topics hold everything there is.
	coverStart uint64
}

// lockTopic returns the topic of key, locked, creating it when create is true; nil when absent and not created, or when
// the hub is closed.
func (h *Hub[T]) lockTopic(key TopicKey, create bool) *Topic[T] {
	for {
		h.mu.RLock()
		t, closed := h.topics[key], h.closed
		h.mu.RUnlock()
		if closed {
			return nil
		}
		if t == nil {
			if !create {
				return nil
			}
			h.mu.Lock()
			if h.closed {
				h.mu.Unlock()
				return nil
			}
			if t = h.topics[key]; t == nil {
				t = &Topic[T]{nextSeq: 1, epoch: h.epoch, lastUsed: time.Now(), buckets: make(map[IndexKey][]*Subscriber[T])}
				h.topics[key] = t
			}
			h.mu.Unlock()
		}
		t.mu.Lock()
		if !t.removed {
			return t
		}
		t.mu.Unlock()
	}
}

// Publish appends v to the topic of key (created when absent) and hands it to the matching subscribers of the buckets idx. With a non-nil
// dedupID already seen within the window, it stores nothing and returns the original sequence with duplicate true.
//
// A feed that numbers its items itself (JetStream stream sequences) passes seq > 0: an item at or before the topic's
// head is a redelivery and is ignored. With seq 0 the topic numbers the item.
//
// arrival orders items across feeds: 0 takes the next value of the bus' counter (memory), a NATS feed passes the
// message's stream timestamp in nanoseconds, so live and replayed items compare alike.
func (h *Hub[T]) Publish(key TopicKey, v *T, seq, arrival uint64, idx []IndexKey, dedupID uuid.UUID, now time.Time) (uint64, bool, error) {
	t := h.lockTopic(key, true)
	if t == nil {
		return 0, false, ErrClosed
	}
	defer t.mu.Unlock()
	if dedupID != uuid.Nil && h.cfg.Dedup > 0 {
		if orig, ok := t.dedup.Seen(dedupID, now, h.cfg.Dedup); ok {
			return orig, true, nil
		}
	}
	if seq == 0 {
		seq = t.nextSeq
	} else if seq < t.nextSeq {
		return seq, true, nil
	}
	t.nextSeq = seq + 1
	if arrival == 0 {
		arrival = h.arrival.Add(1)
	}
	e := h.Entry(seq, arrival, v)
	if old, overwritten := t.ring.push(e, h.cfg.Capacity); overwritten {
		t.dropped = old.Seq
		h.account(old.Value, -1)
	}
	h.account(v, 1)
	for h.cfg.MaxBytes > 0 && h.bytes.Load() > h.cfg.MaxBytes && t.ring.n > 1 {
		old, _ := t.ring.pop() // memory.max_bytes: the publishing topic gives up its oldest items
		t.dropped = old.Seq
		h.account(old.Value, -1)
	}
	if dedupID != uuid.Nil && h.cfg.Dedup > 0 {
		t.dedup.Add(dedupID, e.Seq, now, h.cfg.DedupMax)
	}
	t.lastUsed = now
	for _, k := range idx {
		for _, s := range t.buckets[k] {
			if s.match != nil && !s.match(v) {
				continue
			}
			if !t.holding {
				s.push(e, h.cfg.pendingMax(), true)
			} else if s.push(e, h.cfg.pendingMax(), false) && !s.dirty {
				s.dirty = true
				t.dirty = append(t.dirty, s)
			}
		}
	}
	return e.Seq, false, nil
}

// account adds (sign 1) or removes (sign -1) an item's size to the hub's total.
func (h *Hub[T]) account(v *T, sign int64) {
	if h.cfg.SizeOf != nil {
		h.bytes.Add(sign * int64(h.cfg.SizeOf(v)))
	}
}

// forget removes a dropped topic's items from the hub's total.
func (h *Hub[T]) forget(t *Topic[T]) {
	if h.cfg.SizeOf == nil {
		return
	}
	for i := 0; i < t.ring.n; i++ {
		h.account(t.ring.at(i).Value, -1)
	}
}

// Subscribe registers a subscriber of the topic of key in bucket idx, filtered by match (nil: every item). Under the topic's lock it first queues what from
// asks for out of the ring, so nothing is missed or repeated between the replay and live delivery.
func (h *Hub[T]) Subscribe(ctx context.Context, key TopicKey, idx IndexKey, match func(*T) bool, from Start) (*Subscriber[T], error) {
	t := h.lockTopic(key, true)
	if t == nil {
		return nil, ErrClosed
	}
	s := h.newSubscriber(t, key, idx, match, nil)
	h.replay(t, s, from)
	t.register(s)
	t.mu.Unlock()
	s.CloseWhenDone(ctx, func() { s.Close() })
	return s, nil
}

// CloseWhenDone arranges for close to run when ctx is done, unless the subscription ends first. Subscribe does it with
// the subscriber's own Close; a backend that subscribes with a context that never ends and wraps the subscriber passes
// its wrapper's Close. Call it once, right after Subscribe.
func (s *Subscriber[T]) CloseWhenDone(ctx context.Context, close func()) {
	if ctx.Done() != nil {
		s.stopCtx = context.AfterFunc(ctx, close)
	}
}

func (h *Hub[T]) newSubscriber(t *Topic[T], key TopicKey, idx IndexKey, match func(*T) bool,
	notify *atomic.Pointer[func()]) *Subscriber[T] {
	if h.cfg.Broadcast {
		idx = IndexKey{}
	}
	if notify == nil {
		notify = new(atomic.Pointer[func()])
	}
	return &Subscriber[T]{hub: h, topic: t, key: key, idx: idx, match: match, epoch: t.epoch,
		notify: notify, done: make(chan struct{})}
}

// register adds s to the topic's index. The topic is locked.
func (t *Topic[T]) register(s *Subscriber[T]) {
	b := t.buckets[s.idx]
	s.slot = len(b)
	t.buckets[s.idx] = append(b, s)
	t.nsubs++
}

// replay queues into s the held items from asks for, preceded by a gap notice when from points before what is held.
// The topic is locked.
func (h *Hub[T]) replay(t *Topic[T], s *Subscriber[T], from Start) {
	var after uint64
	switch from.kind {
	case startLive:
		return
	case startEarliest:
	case startAfter:
		switch p := from.after; {
		case p.Epoch != t.epoch:
			s.gap = &event.Gap{Reason: event.GapReset, Missed: -1}
		case p.Seq >= t.nextSeq:
			return // at or past the head: live
		case p.Seq < t.dropped:
			s.gap = &event.Gap{Reason: event.GapExpired, Missed: int64(t.dropped - p.Seq)}
		default:
			after = p.Seq
		}
	}
	for i := 0; i < t.ring.n; i++ {
		e := t.ring.at(i)
		if e.Seq > after && (s.match == nil || s.match(e.Value)) {
			s.queue.push(e, h.cfg.pendingMax())
		}
	}
}

// unsubscribe removes s from its topic's index.
func (h *Hub[T]) unsubscribe(s *Subscriber[T]) {
	t := s.topic
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.buckets[s.idx]
	if s.slot >= len(b) || b[s.slot] != s {
		return // already removed when the hub closed
	}
	last := len(b) - 1
	b[s.slot] = b[last]
	b[s.slot].slot = s.slot
	b[last] = nil
	if last == 0 {
		delete(t.buckets, s.idx)
	} else {
		t.buckets[s.idx] = b[:last]
	}
	t.nsubs--
	t.lastUsed = time.Now()
}

// Sweep removes the topics that have had no subscriber and no publish for the idle TTL, and returns how many it removed.
func (h *Hub[T]) Sweep(now time.Time) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for k, t := range h.topics {
		t.mu.Lock()
		if t.nsubs == 0 && now.Sub(t.lastUsed) >= h.cfg.IdleTTL {
			h.forget(t)
			t.removed = true
			delete(h.topics, k)
			n++
		}
		t.mu.Unlock()
	}
	return n
}

// Size returns the number of topics held.
func (h *Hub[T]) Size() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.topics)
}

// Close ends every subscription and drops every topic; later calls find the hub closed (ErrClosed).
func (h *Hub[T]) Close() {
	h.mu.Lock()
	h.closed = true
	topics := h.topics
	h.topics = map[TopicKey]*Topic[T]{}
	h.mu.Unlock()
	for _, t := range topics {
		t.mu.Lock()
		var subs []*Subscriber[T]
		for _, b := range t.buckets {
			subs = append(subs, b...)
		}
		t.buckets = map[IndexKey][]*Subscriber[T]{}
		t.nsubs = 0
		t.removed = true
		t.mu.Unlock()
		for _, s := range subs {
			s.Close()
		}
	}
}

// Subscriber is the hub's Subscription: a bounded queue of pending items filled by publishers and drained by Next. An
// overtaken subscriber loses its oldest pending items and is told with a lagged gap.
type Subscriber[T any] struct {
	hub   *Hub[T]
	topic *Topic[T]
	key   TopicKey
	idx   IndexKey
	slot  int // index in the topic's bucket; guarded by topic.mu
	match func(*T) bool
	epoch uint64
	// skipThrough: the items up to this sequence came from the store; set before the subscriber is registered
	skipThrough uint64
	dirty       bool                    // in its topic's dirty list; guarded by topic.mu
	notify      *atomic.Pointer[func()] // called with every signal when set (an SSE connection's wake-up)
	done        chan struct{}

	stopCtx func() bool

	mu     sync.Mutex
	queue  ring[T]
	gap    *event.Gap // a notice to deliver before the queue (reset or expired cursor)
	missed int64      // items dropped since the last lagged notice
	closed bool
}

var _ Subscription[event.FlovynEvent] = (*Subscriber[event.FlovynEvent])(nil)

// push queues e, dropping the oldest pending item when the queue is full, and wakes the reader unless told not to. It
// reports whether it queued e. The topic is locked.
func (s *Subscriber[T]) push(e Entry[T], capacity int, wake bool) bool {
	if e.Seq <= s.skipThrough {
		return false
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return false
	}
	if _, overwritten := s.queue.push(e, capacity); overwritten {
		s.missed++
	}
	s.mu.Unlock()
	if wake {
		s.signal()
	}
	return true
}

// signal wakes the reader through the function SetNotify set, if any.
func (s *Subscriber[T]) signal() {
	if f := s.notify.Load(); f != nil {
		(*f)()
	}
}

// SetNotify implements Subscription.
func (s *Subscriber[T]) SetNotify(f func()) { s.notify.Store(&f) }

// Settled implements Subscription: a hub subscriber replays only from its topic's ring, under the topic's lock, so it
// is always settled.
func (s *Subscriber[T]) Settled() bool { return true }

// Done implements Subscription.
func (s *Subscriber[T]) Done() <-chan struct{} { return s.done }

// Next implements Subscription: a pending gap notice first, then the oldest pending item.
func (s *Subscriber[T]) Next() (Delivery[T], bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gap != nil {
		g := s.gap
		s.gap = nil
		return Delivery[T]{Gap: g}, true
	}
	if s.missed > 0 {
		g := &event.Gap{Reason: event.GapLagged, Missed: s.missed}
		s.missed = 0
		return Delivery[T]{Gap: g}, true
	}
	e, ok := s.queue.pop()
	if !ok {
		return Delivery[T]{}, false
	}
	return e.Delivery(s.epoch), true // s.epoch under s.mu: restart may change it
}

// Close implements Subscription.
func (s *Subscriber[T]) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.queue = ring[T]{}
	s.gap = nil
	s.mu.Unlock()
	if s.stopCtx != nil {
		s.stopCtx()
	}
	s.hub.unsubscribe(s)
	close(s.done)
	s.signal()
	return nil
}

// ring is a circular buffer that grows by doubling up to the capacity it is pushed with, then overwrites its oldest item.
type ring[T any] struct {
	buf  []Entry[T]
	head int // index of the oldest item
	n    int
}

// push appends e; when full at capacity it overwrites the oldest item and returns it with true.
func (r *ring[T]) push(e Entry[T], capacity int) (Entry[T], bool) {
	if r.n == len(r.buf) && r.n < capacity {
		size := max(8, 2*len(r.buf))
		buf := make([]Entry[T], min(size, capacity))
		for i := 0; i < r.n; i++ {
			buf[i] = r.at(i)
		}
		r.buf, r.head = buf, 0
	}
	if r.n < len(r.buf) {
		r.buf[(r.head+r.n)%len(r.buf)] = e
		r.n++
		return Entry[T]{}, false
	}
	old := r.buf[r.head]
	r.buf[r.head] = e
	r.head = (r.head + 1) % len(r.buf)
	return old, true
}

// pop removes and returns the oldest item.
func (r *ring[T]) pop() (Entry[T], bool) {
	if r.n == 0 {
		return Entry[T]{}, false
	}
	e := r.buf[r.head]
	r.buf[r.head] = Entry[T]{}
	r.head = (r.head + 1) % len(r.buf)
	r.n--
	return e, true
}

// at returns the i-th oldest item.
func (r *ring[T]) at(i int) Entry[T] { return r.buf[(r.head+i)%len(r.buf)] }

// PatternIndex returns the one bucket a pattern's subscriber waits in: its task, else its workflow, else the tenant's.
func PatternIndex(p *event.EventPattern) IndexKey { return p.IndexID() }

// EventIndex returns the index buckets an event is delivered through, in buf.
func EventIndex(e *event.FlovynEvent, buf *[3]IndexKey) []IndexKey { return e.AppendIndexIDs(buf[:0]) }
