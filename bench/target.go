package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// httpTarget is an HTTP server the bench talks to: the sidecar, or the no-op handler and baseline broadcaster the bench
// serves itself. Every target gets a client built the same way, so that the comparisons measure the server only.
type httpTarget struct {
	name    string // for messages
	network string // "unix" or "tcp"
	addr    string // the socket path or host:port
	prefix  string // path prefix of a base URL, without the trailing slash
	token   string
	base    string // scheme and host requests are sent to
	client  *http.Client
}

// newHTTPTarget returns a target on network ("unix" or "tcp") at addr.
func newHTTPTarget(name, network, addr, prefix, token string) *httpTarget {
	t := &httpTarget{name: name, network: network, addr: addr, prefix: strings.TrimSuffix(prefix, "/"), token: token}
	tr := &http.Transport{
		Proxy:               nil,
		MaxIdleConns:        0,
		MaxIdleConnsPerHost: 1024,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
	var d net.Dialer
	tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) { return d.DialContext(ctx, network, addr) }
	t.base = "http://" + addr
	if network == "unix" {
		t.base = "http://eventhook"
	}
	t.client = &http.Client{Transport: tr}
	return t
}

// targetFromOptions returns the sidecar's target: its URL, or its socket.
func targetFromOptions(o *Options) (*httpTarget, error) {
	if o.URL == "" {
		return newHTTPTarget("sidecar", "unix", o.Socket, "", o.Token), nil
	}
	u, err := url.Parse(o.URL)
	if err != nil || u.Scheme != "http" || u.Host == "" || u.RawQuery != "" {
		return nil, fmt.Errorf("-url %q: want a base URL such as http://127.0.0.1:8787 (https is not benchmarked)", o.URL)
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "80")
	}
	return newHTTPTarget("sidecar", "tcp", host, u.Path, o.Token), nil
}

// describe names the target for the report.
func (t *httpTarget) describe() string {
	if t.network == "unix" {
		return "unix socket " + t.addr
	}
	return "http://" + t.addr + t.prefix
}

// close closes the target's idle connections.
func (t *httpTarget) close() { t.client.CloseIdleConnections() }

// newRequest returns a request of path on the target.
func (t *httpTarget) newRequest(ctx context.Context, method, path string, body []byte) (*http.Request, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, t.base+t.prefix+path, rd)
	if err != nil {
		return nil, err
	}
	if t.token != "" {
		req.Header.Set("Authorization", "Bearer "+t.token)
	}
	return req, nil
}

// post sends body to path and reads the whole answer; it returns an error for a transport failure or a status other
// than want, with the start of the answer.
func (t *httpTarget) post(ctx context.Context, path, contentType string, body []byte, want int) error {
	return t.postHeader(ctx, path, contentType, "", "", body, want)
}

// postHeader is post with one request header more (a stream event's Flovyn-Tenant-Id); none when key is empty.
func (t *httpTarget) postHeader(ctx context.Context, path, contentType, key, value string, body []byte, want int) error {
	req, err := t.newRequest(ctx, http.MethodPost, path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", contentType)
	if key != "" {
		req.Header.Set(key, value)
	}
	resp, err := t.client.Do(req)
	if err != nil {
		return fmt.Errorf("%s: POST %s: %w", t.name, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		return statusError(t.name, "POST "+path, resp)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	return err
}

// get reads path and returns its body, or an error for a status other than 200.
func (t *httpTarget) get(ctx context.Context, path string) ([]byte, error) {
	req, err := t.newRequest(ctx, http.MethodGet, path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := t.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s: GET %s: %w", t.name, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, statusError(t.name, "GET "+path, resp)
	}
	return io.ReadAll(io.LimitReader(resp.Body, 64<<20))
}

// statusError describes an unexpected answer: its status and the start of its body.
func statusError(name, what string, resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	return fmt.Errorf("%s: %s: HTTP %d: %s", name, what, resp.StatusCode, strings.TrimSpace(string(b)))
}

// rawStream is an SSE stream opened on a connection of its own, without an http.Client: the bench decides when (and
// whether) it is read.
type rawStream struct {
	conn net.Conn
	body io.ReadCloser // the decoded (de-chunked) body
}

// openRaw opens the SSE stream at path on a new connection and reads the response headers only. rcvbuf, when
// positive, shrinks the connection's receive buffer (for a TCP stall to bite early).
func (t *httpTarget) openRaw(ctx context.Context, path string, rcvbuf int) (*rawStream, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, t.network, t.addr)
	if err != nil {
		return nil, fmt.Errorf("%s: dial: %w", t.name, err)
	}
	if rcvbuf > 0 {
		if rb, ok := conn.(interface{ SetReadBuffer(int) error }); ok {
			_ = rb.SetReadBuffer(rcvbuf)
		}
	}
	host := "eventhook"
	if t.network == "tcp" {
		host = t.addr
	}
	var req strings.Builder
	req.WriteString("GET " + t.prefix + path + " HTTP/1.1\r\nHost: " + host + "\r\nAccept: text/event-stream\r\n")
	if t.token != "" {
		req.WriteString("Authorization: Bearer " + t.token + "\r\n")
	}
	req.WriteString("\r\n")
	deadline := time.Now().Add(30 * time.Second)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	_ = conn.SetDeadline(deadline)
	if _, err := io.WriteString(conn, req.String()); err != nil {
		conn.Close()
		return nil, fmt.Errorf("%s: GET %s: %w", t.name, path, err)
	}
	resp, err := http.ReadResponse(bufio.NewReaderSize(conn, 256), nil)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("%s: GET %s: %w", t.name, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		err := statusError(t.name, "GET "+path, resp)
		conn.Close()
		return nil, err
	}
	_ = conn.SetDeadline(time.Time{})
	return &rawStream{conn: conn, body: resp.Body}, nil
}

// close closes the stream's connection.
func (s *rawStream) close() { s.conn.Close() }

// localServer is an HTTP server the bench runs itself, on the same kind of transport as the sidecar: a Unix socket in
// a temporary directory, or 127.0.0.1 on a free port.
type localServer struct {
	srv    *http.Server
	ln     net.Listener
	dir    string // the socket's directory, removed at close
	target *httpTarget
	done   chan struct{}
}

// startLocal serves h on the kind of transport network names.
func startLocal(network, token string, h http.Handler) (*localServer, error) {
	s := &localServer{srv: &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}, done: make(chan struct{})}
	var err error
	if network == "unix" {
		// A short path: socket paths are limited to about 100 bytes.
		if s.dir, err = os.MkdirTemp("", "ehbench"); err != nil {
			return nil, err
		}
		path := filepath.Join(s.dir, "noop.sock")
		if s.ln, err = net.Listen("unix", path); err != nil {
			os.RemoveAll(s.dir)
			return nil, err
		}
		s.target = newHTTPTarget("no-op", "unix", path, "", token)
	} else {
		if s.ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return nil, err
		}
		s.target = newHTTPTarget("no-op", "tcp", s.ln.Addr().String(), "", token)
	}
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(s.ln) // ends at close
	}()
	return s, nil
}

// close stops the server at once (open streams included) and removes its socket.
func (s *localServer) close() {
	s.target.close()
	_ = s.srv.Close()
	<-s.done
	if s.dir != "" {
		os.RemoveAll(s.dir)
	}
}

// noopReply is what the no-op handler answers to a single publish: the size and shape of the sidecar's answer.
var noopReply = []byte(`{"id":"00000000-0000-4000-8000-000000000000","sequence":1,"duplicate":false}`)

// noopHandler reads the request body and answers 202 with a canned reply, doing nothing else: the HTTP ceiling.
func noopHandler(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	w.WriteHeader(http.StatusAccepted)
	_, _ = w.Write(noopReply)
}

// broadcaster is the minimal Go SSE broadcaster of the fan-out baseline: a plain net/http handler per client, fed
// through a channel per client by the publish handler, which splits an NDJSON body into events and hands each to every
// client. A full channel blocks the publisher (nothing is dropped, so every event reaches every client).
type broadcaster struct {
	mu      sync.Mutex
	clients map[*bclient]struct{}
}

// bclient is one client of the broadcaster.
type bclient struct {
	ch   chan []byte
	gone chan struct{} // closed when the client's handler returns
}

// broadcasterQueue is the capacity of each client's channel.
const broadcasterQueue = 1024

func newBroadcaster() *broadcaster { return &broadcaster{clients: map[*bclient]struct{}{}} }

// ServeHTTP serves GET .../stream (an SSE stream of every event) and POST /v1/events/batch (an NDJSON batch to
// broadcast); any other request goes to the no-op handler.
func (b *broadcaster) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/stream"):
		b.stream(w, r)
	case r.Method == http.MethodPost && r.URL.Path == "/v1/events/batch":
		b.publish(w, r)
	default:
		noopHandler(w, r)
	}
}

func (b *broadcaster) stream(w http.ResponseWriter, r *http.Request) {
	c := &bclient{ch: make(chan []byte, broadcasterQueue), gone: make(chan struct{})}
	b.mu.Lock()
	b.clients[c] = struct{}{}
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		delete(b.clients, c)
		b.mu.Unlock()
		close(c.gone)
	}()
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	buf := []byte("retry: 2000\n\n")
	if _, err := w.Write(buf); err != nil || rc.Flush() != nil {
		return
	}
	var id uint64
	for {
		select {
		case <-r.Context().Done():
			return
		case ev := <-c.ch:
			buf = appendFrame(buf[:0], &id, ev)
		drain:
			for len(buf) < 32<<10 {
				select {
				case ev = <-c.ch:
					buf = appendFrame(buf, &id, ev)
				default:
					break drain
				}
			}
			if _, err := w.Write(buf); err != nil || rc.Flush() != nil {
				return
			}
		}
	}
}

// appendFrame appends a lifecycle frame of the event data ev, numbered by *id.
func appendFrame(buf []byte, id *uint64, ev []byte) []byte {
	*id++
	buf = append(buf, "id: "...)
	buf = strconv.AppendUint(buf, *id, 10)
	buf = append(buf, "\nevent: lifecycle\ndata: "...)
	buf = append(buf, ev...)
	return append(buf, "\n\n"...)
}

func (b *broadcaster) publish(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	b.mu.Lock()
	clients := make([]*bclient, 0, len(b.clients))
	for c := range b.clients {
		clients = append(clients, c)
	}
	b.mu.Unlock()
	n := 0
	for line := range bytes.SplitSeq(body, []byte("\n")) {
		if line = bytes.TrimSpace(line); len(line) == 0 {
			continue
		}
		n++
		for _, c := range clients {
			select {
			case c.ch <- line:
			case <-c.gone:
			case <-r.Context().Done():
				return
			}
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	fmt.Fprintf(w, `{"results":%d}`, n)
}
