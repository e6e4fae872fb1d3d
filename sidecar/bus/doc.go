// Package bus is the contract between the HTTP side and the event backends: the interfaces (EventPublisher,
// EventSubscriber, StreamPublisher, StreamSubscriber, together Bus; Subscription and Delivery), the optional abilities a
// backend may add (abilities.go), the in-process hub every backend fans out through, and the memory backend. The NATS
// backends are in natsbus; the contract suite every backend runs is bustest.
//
// # Usage
//
// A backend is built with its own options (MemoryOptions here, natsbus.Options for NATS) and the settings every backend
// shares (FeedOptions: ring sizes, byte bound, dedup window, and the encoders of the shared SSE frames, which the HTTP
// side provides). Subscribe with a context; read a Subscription as described below; Close the bus last, after every
// reader is done.
//
// # Concurrency
//
// Every method is safe for concurrent use. A publish never blocks on a subscriber: each subscription has a bounded
// queue, and a subscriber that falls behind loses its oldest pending events and is told with a gap (reason lagged,
// with the number missed), or, with JetStream, is re-fed from the store.
//
// # Expected subscriber behaviour
//
// A reader sets its wake-up with Subscription.SetNotify, calls Next until it reports false, and waits to be woken
// before it calls Next again; it ends when Done is closed and Next has nothing more. It calls Close when done (or
// cancels the context it subscribed with); a closed subscription holds nothing. A Subscription that wraps another must
// pass SetNotify and Settled on (bustest.WakeUp fails one that does not). Nothing is ever waited for on a channel of the
// subscription but Done.
//
// # Delivery promises
//
// Every backend delivers the events of the subscriber's tenant that its EventPattern matches, in publish order, each
// once, from its Start on, and never an event of another tenant. They differ in what they hold:
//
//   - memory: rings of the recent events per tenant and per stream, in this process only. A cursor of an earlier
//     process gets a reset gap; one older than the ring an expired gap. Event ids are deduplicated per tenant within
//     the dedup window.
//   - nats (natsbus.Core): nothing is stored; the hub's rings hold what this process received since its feeds started.
//     A cursor from before a NATS outage or of an earlier process gets a reset gap; ids are deduplicated for this
//     sidecar's own publishes only.
//   - jetstream (natsbus.JetStream): every event is stored and acknowledged before a publish returns; cursors survive
//     restarts; an overtaken subscriber is re-fed from the store instead of getting a lagged gap; a cursor older than
//     the store's retention gets an expired gap.
//
// bustest.Contract names these differences, and bustest.Run checks every other promise against each backend.
package bus
