package bus

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flovyn/eventhook/sidecar/event"
	"github.com/google/uuid"
)

// The hub is the fan-out of every backend: per-topic rings of recent items (a topic is a tenant's lifecycle feed, or one
// tenant's generic stream of one workflow) and the subscribers of each topic, indexed so that a publish only looks at the
// subscribers that can match it.
//
// Locking: hub.mu guards the topic map; topic.mu guards a topic's ring, index and dedup table; subscriber.mu guards a
// subscriber's queue. They are taken in that order and never the other way round. Nothing blocks while holding them: a
// subscriber is woken with a non-blocking send.

// topicKey names a topic: a tenant, and for generic streams the stream key.
type TopicKey struct {
	Tenant uuid.UUID
	Stream string
}

// IndexKey names a bucket of a topic's subscriber index: every subscriber of the topic (the zero IndexKey), or those
// watching one workflow or one task (see event.EventPattern.IndexID).
type IndexKey = event.IndexID

// entry is one held item, with its encoding (the part of its SSE frame after the id line), made once for every
// subscriber.
type Entry[T any] struct {
	Seq     uint64
	Arrival uint64
	Value   *T
	Wire    []byte
}

func (e Entry[T]) Delivery(epoch uint64) Delivery[T] {
	return Delivery[T]{Value: e.Value, Pos: event.Position{Epoch: epoch, Seq: e.Seq}, Arrival: e.Arrival, Wire: e.Wire}
}

// hubConfig holds a hub's settings.
type HubConfig[T any] struct {
	Capacity  int             // items held per topic, and pending per subscriber unless pending says otherwise
	Pending   int             // items pending per subscriber before it is overtaken; 0: capacity
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

// hub is the set of topics of one kind of feed.
type Hub[T any] struct {
	cfg     HubConfig[T]
	epoch   uint64
	arrival *atomic.Uint64 // shared by the hubs of one bus, so deliveries of both feeds can be merged in arrival order

	mu     sync.RWMutex
	topics map[TopicKey]*Topic[T]
	closed bool

	bytes atomic.Int64 // held in the rings, when cfg.sizeOf is set
}

func NewHub[T any](cfg HubConfig[T], epoch uint64, arrival *atomic.Uint64) *Hub[T] {
	return &Hub[T]{cfg: cfg, epoch: epoch, arrival: arrival, topics: make(map[TopicKey]*Topic[T])}
}

// topic is one feed: its ring, its subscribers, its dedup table.
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
	// once, when the feed says the burst is over (setHolding false).
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

// publish appends v to the topic of key and hands it to the matching subscribers of the buckets idx. With a non-nil
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

// setHolding turns the holding of wake-ups of the topic of key on or off; off wakes every subscriber that was reached
// meanwhile. A feed holds while it knows more messages are right behind (a burst), so that each subscriber wakes once
// per burst rather than once per event.
func (h *Hub[T]) SetHolding(key TopicKey, on bool) {
	t := h.lockTopic(key, false)
	if t == nil {
		return
	}
	defer t.mu.Unlock()
	t.holding = on
	if on {
		return
	}
	for i, s := range t.dirty {
		s.dirty = false
		s.signal()
		t.dirty[i] = nil
	}
	t.dirty = t.dirty[:0]
}

// publishIfExists publishes v to the topic of key only when the topic exists (someone subscribed to it).
func (h *Hub[T]) PublishIfExists(key TopicKey, v *T, idx []IndexKey) {
	h.mu.RLock()
	_, ok := h.topics[key]
	h.mu.RUnlock()
	if ok {
		h.Publish(key, v, 0, 0, idx, uuid.Nil, time.Now())
	}
}

// entry makes the entry of an item, encoding it once for every subscriber.
func (h *Hub[T]) Entry(seq, arrival uint64, v *T) Entry[T] {
	e := Entry[T]{Seq: seq, Arrival: arrival, Value: v}
	if h.cfg.Encode != nil {
		e.Wire = h.cfg.Encode(v)
	}
	return e
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

// subscribe registers a subscriber of the topic of key in bucket idx. Under the topic's lock it first queues what from
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

// resetTopic replaces the topic of key with an empty one whose feed starts at start, and returns it (nil when the hub is
// closed). The old topic, if any, is marked removed.
func (h *Hub[T]) ResetTopic(key TopicKey, start uint64) *Topic[T] {
	h.mu.Lock()
	old := h.topics[key]
	var t *Topic[T]
	if !h.closed {
		t = &Topic[T]{nextSeq: start, coverStart: start, epoch: h.epoch, lastUsed: time.Now(),
			buckets: make(map[IndexKey][]*Subscriber[T])}
		h.topics[key] = t
	}
	h.mu.Unlock()
	if old != nil {
		old.mu.Lock()
		h.forget(old)
		old.removed = true
		old.mu.Unlock()
	}
	return t
}

// restart starts the topic of key over in a new epoch: its ring is emptied, and its subscribers get a reset gap. A core
// NATS feed calls it when it may have missed messages (a reconnect), so no cursor resumes across the hole.
func (h *Hub[T]) Restart(key TopicKey, epoch uint64) {
	t := h.lockTopic(key, true)
	if t == nil {
		return
	}
	defer t.mu.Unlock()
	h.forget(t)
	t.ring = ring[T]{}
	t.nextSeq, t.dropped, t.epoch = 1, 0, epoch
	for _, b := range t.buckets {
		for _, s := range b {
			s.mu.Lock()
			s.queue = ring[T]{}
			s.missed = 0
			s.gap = &event.Gap{Reason: event.GapReset, Missed: -1}
			s.epoch = epoch
			s.mu.Unlock()
			s.signal()
		}
	}
}

// removeTopic drops the topic of key (its feed stopped: it no longer sees every item). With only non-nil, it drops the
// topic only if it is still that one: a feed that stops late must not drop the topic of the feed that replaced it.
func (h *Hub[T]) RemoveTopic(key TopicKey, only *Topic[T]) {
	h.mu.Lock()
	t := h.topics[key]
	if only != nil && t != only {
		h.mu.Unlock()
		return
	}
	delete(h.topics, key)
	h.mu.Unlock()
	if t != nil {
		t.mu.Lock()
		h.forget(t)
		t.removed = true
		t.mu.Unlock()
	}
}

// attach registers a live subscriber on a fed topic whose earlier items came from the store, without a hole or a
// repeat at the seam. after is the last sequence the caller has examined in the store; stored holds items fetched from
// the store (sorted, all after after) still to deliver. Under the topic's lock, attach merges stored with the ring's
// items after after that match, registers the subscriber, and returns the merged items to deliver before the
// subscriber's queue. Without force, it refuses (ok false) when the ring no longer holds everything after after: the
// caller reads further in the store first. It returns ErrClosed when the topic is gone.
//
// It also returns the position it attached after (the topic's head for attachLive).
func (h *Hub[T]) Attach(key TopicKey, idx IndexKey, match func(*T) bool, after uint64, stored []Entry[T], mode AttachMode,
	notify *atomic.Pointer[func()]) (s *Subscriber[T], merged []Entry[T], at uint64, ok bool, err error) {
	t := h.lockTopic(key, false)
	if t == nil {
		return nil, nil, 0, false, ErrClosed
	}
	defer t.mu.Unlock()
	cover := max(t.coverStart, t.dropped+1)
	switch mode {
	case AttachLive:
		after = t.nextSeq - 1
	case AttachCovered:
		ok = cover <= after+1
	case AttachCaughtUp:
		ok = cover <= after+1 || t.dropped <= after
	}
	if mode != AttachLive && mode != AttachAlways && !ok {
		return nil, nil, 0, false, nil
	}
	merged = stored[:len(stored):len(stored)]
	last := after
	if len(stored) > 0 {
		last = max(last, stored[len(stored)-1].Seq)
	}
	for i := 0; i < t.ring.n; i++ {
		e := t.ring.at(i)
		if e.Seq <= after || (match != nil && !match(e.Value)) {
			continue
		}
		if e.Seq > last {
			merged = append(merged, e)
			last = e.Seq
			continue
		}
		merged = insertEntry(merged, e) // an item the store did not give (not indexed yet, or another producer's)
	}
	s = h.newSubscriber(t, key, idx, match, notify)
	// The store may be ahead of the feed: what the store gave must not come again when the feed delivers it.
	s.skipThrough = max(after, last)
	t.register(s)
	return s, merged, s.skipThrough, true, nil
}

// attachMode says when attach may join the live feed.
type AttachMode uint8

const (
	// attachCovered: only when the ring holds every item after the position.
	AttachCovered AttachMode = iota
	// attachCaughtUp: the store has nothing more after the position (as of the last read); the ring must not have
	// dropped anything after it.
	AttachCaughtUp
	// attachAlways: the caller has merged what it could from the store (the per-workflow index).
	AttachAlways
	// attachLive: from the topic's head, with nothing replayed.
	AttachLive
)

// insertEntry inserts e into the sorted entries unless an entry with its sequence is there.
func insertEntry[T any](entries []Entry[T], e Entry[T]) []Entry[T] {
	i := sort.Search(len(entries), func(i int) bool { return entries[i].Seq >= e.Seq })
	if i < len(entries) && entries[i].Seq == e.Seq {
		return entries
	}
	entries = append(entries, Entry[T]{})
	copy(entries[i+1:], entries[i:])
	entries[i] = e
	return entries
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

// sweep removes the topics that have had no subscriber and no publish for the idle TTL, and returns how many it removed.
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

// size returns the number of topics held.
func (h *Hub[T]) Size() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.topics)
}

// close ends every subscription and drops every topic.
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

// subscriber is the hub's Subscription: a bounded queue of pending items filled by publishers and drained by Next.
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

// dedupTable remembers the event ids of a topic for the dedup window, oldest first in order[head:].
type DedupTable struct {
	ids   map[uuid.UUID]uint64
	order []dedupRec
	head  int
}

type dedupRec struct {
	id  uuid.UUID
	seq uint64
	at  time.Time
}

// seen forgets what is older than the window and returns the sequence of id when it is still remembered.
func (d *DedupTable) Seen(id uuid.UUID, now time.Time, window time.Duration) (uint64, bool) {
	for d.head < len(d.order) && now.Sub(d.order[d.head].at) >= window {
		d.forgetOldest()
	}
	seq, ok := d.ids[id]
	return seq, ok
}

func (d *DedupTable) forgetOldest() {
	delete(d.ids, d.order[d.head].id)
	d.order[d.head] = dedupRec{}
	d.head++
	if d.head == len(d.order) {
		d.order, d.head = d.order[:0], 0
	} else if d.head >= 1024 && d.head > len(d.order)/2 {
		n := copy(d.order, d.order[d.head:])
		d.order, d.head = d.order[:n], 0
	}
}

// Forget forgets id at once (a publish that failed: its retry must go through).
func (d *DedupTable) Forget(id uuid.UUID) { delete(d.ids, id) }

// add remembers id, forgetting the oldest ids beyond limit.
func (d *DedupTable) Add(id uuid.UUID, seq uint64, now time.Time, limit int) {
	if d.ids == nil {
		d.ids = make(map[uuid.UUID]uint64)
	}
	if limit > 0 && len(d.order)-d.head >= limit {
		d.forgetOldest()
	}
	d.ids[id] = seq
	d.order = append(d.order, dedupRec{id: id, seq: seq, at: now})
}

// eventSize and streamSize approximate the memory an event holds: its variable parts, its shared SSE encoding and a fixed overhead.
func EventSize(e *event.FlovynEvent) int { return 512 + 2*(len(e.Data)+len(e.EventType)+len(e.Source)) }

func StreamSize(s *event.StreamEvent) int {
	n := 160 + len(s.Payload) + len(s.WorkflowExecutionID) + len(s.TaskExecutionID)
	if e := s.Lifecycle(); e != nil {
		n += EventSize(e)
	}
	return n
}

// bootEpoch returns a random non-zero epoch, so that positions of different processes never compare equal.
func NewEpoch() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return binary.LittleEndian.Uint64(b[:])>>12 | 1 // 52 bits keep cursors short
}

// EventIndex returns the index buckets an event is delivered through, in buf.
func EventIndex(e *event.FlovynEvent, buf *[3]IndexKey) []IndexKey { return e.AppendIndexIDs(buf[:0]) }

// PatternIndex returns the one bucket a pattern's subscriber waits in: its task, else its workflow, else the tenant's.
func PatternIndex(p *event.EventPattern) IndexKey { return p.IndexID() }
