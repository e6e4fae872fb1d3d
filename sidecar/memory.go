package sidecar

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
)

// MemoryOptions configures a MemoryBus. The zero value means the defaults.
type MemoryOptions struct {
	// EventBuffer is the number of lifecycle events held per tenant (default 1024).
	EventBuffer int
	// StreamBuffer is the number of stream events held per workflow stream (default 256).
	StreamBuffer int
	// IdleTTL is how long a tenant's or stream's ring is kept after its last event or subscriber (default 10 min).
	IdleTTL time.Duration
	// DedupWindow is how long a published event id is remembered per tenant (default 2 min).
	DedupWindow time.Duration
	// DedupMax bounds the ids remembered per tenant (default 100,000); beyond it the oldest are forgotten early.
	DedupMax int
	// MaxBytes bounds the bytes held in all rings together, approximately (0: no bound beyond the ring sizes). Past
	// it, a publishing ring gives up its oldest events (a subscriber resuming before them gets a gap).
	MaxBytes int64
	// TenantKey is the key of the tenant in the lifecycle frames the bus encodes for SSE (events.tenant_key; empty
	// means TenantKeyTenantID).
	TenantKey TenantKey

	// broadcast puts every subscriber of a tenant in one bucket, as the original design's per-tenant broadcast did.
	// Only benchmarks set it, to compare with the indexed fan-out.
	broadcast bool
}

func (o MemoryOptions) withDefaults() MemoryOptions {
	if o.EventBuffer <= 0 {
		o.EventBuffer = 1024
	}
	if o.StreamBuffer <= 0 {
		o.StreamBuffer = 256
	}
	if o.IdleTTL <= 0 {
		o.IdleTTL = 10 * time.Minute
	}
	if o.DedupWindow <= 0 {
		o.DedupWindow = 2 * time.Minute
	}
	if o.DedupMax <= 0 {
		o.DedupMax = 100_000
	}
	return o
}

// MemoryBus is the in-memory backend: a single node's bounded rings (1024 lifecycle events per tenant, 256 events per
// generic stream), nothing durable. Cursors carry a boot epoch, so a cursor from an earlier process gets a reset gap.
// Event ids are deduplicated per tenant within the dedup window, as JetStream does.
//
// A janitor goroutine removes the rings that have had no event and no subscriber for IdleTTL; Close stops it.
type MemoryBus struct {
	opts    MemoryOptions
	events  *hub[FlovynEvent]
	streams *hub[StreamEvent]

	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
}

var _ Bus = (*MemoryBus)(nil)

// NewMemoryBus returns a running MemoryBus.
func NewMemoryBus(opts MemoryOptions) *MemoryBus {
	opts = opts.withDefaults()
	epoch := bootEpoch()
	arrival := new(atomic.Uint64)
	b := &MemoryBus{
		opts: opts,
		events: newHub[FlovynEvent](hubConfig[FlovynEvent]{capacity: opts.EventBuffer, idleTTL: opts.IdleTTL,
			broadcast: opts.broadcast, dedup: opts.DedupWindow, dedupMax: opts.DedupMax,
			maxBytes: opts.MaxBytes / 2, sizeOf: eventSize, encode: lifecycleWire(opts.TenantKey)}, epoch, arrival),
		streams: newHub[StreamEvent](hubConfig[StreamEvent]{capacity: opts.StreamBuffer, idleTTL: opts.IdleTTL,
			maxBytes: opts.MaxBytes / 2, sizeOf: streamSize, encode: streamFrameWire(opts.TenantKey)}, epoch, arrival),
		stop: make(chan struct{}),
	}
	b.wg.Add(1)
	go b.janitor() // ends when Close closes b.stop
	return b
}

// eventSize and streamSize approximate the memory an event holds: its variable parts, its shared SSE encoding and a fixed overhead.
func eventSize(e *FlovynEvent) int { return 512 + 2*(len(e.Data)+len(e.EventType)+len(e.Source)) }

func streamSize(s *StreamEvent) int {
	n := 160 + len(s.Payload) + len(s.WorkflowExecutionID) + len(s.TaskExecutionID)
	if s.lifecycle != nil {
		n += eventSize(s.lifecycle)
	}
	return n
}

// bootEpoch returns a random non-zero epoch, so that positions of different processes never compare equal.
func bootEpoch() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return binary.LittleEndian.Uint64(b[:])>>12 | 1 // 52 bits keep cursors short
}

func (b *MemoryBus) janitor() {
	defer b.wg.Done()
	t := time.NewTicker(min(b.opts.IdleTTL/2, time.Minute))
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case now := <-t.C:
			b.cleanup(now)
		}
	}
}

// CleanupInactive removes the rings that have had no event and no subscriber for the idle TTL (the design's
// cleanup_inactive_channels) and returns how many it removed. The janitor calls it periodically; tests may call it.
func (b *MemoryBus) CleanupInactive() int { return b.cleanup(time.Now()) }

func (b *MemoryBus) cleanup(now time.Time) int { return b.events.sweep(now) + b.streams.sweep(now) }

// Channels returns the number of tenant rings and stream rings held.
func (b *MemoryBus) Channels() (events, streams int) { return b.events.size(), b.streams.size() }

// eventIndex returns the index buckets an event is delivered through.
func eventIndex(e *FlovynEvent, buf *[3]indexKey) []indexKey {
	idx := append(buf[:0], indexKey{})
	if e.WorkflowExecutionID != nil {
		idx = append(idx, indexKey{kind: indexWorkflow, id: *e.WorkflowExecutionID})
	}
	if e.TaskExecutionID != nil {
		idx = append(idx, indexKey{kind: indexTask, id: *e.TaskExecutionID})
	}
	return idx
}

// patternIndex returns the one bucket a pattern's subscriber waits in: its task, else its workflow, else the tenant's.
func patternIndex(p *EventPattern) indexKey {
	switch {
	case p.TaskExecutionID != nil:
		return indexKey{kind: indexTask, id: *p.TaskExecutionID}
	case p.WorkflowExecutionID != nil:
		return indexKey{kind: indexWorkflow, id: *p.WorkflowExecutionID}
	}
	return indexKey{}
}

// PublishEvent implements EventPublisher. The event must be stamped and valid.
func (b *MemoryBus) PublishEvent(ctx context.Context, e *FlovynEvent) (PublishResult, error) {
	if err := ctx.Err(); err != nil {
		return PublishResult{}, err
	}
	var buf [3]indexKey
	seq, dup, err := b.events.publish(topicKey{tenant: e.TenantID}, e, 0, 0, eventIndex(e, &buf), e.ID, time.Now())
	if err != nil {
		return PublishResult{}, errorf("publish event", err)
	}
	return PublishResult{Sequence: seq, Duplicate: dup}, nil
}

// SubscribeEvents implements EventSubscriber.
func (b *MemoryBus) SubscribeEvents(ctx context.Context, p EventPattern, from Start) (Subscription[FlovynEvent], error) {
	if err := validatePattern(&p); err != nil {
		return nil, err
	}
	s, err := b.events.subscribe(ctx, topicKey{tenant: p.TenantID}, patternIndex(&p), p.matcher(), from)
	if err != nil {
		return nil, errorf("subscribe events", err)
	}
	return s, nil
}

// PublishStream implements StreamPublisher. The event must be valid and carry its tenant.
func (b *MemoryBus) PublishStream(ctx context.Context, s *StreamEvent) (PublishResult, error) {
	if err := ctx.Err(); err != nil {
		return PublishResult{}, err
	}
	key, err := streamKey(s.TenantID, s.Key())
	if err != nil {
		return PublishResult{}, err
	}
	all := [1]indexKey{}
	seq, _, err := b.streams.publish(topicKey{tenant: s.TenantID, stream: key}, s, 0, 0, all[:], uuid.Nil, time.Now())
	if err != nil {
		return PublishResult{}, errorf("publish stream", err)
	}
	return PublishResult{Sequence: seq}, nil
}

// SubscribeStream implements StreamSubscriber.
func (b *MemoryBus) SubscribeStream(ctx context.Context, tenant uuid.UUID, key string, from Start) (Subscription[StreamEvent], error) {
	key, err := streamKey(tenant, key)
	if err != nil {
		return nil, err
	}
	s, err := b.streams.subscribe(ctx, topicKey{tenant: tenant, stream: key}, indexKey{}, nil, from)
	if err != nil {
		return nil, errorf("subscribe stream", err)
	}
	return s, nil
}

// Close implements Bus: it ends every subscription and stops the janitor.
func (b *MemoryBus) Close() error {
	b.closeOnce.Do(func() {
		close(b.stop)
		b.wg.Wait()
		b.events.close()
		b.streams.close()
	})
	return nil
}
