package bus

// The hub's API to the backends that feed it from NATS (natsbus): topics whose items come from a NATS feed numbered by
// the store (JetStream stream sequences) or by the feed itself (core NATS), and subscribers that join such a topic after
// a replay from the store. Each method does its work under the topic's lock, which is what makes the seam between a
// replay and the live feed hole-free and repeat-free; the memory backend uses none of them.

import (
	"sort"
	"sync/atomic"
	"time"

	"github.com/flovyn/eventhook/sidecar/event"
	"github.com/google/uuid"
)

// SetHolding turns the holding of wake-ups of the topic of key on or off; off wakes every subscriber that was reached
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

// PublishIfExists publishes v to the topic of key only when the topic exists (someone subscribed to it).
func (h *Hub[T]) PublishIfExists(key TopicKey, v *T, idx []IndexKey) {
	h.mu.RLock()
	_, ok := h.topics[key]
	h.mu.RUnlock()
	if ok {
		h.Publish(key, v, 0, 0, idx, uuid.Nil, time.Now())
	}
}

// Entry makes the entry of an item read from a store (seq and arrival as Publish takes them), encoding it once for every
// subscriber, so that it can be handed to Attach.
func (h *Hub[T]) Entry(seq, arrival uint64, v *T) Entry[T] {
	e := Entry[T]{Seq: seq, Arrival: arrival, Value: v}
	if h.cfg.Encode != nil {
		e.Wire = h.cfg.Encode(v)
	}
	return e
}

// ResetTopic replaces the topic of key with an empty one whose feed starts at start, and returns it (nil when the hub is
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

// Restart starts the topic of key over in a new epoch: its ring is emptied, and its subscribers get a reset gap. A core
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

// RemoveTopic drops the topic of key (its feed stopped: it no longer sees every item). With only non-nil, it drops the
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

// Attach registers a live subscriber on a fed topic whose earlier items came from the store, without a hole or a
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

// AttachMode says when Attach may join the live feed.
type AttachMode uint8

// The modes of Attach.
const (
	// AttachCovered joins only when the ring holds every item after the position.
	AttachCovered AttachMode = iota
	// AttachCaughtUp joins when the store has nothing more after the position (as of the last read); the ring must not have
	// dropped anything after it.
	AttachCaughtUp
	// AttachAlways joins at once: the caller has merged what it could from the store (the per-workflow index).
	AttachAlways
	// AttachLive joins at the topic's head, with nothing replayed.
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
