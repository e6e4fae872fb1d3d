package bus

import (
	"context"
	"errors"
	"time"

	"github.com/flovyn/eventhook/sidecar/event"
	"github.com/google/uuid"
)

// Errors of the bus. Check them with errors.Is.
var (
	// ErrClosed is returned by a bus that has been closed.
	ErrClosed = errors.New("bus: closed")
	// ErrUnavailable is returned when the backend cannot take a publish now (NATS down, no ack in time); the publish may
	// be retried, and the event id makes the retry safe.
	ErrUnavailable = errors.New("bus: backend unavailable")
	// ErrUnconfirmed comes with ErrUnavailable when a publish was sent but its acknowledgement did not come (timeout,
	// connection lost): the event may or may not be stored.
	ErrUnconfirmed = errors.New("bus: publish not confirmed")
	// ErrStoreFull comes with ErrUnavailable when the backend's store cannot write (its disk is full, its storage
	// limit is reached): nothing was stored, and publishes fail at once until the store writes again.
	ErrStoreFull = errors.New("bus: the store is out of space")
)

// PublishResult is what a backend says about one accepted publish.
type PublishResult struct {
	// Sequence is the event's position in its feed: the tenant's ring sequence (memory), or the JetStream stream
	// sequence. For a duplicate it is the sequence of the original.
	Sequence uint64
	// Duplicate is true when the event id was already published for the tenant within the dedup window: nothing new was
	// stored or delivered.
	Duplicate bool
}

// EventPublisher publishes lifecycle events.
type EventPublisher interface {
	// PublishEvent publishes a stamped, valid event. It returns once the backend holds the event (with JetStream: once
	// the PubAck arrived), or an error: ErrUnavailable when the backend cannot take it now, ErrClosed after Close, or the
	// context's error. The bus keeps e: the caller must not change it afterwards.
	PublishEvent(ctx context.Context, e *event.FlovynEvent) (PublishResult, error)
}

// EventSubscriber subscribes to lifecycle events.
type EventSubscriber interface {
	// SubscribeEvents delivers the events of p.TenantID that p.Matches accepts, in publish order, starting at from. The
	// subscription ends when it is closed, when ctx is cancelled, or when the bus closes.
	SubscribeEvents(ctx context.Context, p event.EventPattern, from Start) (Subscription[event.FlovynEvent], error)
}

// StreamPublisher publishes generic stream events.
type StreamPublisher interface {
	// PublishStream publishes a valid stream event for s.TenantID on the stream s.Key(). Errors are as for PublishEvent.
	// The bus keeps s: the caller must not change it afterwards.
	PublishStream(ctx context.Context, s *event.StreamEvent) (PublishResult, error)
}

// StreamSubscriber subscribes to generic streams.
type StreamSubscriber interface {
	// SubscribeStream delivers the events published for tenant on the stream key (a workflow id, or a standalone task's
	// id), in publish order, starting at from. Stream events of other tenants are never delivered, whatever the key.
	SubscribeStream(ctx context.Context, tenant uuid.UUID, key string, from Start) (Subscription[event.StreamEvent], error)
}

// Bus is a complete backend: memory, nats or jetstream.
type Bus interface {
	EventPublisher
	EventSubscriber
	StreamPublisher
	StreamSubscriber
	// Close ends every subscription and releases the backend. It returns nil when called again.
	Close() error
}

// Encoders are the encodings a bus makes of each item once, for every subscriber: Delivery.Wire. The HTTP side
// provides them (its SSE frames, after the id line); the bus treats them as opaque. A nil function means no shared
// encoding: Delivery.Wire is then nil, and the reader encodes.
type Encoders struct {
	// Event encodes a lifecycle event.
	Event func(*event.FlovynEvent) []byte
	// Stream encodes a stream event.
	Stream func(*event.StreamEvent) []byte
}

// FeedOptions are the settings every backend gives its live feeds (the hub), whatever stores the events behind them.
// The zero value means the defaults.
type FeedOptions struct {
	// EventBuffer is the number of lifecycle events held per tenant (0: DefaultEventBuffer).
	EventBuffer int
	// StreamBuffer is the number of stream events held per workflow stream (0: DefaultStreamBuffer).
	StreamBuffer int
	// MaxBytes bounds the bytes held in all rings together, approximately (0: no bound beyond the ring sizes). Past
	// it, a publishing ring gives up its oldest events (a subscriber resuming before them gets a gap).
	MaxBytes int64
	// DedupWindow is how long a published event id is remembered per tenant (0: DefaultDedupWindow). JetStream's
	// streams are created with it as their duplicate window.
	DedupWindow time.Duration
	// Encoders are the shared encodings of the items (Delivery.Wire).
	Encoders Encoders
}

// The defaults of FeedOptions.
const (
	DefaultEventBuffer  = 1024
	DefaultStreamBuffer = 256
	DefaultDedupWindow  = 2 * time.Minute
	// DefaultIdleTTL is how long the memory backend keeps an idle ring (MemoryOptions.IdleTTL).
	DefaultIdleTTL = 10 * time.Minute
)

// WithDefaults returns o with its zero fields set to the defaults.
func (o FeedOptions) WithDefaults() FeedOptions {
	if o.EventBuffer <= 0 {
		o.EventBuffer = DefaultEventBuffer
	}
	if o.StreamBuffer <= 0 {
		o.StreamBuffer = DefaultStreamBuffer
	}
	if o.DedupWindow <= 0 {
		o.DedupWindow = DefaultDedupWindow
	}
	return o
}

// Subscription is a live feed of deliveries. It is safe for one reader; Close may be called from any goroutine.
//
// A reader is woken only through SetNotify: it sets its wake-up, calls Next until it reports false, and waits to be
// woken before it calls Next again. A Subscription that wraps another must pass SetNotify (and Settled) on, or its
// reader would see new deliveries only when something else wakes it (the SSE heartbeat).
type Subscription[T any] interface {
	// SetNotify sets the reader's wake-up, replacing any earlier one: f is called whenever new deliveries become
	// pending and when the subscription ends, from the goroutine of whoever made them pending (a publisher, a feed), so
	// it must return at once and never block; it may be called concurrently and more often than deliveries arrive.
	// Deliveries already pending when SetNotify is called are not announced: the reader calls Next after setting it.
	SetNotify(f func())
	// Settled reports whether nothing older than what Next returns next can still come: it is false while the
	// subscription replays from a store before it joins the live feed (a JetStream cursor), and the reader is woken
	// when that changes. A reader that merges two subscriptions in arrival order holds one's next delivery while the
	// other is not settled. A subscription that never replays from a store is always settled.
	Settled() bool
	// Done returns a channel that is closed when the subscription ends.
	Done() <-chan struct{}
	// Next returns the next delivery without blocking, and false when nothing is pending.
	Next() (Delivery[T], bool)
	// Close ends the subscription and frees what it holds. It returns nil when called again.
	Close() error
}

// Delivery is one item of a subscription: an event, or a gap notice.
type Delivery[T any] struct {
	// Value is the event; nil for a gap notice.
	Value *T
	// Pos is the position of the event in its feed; a cursor after it resumes right after the event.
	Pos event.Position
	// Arrival orders deliveries across the feeds of one bus (events and streams): a smaller value arrived earlier.
	Arrival uint64
	// Gap is set (and Value nil) when the subscriber missed events.
	Gap *event.Gap
	// Wire is what the bus' encoder (FeedOptions.Encoders) made of the item, once for every subscriber: with the HTTP
	// side's encoders, its SSE frame after the id line. nil when the bus was given no encoder (the reader encodes).
	Wire []byte
}

// Start says where a subscription begins.
type Start struct {
	kind  startKind
	after event.Position
}

type startKind uint8

const (
	startLive startKind = iota
	startEarliest
	startAfter
)

// StartLive begins with the next event published (the zero Start).
func StartLive() Start { return Start{} }

// StartEarliest begins with the oldest event the backend still holds.
func StartEarliest() Start { return Start{kind: startEarliest} }

// StartAfter begins right after the event at p. A position the backend no longer holds gives a gap notice first.
func StartAfter(p event.Position) Start { return Start{kind: startAfter, after: p} }

// After returns the position a StartAfter start begins after, and true; false for the other starts.
func (s Start) After() (event.Position, bool) { return s.after, s.kind == startAfter }

// IsLive reports whether s is StartLive.
func (s Start) IsLive() bool { return s.kind == startLive }

// String describes s for logs and errors.
func (s Start) String() string {
	switch s.kind {
	case startEarliest:
		return "earliest"
	case startAfter:
		return "after " + s.after.String()
	}
	return "live"
}

// ValidatePattern checks what a subscription needs of a pattern: a tenant. It returns an error wrapping
// event.ErrInvalidEvent.
func ValidatePattern(p *event.EventPattern) error {
	if p.TenantID == uuid.Nil {
		return event.Invalid("tenant_id", "is required and must be a non-nil UUID")
	}
	return nil
}

// StreamKey checks a stream's tenant and key and returns the key in canonical form. It returns an error wrapping
// event.ErrInvalidEvent when the tenant is nil or the key is not a valid subject token.
func StreamKey(tenant uuid.UUID, key string) (string, error) {
	if tenant == uuid.Nil {
		return "", event.Invalid("tenant_id", "is required and must be a non-nil UUID")
	}
	return event.ParseID("id", key)
}
