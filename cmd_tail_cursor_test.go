package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/flovyn/eventhook/sidecar"
	"github.com/flovyn/eventhook/sidecar/bus"
	"github.com/flovyn/eventhook/sidecar/config"
	"github.com/flovyn/eventhook/sidecar/event"
	"github.com/google/uuid"
)

// TestTailUnreadableCursor runs tail against a real sidecar whose sse.format is flovyn, resuming from a cursor of
// another server (Flovyn numbers its frames): tail prints the reset gap that comes first, then what the stream holds, in
// the sidecar's own framing (tail asks for format=eventhook).
func TestTailUnreadableCursor(t *testing.T) {
	dir, err := os.MkdirTemp("", "eh") // Unix socket paths are limited to 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	cfg := config.Default()
	cfg.Backend = "memory"
	cfg.HTTP.Listen = ""
	cfg.HTTP.UnixSocket = filepath.Join(dir, "eh.sock")
	cfg.SSE.Format = "flovyn"
	bus := bus.NewMemory(bus.MemoryOptions{})
	t.Cleanup(func() { bus.Close() })
	srv, err := sidecar.NewServer(sidecar.Options{Config: cfg, Bus: bus, Logger: config.NewLogger(config.Log{Level: "error"}, io.Discard)})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})

	tenant, wf := uuid.MustParse(cmdTenant), uuid.MustParse(cmdWF)
	e, err := event.NewEvent(tenant, "task.completed", "system", nil)
	if err != nil {
		t.Fatal(err)
	}
	e.WithWorkflow(wf).TimestampMs = time.Date(2026, 1, 2, 3, 4, 5, 6e6, time.Local).UnixMilli()
	if _, err := bus.PublishEvent(t.Context(), e); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	args := []string{"-socket", cfg.HTTP.UnixSocket, "-tenant", cmdTenant, "-workflow", cmdWF, "-from", "17", "-n", "2"}
	if code := runTail(cmdTestCtx(t), args, &stdout, &stderr); code != 0 {
		t.Fatalf("runTail() = %d; want 0 (stderr %q)", code, stderr.String())
	}
	got := cmdTestLines(stdout.String())
	want := []string{"-- gap: reset, an unknown number of events missed --", "03:04:05.006 lifecycle task.completed wf=9b2d7c4e source=system"}
	if len(got) != 2 || len(got[0]) < 13 || got[0][13:] != want[0] || got[1] != want[1] {
		t.Fatalf("stdout =\n%s\nwant a reset gap, then\n%s", stdout.String(), want[1])
	}
}
