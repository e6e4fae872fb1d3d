package config

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/flovyn/eventhook/sidecar/bus"
	"github.com/flovyn/eventhook/sidecar/natsbus"
)

// OpenBus builds the backend named by cfg.Backend with the options cfg gives it (MemoryOptions or NATSOptions), and enc,
// the HTTP side's encoders of the SSE frames. The caller closes it. It returns the backend's error when it cannot start
// (NATS unreachable, streams refused).
func OpenBus(ctx context.Context, cfg *Config, enc bus.Encoders, log *slog.Logger) (bus.Bus, error) {
	switch cfg.Backend {
	case cfgBackendMemory:
		return bus.NewMemory(cfg.MemoryOptions(enc)), nil
	case cfgBackendNATS:
		return natsbus.NewCore(ctx, cfg.NATSOptions(enc), log)
	case cfgBackendJetStream:
		return natsbus.NewJetStream(ctx, cfg.NATSOptions(enc), log)
	}
	return nil, fmt.Errorf("open bus: backend %q is not available in this build", cfg.Backend)
}

// MemoryOptions returns the options of the memory backend.
func (cfg *Config) MemoryOptions(enc bus.Encoders) bus.MemoryOptions {
	return bus.MemoryOptions{Feed: cfg.FeedOptions(enc), IdleTTL: cfg.Memory.IdleTTL.D()}
}

// FeedOptions returns the settings every backend shares, with enc. Their keys sit in the memory and jetstream
// sections for compatibility: memory.event_buffer, memory.stream_buffer and memory.max_bytes size the live rings of
// every backend, and jetstream.duplicate_window is every backend's dedup window.
func (cfg *Config) FeedOptions(enc bus.Encoders) bus.FeedOptions {
	return bus.FeedOptions{
		EventBuffer:  cfg.Memory.EventBuffer,
		StreamBuffer: cfg.Memory.StreamBuffer,
		MaxBytes:     cfg.Memory.MaxBytes,
		DedupWindow:  cfg.JetStream.DuplicateWindow.D(),
		Encoders:     enc,
	}
}

// PublishTimeout returns the bound of every publish request, whatever the backend (its key is jetstream.publish_timeout,
// kept for compatibility; with jetstream it is also the wait for the ack).
func (cfg *Config) PublishTimeout() time.Duration { return cfg.JetStream.PublishTimeout.D() }

// NATSOptions returns the options of the nats and jetstream backends, with enc.
func (cfg *Config) NATSOptions(enc bus.Encoders) natsbus.Options {
	n, j := &cfg.NATS, &cfg.JetStream
	return natsbus.Options{
		Conn: natsbus.ConnOptions{Embedded: n.IsEmbedded(), EmbeddedListen: n.EmbeddedListen, StoreDir: n.StoreDir,
			SyncAlways: n.SyncAlways, URLs: n.URLs, CredsFile: n.CredsFile, Token: n.Token,
			TLS:            natsbus.TLSOptions{CAFile: n.TLS.CAFile, CertFile: n.TLS.CertFile, KeyFile: n.TLS.KeyFile},
			ConnectTimeout: n.ConnectTimeout.D()},
		Streams: natsbus.StreamOptions{EventsStream: j.EventsStream, StreamsStream: j.StreamsStream,
			StreamsStorage: j.StreamsStorage, Replicas: j.Replicas, EventsMaxAge: j.EventsMaxAge.D(),
			EventsMaxBytes: j.EventsMaxBytes, StreamsMaxAge: j.StreamsMaxAge.D(),
			VerifyOnly: j.ManageStreams != nil && !*j.ManageStreams, PublishTimeout: j.PublishTimeout.D()},
		Feed:             cfg.FeedOptions(enc),
		TenantKey:        cfg.Events.TenantKey,
		DefaultSource:    cfg.Events.DefaultSource,
		AcceptUntenanted: cfg.Streams.AcceptUntenanted,
		UntenantedTenant: cfg.UntenantedTenant(),
	}
}
