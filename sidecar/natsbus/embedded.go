package natsbus

import (
	"fmt"
	"log/slog"
	"net"
	"strconv"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/flovyn/eventhook/internal/holder"
)

// embeddedMaxMemory is the memory the embedded server's JetStream may hold (memory-storage streams).
const embeddedMaxMemory = 64 << 20

// StartEmbedded starts an in-process NATS server with JetStream and file storage under cfg.StoreDir, for development
// and tests. With cfg.EmbeddedListen empty it accepts in-process connections only; otherwise it also listens there
// (port -1 picks a free port). It returns once the server accepts connections, or an error saying what failed. The
// caller shuts it down with Shutdown and WaitForShutdown after draining its connections.
func StartEmbedded(cfg ConnOptions, log *slog.Logger) (*server.Server, error) {
	opts := &server.Options{
		ServerName:         "eventhook-embedded",
		JetStream:          true,
		StoreDir:           cfg.StoreDir,
		SyncAlways:         cfg.SyncAlways,
		NoSigs:             true,
		NoLog:              true,
		MaxPayload:         8 << 20,
		JetStreamMaxMemory: embeddedMaxMemory,
	}
	if cfg.EmbeddedListen == "" {
		opts.DontListen = true
	} else {
		host, port, err := net.SplitHostPort(cfg.EmbeddedListen)
		if err != nil {
			return nil, fmt.Errorf("nats.embedded_listen %q: %w", cfg.EmbeddedListen, err)
		}
		if opts.Port, err = strconv.Atoi(port); err != nil {
			return nil, fmt.Errorf("nats.embedded_listen %q: port: %w", cfg.EmbeddedListen, err)
		}
		opts.Host = host
		if opts.Port > 0 { // a port that is taken fails now, not after waiting for a server that cannot start
			l, err := net.Listen("tcp", cfg.EmbeddedListen)
			if err != nil {
				return nil, fmt.Errorf("nats.embedded_listen: %w", holder.ListenError(cfg.EmbeddedListen, err))
			}
			l.Close()
		}
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS server: %w", err)
	}
	go s.Start() // Start returns once the server runs; Shutdown stops what it started
	timeout := cfg.ConnectTimeout
	if timeout <= 0 {
		timeout = DefaultConnectTimeout
	}
	if !s.ReadyForConnections(timeout) {
		s.Shutdown()
		s.WaitForShutdown()
		return nil, fmt.Errorf("embedded NATS server not ready within %v (is %s in use, or %s not writable?)",
			timeout, cfg.EmbeddedListen, cfg.StoreDir)
	}
	log.Info("embedded NATS server ready", slog.String("store_dir", cfg.StoreDir),
		slog.String("listen", cfg.EmbeddedListen), slog.Bool("sync_always", cfg.SyncAlways))
	return s, nil
}

// ServerVersion returns the version of the NATS server this build embeds (and builds for the tests).
func ServerVersion() string { return server.VERSION }
