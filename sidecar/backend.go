package sidecar

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"
)

// OpenBus builds the backend named by cfg.Backend. The caller closes it.
func OpenBus(ctx context.Context, cfg *Config, log *slog.Logger) (Bus, error) {
	switch cfg.Backend {
	case "memory":
		return NewMemoryBus(MemoryOptions{
			EventBuffer:  cfg.Memory.EventBuffer,
			StreamBuffer: cfg.Memory.StreamBuffer,
			IdleTTL:      cfg.Memory.IdleTTL.D(),
			DedupWindow:  cfg.JetStream.DuplicateWindow.D(),
			MaxBytes:     cfg.Memory.MaxBytes,
			TenantKey:    cfg.Events.TenantKey,
		}), nil
	case "nats":
		return NewNATSBus(ctx, cfg, time.Minute, log)
	case "jetstream":
		return NewJetStreamBus(ctx, cfg, JetStreamOptions{}, log)
	}
	return nil, fmt.Errorf("backend %q is not available in this build", cfg.Backend)
}

// NewLogger returns the logger that log configures, writing to w (os.Stderr when nil).
func NewLogger(log LogConfig, w io.Writer) *slog.Logger {
	if w == nil {
		w = os.Stderr
	}
	var level slog.Level
	_ = level.UnmarshalText([]byte(strings.ToUpper(log.Level)))
	opts := &slog.HandlerOptions{Level: level}
	if log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
