package client

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flovyn/eventhook/sidecar/event"
)

// clientSocketPath returns a path for a Unix socket in a fresh directory, short enough for the 108-byte limit.
func clientSocketPath(t testing.TB) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "eh.sock")
	if len(p) < 100 {
		return p
	}
	dir, err := os.MkdirTemp("", "eh")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "eh.sock")
}

// clientTestServer serves h over TCP or a Unix socket and returns the target to give New.
func clientTestServer(t testing.TB, h http.Handler, unix bool) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	target := ""
	if unix {
		path := clientSocketPath(t)
		ln, err := net.Listen("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		srv.Listener.Close()
		srv.Listener = ln
		target = path
	}
	srv.Start()
	t.Cleanup(srv.Close)
	if target == "" {
		target = srv.URL
	}
	return target
}

func newTestClient(t testing.TB, target, token string) *Sidecar {
	t.Helper()
	c, err := New(target, token)
	if err != nil {
		t.Fatalf("New(%q) error = %v", target, err)
	}
	t.Cleanup(c.Close)
	return c
}

// clientRecorder remembers the last request a test server received.
type clientRecorder struct {
	mu     sync.Mutex
	method string
	path   string
	query  url.Values
	header http.Header
	body   string
}

func (r *clientRecorder) record(req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.method, r.path, r.query, r.header, r.body = req.Method, req.URL.Path, req.URL.Query(), req.Header.Clone(), string(body)
}

func (r *clientRecorder) get() clientRecorder {
	r.mu.Lock()
	defer r.mu.Unlock()
	return clientRecorder{method: r.method, path: r.path, query: r.query, header: r.header, body: r.body}
}

func TestClientNewTargets(t *testing.T) {
	tests := []struct {
		name    string
		target  string
		base    string
		wantErr bool
	}{
		{name: "unix absolute", target: "unix:///run/eventhook/eh.sock", base: "http://eventhook"},
		{name: "unix relative", target: "unix://eh.sock", base: "http://eventhook"},
		{name: "bare relative path", target: "./eventhook.sock", base: "http://eventhook"},
		{name: "bare absolute path", target: "/tmp/x.sock", base: "http://eventhook"},
		{name: "http", target: "http://127.0.0.1:8787", base: "http://127.0.0.1:8787"},
		{name: "http trailing slash", target: "http://127.0.0.1:8787/", base: "http://127.0.0.1:8787"},
		{name: "https with prefix", target: "https://example.com/eventhook/", base: "https://example.com/eventhook"},
		{name: "empty", target: "", wantErr: true},
		{name: "empty unix path", target: "unix://", wantErr: true},
		{name: "other scheme", target: "ftp://example.com", wantErr: true},
		{name: "no host", target: "http://", wantErr: true},
		{name: "query", target: "http://h:1/?a=b", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := New(tt.target, "")
			if (err != nil) != tt.wantErr {
				t.Fatalf("New(%q) error = %v; want error %v", tt.target, err, tt.wantErr)
			}
			if err == nil && c.BaseURL() != tt.base {
				t.Errorf("New(%q).BaseURL() = %q; want %q", tt.target, c.BaseURL(), tt.base)
			}
		})
	}
}

func TestClientPublishEvent(t *testing.T) {
	for _, transport := range []string{"tcp", "unix", "unix-url"} {
		t.Run(transport, func(t *testing.T) {
			var rec clientRecorder
			target := clientTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				rec.record(r)
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusAccepted)
				io.WriteString(w, `{"id":"0b5e1f0e-6d0a-4f4e-9a43-0f3b1d0e9c11","sequence":7,"duplicate":true}`)
			}), transport != "tcp")
			if transport == "unix-url" {
				target = "unix://" + target
			}
			c := newTestClient(t, target, "s3cret")
			const body = `{"event_type":"task.completed"}`
			got, err := c.PublishEvent(t.Context(), []byte(body), "3f0c2b1e-8a4d-4c61-9f0e-2d7b5a9c00e1")
			if err != nil {
				t.Fatalf("PublishEvent() error = %v", err)
			}
			want := event.PublishReply{ID: "0b5e1f0e-6d0a-4f4e-9a43-0f3b1d0e9c11", Sequence: 7, Duplicate: true}
			if got != want {
				t.Errorf("PublishEvent() = %+v; want %+v", got, want)
			}
			req := rec.get()
			checks := []struct{ name, got, want string }{
				{"method", req.method, http.MethodPost},
				{"path", req.path, "/v1/events"},
				{"body", req.body, body},
				{"Content-Type", req.header.Get("Content-Type"), "application/json"},
				{"Authorization", req.header.Get("Authorization"), "Bearer s3cret"},
				{"Flovyn-Tenant-Id", req.header.Get("Flovyn-Tenant-Id"), "3f0c2b1e-8a4d-4c61-9f0e-2d7b5a9c00e1"},
			}
			for _, ck := range checks {
				if ck.got != ck.want {
					t.Errorf("request %s = %q; want %q", ck.name, ck.got, ck.want)
				}
			}
		})
	}
}

func TestClientNoTokenNoTenant(t *testing.T) {
	var rec clientRecorder
	target := clientTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.record(r)
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, `{"id":"x","sequence":1,"duplicate":false}`)
	}), false)
	c := newTestClient(t, target, "")
	if _, err := c.PublishEvent(t.Context(), []byte(`{}`), ""); err != nil {
		t.Fatal(err)
	}
	req := rec.get()
	if v, ok := req.header["Authorization"]; ok {
		t.Errorf("Authorization = %q; want none", v)
	}
	if v, ok := req.header["Flovyn-Tenant-Id"]; ok {
		t.Errorf("Flovyn-Tenant-Id = %q; want none", v)
	}
}

func TestClientProblems(t *testing.T) {
	date := time.Now().Add(90 * time.Second).UTC().Format(http.TimeFormat)
	tests := []struct {
		name        string
		status      int
		contentType string
		body        string
		retryAfter  string
		want        event.Problem
		wantRetry   [2]time.Duration // bounds
		wantError   string
	}{
		{
			name: "problem with field errors", status: 400, contentType: "application/problem+json",
			body: `{"type":"about:blank","title":"Bad Request","status":400,"detail":"invalid event",` +
				`"errors":[{"field":"event_type","message":"must not be empty"},{"field":"source","message":"too long"}]}`,
			want: event.Problem{Type: "about:blank", Title: "Bad Request", Status: 400, Detail: "invalid event",
				Errors: []event.FieldError{{Field: "event_type", Message: "must not be empty"}, {Field: "source", Message: "too long"}}},
			wantError: "400: invalid event (event_type: must not be empty; source: too long)",
		},
		{
			name: "503 with Retry-After seconds", status: 503, contentType: "application/problem+json",
			body:       `{"title":"Service Unavailable","status":503,"detail":"the event backend is unavailable"}`,
			retryAfter: "3",
			want:       event.Problem{Title: "Service Unavailable", Status: 503, Detail: "the event backend is unavailable"},
			wantRetry:  [2]time.Duration{3 * time.Second, 3 * time.Second},
			wantError:  "503: the event backend is unavailable",
		},
		{
			name: "429 with Retry-After date", status: 429, contentType: "application/problem+json",
			body: `{"status":429,"detail":"slow down"}`, retryAfter: date,
			want:      event.Problem{Title: "Too Many Requests", Status: 429, Detail: "slow down"},
			wantRetry: [2]time.Duration{80 * time.Second, 91 * time.Second},
			wantError: "429: slow down",
		},
		{
			name: "non-JSON body", status: 502, contentType: "text/html", body: "<html>bad gateway</html>",
			retryAfter: "soon",
			want:       event.Problem{Title: "Bad Gateway", Status: 502, Detail: "Bad Gateway"},
			wantError:  "502: Bad Gateway",
		},
		{
			name: "malformed JSON body", status: 500, contentType: "application/problem+json", body: `{"status":`,
			want:      event.Problem{Title: "Internal Server Error", Status: 500, Detail: "Internal Server Error"},
			wantError: "500: Internal Server Error",
		},
		{
			name: "status from the response, not the body", status: 413, contentType: "application/problem+json",
			body:      `{"status":200,"detail":"event is 2000000 bytes; at most 1048576 are allowed"}`,
			want:      event.Problem{Title: "Request Entity Too Large", Status: 413, Detail: "event is 2000000 bytes; at most 1048576 are allowed"},
			wantError: "413: event is 2000000 bytes; at most 1048576 are allowed",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			target := clientTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", tt.contentType)
				if tt.retryAfter != "" {
					w.Header().Set("Retry-After", tt.retryAfter)
				}
				w.WriteHeader(tt.status)
				io.WriteString(w, tt.body)
			}), false)
			c := newTestClient(t, target, "")
			_, err := c.PublishEvent(t.Context(), []byte(`{}`), "")
			var p *event.Problem
			if !errors.As(err, &p) {
				t.Fatalf("PublishEvent() error = %v (%T); want a *Problem", err, err)
			}
			if p.RetryAfter < tt.wantRetry[0] || p.RetryAfter > tt.wantRetry[1] {
				t.Errorf("RetryAfter = %v; want within %v", p.RetryAfter, tt.wantRetry)
			}
			got := *p
			got.RetryAfter = 0
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("problem = %+v; want %+v", got, tt.want)
			}
			if err.Error() != tt.wantError {
				t.Errorf("Error() = %q; want %q", err.Error(), tt.wantError)
			}
		})
	}
}

func TestClientPublishBatch(t *testing.T) {
	var rec clientRecorder
	var fail atomic.Bool
	target := clientTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.record(r)
		if fail.Load() {
			w.Header().Set("Content-Type", "application/problem+json")
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `{"status":503,"detail":"backend down","results":[{"index":0,"id":"a","sequence":1},`+
				`{"index":1,"error":{"status":503,"detail":"not stored"}}]}`)
			return
		}
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, `{"results":[{"index":0,"id":"a","sequence":1,"duplicate":false},{"index":1,"id":"b","sequence":2,"duplicate":true}]}`)
	}), true)
	c := newTestClient(t, target, "tok")
	body := "{\"event_type\":\"a\"}\n{\"event_type\":\"b\"}\n"
	got, err := c.PublishBatch(t.Context(), []byte(body), "t1")
	if err != nil {
		t.Fatalf("PublishBatch() error = %v", err)
	}
	want := []event.PublishReply{{Index: 0, ID: "a", Sequence: 1}, {Index: 1, ID: "b", Sequence: 2, Duplicate: true}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("PublishBatch() = %+v; want %+v", got, want)
	}
	req := rec.get()
	if req.path != "/v1/events/batch" || req.body != body || req.header.Get("Content-Type") != "application/x-ndjson" ||
		req.header.Get("Flovyn-Tenant-Id") != "t1" {
		t.Errorf("request = %s %q %q %v; want the batch endpoint, the body, NDJSON and the tenant", req.path, req.body,
			req.header.Get("Content-Type"), req.header)
	}

	fail.Store(true)
	got, err = c.PublishBatch(t.Context(), []byte(body), "")
	var p *event.Problem
	if !errors.As(err, &p) || p.Status != 503 || p.RetryAfter != time.Second {
		t.Fatalf("PublishBatch() error = %#v; want a 503 problem with Retry-After 1s", err)
	}
	want = []event.PublishReply{{Index: 0, ID: "a", Sequence: 1}, {Index: 1, Error: &event.Problem{Status: 503, Detail: "not stored"}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("PublishBatch() results = %+v; want %+v", got, want)
	}
}

func TestClientPublishStreams(t *testing.T) {
	tests := []struct {
		name        string
		reply       string
		contentType string
		want        []event.PublishReply
	}{
		{name: "results", reply: `{"results":[{"index":0,"sequence":1},{"index":1,"sequence":2}]}`,
			want: []event.PublishReply{{Index: 0, Sequence: 1}, {Index: 1, Sequence: 2}}},
		{name: "single", reply: `{"sequence":9,"duplicate":false}`, contentType: "application/json",
			want: []event.PublishReply{{Sequence: 9}}},
		{name: "empty body", reply: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rec clientRecorder
			target := clientTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				rec.record(r)
				w.WriteHeader(http.StatusAccepted)
				io.WriteString(w, tt.reply)
			}), false)
			c := newTestClient(t, target, "")
			got, err := c.PublishStreams(t.Context(), []byte(`{"type":"TOKEN"}`), tt.contentType, "t")
			if err != nil {
				t.Fatalf("PublishStreams() error = %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("PublishStreams() = %+v; want %+v", got, tt.want)
			}
			wantCT := tt.contentType
			if wantCT == "" {
				wantCT = "application/x-ndjson"
			}
			if req := rec.get(); req.path != "/v1/streams" || req.header.Get("Content-Type") != wantCT {
				t.Errorf("request = %s %s; want /v1/streams %s", req.path, req.header.Get("Content-Type"), wantCT)
			}
		})
	}
}

func TestClientPublishHonoursContext(t *testing.T) {
	release := make(chan struct{})
	target := clientTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}), true)
	defer close(release)
	c := newTestClient(t, target, "")
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.PublishEvent(ctx, []byte(`{}`), ""); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("PublishEvent() error = %v; want context.DeadlineExceeded", err)
	}
}

func TestClientStream(t *testing.T) {
	for _, unix := range []bool{false, true} {
		t.Run(map[bool]string{false: "tcp", true: "unix"}[unix], func(t *testing.T) {
			var rec clientRecorder
			target := clientTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				rec.record(r)
				w.Header().Set("Content-Type", "text/event-stream")
				w.Header().Set("Cache-Control", "no-cache")
				io.WriteString(w, "retry: 1000\n\n: keep-alive\n\nid: 5\nevent: token\ndata: hi\n\n")
				w.(http.Flusher).Flush()
				<-r.Context().Done() // a live stream: open until the client goes
			}), unix)
			c := newTestClient(t, target, "tok")
			q := url.Values{"types": {"tokens,task.completed"}}
			sr, body, err := c.Stream(t.Context(), "/workflow-executions/wf-1/stream", q, "4")
			if err != nil {
				t.Fatalf("Stream() error = %v", err)
			}
			defer body.Close()
			ev, err := sr.Next()
			if err != nil || ev != (SSEEvent{ID: "5", Event: "token", Data: "hi"}) {
				t.Fatalf("Next() = %+v, %v; want the token event", ev, err)
			}
			if sr.Retry() != time.Second || sr.Comments() != 1 {
				t.Errorf("Retry(), Comments() = %v, %d; want 1s, 1", sr.Retry(), sr.Comments())
			}
			req := rec.get()
			checks := []struct{ name, got, want string }{
				{"method", req.method, http.MethodGet},
				{"path", req.path, "/workflow-executions/wf-1/stream"},
				{"types", req.query.Get("types"), "tokens,task.completed"},
				{"Accept", req.header.Get("Accept"), "text/event-stream"},
				{"Last-Event-ID", req.header.Get("Last-Event-ID"), "4"},
				{"Authorization", req.header.Get("Authorization"), "Bearer tok"},
			}
			for _, ck := range checks {
				if ck.got != ck.want {
					t.Errorf("request %s = %q; want %q", ck.name, ck.got, ck.want)
				}
			}
			// Closing the body ends the stream: Next returns an error instead of blocking.
			body.Close()
			if _, err := sr.Next(); err == nil {
				t.Errorf("Next() after Close = nil error; want one")
			}
		})
	}
}

func TestClientStreamErrors(t *testing.T) {
	target := clientTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/bad":
			if r.Header.Get("Last-Event-ID") != "" {
				t.Errorf("Last-Event-ID = %q; want none", r.Header.Get("Last-Event-ID"))
			}
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"status":400,"detail":"unknown type \"foo\""}`)
		case "/html":
			w.Header().Set("Content-Type", "text/html")
			io.WriteString(w, "<html></html>")
		default:
			http.NotFound(w, r)
		}
	}), false)
	c := newTestClient(t, target, "")
	_, _, err := c.Stream(t.Context(), "/bad", nil, "")
	var p *event.Problem
	if !errors.As(err, &p) || p.Status != 400 || p.Detail != `unknown type "foo"` {
		t.Errorf("Stream(/bad) error = %v; want the 400 problem", err)
	}
	_, _, err = c.Stream(t.Context(), "/nope", nil, "")
	if !errors.As(err, &p) || p.Status != 404 || p.Detail != "Not Found" {
		t.Errorf("Stream(/nope) error = %v; want a 404 problem", err)
	}
	if _, _, err = c.Stream(t.Context(), "/html", nil, ""); !errors.Is(err, ErrNotEventStream) {
		t.Errorf("Stream(/html) error = %v; want ErrNotEventStream", err)
	}
}

func TestClientDo(t *testing.T) {
	var rec clientRecorder
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { rec.record(r) }))
	defer srv.Close()
	tests := []struct {
		name, target, path, auth string
		wantPath, wantAuth       string
	}{
		{name: "path only", target: srv.URL, path: "/healthz", wantPath: "/healthz", wantAuth: "Bearer tok"},
		{name: "base path prefix", target: srv.URL + "/eh/", path: "/healthz", wantPath: "/eh/healthz", wantAuth: "Bearer tok"},
		{name: "absolute URL kept", target: "http://192.0.2.1:1", path: srv.URL + "/x", wantPath: "/x", wantAuth: "Bearer tok"},
		{name: "own Authorization kept", target: srv.URL, path: "/y", auth: "Basic abc", wantPath: "/y", wantAuth: "Basic abc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestClient(t, tt.target, "tok")
			req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatalf("Do() error = %v", err)
			}
			resp.Body.Close()
			got := rec.get()
			if got.path != tt.wantPath || got.header.Get("Authorization") != tt.wantAuth {
				t.Errorf("request = %s %q; want %s %q", got.path, got.header.Get("Authorization"), tt.wantPath, tt.wantAuth)
			}
		})
	}
}

func TestClientParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0}, {"0", 0}, {"5", 5 * time.Second}, {" 7 ", 7 * time.Second}, {"-1", 0}, {"1.5", 0}, {"soon", 0},
		{now.Add(30 * time.Second).Format(http.TimeFormat), 30 * time.Second},
		{now.Add(-30 * time.Second).Format(http.TimeFormat), 0},
		{"99999999999", 0},
	}
	for _, tt := range tests {
		if got := parseRetryAfter(tt.in, now); got != tt.want {
			t.Errorf("parseRetryAfter(%q) = %v; want %v", tt.in, got, tt.want)
		}
	}
}
