package sidecar

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/flovyn/eventhook/sidecar/bus"
	"github.com/flovyn/eventhook/sidecar/config"
	"github.com/flovyn/eventhook/sidecar/event"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/flovyn/eventhook/internal/holder"
	"github.com/flovyn/eventhook/sidecar/console"
)

// Options are what NewServer needs.
type Options struct {
	// Config is the validated configuration.
	Config *config.Config
	// Bus is the backend; the server does not close it.
	Bus bus.Bus
	// Logger receives the server's logs; nil means slog.Default().
	Logger *slog.Logger
	// Registry receives the metrics and serves /metrics; nil means a fresh registry with the process and Go collectors
	// (process_resident_memory_bytes, process_cpu_seconds_total, …).
	Registry *prometheus.Registry
}

// Server is the sidecar's HTTP front end: the publish API, the SSE streams and the operations endpoints, served by one
// handler on TCP and on a Unix socket.
//
// Lifecycle: NewServer, then Listen (opens the listeners), then Serve (blocks), and Shutdown from another goroutine, which
// ends the SSE streams, waits for in-flight requests and removes the socket file. The server does not close the bus.
type Server struct {
	cfg           *config.Config
	bus           bus.Bus
	log           *slog.Logger
	metrics       *Metrics
	registry      *prometheus.Registry
	defaultTenant uuid.UUID
	routes        []route
	handler       http.Handler
	mux           *http.ServeMux
	subs          subscriberLimits
	bodies        *bodyBudget                   // http.body_budget
	auth          atomic.Pointer[authenticator] // replaced by ReloadAuth
	authGen       atomic.Uint64                 // counts ReloadAuth calls: an SSE stream checks its token again after one
	reloaded      atomic.Pointer[signal]        // cancelled by the next ReloadAuth: wakes the SSE streams
	openapiCache

	streamsCtx  context.Context // cancelled when the server shuts down: every SSE stream ends
	stopStreams context.CancelFunc
	streams     sync.WaitGroup // the SSE goroutines (sseConn.run): hijacked, so the http.Server does not wait for them
	// streamEnding, when set, runs as each SSE goroutine ends. Tests use it to make streams slow to end.
	streamEnding func()

	mu         sync.Mutex
	httpSrv    *http.Server
	tcp        net.Listener
	unix       net.Listener
	socketPath string
	socketInfo os.FileInfo
}

// NewServer builds a server from opts. It returns an error when the metrics cannot be registered.
func NewServer(opts Options) (*Server, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
		opts.Registry.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), collectors.NewGoCollector())
	}
	m, err := NewMetrics(opts.Registry)
	if err == nil {
		err = registerBusMetrics(opts.Registry, opts.Bus)
	}
	if err == nil {
		err = opts.Registry.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "eventhook_backend_connected", Help: "1 when the backend is connected to its server (always 1 for memory).",
		}, func() float64 {
			if c, ok := opts.Bus.(bus.Connectivity); ok && !c.Connected() {
				return 0
			}
			return 1
		}))
	}
	if err != nil {
		return nil, fmt.Errorf("register metrics: %w", err)
	}
	s := &Server{cfg: opts.Config, bus: opts.Bus, log: opts.Logger, metrics: m, registry: opts.Registry}
	s.defaultTenant, _ = opts.Config.DefaultTenant()
	a, err := newAuthenticator(opts.Config.Auth)
	if err != nil {
		return nil, err
	}
	s.auth.Store(a)
	s.reloaded.Store(newSignal())
	s.bodies = newBodyBudget(opts.Config.HTTP.BodyBudget)
	s.subs = newSubscriberLimits(opts.Config.SSE.MaxSubscribers, opts.Config.SSE.MaxSubscribersPerTenant)
	s.streamsCtx, s.stopStreams = context.WithCancel(context.Background())
	s.routes = s.buildRoutes()
	s.handler = s.withCORS(s.withAuth(s.buildHandler()))
	if opts.Config.HTTP.ConsoleEnabled() { // the console's static files, before auth: they hold no data
		s.handler = console.Handler(s.handler)
	}
	m.backendUp.Set(1)
	return s, nil
}

// Handler returns the server's HTTP handler (for tests and for embedding).
func (s *Server) Handler() http.Handler { return s.handler }

// route is one endpoint of the API. The router and the OpenAPI document are both built from the route table.
type route struct {
	method, path string
	summary      string
	kind         routeKind
	handler      http.HandlerFunc
}

type routeKind uint8

const (
	routeOps routeKind = iota
	routePublish
	routeStream
)

func (s *Server) buildRoutes() []route {
	return []route{
		{http.MethodPost, "/v1/events", "Publish one lifecycle event", routePublish, s.budgeted(s.eventBodyLimit, s.handlePublishEvent)},
		{http.MethodPost, "/v1/events/batch", "Publish up to 1000 lifecycle events (NDJSON or a JSON array)", routePublish, s.budgeted(s.batchLimit, s.handlePublishBatch)},
		{http.MethodPost, "/v1/streams", "Publish generic stream events (one, NDJSON or a JSON array)", routePublish, s.budgeted(s.batchLimit, s.handlePublishStreams)},
		{http.MethodGet, "/workflow-executions/{id}/stream", "A workflow's lifecycle events merged with its generic stream (SSE)", routeStream, s.handleWorkflowStream},
		{http.MethodGet, "/task-executions/{id}/stream", "A task's lifecycle events merged with its generic stream (SSE)", routeStream, s.handleTaskStream},
		{http.MethodGet, "/events/stream", "A tenant's lifecycle events, filtered (SSE)", routeStream, s.handleTenantStream},
		{http.MethodGet, "/healthz", "Liveness: the process answers", routeOps, s.handleHealthz},
		{http.MethodGet, "/readyz", "Readiness: the backend is reachable and usable", routeOps, s.handleReadyz},
		{http.MethodGet, "/metrics", "Prometheus metrics", routeOps, s.handleMetrics},
		{http.MethodGet, "/openapi.json", "This API as OpenAPI 3.1", routeOps, s.handleOpenAPI},
	}
}

// routeFor returns the route serving r, or nil.
func (s *Server) routeFor(r *http.Request) *route {
	_, pattern := s.mux.Handler(r)
	for i := range s.routes {
		if s.routes[i].path == pattern && s.routes[i].method == r.Method {
			return &s.routes[i]
		}
	}
	return nil
}

// buildHandler routes by path with http.ServeMux and by method itself, so that 404 and 405 are problem+json too.
func (s *Server) buildHandler() http.Handler {
	mux := http.NewServeMux()
	s.mux = mux
	byPath := map[string][]route{}
	var paths []string
	for _, rt := range s.routes {
		if byPath[rt.path] == nil {
			paths = append(paths, rt.path)
		}
		byPath[rt.path] = append(byPath[rt.path], rt)
	}
	for _, p := range paths {
		rts := byPath[p]
		mux.HandleFunc(p, func(w http.ResponseWriter, r *http.Request) {
			var allow []string
			for _, rt := range rts {
				if r.Method == rt.method {
					rt.handler(w, r)
					return
				}
				allow = append(allow, rt.method)
			}
			w.Header().Set("Allow", strings.Join(allow, ", "))
			s.writeError(w, r, &errStatus{status: http.StatusMethodNotAllowed,
				detail: fmt.Sprintf("%s does not accept %s; use %s", r.URL.Path, r.Method, strings.Join(allow, " or "))})
		})
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, &errStatus{status: http.StatusNotFound,
			detail: fmt.Sprintf("no route %s; see /openapi.json for the API", r.URL.Path)})
	})
	return mux
}

// withCORS sets the CORS headers on every answer to a request from an allowed origin — 2xx, every 4xx (401 and 404
// included), 429, 503 and the SSE stream — so that a page can read why a request failed rather than see a network error;
// and it answers preflight requests, for any path.
func (s *Server) withCORS(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin == "" || !s.originAllowed(origin) {
			next.ServeHTTP(w, r)
			return
		}
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", origin)
		h.Add("Vary", "Origin")
		h.Set("Access-Control-Expose-Headers", "Retry-After, WWW-Authenticate")
		if r.Method != http.MethodOptions || r.Header.Get("Access-Control-Request-Method") == "" {
			next.ServeHTTP(w, r)
			return
		}
		h.Set("Access-Control-Allow-Methods", "GET, POST")
		h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, Flovyn-Tenant-Id, Flovyn-Org-Id, Last-Event-ID")
		h.Set("Access-Control-Max-Age", "600")
		w.WriteHeader(http.StatusNoContent)
	})
}

func (s *Server) originAllowed(origin string) bool {
	for _, o := range s.cfg.HTTP.CORSOrigins {
		if o == "*" || o == origin || config.NormalizeOrigin(o) == origin {
			return true
		}
	}
	return false
}

// writeJSON writes v as JSON with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	if w.Header().Get("Content-Type") == "" {
		w.Header().Set("Content-Type", "application/json")
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // the client may be gone; nothing to do about it
}

func (s *Server) handleHealthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	if p, ok := s.bus.(bus.Pinger); ok {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := p.Ping(ctx); err != nil {
			s.metrics.backendUp.Set(0)
			s.log.LogAttrs(r.Context(), slog.LevelWarn, "not ready", slog.Any("err", err))
			writeProblem(w, event.Problem{Status: http.StatusServiceUnavailable, RetryAfter: time.Second,
				Detail: "the event backend is not usable: " + err.Error()})
			return
		}
		s.metrics.backendUp.Set(1)
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready", "backend": s.cfg.Backend})
}

func (s *Server) handleMetrics(w http.ResponseWriter, r *http.Request) {
	promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{}).ServeHTTP(w, r)
}

// ReloadAuth replaces the tokens and the socket's auth mode with those of cfg (the rest of the configuration is not
// reloaded). Requests are checked against the new tokens at once, and every open SSE stream is woken to check the
// token it was opened with again: it ends when that token may no longer subscribe to its tenant. A token read from an environment variable is read again from the process
// environment, which does not change after start. On error nothing changes.
func (s *Server) ReloadAuth(cfg config.Auth) error {
	a, err := newAuthenticator(cfg)
	if err != nil {
		return err
	}
	s.auth.Store(a)
	s.authGen.Add(1)
	s.reloaded.Swap(newSignal()).cancel()
	return nil
}

// signal is a one-shot broadcast: its context is cancelled once.
type signal struct {
	ctx    context.Context
	cancel context.CancelFunc
}

func newSignal() *signal {
	ctx, cancel := context.WithCancel(context.Background())
	return &signal{ctx: ctx, cancel: cancel}
}

// Listen opens the TCP listener (when http.listen is set) and the Unix socket (when http.unix_socket is set). A stale
// socket file (no one answering) is replaced; a live one is an error, and so is a path that is not a socket.
func (s *Server) Listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if addr := s.cfg.HTTP.Listen; addr != "" {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("http.listen: %w", holder.ListenError(addr, err))
		}
		s.tcp = l
	}
	if path := s.cfg.HTTP.UnixSocket; path != "" {
		l, info, err := listenUnix(path, s.cfg.HTTP.SocketMode())
		if err != nil {
			if s.tcp != nil {
				s.tcp.Close()
			}
			return err
		}
		s.unix, s.socketPath, s.socketInfo = l, path, info
	}
	return nil
}

// listenUnix listens on a Unix socket at path with mode. It binds a temporary name in the same directory, sets the mode
// and renames it into place, so the socket is never reachable with looser permissions.
func listenUnix(path string, mode os.FileMode) (net.Listener, os.FileInfo, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, nil, fmt.Errorf("unix socket %s: the path exists and is not a socket; remove it or choose another http.unix_socket", path)
		}
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			c.Close()
			return nil, nil, fmt.Errorf("unix socket %s: another process is serving on it (is eventhook already running?)", path)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, syscall.ENOENT) {
			return nil, nil, fmt.Errorf("unix socket %s: cannot tell whether it is in use: %w", path, err)
		}
	}
	tmp := filepath.Join(filepath.Dir(path), fmt.Sprintf(".%s.%d.tmp", filepath.Base(path), os.Getpid()))
	_ = os.Remove(tmp)
	l, err := net.Listen("unix", tmp)
	if err != nil {
		return nil, nil, fmt.Errorf("listen on unix socket %s: %w", path, err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	if err := os.Chmod(tmp, mode); err != nil {
		l.Close()
		os.Remove(tmp)
		return nil, nil, fmt.Errorf("unix socket %s: set mode %o: %w", path, mode, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		l.Close()
		os.Remove(tmp)
		return nil, nil, fmt.Errorf("unix socket %s: %w", path, err)
	}
	info, err := os.Lstat(path)
	if err != nil {
		l.Close()
		return nil, nil, fmt.Errorf("unix socket %s: %w", path, err)
	}
	return l, info, nil
}

// Addr returns the TCP listener's address, or nil.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tcp == nil {
		return nil
	}
	return s.tcp.Addr()
}

// Serve serves on the listeners opened by Listen until Shutdown. It returns nil after a clean shutdown.
func (s *Server) Serve() error {
	s.mu.Lock()
	if s.httpSrv != nil {
		s.mu.Unlock()
		return errors.New("sidecar: Serve called twice")
	}
	s.httpSrv = &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: s.cfg.HTTP.ReadHeaderTimeout.D(),
		ReadTimeout:       time.Minute, // a body that trickles in (slowloris) is cut; SSE streams set their own deadlines
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		ConnContext:       connContext,
	}
	s.httpSrv.RegisterOnShutdown(s.stopStreams)
	var ls []net.Listener
	for _, l := range []net.Listener{s.tcp, s.unix} {
		if l != nil {
			ls = append(ls, l)
		}
	}
	srv := s.httpSrv
	s.mu.Unlock()
	if len(ls) == 0 {
		return errors.New("sidecar: nothing to serve on: call Listen first, with http.listen or http.unix_socket set")
	}
	errc := make(chan error, len(ls))
	for _, l := range ls {
		go func() { errc <- srv.Serve(l) }() // ends when Shutdown closes l
	}
	var first error
	for range ls {
		if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) && first == nil {
			first = err
		}
	}
	return first
}

// Shutdown stops accepting, ends every SSE stream cleanly, waits (bounded by ctx) for in-flight requests such as
// publishes awaiting their ack and for every SSE goroutine to return, and removes the socket file. It returns ctx's
// error when requests or streams were still running; once it returns nil, the server runs no goroutine of its own and
// holds no subscription, so the bus may be closed.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopStreams()
	s.mu.Lock()
	srv := s.httpSrv
	s.mu.Unlock()
	var err error
	if srv != nil {
		err = srv.Shutdown(ctx)
	} else {
		for _, l := range []net.Listener{s.tcp, s.unix} {
			if l != nil {
				l.Close()
			}
		}
	}
	// The SSE connections are hijacked: the http.Server neither tracks nor waits for them. stopStreams woke each one;
	// every stream's goroutine was added before its handler returned, so before srv.Shutdown returned.
	done := make(chan struct{})
	go func() { // ends when the last stream does, even after ctx expired
		s.streams.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		err = cmp.Or(err, fmt.Errorf("shutdown: SSE streams still running: %w", ctx.Err()))
	}
	s.removeSocket()
	return err
}

// removeSocket removes the socket file if it is still the one this server created.
func (s *Server) removeSocket() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.socketPath == "" {
		return
	}
	if fi, err := os.Lstat(s.socketPath); err == nil && os.SameFile(fi, s.socketInfo) {
		os.Remove(s.socketPath)
	}
	s.socketPath = ""
}

// subscriberLimits counts open SSE streams, globally and per tenant.
type subscriberLimits struct {
	mu        sync.Mutex
	max, per  int
	total     int
	perTenant map[uuid.UUID]int
}

func newSubscriberLimits(max, per int) subscriberLimits {
	return subscriberLimits{max: max, per: per, perTenant: make(map[uuid.UUID]int)}
}

// acquire takes a slot for tenant, or returns a 429 error.
func (l *subscriberLimits) acquire(tenant uuid.UUID) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.max > 0 && l.total >= l.max {
		return &errStatus{status: http.StatusTooManyRequests, retryAfter: 5,
			detail: fmt.Sprintf("the sidecar serves its maximum of %d streams (sse.max_subscribers); retry later", l.max)}
	}
	if l.per > 0 && l.perTenant[tenant] >= l.per {
		return &errStatus{status: http.StatusTooManyRequests, retryAfter: 5,
			detail: fmt.Sprintf("this tenant has its maximum of %d open streams (sse.max_subscribers_per_tenant); close one or retry later", l.per)}
	}
	l.total++
	l.perTenant[tenant]++
	return nil
}

func (l *subscriberLimits) release(tenant uuid.UUID) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.perTenant[tenant]--; l.perTenant[tenant] <= 0 {
		delete(l.perTenant, tenant)
	}
}
