// Package sidecar is the HTTP side of the eventhook daemon: the publish API (POST /v1/events, /v1/events/batch,
// /v1/streams), the Server-Sent Events streams with their framing (event: lifecycle, token, progress, data, error, gap;
// the flovyn format), authentication, the problem+json errors, the metrics and the OpenAPI document.
//
// It serves whatever bus.Bus it is given and never closes it. The event model is the event package's, the bus
// interfaces the bus package's; this package owns the SSE frames and hands their encoders to the bus (FrameEncoders,
// given to a backend through bus.FeedOptions.Encoders), so that a bus encodes each event once for every subscriber
// without importing this package.
//
// # Lifecycle
//
// NewServer, then Listen (the TCP listener and the Unix socket), then Serve, which blocks; Shutdown from another
// goroutine ends every SSE stream, waits for in-flight requests and for every SSE goroutine (the connections are
// hijacked, so the http.Server does not), and removes the socket file. Once Shutdown has returned nil, the server runs
// nothing of its own and holds no subscription: the bus may be closed.
//
// # Concurrency
//
// Every SSE connection has one goroutine, which writes frames and sleeps in a read of the client's connection; the bus
// wakes it through Subscription.SetNotify. A slow client is overtaken by the bus (it gets event: gap) or, when a write
// does not finish within sse.write_timeout, disconnected; a publisher never waits for it.
package sidecar
