// Package natsbus holds the NATS backends of eventhook, and is the only package of the daemon that imports nats.go and
// nats-server: Core (the nats backend: core NATS, fire-and-forget, nothing stored) and JetStream (the jetstream
// backend: every event stored and acknowledged, cursors that survive restarts, replay from the store), the embedded
// server (StartEmbedded), and the connection that keeps reconnecting (natsconn.go).
//
// Both read only their Options: the connection (ConnOptions), the JetStream streams (StreamOptions), the settings every
// backend shares (bus.FeedOptions) and the rules for stream events that carry no tenant. Both feed the bus package's hub
// from NATS subscriptions (one per tenant, and one per workflow stream, with subscribers), through the hub's API for
// NATS-fed topics (bus/fed.go); whatever reaches the subjects is delivered, whoever published it.
//
// The files: jetstream.go (the JetStream backend), jsstreams.go (creating, adopting or verifying the streams), jsfeed.go
// (the live feeds), jssub.go and jsexpiry.go (subscriptions that replay from the store and attach to the live feed),
// jsindex.go (the per-workflow index), jsowner.go and owners.go (the tenant of a stream event that carries none),
// jspublish.go (publishing), natsbus.go (the core NATS backend), natsconn.go and embedded.go (the connection and the
// embedded server).
//
// # Shutdown
//
// Close ends every subscription, stops the feeds and the indexer, drains the connection (waiting for nats.go to report
// it closed, at most a few seconds), then shuts the embedded server down and waits for it.
package natsbus
