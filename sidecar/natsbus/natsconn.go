package natsbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/flovyn/eventhook/internal/holder"
)

// natsConn is a connection to NATS, embedded or external, that keeps reconnecting forever and tells whether it is up.
type natsConn struct {
	nc        *nats.Conn
	embedded  *server.Server // nil with an external cluster
	storeLock *holder.Lock   // the embedded server's store, held while it runs
	up        atomic.Bool
	log       *slog.Logger

	closed     chan struct{} // closed by nats.go's ClosedHandler, once the connection is closed for good
	closedOnce sync.Once

	mu     sync.Mutex
	lostCh chan struct{} // closed when the connection drops; a new one after a reconnect
	backCh chan struct{} // closed when the connection is up again; a new one after it drops
}

// lost returns a channel that is closed when the connection drops (already closed while it is down), so that waits for
// an ack end at once instead of at their timeout.
func (c *natsConn) lost() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lostCh == nil {
		c.lostCh = make(chan struct{})
		if !c.up.Load() {
			close(c.lostCh)
		}
	}
	return c.lostCh
}

// back returns a channel that is closed when the connection is up (already closed while it is up), so that a publish
// caught by a drop can send again once the client has reconnected.
func (c *natsConn) back() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.backCh == nil {
		c.backCh = make(chan struct{})
		if c.up.Load() {
			close(c.backCh)
		}
	}
	return c.backCh
}

func (c *natsConn) setUp(up bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.up.Store(up)
	switch {
	case !up:
		closeOnce(c.lostCh)
		c.backCh = nil // made again, open, on the next call to back
	case up:
		closeOnce(c.backCh)
		c.lostCh = nil // made again, open, on the next call to lost
	}
}

// closeOnce closes ch unless it is nil or closed.
func closeOnce(ch chan struct{}) {
	if ch == nil {
		return
	}
	select {
	case <-ch:
	default:
		close(ch)
	}
}

// connectNATS starts the embedded server when cfg says so, or connects to the external cluster. Start-up waits up to
// nats.connect_timeout for a server and says clearly what failed. Publishes are never buffered while disconnected:
// they fail at once, so a client gets a fast 503 rather than an ack that may never come.
func connectNATS(ctx context.Context, cfg ConnOptions, name string, log *slog.Logger) (*natsConn, error) {
	c := &natsConn{log: log, closed: make(chan struct{})}
	timeout := cfg.ConnectTimeout
	if timeout <= 0 {
		timeout = DefaultConnectTimeout
	}
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(100*time.Millisecond, time.Second),
		nats.ReconnectBufSize(-1), // fail publishes at once while disconnected
		nats.Timeout(timeout),
		nats.PingInterval(5 * time.Second),
		nats.MaxPingsOutstanding(2),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			c.setUp(false)
			if err == nil {
				log.Debug("NATS connection closed") // our own close at shutdown
				return
			}
			log.Warn("NATS disconnected", slog.Any("err", err))
		}),
		nats.ClosedHandler(func(*nats.Conn) { c.closedOnce.Do(func() { close(c.closed) }) }),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			c.setUp(true)
			log.Info("NATS reconnected", slog.String("server", nc.ConnectedUrlRedacted()))
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			log.Warn("NATS error", slog.String("subject", subj), slog.Any("err", err))
		}),
	}
	var url string
	if cfg.Embedded {
		lock, err := holder.LockDir(cfg.StoreDir) // one daemon per store: two would both write it
		if err != nil {
			return nil, fmt.Errorf("nats.store_dir: %w", err)
		}
		s, err := StartEmbedded(cfg, log)
		if err != nil {
			lock.Unlock()
			return nil, err
		}
		c.embedded, c.storeLock = s, lock
		opts = append(opts, nats.InProcessServer(s))
	} else {
		url = strings.Join(cfg.URLs, ",")
		opts = append(opts, nats.RetryOnFailedConnect(false))
		if cfg.CredsFile != "" {
			opts = append(opts, nats.UserCredentials(cfg.CredsFile))
		}
		if cfg.Token != "" {
			opts = append(opts, nats.Token(cfg.Token))
		}
		if cfg.TLS.CAFile != "" {
			opts = append(opts, nats.RootCAs(cfg.TLS.CAFile))
		}
		if cfg.TLS.CertFile != "" {
			opts = append(opts, nats.ClientCert(cfg.TLS.CertFile, cfg.TLS.KeyFile))
		}
	}
	deadline := time.Now().Add(timeout)
	for {
		nc, err := nats.Connect(url, opts...)
		if err == nil {
			c.nc = nc
			c.setUp(true)
			return c, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil || isPermanentConnectError(err) {
			c.closeServer()
			where := "the embedded server"
			if url != "" {
				where = redactURLs(cfg.URLs)
			}
			return nil, fmt.Errorf("connect to NATS at %s within %v: %w", where, timeout, err)
		}
		select {
		case <-time.After(250 * time.Millisecond):
		case <-ctx.Done():
		}
	}
}

func isPermanentConnectError(err error) bool {
	return errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) ||
		strings.Contains(err.Error(), "tls:") || strings.Contains(err.Error(), "credentials")
}

// redactURLs lists the servers without any user or password in their URLs.
func redactURLs(urls []string) string {
	out := make([]string, len(urls))
	for i, u := range urls {
		if at := strings.LastIndexByte(u, '@'); at >= 0 {
			if scheme := strings.Index(u, "://"); scheme >= 0 && scheme < at {
				u = u[:scheme+3] + "***@" + u[at+1:]
			}
		}
		out[i] = u
	}
	return strings.Join(out, ",")
}

// connected reports whether the connection is up now.
func (c *natsConn) connected() bool { return c.up.Load() && c.nc.IsConnected() }

// drainTimeout bounds the wait for a drain to end (nats.go's own drain timeout is 30s).
const drainTimeout = 5 * time.Second

// close drains the connection, waits (at most drainTimeout) for nats.go to report it closed, then shuts the embedded
// server down.
func (c *natsConn) close() {
	if c.nc != nil {
		if err := c.nc.Drain(); err != nil {
			c.nc.Close()
		}
		t := time.NewTimer(drainTimeout)
		select {
		case <-c.closed:
		case <-t.C:
			c.log.Warn("NATS drain did not end in time; closing", slog.Duration("after", drainTimeout))
		}
		t.Stop()
		c.nc.Close()
	}
	c.closeServer()
}

func (c *natsConn) closeServer() {
	if c.embedded != nil {
		c.embedded.Shutdown()
		c.embedded.WaitForShutdown()
		c.embedded = nil
		c.storeLock.Unlock()
	}
}
