// Package client is the Go client of an eventhook sidecar: New connects to one over its Unix socket or TCP, publishes
// lifecycle and stream events, and opens SSE streams, read with SSEReader. It imports the standard library and the
// event package only, so a program that publishes links nothing of the server, of NATS, of the metrics or of YAML.
//
// Errors the sidecar answers are *event.Problem values (RFC 9457 problem+json); Problem.Temporary says whether a retry
// may succeed. The client retries nothing itself and sets no overall timeout: a publish ends with its context.
package client
