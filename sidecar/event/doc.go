// Package event is the wire model of eventhook, shared by the server, the backends and the Go client: FlovynEvent (a
// tenant-scoped lifecycle event on flovyn.events.<tenant_id>.<event_type>) with its decoder and encoder, StreamEvent (a
// workflow-scoped generic stream event: a token, progress, data or an error, on flovyn.streams.workflow.<key>), the
// legacy StateEventPayload and its conversion, EventPattern (what a subscriber selects) and TypeFilter (the types
// query parameter), the cursors of the SSE streams (Cursor, Position, Gap), and the bodies of the HTTP API (Problem,
// PublishReply).
//
// It imports no NATS and no HTTP server: a program that only publishes links this package, the client and the
// standard library.
//
// # Validation
//
// Decoders validate what they decode; every error is a *ValidationError (or wraps ErrInvalidEvent) naming each bad
// field by its JSON name, so that the server can answer 400 with a field list.
//
// # Sharing
//
// A published event is shared by every subscriber: treat a *FlovynEvent or *StreamEvent handed to a bus, or received
// from one, as read-only.
package event
