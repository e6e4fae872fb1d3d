// Package sidecar is the eventhook daemon: the event model (FlovynEvent, StreamEvent, EventPattern), the bus interfaces
// and their backends, and the HTTP and SSE front end.
//
// # Model
//
// A FlovynEvent is a tenant-scoped lifecycle event published on flovyn.events.<tenant_id>.<event_type>; a StreamEvent is a
// workflow-scoped generic stream event (tokens, progress, data, errors) published on flovyn.streams.workflow.<key>.
//
// # Bus
//
// Every backend implements EventPublisher, EventSubscriber, StreamPublisher and StreamSubscriber (together: Bus). Live
// delivery goes through one in-process hub per bus: per-tenant rings of recent events and per-stream rings of stream
// events, with subscribers indexed by workflow and task id so that a publish only touches the subscribers it can match.
//
// # Concurrency
//
// All methods are safe for concurrent use. Publish never blocks on a subscriber: each subscription has a bounded queue,
// and a subscriber that falls behind loses its oldest pending events and is told so with a Gap carrying the number missed.
//
// # Expected subscriber behaviour
//
// A subscriber waits on Subscription.Ready, drains Subscription.Next until it reports false, and calls Close when done
// (or cancels the context it subscribed with). A closed subscription holds nothing.
package sidecar
