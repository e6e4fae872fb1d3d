package natsbus

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/flovyn/eventhook/sidecar/bus"
	"github.com/flovyn/eventhook/sidecar/bus/bustest"
)

func newNATSTestBus(t testing.TB, o bustest.Options) *Core {
	t.Helper()
	cfg := testOptions(t)
	cfg.Feed.EventBuffer = 64
	cfg.TenantKey, cfg.Feed.Encoders = o.TenantKey, o.Encoders
	cfg.Linger = time.Minute
	b, err := NewCore(t.Context(), *cfg, testLogger(io.Discard, slog.LevelError))
	if err != nil {
		t.Fatalf("NewCore: %v", err)
	}
	return b
}

func TestNATSContract(t *testing.T) {
	bustest.Run(t, bustest.Contract{
		NewBus:      func(t testing.TB, o bustest.Options) bus.Bus { return newNATSTestBus(t, o) },
		EventBuffer: 64,
		NoHistory:   true,
		AsyncFeed:   true,
		NATSFed:     true,
	})
}
