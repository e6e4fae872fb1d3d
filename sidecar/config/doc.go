// Package config is the daemon's configuration: one struct decoded from YAML with unknown keys rejected (Load, Parse),
// every default written once (Default, filled into zero values by ApplyDefaults), and a Validate whose errors name the
// key by its dotted path and, when read from a file, its line (*Error, ErrInvalid). config.yaml at the top of the
// repository documents every key.
//
// # Wiring
//
// The mapping of the configuration to each backend's options lives here, in one place (options.go): MemoryOptions,
// NATSOptions and FeedOptions return plain option values, and OpenBus builds the backend cfg.Backend names. It is here
// and not in main because the HTTP side's tests build their buses from a configuration too, and here rather than in
// the backends because a backend reads only its own options: bus and natsbus never import this package. The encoders
// of the SSE frames come from the caller (sidecar.FrameEncoders), so that this package does not import the HTTP side.
package config
