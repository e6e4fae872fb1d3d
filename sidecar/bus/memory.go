package bus

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flovyn/eventhook/sidecar/event"
	"github.com/google/uuid"
)

// MemoryOptions configures the memory backend (NewMemory). The zero value means the defaults.
type MemoryOptions struct {
	// Feed holds the settings every backend shares: ring sizes, byte bound, dedup window, encoders.
	Feed FeedOptions
	// IdleTTL is how long a tenant's or stream's ring is kept after its last event or subscriber (0: DefaultIdleTTL).
	IdleTTL time.Duration
	// DedupMax bounds the ids remembered per tenant (default 100,000); beyond it the oldest are forgotten early.
	DedupMax int

	// broadcast puts every subscriber of a tenant in one bucket, as the original design's per-tenant broadcast did.
	// Only benchmarks set it, to compare with the indexed fan-out.
	broadcast bool
}

func (o MemoryOptions) withDefaults() MemoryOptions {
	o.Feed = o.Feed.WithDefaults()
	if o.IdleTTL <= 0 {
		o.IdleTTL = DefaultIdleTTL
	}
	if o.DedupMax <= 0 {
		o.DedupMax = 100_000
	}
	return o
}

// Memory is the in-memory backend: a single node's bounded rings (1024 lifecycle events per tenant, 256 events per
// generic stream), nothing durable. Cursors carry a boot epoch, so a cursor from an earlier process gets a reset gap.
// Event ids are deduplicated per tenant within the dedup window, as JetStream does.
//
// A janitor goroutine removes the rings that have had no event and no subscriber for IdleTTL; Close stops it.
type Memory struct {
	opts    MemoryOptions
	events  *Hub[event.FlovynEvent]
	streams *Hub[event.StreamEvent]

	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
}

var _ Bus = (*Memory)(nil)

// NewMemory returns a running memory backend.
func NewMemory(opts MemoryOptions) *Memory {
	opts = opts.withDefaults()
	epoch := NewEpoch()
	arrival := new(atomic.Uint64)
	b := &Memory{
		opts: opts,
		events: NewHub[event.FlovynEvent](HubConfig[event.FlovynEvent]{Capacity: opts.Feed.EventBuffer, IdleTTL: opts.IdleTTL,
			Broadcast: opts.broadcast, Dedup: opts.Feed.DedupWindow, DedupMax: opts.DedupMax,
			MaxBytes: opts.Feed.MaxBytes / 2, SizeOf: EventSize, Encode: opts.Feed.Encoders.Event}, epoch, arrival),
		streams: NewHub[event.StreamEvent](HubConfig[event.StreamEvent]{Capacity: opts.Feed.StreamBuffer, IdleTTL: opts.IdleTTL,
			MaxBytes: opts.Feed.MaxBytes / 2, SizeOf: StreamSize, Encode: opts.Feed.Encoders.Stream}, epoch, arrival),
		stop: make(chan struct{}),
	}
	b.wg.Add(1)
	go b.janitor() // ends when Close closes b.stop
	return b
}

func (b *Memory) janitor() {
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
func (b *Memory) CleanupInactive() int { return b.cleanup(time.Now()) }

func (b *Memory) cleanup(now time.Time) int { return b.events.Sweep(now) + b.streams.Sweep(now) }

// Channels returns the number of tenant rings and stream rings held.
func (b *Memory) Channels() (events, streams int) { return b.events.Size(), b.streams.Size() }

// PublishEvent implements EventPublisher. The event must be stamped and valid.
func (b *Memory) PublishEvent(ctx context.Context, e *event.FlovynEvent) (PublishResult, error) {
	if err := ctx.Err(); err != nil {
		return PublishResult{}, err
	}
	var buf [3]IndexKey
	seq, dup, err := b.events.Publish(TopicKey{Tenant: e.TenantID}, e, 0, 0, EventIndex(e, &buf), e.ID, time.Now())
	if err != nil {
		return PublishResult{}, fmt.Errorf("publish event: %w", err)
	}
	return PublishResult{Sequence: seq, Duplicate: dup}, nil
}

// SubscribeEvents implements EventSubscriber.
func (b *Memory) SubscribeEvents(ctx context.Context, p event.EventPattern, from Start) (Subscription[event.FlovynEvent], error) {
	if err := ValidatePattern(&p); err != nil {
		return nil, err
	}
	s, err := b.events.Subscribe(ctx, TopicKey{Tenant: p.TenantID}, PatternIndex(&p), p.Matcher(), from)
	if err != nil {
		return nil, fmt.Errorf("subscribe events: %w", err)
	}
	return s, nil
}

// PublishStream implements StreamPublisher. The event must be valid and carry its tenant.
func (b *Memory) PublishStream(ctx context.Context, s *event.StreamEvent) (PublishResult, error) {
	if err := ctx.Err(); err != nil {
		return PublishResult{}, err
	}
	key, err := StreamKey(s.TenantID, s.Key())
	if err != nil {
		return PublishResult{}, err
	}
	all := [1]IndexKey{}
	seq, _, err := b.streams.Publish(TopicKey{Tenant: s.TenantID, Stream: key}, s, 0, 0, all[:], uuid.Nil, time.Now())
	if err != nil {
		return PublishResult{}, fmt.Errorf("publish stream: %w", err)
	}
	return PublishResult{Sequence: seq}, nil
}

// SubscribeStream implements StreamSubscriber.
func (b *Memory) SubscribeStream(ctx context.Context, tenant uuid.UUID, key string, from Start) (Subscription[event.StreamEvent], error) {
	key, err := StreamKey(tenant, key)
	if err != nil {
		return nil, err
	}
	s, err := b.streams.Subscribe(ctx, TopicKey{Tenant: tenant, Stream: key}, IndexKey{}, nil, from)
	if err != nil {
		return nil, fmt.Errorf("subscribe stream: %w", err)
	}
	return s, nil
}

// Close implements Bus: it ends every subscription and stops the janitor.
func (b *Memory) Close() error {
	b.closeOnce.Do(func() {
		close(b.stop)
		b.wg.Wait()
		b.events.Close()
		b.streams.Close()
	})
	return nil
}

// EventSize approximates the memory a lifecycle event holds in a ring (HubConfig.SizeOf): its variable parts, its shared
// encoding and a fixed overhead.
func EventSize(e *event.FlovynEvent) int { return 512 + 2*(len(e.Data)+len(e.EventType)+len(e.Source)) }

// StreamSize approximates, as EventSize does, the memory a stream event holds in a ring.
func StreamSize(s *event.StreamEvent) int {
	n := 160 + len(s.Payload) + len(s.WorkflowExecutionID) + len(s.TaskExecutionID)
	if e := s.Lifecycle(); e != nil {
		n += EventSize(e)
	}
	return n
}

// NewEpoch returns a random non-zero epoch, so that positions of different processes never compare equal.
func NewEpoch() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return binary.LittleEndian.Uint64(b[:])>>12 | 1 // 52 bits keep cursors short
}
