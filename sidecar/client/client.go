package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/flovyn/eventhook/sidecar/event"
)

// ErrNotEventStream is returned by Sidecar.Stream when the server answers 200 with a body that is not text/event-stream:
// the target is most likely not an eventhook sidecar, or the path is wrong.
var ErrNotEventStream = errors.New("sidecar: response is not an event stream")

// maxProblemBytes bounds the error body a Sidecar reads.
const maxProblemBytes = 1 << 20

// Sidecar is a client of one sidecar's HTTP API (the publish endpoints and the SSE streams), over a Unix socket or
// TCP. It is safe for concurrent use.
//
// A Sidecar sets no overall timeout: publishes end when their context does, and streams live until their context is
// cancelled or their body closed.
type Sidecar struct {
	base  url.URL // scheme, host and an optional path prefix
	token string
	http  *http.Client
}

// New returns a client of the sidecar at target: "unix:///abs/path.sock" or "unix://rel/path.sock", a bare
// filesystem path to the socket (such as "./eventhook.sock"), or a base URL "http://host:port" (or https, optionally with
// a path prefix). token, when not empty, is sent on every request as "Authorization: Bearer <token>". It returns an error
// for an empty target or a URL of another scheme. Nothing is dialled until the first request.
func New(target, token string) (*Sidecar, error) {
	c := &Sidecar{token: token}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	switch {
	case target == "":
		return nil, errors.New("new client: empty target: give a socket path or an http:// URL")
	case strings.HasPrefix(target, "http://"), strings.HasPrefix(target, "https://"):
		u, err := url.Parse(target)
		if err != nil {
			return nil, fmt.Errorf("new client: %w", err)
		}
		if u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			return nil, fmt.Errorf("new client: %q: want a base URL such as http://127.0.0.1:8787", target)
		}
		u.Path = strings.TrimSuffix(u.Path, "/")
		u.RawPath = ""
		c.base = *u
	case strings.Contains(target, "://") && !strings.HasPrefix(target, "unix://"):
		return nil, fmt.Errorf("new client: %q: unsupported scheme; use unix://, http:// or https://", target)
	default:
		path := strings.TrimPrefix(target, "unix://")
		if path == "" {
			return nil, fmt.Errorf("new client: %q: empty socket path", target)
		}
		tr.Proxy = nil
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}
		tr.DialTLSContext = nil
		c.base = url.URL{Scheme: "http", Host: "eventhook"}
	}
	c.http = &http.Client{Transport: tr}
	return c, nil
}

// BaseURL returns the base URL requests are sent to: the target's URL, or "http://eventhook" for a Unix socket.
func (c *Sidecar) BaseURL() string { return c.base.String() }

// Close closes the client's idle connections. The client stays usable.
func (c *Sidecar) Close() { c.http.CloseIdleConnections() }

// Do sends req as is, after completing it: a request whose URL has no scheme and host (a path such as "/healthz") is
// sent to the client's target, and the bearer token is added unless req already has an Authorization header. The
// response and errors are those of http.Client.Do: a non-2xx status is not an error here.
func (c *Sidecar) Do(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "" && req.URL.Host == "" {
		u := *req.URL
		u.Scheme, u.Host = c.base.Scheme, c.base.Host
		if c.base.Path != "" {
			u.Path = c.base.Path + "/" + strings.TrimPrefix(u.Path, "/")
			u.RawPath = ""
		}
		req.URL = &u
		req.Host = ""
	}
	if c.token != "" && req.Header.Get("Authorization") == "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	return c.http.Do(req)
}

// PublishEvent publishes one FlovynEvent, given as its JSON form, with POST /v1/events. A non-empty tenant is sent as
// the Flovyn-Tenant-Id header. It returns the sidecar's reply, a *Problem when the sidecar refused the event, or the
// transport's error.
func (c *Sidecar) PublishEvent(ctx context.Context, body []byte, tenant string) (event.PublishReply, error) {
	body, err := c.publish(ctx, "/v1/events", body, "application/json", tenant)
	if err != nil {
		return event.PublishReply{}, err
	}
	var r event.PublishReply
	if err := json.Unmarshal(body, &r); err != nil {
		return event.PublishReply{}, fmt.Errorf("publish event: decode reply: %w", err)
	}
	return r, nil
}

// PublishBatch publishes NDJSON FlovynEvents (one a line, at most 1000) with POST /v1/events/batch and returns one reply
// per event in input order. A non-empty tenant is sent as the Flovyn-Tenant-Id header. On failure it returns a *Problem
// (naming bad entries "[i].field") together with the replies the problem carries: after a 503 part way, those say which
// entries were stored.
func (c *Sidecar) PublishBatch(ctx context.Context, ndjson []byte, tenant string) ([]event.PublishReply, error) {
	return c.publishMany(ctx, "/v1/events/batch", ndjson, "application/x-ndjson", tenant)
}

// PublishStreams publishes StreamEvents with POST /v1/streams: one event, a JSON array or NDJSON, as contentType says
// (empty means application/x-ndjson). A non-empty tenant is sent as the Flovyn-Tenant-Id header. It returns the
// per-entry replies (one for a single event, none when the sidecar sent no body), or errors as PublishBatch does.
func (c *Sidecar) PublishStreams(ctx context.Context, body []byte, contentType, tenant string) ([]event.PublishReply, error) {
	if contentType == "" {
		contentType = "application/x-ndjson"
	}
	return c.publishMany(ctx, "/v1/streams", body, contentType, tenant)
}

func (c *Sidecar) publishMany(ctx context.Context, path string, payload []byte, contentType, tenant string) ([]event.PublishReply, error) {
	body, err := c.publish(ctx, path, payload, contentType, tenant)
	if err != nil {
		var p *event.Problem
		if errors.As(err, &p) {
			return p.Results, err
		}
		return nil, err
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, nil
	}
	var w struct {
		Results []event.PublishReply `json:"results"`
		event.PublishReply
	}
	if err := json.Unmarshal(body, &w); err != nil {
		return nil, fmt.Errorf("publish %s: decode reply: %w", path, err)
	}
	if w.Results == nil {
		return []event.PublishReply{w.PublishReply}, nil
	}
	return w.Results, nil
}

// publish POSTs payload and returns the body of a 2xx answer, or a *Problem.
func (c *Sidecar) publish(ctx context.Context, path string, payload []byte, contentType, tenant string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, path, bytes.NewReader(payload))
	if err != nil {
		return nil, fmt.Errorf("publish %s: %w", path, err)
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Accept", "application/json")
	if tenant != "" {
		req.Header.Set("Flovyn-Tenant-Id", tenant)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("publish %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, readProblem(resp)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("publish %s: read reply: %w", path, err)
	}
	return body, nil
}

// Stream opens the SSE stream at path (such as "/workflow-executions/<id>/stream") with the given query, resuming after
// lastEventID when it is not empty. It returns a reader over the stream and the body, which the caller closes (cancelling
// ctx ends the stream too). Errors are a *Problem for a non-200 status, ErrNotEventStream for a 200 that is not an
// event stream, or the transport's error.
func (c *Sidecar) Stream(ctx context.Context, path string, query url.Values, lastEventID string) (*SSEReader, io.Closer, error) {
	u := &url.URL{Path: path, RawQuery: query.Encode()}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, nil, fmt.Errorf("stream %s: %w", path, err)
	}
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	return c.OpenStream(req)
}

// OpenStream sends req, a GET of an SSE stream prepared by the caller (with extra headers such as Flovyn-Tenant-Id), and
// returns a reader over the stream and the body to close. It sets the Accept header. Errors are as for Stream.
func (c *Sidecar) OpenStream(req *http.Request) (*SSEReader, io.Closer, error) {
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Cache-Control", "no-cache")
	resp, err := c.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("stream %s: %w", req.URL.Path, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, nil, readProblem(resp)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "" {
		if mt, _, _ := mime.ParseMediaType(ct); mt != "text/event-stream" {
			resp.Body.Close()
			return nil, nil, fmt.Errorf("stream %s: %w (Content-Type %q)", req.URL.Path, ErrNotEventStream, ct)
		}
	}
	return NewSSEReader(resp.Body), resp.Body, nil
}

// readProblem turns a non-success response into a *Problem: the problem+json body when there is one, otherwise the
// status text.
func readProblem(resp *http.Response) *event.Problem {
	p := &event.Problem{}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxProblemBytes))
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if mt == "application/problem+json" || mt == "application/json" || strings.HasSuffix(mt, "+json") {
		if err := json.Unmarshal(body, p); err != nil {
			p = &event.Problem{}
		}
	}
	p.Status = resp.StatusCode
	if p.Title == "" {
		p.Title = http.StatusText(resp.StatusCode)
	}
	if p.Detail == "" {
		p.Detail = p.Title
		if p.Detail == "" {
			p.Detail = "HTTP status " + strconv.Itoa(resp.StatusCode)
		}
	}
	p.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	return p
}

// parseRetryAfter reads a Retry-After value, delay-seconds or an HTTP date; 0 when absent or invalid.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		if s < 0 || s > int64(24*time.Hour/time.Second) {
			return 0
		}
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}
