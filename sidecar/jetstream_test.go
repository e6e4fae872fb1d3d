package sidecar

import (
	"io"
	"testing"
	"time"
)

// jetstreamConfig is a configuration for a JetStream bus on an embedded server of its own, in-process only, with its
// store in a temporary directory.
func jetstreamConfig(t testing.TB) *Config {
	cfg := DefaultConfig()
	cfg.Backend = "jetstream"
	cfg.NATS.EmbeddedListen = ""
	cfg.NATS.StoreDir = t.TempDir()
	return cfg
}

func newJetStreamTestBus(t testing.TB, cfg *Config) *JetStreamBus {
	t.Helper()
	if cfg == nil {
		cfg = jetstreamConfig(t)
	}
	b, err := NewJetStreamBus(t.Context(), cfg, JetStreamOptions{FeedLinger: -1}, NewLogger(LogConfig{Level: "error"}, io.Discard))
	if err != nil {
		t.Fatalf("NewJetStreamBus: %v", err)
	}
	return b
}

func jetstreamContract() contract {
	return contract{
		newBus:        func(t testing.TB) Bus { return newJetStreamTestBus(t, nil) },
		eventBuffer:   1024,
		refeedsLagged: true,
		durable:       true,
	}
}

func TestJetStreamContract(t *testing.T) { runContract(t, jetstreamContract()) }

var _ = time.Second
