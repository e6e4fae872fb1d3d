package bus

// The optional abilities of a backend, each a one-method interface found by type assertion. The HTTP side uses them
// where present: readiness (/readyz), batching, the payload bound, the metrics of what a backend drops, resends and its
// connection state.

import (
	"context"

	"github.com/flovyn/eventhook/sidecar/event"
)

// ResendCounter is implemented by backends that send a publish again when its ack is late.
type ResendCounter interface {
	// Resent returns how many times unacknowledged publishes were sent again.
	Resent() uint64
}

// DropCounter is implemented by backends that discard messages they receive from NATS.
type DropCounter interface {
	// Dropped returns how many messages were discarded: invalid ones and untenanted stream events.
	Dropped() (invalid, untenanted uint64)
}

// Connectivity is implemented by backends that know whether they are connected to their server now.
type Connectivity interface {
	// Connected reports whether the backend's connection is up.
	Connected() bool
}

// BatchPublisher is implemented by backends that publish many entries faster together than one by one (JetStream
// pipelines them). Entry i is events[i] when that is set, else streams[i] (either slice may be nil when the other has
// every entry). PublishBatch returns one result and one error per entry, in order; a nil error means stored. Entries
// bound for one subject are stored in their order, except after a stream leader failure, when the entries the old
// leader lost are stored again after the ones it had answered.
type BatchPublisher interface {
	// PublishBatch publishes the entries as described above.
	PublishBatch(ctx context.Context, events []*event.FlovynEvent, streams []*event.StreamEvent) ([]PublishResult, []error)
}

// PayloadLimiter is implemented by backends whose server bounds a message's size (NATS' max_payload).
type PayloadLimiter interface {
	// MaxPayload returns the largest message the backend takes, in bytes.
	MaxPayload() int
}

// Pinger is implemented by backends that can tell whether they are usable now (a round trip to the server).
type Pinger interface {
	// Ping returns nil when a publish would succeed now, or an error saying what is wrong.
	Ping(ctx context.Context) error
}
