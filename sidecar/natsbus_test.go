package sidecar

import (
	"io"
	"testing"
	"time"
)

func newNATSTestBus(t testing.TB) *NATSBus {
	t.Helper()
	cfg := jetstreamConfig(t)
	cfg.Backend = "nats"
	cfg.Memory.EventBuffer = 64
	b, err := NewNATSBus(t.Context(), cfg, time.Minute, NewLogger(LogConfig{Level: "error"}, io.Discard))
	if err != nil {
		t.Fatalf("NewNATSBus: %v", err)
	}
	return b
}

func TestNATSContract(t *testing.T) {
	runContract(t, contract{
		newBus:      func(t testing.TB) Bus { return newNATSTestBus(t) },
		eventBuffer: 64,
		noHistory:   true,
		asyncFeed:   true,
		natsFed:     true,
		backend:     "nats",
	})
}
