package config

import (
	"io"
	"log/slog"
	"os"
	"strings"
)

// NewLogger returns the logger that log configures, writing to w (os.Stderr when nil).
func NewLogger(log Log, w io.Writer) *slog.Logger {
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
