package sidecar

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/flovyn/eventhook/sidecar/bus"
	"github.com/flovyn/eventhook/sidecar/bus/bustest"
	"github.com/flovyn/eventhook/sidecar/config"
	"github.com/flovyn/eventhook/sidecar/natsbus"
)

// The buses the HTTP tests run on, built as the daemon builds them: the options config gives, the encoders of this
// package.

// jetstreamConfig is a configuration for a JetStream bus on an embedded server of its own, in-process only, with its
// store in a temporary directory.
func jetstreamConfig(t testing.TB) *config.Config {
	cfg := config.Default()
	cfg.Backend = "jetstream"
	cfg.NATS.EmbeddedListen = ""
	cfg.NATS.StoreDir = t.TempDir()
	return cfg
}

var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

// openBus opens the backend cfg names as the daemon does; the test closes it.
func openBus(t testing.TB, cfg *config.Config) bus.Bus {
	t.Helper()
	b, err := config.OpenBus(t.Context(), cfg, FrameEncoders(cfg.Events.TenantKey), quietLog)
	if err != nil {
		t.Fatalf("OpenBus(%s): %v", cfg.Backend, err)
	}
	return b
}

// newJetStreamTestBus returns a JetStream bus on an embedded server of its own, whose feeds close with their last
// subscriber; the test closes it.
func newJetStreamTestBus(t testing.TB) *natsbus.JetStream {
	t.Helper()
	cfg := jetstreamConfig(t)
	o := cfg.NATSOptions(FrameEncoders(cfg.Events.TenantKey))
	o.Linger = -1
	b, err := natsbus.NewJetStream(t.Context(), o, quietLog)
	if err != nil {
		t.Fatalf("NewJetStream: %v", err)
	}
	return b
}

// newNATSTestBus returns a core NATS bus on an embedded server of its own, with rings of 64 events; the test closes it.
func newNATSTestBus(t testing.TB) *natsbus.Core {
	t.Helper()
	cfg := jetstreamConfig(t)
	cfg.Memory.EventBuffer = 64
	b, err := natsbus.NewCore(t.Context(), cfg.NATSOptions(FrameEncoders(cfg.Events.TenantKey)), quietLog)
	if err != nil {
		t.Fatalf("NewCore: %v", err)
	}
	return b
}

// natsBackends are the NATS-fed buses, which receive what others publish on NATS.
var natsBackends = []struct {
	name string
	open func(t testing.TB) bus.Bus
}{
	{"jetstream", func(t testing.TB) bus.Bus { return newJetStreamTestBus(t) }},
	{"nats", func(t testing.TB) bus.Bus { return newNATSTestBus(t) }},
}

// connOf returns the NATS connection of a NATS bus, or nil.
func connOf(b bus.Bus) *nats.Conn {
	if c, ok := b.(interface{ Conn() *nats.Conn }); ok {
		return c.Conn()
	}
	return nil
}

// waitOwner waits until b knows tenant as the owner of key (with jetstream, once the indexer has written the entry).
func waitOwner(t testing.TB, b bus.Bus, key string, tenant uuid.UUID) {
	t.Helper()
	o := b.(interface {
		Owner(ctx context.Context, key string) (uuid.UUID, bool, error)
	})
	deadline := time.Now().Add(bustest.WaitFor)
	for time.Now().Before(deadline) {
		if got, ok, _ := o.Owner(t.Context(), key); ok {
			if got != tenant {
				t.Fatalf("owner of %s is %s; want %s", key, got, tenant)
			}
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("the owner of %s was not known within %v", key, bustest.WaitFor)
}
