package natsbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flovyn/eventhook/sidecar/bus"
)

// Whether the store can write.
//
// A JetStream that cannot store — its disk full, its storage limit reached, JetStream disabled by the server — answers a
// publish with an error (insufficient resources) or, after a critical write error of a file store, not at all: every
// publish would wait out publish_timeout while the readiness probe, which only read, said ready. So:
//
//   - the readiness probe (Ping) stores something: a small message on probeSubject in the index stream (eventhook's
//     own, on the same store as the events when the server is embedded), deleted at once;
//   - a probe or a publish that meets a store problem marks the store down: from then on every publish fails at once
//     with ErrStoreFull, and readiness is false, until a probe stores again. While it is down, a probe runs every
//     recoverEvery;
//   - with the embedded server, a file store that met a write error stays wedged even once space is back, so the
//     sidecar restarts the server's JetStream (its streams are read back from disk) when the disk has room again, at
//     most every restartEvery, and probes on.

// Timings and thresholds of the store's health.
const (
	probeSubject = IndexPrefix + "eventhook.probe"
	probeTimeout = 2 * time.Second
	recoverEvery = time.Second
	restartEvery = 5 * time.Second
	minFreeBytes = 1 << 20 // an embedded store's disk with less free is full
)

// JetStream API error codes of a store that cannot take more.
const (
	errCodeInsufficientResources = 10023
	errCodeMemoryExceeded        = 10028
	errCodeStorageExceeded       = 10047
)

// storeHealth is the store's state: why publishes fail at once, or nil while the store writes.
type storeHealth struct {
	down       atomic.Pointer[string]
	recovering atomic.Bool
}

// storeDownErr returns the error of a publish while the store is down, or nil.
func (b *JetStream) storeDownErr() error {
	if why := b.store.down.Load(); why != nil {
		return fmt.Errorf("publish: %w: %w: %s", bus.ErrUnavailable, bus.ErrStoreFull, *why)
	}
	return nil
}

// probe stores a small message and deletes it, within probeTimeout: nil when the store writes. A store problem marks the
// store down; a probe that stores marks it up.
func (b *JetStream) probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	ack, err := b.js.Publish(ctx, probeSubject, nil)
	if err == nil {
		_ = b.index.DeleteMsg(ctx, ack.Sequence) // a probe left behind is a few bytes, gone with the index's max age
		b.storeUp()
		return nil
	}
	if why := b.storeProblem(err); why != "" {
		b.storeDown(why)
		return fmt.Errorf("%s: %w", why, err)
	}
	return fmt.Errorf("stream %s did not store a probe: %w", b.index.CachedInfo().Config.Name, err)
}

// noteStore looks at the errors of a publish for a store problem.
func (b *JetStream) noteStore(errs []error) {
	for _, err := range errs {
		if err == nil || errors.Is(err, bus.ErrStoreFull) {
			continue
		}
		if why := b.storeProblem(err); why != "" {
			b.storeDown(why)
		}
		return
	}
}

// storeProblem says why err means the store cannot write, or "" when it does not: an error of a full store, or no
// answer from an embedded server whose disk is full.
func (b *JetStream) storeProblem(err error) string {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case errCodeInsufficientResources, errCodeMemoryExceeded, errCodeStorageExceeded,
			jetstream.JSErrCodeJetStreamNotEnabled, jetstream.JSErrCodeJetStreamNotEnabledForAccount:
			return "JetStream cannot store: " + apiErr.Description
		}
	}
	timedOut := errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, bus.ErrUnconfirmed) || errors.Is(err, jetstream.ErrNoStreamResponse)
	if timedOut {
		return b.diskFull()
	}
	return ""
}

// diskFull says why the embedded server's disk is full, or "" when it has room (or the server is not embedded).
func (b *JetStream) diskFull() string {
	if !b.o.Conn.Embedded {
		return ""
	}
	if free, ok := freeBytes(b.o.Conn.StoreDir); ok && free < minFreeBytes {
		return fmt.Sprintf("the disk of nats.store_dir %s is full (%d bytes free)", b.o.Conn.StoreDir, free)
	}
	return ""
}

// storeDown makes publishes fail at once for why, and starts the recovery unless it runs.
func (b *JetStream) storeDown(why string) {
	if b.store.down.Swap(&why) == nil {
		b.log.Warn("the store cannot write: publishes fail at once until it can", slog.String("reason", why))
	}
	if b.store.recovering.CompareAndSwap(false, true) {
		b.wg.Add(1)
		go b.recoverStore() // ends when a probe stores, or when the bus closes
	}
}

// storeUp ends a store outage.
func (b *JetStream) storeUp() {
	if b.store.down.Swap(nil) != nil {
		b.log.Info("the store writes again: publishing resumes")
	}
}

// recoverStore probes every recoverEvery until the store writes; with the embedded server, it restarts JetStream once
// the disk has room again.
func (b *JetStream) recoverStore() {
	defer b.wg.Done()
	defer b.store.recovering.Store(false)
	tick := time.NewTicker(recoverEvery)
	defer tick.Stop()
	var restarted time.Time
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-tick.C:
		}
		if b.probe(b.ctx) == nil {
			return
		}
		if s := b.conn.embedded; s != nil && time.Since(restarted) >= restartEvery {
			if free, ok := freeBytes(b.o.Conn.StoreDir); ok && free >= minFreeBytes {
				restarted = time.Now()
				b.restartJetStream(s)
			}
		}
	}
}

// restartJetStream restarts the embedded server's JetStream, which reads its streams and consumers back from the store:
// a file store that met a write error writes again only then.
func (b *JetStream) restartJetStream(s *server.Server) {
	cfg := s.JetStreamConfig()
	if cfg == nil {
		return
	}
	if err := s.ShutdownJetStream(); err != nil {
		b.log.Warn("restarting JetStream: shutdown failed", slog.Any("err", err))
		return
	}
	err := s.EnableJetStream(&server.JetStreamConfig{StoreDir: b.o.Conn.StoreDir, MaxMemory: cfg.MaxMemory,
		MaxStore: cfg.MaxStore, SyncAlways: cfg.SyncAlways, SyncInterval: cfg.SyncInterval})
	if err != nil {
		b.log.Error("restarting JetStream failed; restart the sidecar", slog.Any("err", err))
		return
	}
	b.log.Info("JetStream restarted: the disk has room again")
}
