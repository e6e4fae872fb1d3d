package sidecar

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/google/uuid"
)

// Errors of the bus. Check them with errors.Is.
var (
	// ErrClosed is returned by a bus that has been closed.
	ErrClosed = errors.New("sidecar: bus closed")
	// ErrUnavailable is returned when the backend cannot take a publish now (NATS down, no ack in time); the publish may
	// be retried, and the event id makes the retry safe.
	ErrUnavailable = errors.New("sidecar: backend unavailable")
	// ErrUnconfirmed comes with ErrUnavailable when a publish was sent but its acknowledgement did not come (timeout,
	// connection lost): the event may or may not be stored.
	ErrUnconfirmed = errors.New("sidecar: publish not confirmed")
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
	PublishEvent(ctx context.Context, e *FlovynEvent) (PublishResult, error)
}

// EventSubscriber subscribes to lifecycle events.
type EventSubscriber interface {
	// SubscribeEvents delivers the events of p.TenantID that p.Matches accepts, in publish order, starting at from. The
	// subscription ends when it is closed, when ctx is cancelled, or when the bus closes.
	SubscribeEvents(ctx context.Context, p EventPattern, from Start) (Subscription[FlovynEvent], error)
}

// StreamPublisher publishes generic stream events.
type StreamPublisher interface {
	// PublishStream publishes a valid stream event for s.TenantID on the stream s.Key(). Errors are as for PublishEvent.
	// The bus keeps s: the caller must not change it afterwards.
	PublishStream(ctx context.Context, s *StreamEvent) (PublishResult, error)
}

// StreamSubscriber subscribes to generic streams.
type StreamSubscriber interface {
	// SubscribeStream delivers the events published for tenant on the stream key (a workflow id, or a standalone task's
	// id), in publish order, starting at from. Stream events of other tenants are never delivered, whatever the key.
	SubscribeStream(ctx context.Context, tenant uuid.UUID, key string, from Start) (Subscription[StreamEvent], error)
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

// Subscription is a live feed of deliveries. It is safe for one reader; Close may be called from any goroutine.
type Subscription[T any] interface {
	// Ready returns a channel that receives a value after new deliveries arrive. It is never closed.
	Ready() <-chan struct{}
	// Done returns a channel that is closed when the subscription ends.
	Done() <-chan struct{}
	// Next returns the next delivery without blocking, and false when nothing is pending.
	Next() (Delivery[T], bool)
	// Close ends the subscription and frees what it holds. It returns nil when called again.
	Close() error
}

// notifier is implemented by every subscription of this package: f is called (from the publisher's goroutine, so it
// must not block) whenever Ready would receive a value, and when the subscription ends. An SSE connection uses it to
// wake its goroutine, which waits in a read on the client's connection rather than on channels.
type notifier interface {
	setNotify(f func())
}

// Delivery is one item of a subscription: an event, or a gap notice.
type Delivery[T any] struct {
	// Value is the event; nil for a gap notice.
	Value *T
	// Pos is the position of the event in its feed; a cursor after it resumes right after the event.
	Pos Position
	// Arrival orders deliveries across the feeds of one bus (events and streams): a smaller value arrived earlier.
	Arrival uint64
	// Gap is set (and Value nil) when the subscriber missed events.
	Gap *Gap
	// Wire is the event's SSE frame after its id line, encoded once for every subscriber; nil when the bus does not
	// encode (the SSE writer then encodes).
	Wire []byte
}

// GapReason says why a subscriber missed events.
type GapReason string

// The reasons of a gap notice (SPEC §4).
const (
	// GapLagged: the subscriber was too slow and was overtaken.
	GapLagged GapReason = "lagged"
	// GapExpired: the cursor is older than what the backend still holds.
	GapExpired GapReason = "expired"
	// GapReset: the cursor comes from an earlier process of a backend that keeps nothing across restarts.
	GapReset GapReason = "reset"
)

// Gap tells a subscriber it missed events. Delivery goes on from the oldest event still held.
type Gap struct {
	// Reason says why.
	Reason GapReason `json:"reason"`
	// Missed is the number of positions skipped, or -1 when unknown (JSON null).
	Missed int64 `json:"-"`
}

// AppendJSON appends {"reason":…,"missed":N|null} to dst.
func (g *Gap) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"reason":"`...)
	dst = append(dst, g.Reason...)
	dst = append(dst, `","missed":`...)
	if g.Missed < 0 {
		dst = append(dst, "null"...)
	} else {
		dst = strconv.AppendInt(dst, g.Missed, 10)
	}
	return append(dst, '}')
}

// Position is a place in one feed: the feed's sequence, and the epoch it belongs to. The memory backend's epoch is its
// boot epoch, so a position of an earlier process is recognised; a durable backend uses a fixed epoch.
type Position struct {
	// Epoch identifies the run of the feed's numbering.
	Epoch uint64
	// Seq is the sequence of an event within the feed; 0 is before the first event.
	Seq uint64
}

// String encodes p as "<epoch base 36>-<seq>".
func (p Position) String() string { return string(p.AppendTo(nil)) }

// AppendTo appends the form String gives to dst.
func (p Position) AppendTo(dst []byte) []byte {
	dst = strconv.AppendUint(dst, p.Epoch, 36)
	dst = append(dst, '-')
	return strconv.AppendUint(dst, p.Seq, 10)
}

// ParsePosition decodes the form String gives. It returns an error wrapping ErrInvalidEvent when s is malformed.
func ParsePosition(s string) (Position, error) {
	e, q, ok := strings.Cut(s, "-")
	epoch, err1 := strconv.ParseUint(e, 36, 64)
	seq, err2 := strconv.ParseUint(q, 10, 64)
	if !ok || err1 != nil || err2 != nil || e == "" || q == "" || e[0] == '+' || q[0] == '+' {
		return Position{}, fieldError("cursor", "%q is not a cursor this server issued", s)
	}
	return Position{Epoch: epoch, Seq: seq}, nil
}

// Start says where a subscription begins.
type Start struct {
	kind  startKind
	after Position
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
func StartAfter(p Position) Start { return Start{kind: startAfter, after: p} }

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

// validatePattern checks what a subscription needs of a pattern.
func validatePattern(p *EventPattern) error {
	if p.TenantID == uuid.Nil {
		return fieldError("tenant_id", "is required and must be a non-nil UUID")
	}
	return nil
}

// streamKey checks a stream's tenant and key and returns the key in canonical form.
func streamKey(tenant uuid.UUID, key string) (string, error) {
	if tenant == uuid.Nil {
		return "", fieldError("tenant_id", "is required and must be a non-nil UUID")
	}
	return ParseID("id", key)
}

// errorf wraps err with an operation, for the bus' own errors.
func errorf(op string, err error) error { return fmt.Errorf("%s: %w", op, err) }
