package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flovyn/eventhook/sidecar/config"
)

// cmdTestTimeout bounds every command run by these tests.
const cmdTestTimeout = 10 * time.Second

// cmdTestServe serves h over TCP or over a Unix socket in a temporary directory, and returns the flags that point a
// command at it.
func cmdTestServe(t testing.TB, h http.Handler, unix bool) []string {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	var flags []string
	if unix {
		path := filepath.Join(t.TempDir(), "eh.sock")
		if len(path) >= 100 { // Unix socket paths are limited to 108 bytes
			dir, err := os.MkdirTemp("", "eh")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(dir) })
			path = filepath.Join(dir, "eh.sock")
		}
		ln, err := net.Listen("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		srv.Listener.Close()
		srv.Listener = ln
		flags = []string{"-socket", path}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	if flags == nil {
		flags = []string{"-url", srv.URL}
	}
	return flags
}

// cmdTestTransports runs f over TCP and over a Unix socket.
func cmdTestTransports(t *testing.T, f func(t *testing.T, unix bool)) {
	for _, unix := range []bool{false, true} {
		name := "tcp"
		if unix {
			name = "unix"
		}
		t.Run(name, func(t *testing.T) { f(t, unix) })
	}
}

// cmdTestBuffer is a bytes.Buffer safe for a command writing while the test reads.
type cmdTestBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *cmdTestBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *cmdTestBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// cmdTestLines splits output into lines.
func cmdTestLines(s string) []string {
	s = strings.TrimSuffix(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// cmdTestRequest is what a fake sidecar received.
type cmdTestRequest struct {
	Method, Path, Query string
	Header              http.Header
	Body                string
}

// cmdTestRecorder records the requests of a fake sidecar.
type cmdTestRecorder struct {
	mu   sync.Mutex
	reqs []cmdTestRequest
}

func (r *cmdTestRecorder) record(req *http.Request) cmdTestRequest {
	body, _ := io.ReadAll(req.Body)
	c := cmdTestRequest{Method: req.Method, Path: req.URL.Path, Query: req.URL.RawQuery, Header: req.Header.Clone(), Body: string(body)}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reqs = append(r.reqs, c)
	return c
}

func (r *cmdTestRecorder) all() []cmdTestRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]cmdTestRequest(nil), r.reqs...)
}

func cmdTestCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), cmdTestTimeout)
	t.Cleanup(cancel)
	return ctx
}

// cmdTestRefuse is a fake sidecar that fails the test on any request.
func cmdTestRefuse(t *testing.T) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("unexpected request %s %s", r.Method, r.URL)
		http.Error(w, "unexpected", http.StatusTeapot)
	})
}

const (
	cmdTenant = "3f0c2b1e-8a4d-4c61-9f0e-2d7b5a9c00e1"
	cmdWF     = "9b2d7c4e-1f3a-4e5b-8c6d-7e8f9a0b1c2d"
	cmdTask   = "5e6f7a8b-9c0d-4e1f-8a2b-3c4d5e6f7a8b"
	cmdID     = "0b5e1f0e-6d0a-4f4e-9a43-0f3b1d0e9c11"
)

func TestPublishFlags(t *testing.T) {
	cmdTestTransports(t, func(t *testing.T, unix bool) {
		var rec cmdTestRecorder
		conn := cmdTestServe(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rec.record(r)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusAccepted)
			fmt.Fprintf(w, `{"id":%q,"sequence":3,"duplicate":false}`, cmdID)
		}), unix)
		args := append(conn, "-token", "tok", "-tenant", cmdTenant, "-type", "task.completed", "-workflow", cmdWF,
			"-task", cmdTask, "-source", "worker:1", "-data", `{"a": [1, 2], "b": "x y"}`, "-correlation-id", "c-1",
			"-id", cmdID)
		var stdout, stderr bytes.Buffer
		if code := runPublish(cmdTestCtx(t), args, strings.NewReader(""), &stdout, &stderr); code != 0 {
			t.Fatalf("runPublish() = %d; want 0 (stderr %q)", code, stderr.String())
		}
		if want := `{"id":"` + cmdID + `","sequence":3,"duplicate":false}` + "\n"; stdout.String() != want {
			t.Errorf("stdout = %q; want %q", stdout.String(), want)
		}
		reqs := rec.all()
		if len(reqs) != 1 {
			t.Fatalf("requests = %d; want 1", len(reqs))
		}
		req := reqs[0]
		wantBody := `{"id":"` + cmdID + `","tenant_id":"` + cmdTenant + `","workflow_execution_id":"` + cmdWF +
			`","task_execution_id":"` + cmdTask + `","event_type":"task.completed","source":"worker:1",` +
			`"data":{"a":[1,2],"b":"x y"},"correlation_id":"c-1"}`
		checks := []struct{ name, got, want string }{
			{"method", req.Method, http.MethodPost},
			{"path", req.Path, "/v1/events"},
			{"body", req.Body, wantBody},
			{"Content-Type", req.Header.Get("Content-Type"), "application/json"},
			{"Authorization", req.Header.Get("Authorization"), "Bearer tok"},
			{"Flovyn-Tenant-Id", req.Header.Get("Flovyn-Tenant-Id"), cmdTenant},
		}
		for _, c := range checks {
			if c.got != c.want {
				t.Errorf("request %s = %q; want %q", c.name, c.got, c.want)
			}
		}
	})
}

// TestPublishOrgFlag: -org is another name of -tenant, for the header and the event's tenant_id alike; with -tenant it
// must name the same tenant.
func TestPublishOrgFlag(t *testing.T) {
	var rec cmdTestRecorder
	conn := cmdTestServe(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.record(r)
		w.WriteHeader(http.StatusAccepted)
		fmt.Fprintf(w, `{"id":%q,"sequence":1,"duplicate":false}`, cmdID)
	}), true)
	for _, args := range [][]string{
		{"-org", cmdTenant},
		{"-tenant", cmdTenant, "-org", strings.ToUpper(cmdTenant)},
	} {
		var stdout, stderr bytes.Buffer
		if code := runPublish(cmdTestCtx(t), append(append(append([]string(nil), conn...), args...), "-type", "a.b"), nil, &stdout, &stderr); code != 0 {
			t.Fatalf("runPublish(%q) = %d; want 0 (stderr %q)", args, code, stderr.String())
		}
	}
	for i, req := range rec.all() {
		if got := req.Header.Get("Flovyn-Tenant-Id"); got != cmdTenant {
			t.Errorf("request %d: Flovyn-Tenant-Id = %q; want %q", i, got, cmdTenant)
		}
		if want := `{"tenant_id":"` + cmdTenant + `","event_type":"a.b","data":null}`; req.Body != want {
			t.Errorf("request %d: body = %s; want %s", i, req.Body, want)
		}
	}
	// Stdin events are sent as they are: an org_id in them reaches the sidecar unchanged.
	var stdout, stderr bytes.Buffer
	line := `{"org_id":"` + cmdTenant + `","event_type":"a.b"}`
	srv := &cmdTestBatchServer{}
	batchConn := cmdTestServe(t, srv, false)
	if code := runPublish(cmdTestCtx(t), append(batchConn, "-org", cmdTenant), strings.NewReader(line+"\n"), &stdout, &stderr); code != 0 {
		t.Fatalf("runPublish(stdin) = %d; want 0 (stderr %q)", code, stderr.String())
	}
	if reqs := srv.rec.all(); len(reqs) != 1 || reqs[0].Body != line+"\n" || reqs[0].Header.Get("Flovyn-Tenant-Id") != cmdTenant {
		t.Errorf("batch requests %+v; want the line as it was, with the tenant header", reqs)
	}
}

func TestPublishMinimalEventTokenFromEnv(t *testing.T) {
	t.Setenv("EVENTHOOK_TOKEN", "from-env")
	var rec cmdTestRecorder
	conn := cmdTestServe(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.record(r)
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, `{"id":"x","sequence":1,"duplicate":true}`)
	}), true)
	var stdout, stderr bytes.Buffer
	if code := runPublish(cmdTestCtx(t), append(conn, "-type", "workflow.started"), nil, &stdout, &stderr); code != 0 {
		t.Fatalf("runPublish() = %d; want 0 (stderr %q)", code, stderr.String())
	}
	req := rec.all()[0]
	if want := `{"event_type":"workflow.started","data":null}`; req.Body != want {
		t.Errorf("body = %s; want %s", req.Body, want)
	}
	if got := req.Header.Get("Authorization"); got != "Bearer from-env" {
		t.Errorf("Authorization = %q; want the token of EVENTHOOK_TOKEN", got)
	}
	if _, ok := req.Header["Flovyn-Tenant-Id"]; ok {
		t.Errorf("Flovyn-Tenant-Id sent without -tenant")
	}
	if want := `{"id":"x","sequence":1,"duplicate":true}` + "\n"; stdout.String() != want {
		t.Errorf("stdout = %q; want %q", stdout.String(), want)
	}
}

func TestPublishUsageErrors(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string
	}{
		{name: "invalid data", args: []string{"-type", "a.b", "-data", "{nope"}, wantCode: 2, wantErr: "-data is not a JSON value"},
		{name: "bare word data", args: []string{"-type", "a.b", "-data", "hello"}, wantCode: 2, wantErr: "-data is not a JSON value"},
		{name: "event flags without type", args: []string{"-workflow", cmdWF, "-source", "s"}, wantCode: 2,
			wantErr: "-source, -workflow: only with -type"},
		{name: "stream with type", args: []string{"-stream", "-type", "a.b"}, wantCode: 2, wantErr: "-stream"},
		{name: "batch too large", args: []string{"-batch", "1001"}, wantCode: 2, wantErr: "-batch 1001"},
		{name: "batch zero", args: []string{"-batch", "0"}, wantCode: 2, wantErr: "-batch 0"},
		{name: "unknown flag", args: []string{"-nope"}, wantCode: 2, wantErr: "flag provided but not defined"},
		{name: "positional argument", args: []string{"-type", "a.b", "extra"}, wantCode: 2, wantErr: `unexpected argument "extra"`},
		{name: "bad url", args: []string{"-url", "ftp://x", "-type", "a.b"}, wantCode: 2, wantErr: "unsupported scheme"},
		{name: "tenant and org disagree", args: []string{"-tenant", cmdTenant, "-org", cmdWF, "-type", "a.b"}, wantCode: 2,
			wantErr: "-tenant " + cmdTenant + " and -org " + cmdWF + " name different tenants"},
	}
	conn := cmdTestServe(t, cmdTestRefuse(t), false)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := runPublish(cmdTestCtx(t), append(append([]string(nil), conn...), tt.args...), strings.NewReader(""), &stdout, &stderr)
			if code != tt.wantCode {
				t.Errorf("runPublish(%q) = %d; want %d", tt.args, code, tt.wantCode)
			}
			if !strings.Contains(stderr.String(), tt.wantErr) {
				t.Errorf("stderr = %q; want it to contain %q", stderr.String(), tt.wantErr)
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout = %q; want nothing", stdout.String())
			}
			if n := strings.Count(strings.TrimSpace(stderr.String()), "\n"); n != 0 {
				t.Errorf("stderr = %q; want one line", stderr.String())
			}
		})
	}
	t.Run("help", func(t *testing.T) { // on stdout, and exit 0
		var stdout, stderr bytes.Buffer
		if code := runPublish(cmdTestCtx(t), []string{"-h"}, strings.NewReader(""), &stdout, &stderr); code != 0 ||
			!strings.Contains(stdout.String(), "Examples:") || stderr.Len() != 0 {
			t.Errorf("publish -h: exit %d, stdout %q, stderr %q; want 0 and the usage on stdout", code, stdout.String(), stderr.String())
		}
	})
}

// cmdTestBatchServer is a fake batch endpoint: it numbers the events it receives and answers one result per line, the
// id taken from the event.
type cmdTestBatchServer struct {
	rec    cmdTestRecorder
	mu     sync.Mutex
	seq    uint64
	events []string
}

func (s *cmdTestBatchServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	req := s.rec.record(r)
	s.mu.Lock()
	defer s.mu.Unlock()
	type result struct {
		Index     int    `json:"index"`
		ID        string `json:"id,omitempty"`
		Sequence  uint64 `json:"sequence"`
		Duplicate bool   `json:"duplicate"`
	}
	var results []result
	for i, line := range cmdTestLines(req.Body) {
		var e struct {
			ID string `json:"id"`
		}
		json.Unmarshal([]byte(line), &e)
		s.seq++
		s.events = append(s.events, line)
		results = append(results, result{Index: i, ID: e.ID, Sequence: s.seq})
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	json.NewEncoder(w).Encode(map[string]any{"results": results})
}

func TestPublishBatchFromStdin(t *testing.T) {
	cmdTestTransports(t, func(t *testing.T, unix bool) {
		srv := &cmdTestBatchServer{}
		conn := cmdTestServe(t, srv, unix)
		var in strings.Builder
		var want []string
		for i := 1; i <= 7; i++ {
			fmt.Fprintf(&in, "{\"id\":\"e%d\",\"event_type\":\"task.completed\"}\r\n", i)
			if i%3 == 0 {
				in.WriteString("\n   \n")
			}
			want = append(want, fmt.Sprintf(`{"id":"e%d","sequence":%d,"duplicate":false}`, i, i))
		}
		var stdout, stderr bytes.Buffer
		args := append(conn, "-batch", "3", "-tenant", cmdTenant)
		if code := runPublish(cmdTestCtx(t), args, strings.NewReader(in.String()), &stdout, &stderr); code != 0 {
			t.Fatalf("runPublish() = %d; want 0 (stderr %q)", code, stderr.String())
		}
		if got := cmdTestLines(stdout.String()); strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("stdout =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		reqs := srv.rec.all()
		if len(reqs) < 3 {
			t.Errorf("requests = %d; want at least 3 for 7 events in chunks of 3", len(reqs))
		}
		for i, req := range reqs {
			if n := len(cmdTestLines(req.Body)); n > 3 || n == 0 {
				t.Errorf("request %d holds %d events; want 1 to 3", i, n)
			}
			if req.Path != "/v1/events/batch" || req.Header.Get("Content-Type") != "application/x-ndjson" ||
				req.Header.Get("Flovyn-Tenant-Id") != cmdTenant {
				t.Errorf("request %d = %s %q tenant %q; want NDJSON to /v1/events/batch with the tenant", i, req.Path,
					req.Header.Get("Content-Type"), req.Header.Get("Flovyn-Tenant-Id"))
			}
		}
		for i, e := range srv.events {
			if want := fmt.Sprintf(`{"id":"e%d","event_type":"task.completed"}`, i+1); e != want {
				t.Errorf("event %d = %s; want %s", i, e, want)
			}
		}
	})
}

func TestPublishBatchChunksFull(t *testing.T) {
	// 2500 events from a reader that has them all: chunks are filled to the limit, not sent one by one.
	srv := &cmdTestBatchServer{}
	conn := cmdTestServe(t, srv, true)
	var in strings.Builder
	for i := range 2500 {
		fmt.Fprintf(&in, "{\"id\":\"e%d\"}\n", i)
	}
	var stdout, stderr bytes.Buffer
	if code := runPublish(cmdTestCtx(t), conn, strings.NewReader(in.String()), &stdout, &stderr); code != 0 {
		t.Fatalf("runPublish() = %d; want 0 (stderr %q)", code, stderr.String())
	}
	if n := len(cmdTestLines(stdout.String())); n != 2500 {
		t.Errorf("result lines = %d; want 2500", n)
	}
	reqs := srv.rec.all()
	if len(reqs) > 10 {
		t.Errorf("requests = %d; want chunks of up to 1000 events, not %d small ones", len(reqs), len(reqs))
	}
	for i, req := range reqs {
		if n := len(cmdTestLines(req.Body)); n > 1000 {
			t.Errorf("request %d holds %d events; want at most 1000", i, n)
		}
	}
}

func TestPublishStreamFromStdin(t *testing.T) {
	var rec cmdTestRecorder
	conn := cmdTestServe(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req := rec.record(r)
		var results []string
		for i := range cmdTestLines(req.Body) {
			results = append(results, fmt.Sprintf(`{"index":%d,"sequence":%d,"duplicate":false}`, i, i+10))
		}
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, `{"results":[`+strings.Join(results, ",")+`]}`)
	}), true)
	in := `{"workflowExecutionId":"wf-1","sequence":1,"type":"TOKEN","payload":"Hel"}` + "\n" +
		`{"workflowExecutionId":"wf-1","sequence":2,"type":"TOKEN","payload":"lo"}` + "\n"
	var stdout, stderr bytes.Buffer
	if code := runPublish(cmdTestCtx(t), append(conn, "-stream", "-tenant", cmdTenant), strings.NewReader(in), &stdout, &stderr); code != 0 {
		t.Fatalf("runPublish() = %d; want 0 (stderr %q)", code, stderr.String())
	}
	reqs := rec.all()
	if len(reqs) != 1 || reqs[0].Path != "/v1/streams" || reqs[0].Body != in ||
		reqs[0].Header.Get("Content-Type") != "application/x-ndjson" || reqs[0].Header.Get("Flovyn-Tenant-Id") != cmdTenant {
		t.Fatalf("requests = %+v; want the two lines as NDJSON to /v1/streams with the tenant", reqs)
	}
	if want := "{\"sequence\":10,\"duplicate\":false}\n{\"sequence\":11,\"duplicate\":false}\n"; stdout.String() != want {
		t.Errorf("stdout = %q; want %q", stdout.String(), want)
	}
}

func TestPublishErrors(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		stdin      string
		status     int
		reply      string
		wantStdout string
		wantStderr []string
	}{
		{
			name: "batch entry errors named by line", stdin: "\n{\"event_type\":\"a\"}\n\n{\"event_type\":\"\"}\n",
			status: 400,
			reply: `{"title":"Bad Request","status":400,"detail":"invalid batch: nothing was published",` +
				`"errors":[{"field":"[1].event_type","message":"must not be empty"},{"field":"[0]","message":"whole entry"}]}`,
			wantStderr: []string{"eventhook publish: invalid batch: nothing was published (HTTP 400 Bad Request)",
				"  line 4: event_type: must not be empty", "  line 2: whole entry"},
		},
		{
			name: "one event: fields named with their flags", args: []string{"-type", "a..b"}, status: 400,
			reply:      `{"status":400,"detail":"event_type: empty token","errors":[{"field":"event_type","message":"empty token"}]}`,
			wantStderr: []string{"eventhook publish: event_type (-type): empty token (HTTP 400 Bad Request)"},
		},
		{
			name: "batch: a detail that repeats the field errors is not printed", stdin: "{}\n{}\n", status: 400,
			reply: `{"status":400,"detail":"invalid event: [0].event_type: is required; [1].tenant_id: is required",` +
				`"errors":[{"field":"[0].event_type","message":"is required"},{"field":"[1].tenant_id","message":"is required"}]}`,
			wantStderr: []string{"eventhook publish: 2 errors (HTTP 400 Bad Request)",
				"  line 1: event_type: is required", "  line 2: tenant_id: is required"},
		},
		{
			name: "one event: no field errors", args: []string{"-type", "a.b", "-tenant", "t"}, status: 403,
			reply:      `{"status":403,"detail":"this token may not publish for tenant t"}`,
			wantStderr: []string{"eventhook publish: this token may not publish for tenant t (HTTP 403 Forbidden)"},
		},
		{
			name: "backend down part way", stdin: "{\"id\":\"a\"}\n{\"id\":\"b\"}\n", status: 503,
			reply: `{"status":503,"detail":"some entries were not stored (see results): backend unavailable",` +
				`"results":[{"index":0,"id":"a","sequence":1,"duplicate":false},{"index":1,"error":{"status":503,"detail":"backend unavailable"}}]}`,
			wantStdout: `{"id":"a","sequence":1,"duplicate":false}` + "\n" +
				`{"error":{"status":503,"detail":"backend unavailable"}}` + "\n",
			wantStderr: []string{"eventhook publish: line 2: 503: backend unavailable",
				"eventhook publish: some entries were not stored (see results): backend unavailable (HTTP 503 Service Unavailable)",
				"eventhook publish: the sidecar asks to retry after 2s"},
		},
		{
			name: "not JSON", args: []string{"-type", "a.b"}, status: 502, reply: "<html>proxy error</html>",
			wantStderr: []string{"eventhook publish: Bad Gateway (HTTP 502 Bad Gateway)"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn := cmdTestServe(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if strings.HasPrefix(tt.reply, "{") {
					w.Header().Set("Content-Type", "application/problem+json")
				} else {
					w.Header().Set("Content-Type", "text/html")
				}
				if tt.status == 503 {
					w.Header().Set("Retry-After", "2")
				}
				w.WriteHeader(tt.status)
				io.WriteString(w, tt.reply)
			}), false)
			var stdout, stderr bytes.Buffer
			code := runPublish(cmdTestCtx(t), append(conn, tt.args...), strings.NewReader(tt.stdin), &stdout, &stderr)
			if code != 1 {
				t.Errorf("runPublish() = %d; want 1", code)
			}
			if stdout.String() != tt.wantStdout {
				t.Errorf("stdout = %q; want %q", stdout.String(), tt.wantStdout)
			}
			if got := cmdTestLines(stderr.String()); strings.Join(got, "\n") != strings.Join(tt.wantStderr, "\n") {
				t.Errorf("stderr =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.wantStderr, "\n"))
			}
		})
	}
}

func TestPublishNoSidecar(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing.sock")
	var stdout, stderr bytes.Buffer
	code := runPublish(cmdTestCtx(t), []string{"-socket", path, "-type", "a.b"}, nil, &stdout, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "is the sidecar running? Nothing answers at "+path) {
		t.Errorf("runPublish() = %d, stderr %q; want 1 and a hint", code, stderr.String())
	}
}

// cmdTestSSE writes the response headers of an event stream and returns a function writing and flushing frames.
func cmdTestSSE(w http.ResponseWriter) func(string) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	f := w.(http.Flusher)
	f.Flush()
	return func(frames string) {
		io.WriteString(w, frames)
		f.Flush()
	}
}

// cmdTestTimePrefix is the readable output's time column.
var cmdTestTimePrefix = regexp.MustCompile(`^\d\d:\d\d:\d\d\.\d{3} `)

func TestTailReadable(t *testing.T) {
	const ts = 1735787045123
	lifecycle := fmt.Sprintf(`{"id":%q,"tenant_id":%q,"workflow_execution_id":%q,"task_execution_id":%q,`+
		`"event_type":"task.completed","source":"worker:w-1","data":{"result": "ok","n":1},"timestamp_ms":%d,"correlation_id":null}`,
		cmdID, cmdTenant, cmdWF, cmdTask, ts)
	long := strings.Repeat("x", 100)
	cmdTestTransports(t, func(t *testing.T, unix bool) {
		var rec cmdTestRecorder
		conn := cmdTestServe(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rec.record(r)
			send := cmdTestSSE(w)
			send("retry: 1000\n\n: keep-alive\n\n")
			send("id: 1\nevent: lifecycle\ndata: " + lifecycle + "\n\n")
			send("id: 2\nevent: token\ndata: Hello\ndata:  world\n\n")
			send("id: 3\nevent: progress\ndata: 0.5\n\n")
			send("id: 4\nevent: data\ndata: {\"rows\":3}\n\n")
			send("id: 5\nevent: error\ndata: " + long + "\n\n")
			send("event: gap\ndata: {\"reason\":\"lagged\",\"missed\":12}\n\n")
			send("event: gap\ndata: {\"reason\":\"reset\",\"missed\":null}\n\n")
			send("id: 6\nevent: lifecycle\ndata: {\"event_type\":\"workflow.started\",\"workflow_execution_id\":null,\"data\":null}\n\n")
			<-r.Context().Done()
		}), unix)
		var stdout, stderr bytes.Buffer
		args := append(conn, "-token", "tok", "-tenant", cmdTenant, "-workflow", cmdWF, "-types", "events,tokens", "-n", "8")
		if code := runTail(cmdTestCtx(t), args, &stdout, &stderr); code != 0 {
			t.Fatalf("runTail() = %d; want 0 (stderr %q)", code, stderr.String())
		}
		want := []string{
			time.UnixMilli(ts).Format("15:04:05.000") + " lifecycle task.completed wf=9b2d7c4e task=5e6f7a8b source=worker:w-1 data={\"result\":\"ok\",\"n\":1}",
			"token     \"Hello\\n world\"",
			"progress  0.5",
			"data      {\"rows\":3}",
			"error     " + strings.Repeat("x", 79) + "…",
			"-- gap: lagged, 12 events missed --",
			"-- gap: reset, an unknown number of events missed --",
			"lifecycle workflow.started",
		}
		got := cmdTestLines(stdout.String())
		if len(got) != len(want) {
			t.Fatalf("stdout has %d lines; want %d:\n%s", len(got), len(want), stdout.String())
		}
		for i := range got {
			if !cmdTestTimePrefix.MatchString(got[i]) {
				t.Errorf("line %d = %q; want it to start with HH:MM:SS.mmm", i, got[i])
				continue
			}
			if i != 0 {
				got[i] = got[i][len("15:04:05.000 "):]
			}
			if got[i] != want[i] {
				t.Errorf("line %d = %q; want %q", i, got[i], want[i])
			}
		}
		req := rec.all()[0]
		checks := []struct{ name, got, want string }{
			{"path", req.Path, "/workflow-executions/" + cmdWF + "/stream"},
			{"query", req.Query, "format=eventhook&types=events%2Ctokens"},
			{"Accept", req.Header.Get("Accept"), "text/event-stream"},
			{"Authorization", req.Header.Get("Authorization"), "Bearer tok"},
			{"Flovyn-Tenant-Id", req.Header.Get("Flovyn-Tenant-Id"), cmdTenant},
			{"Last-Event-ID", req.Header.Get("Last-Event-ID"), ""},
		}
		for _, c := range checks {
			if c.got != c.want {
				t.Errorf("request %s = %q; want %q", c.name, c.got, c.want)
			}
		}
	})
}

func TestTailJSON(t *testing.T) {
	conn := cmdTestServe(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		send := cmdTestSSE(w)
		send("id: c1\nevent: lifecycle\ndata: {\"event_type\": \"task.completed\", \"data\": null}\n\n")
		send("id: c2\nevent: token\ndata: Hello <world>\n\n")
		send("id: c3\nevent: progress\ndata: 0.5\n\n")
		send("event: gap\ndata: {\"reason\":\"expired\",\"missed\":null}\n\n")
		send("id: c4\nevent: data\ndata: {\"a\":\ndata: 1}\n\n")
		<-r.Context().Done()
	}), true)
	var stdout, stderr bytes.Buffer
	if code := runTail(cmdTestCtx(t), append(conn, "-events", "-json", "-n", "5"), &stdout, &stderr); code != 0 {
		t.Fatalf("runTail() = %d; want 0 (stderr %q)", code, stderr.String())
	}
	want := []string{
		`{"id":"c1","event":"lifecycle","data":{"event_type":"task.completed","data":null}}`,
		`{"id":"c2","event":"token","data":"Hello <world>"}`,
		`{"id":"c3","event":"progress","data":0.5}`,
		`{"id":"c3","event":"gap","data":{"reason":"expired","missed":null}}`,
		`{"id":"c4","event":"data","data":{"a":1}}`,
	}
	if got := cmdTestLines(stdout.String()); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("stdout =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestTailOrg: -org names the tenant as -tenant does, and -json prints a lifecycle event with the key the sidecar sent
// (org_id from a sidecar with events.tenant_key: org_id), which the readable output reads too.
func TestTailOrg(t *testing.T) {
	lifecycle := `{"id":"` + cmdID + `","org_id":"` + cmdTenant + `","workflow_execution_id":null,"task_execution_id":null,` +
		`"event_type":"task.completed","source":"system","data":null,"timestamp_ms":1735787045123,"correlation_id":null}`
	var rec cmdTestRecorder
	conn := cmdTestServe(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.record(r)
		cmdTestSSE(w)("id: c1\nevent: lifecycle\ndata: " + lifecycle + "\n\n")
		<-r.Context().Done()
	}), true)
	var stdout, stderr bytes.Buffer
	if code := runTail(cmdTestCtx(t), append(conn, "-org", cmdTenant, "-events", "-json", "-n", "1"), &stdout, &stderr); code != 0 {
		t.Fatalf("runTail() = %d; want 0 (stderr %q)", code, stderr.String())
	}
	if want := `{"id":"c1","event":"lifecycle","data":` + lifecycle + "}\n"; stdout.String() != want {
		t.Errorf("stdout = %q; want %q", stdout.String(), want)
	}
	if got := rec.all()[0].Header.Get("Flovyn-Tenant-Id"); got != cmdTenant {
		t.Errorf("Flovyn-Tenant-Id = %q; want %q", got, cmdTenant)
	}
	stdout.Reset()
	if code := runTail(cmdTestCtx(t), append(conn, "-org", cmdTenant, "-events", "-n", "1"), &stdout, &stderr); code != 0 {
		t.Fatalf("runTail() = %d; want 0 (stderr %q)", code, stderr.String())
	}
	if got := stdout.String(); !strings.Contains(got, " lifecycle task.completed source=system") {
		t.Errorf("readable output %q; want the lifecycle event", got)
	}
}

func TestTailRequests(t *testing.T) {
	tests := []struct {
		name      string
		args      []string
		wantPath  string
		wantQuery string
		wantLast  string
	}{
		{name: "workflow", args: []string{"-workflow", cmdWF}, wantPath: "/workflow-executions/" + cmdWF + "/stream",
			wantQuery: "format=eventhook"},
		{name: "standalone task", args: []string{"-task", cmdTask, "-types", "tokens"},
			wantPath: "/task-executions/" + cmdTask + "/stream", wantQuery: "format=eventhook&types=tokens"},
		{name: "task in a workflow", args: []string{"-task", cmdTask, "-workflow", cmdWF},
			wantPath: "/task-executions/" + cmdTask + "/stream", wantQuery: "format=eventhook&workflow_execution_id=" + cmdWF},
		{name: "tenant events filtered", args: []string{"-events", "-source", "system", "-types", "workflow.*", "-workflow", "w", "-task", "k"},
			wantPath: "/events/stream", wantQuery: "source=system&task_execution_id=k&types=workflow.%2A&workflow_execution_id=w"},
		{name: "from earliest", args: []string{"-events", "-from", "earliest"}, wantPath: "/events/stream", wantLast: "earliest"},
		{name: "from a cursor", args: []string{"-workflow", cmdWF, "-from", "7-12"},
			wantPath: "/workflow-executions/" + cmdWF + "/stream", wantQuery: "format=eventhook", wantLast: "7-12"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rec cmdTestRecorder
			conn := cmdTestServe(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				rec.record(r)
				cmdTestSSE(w)("id: 1\nevent: data\ndata: x\n\n")
				<-r.Context().Done()
			}), false)
			var stdout, stderr bytes.Buffer
			if code := runTail(cmdTestCtx(t), append(append(conn, "-n", "1"), tt.args...), &stdout, &stderr); code != 0 {
				t.Fatalf("runTail() = %d; want 0 (stderr %q)", code, stderr.String())
			}
			req := rec.all()[0]
			if req.Path != tt.wantPath || req.Query != tt.wantQuery || req.Header.Get("Last-Event-ID") != tt.wantLast {
				t.Errorf("request = %s ? %s, Last-Event-ID %q; want %s ? %s, %q", req.Path, req.Query,
					req.Header.Get("Last-Event-ID"), tt.wantPath, tt.wantQuery, tt.wantLast)
			}
		})
	}
}

func TestTailUsageErrors(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{name: "no stream", args: nil, wantErr: "name a stream"},
		{name: "source without events", args: []string{"-workflow", "w", "-source", "s"}, wantErr: "-source"},
		{name: "negative n", args: []string{"-events", "-n", "-1"}, wantErr: "must not be negative"},
		{name: "argument", args: []string{"-events", "x"}, wantErr: `unexpected argument "x"`},
		{name: "tenant and org disagree", args: []string{"-events", "-tenant", cmdTenant, "-org", cmdWF}, wantErr: "name different tenants"},
	}
	conn := cmdTestServe(t, cmdTestRefuse(t), false)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := runTail(cmdTestCtx(t), append(append([]string(nil), conn...), tt.args...), &stdout, &stderr); code != 2 {
				t.Errorf("runTail(%q) = %d; want 2", tt.args, code)
			}
			if !strings.Contains(stderr.String(), tt.wantErr) {
				t.Errorf("stderr = %q; want it to contain %q", stderr.String(), tt.wantErr)
			}
		})
	}
}

// TestTailReconnect drops the connection abruptly, then ends a stream cleanly: each time tail reconnects with the last
// id it received, and prints every event once, in order.
func TestTailReconnect(t *testing.T) {
	cmdTestTransports(t, func(t *testing.T, unix bool) {
		var mu sync.Mutex
		var lastIDs []string
		conn := cmdTestServe(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			lastIDs = append(lastIDs, r.Header.Get("Last-Event-ID"))
			n := len(lastIDs)
			mu.Unlock()
			send := cmdTestSSE(w)
			switch n {
			case 1:
				send("retry: 10\n\nid: c1\nevent: token\ndata: t1\n\nid: c2\nevent: token\ndata: t2\n\n")
				panic(http.ErrAbortHandler) // the connection drops, no clean end of the response
			case 2:
				send("retry: 10\n\nid: c3\nevent: token\ndata: t3\n\nid: c4\nevent: token\ndata: t4\n\n")
				send("id: c5\n\n") // a cursor without an event still counts
			default:
				send("retry: 10\n\nid: c6\nevent: token\ndata: t6\n\n")
				<-r.Context().Done()
			}
		}), unix)
		var stdout, stderr bytes.Buffer
		if code := runTail(cmdTestCtx(t), append(conn, "-workflow", cmdWF, "-n", "5", "-json"), &stdout, &stderr); code != 0 {
			t.Fatalf("runTail() = %d; want 0 (stderr %q)", code, stderr.String())
		}
		var got []string
		for _, line := range cmdTestLines(stdout.String()) {
			var ev struct{ ID, Data string }
			if err := json.Unmarshal([]byte(line), &ev); err != nil {
				t.Fatalf("line %q: %v", line, err)
			}
			got = append(got, ev.ID+"="+ev.Data)
		}
		if want := "c1=t1 c2=t2 c3=t3 c4=t4 c6=t6"; strings.Join(got, " ") != want {
			t.Errorf("events = %s; want %s", strings.Join(got, " "), want)
		}
		mu.Lock()
		defer mu.Unlock()
		if want := []string{"", "c2", "c5"}; strings.Join(lastIDs, ",") != strings.Join(want, ",") {
			t.Errorf("Last-Event-IDs = %q; want %q", lastIDs, want)
		}
		if n := strings.Count(stderr.String(), "reconnecting in 10ms"); n != 2 {
			t.Errorf("stderr = %q; want two reconnections after the server's retry hint of 10ms", stderr.String())
		}
	})
}

func TestTailRetriesUnavailable(t *testing.T) {
	var calls atomic.Int32
	conn := cmdTestServe(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch calls.Add(1) {
		case 1:
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `{"status":503,"detail":"too many subscribers"}`)
		case 2:
			w.WriteHeader(http.StatusTooManyRequests)
		default:
			cmdTestSSE(w)("id: 1\nevent: data\ndata: ok\n\n")
			<-r.Context().Done()
		}
	}), false)
	var stdout, stderr bytes.Buffer
	if code := runTail(cmdTestCtx(t), append(conn, "-events", "-n", "1"), &stdout, &stderr); code != 0 {
		t.Fatalf("runTail() = %d; want 0 (stderr %q)", code, stderr.String())
	}
	if calls.Load() != 3 || !strings.HasSuffix(stdout.String(), "data      ok\n") {
		t.Errorf("calls = %d, stdout %q; want 3 calls and the event", calls.Load(), stdout.String())
	}
	if want := "503: too many subscribers; reconnecting in 250ms"; !strings.Contains(stderr.String(), want) {
		t.Errorf("stderr = %q; want it to contain %q", stderr.String(), want)
	}
	if want := "429: Too Many Requests; reconnecting in 500ms"; !strings.Contains(stderr.String(), want) {
		t.Errorf("stderr = %q; want it to contain %q (backoff doubled)", stderr.String(), want)
	}
}

func TestTailFatal(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		ctype   string
		body    string
		wantErr []string
	}{
		{name: "400", status: 400, ctype: "application/problem+json",
			body:    `{"status":400,"detail":"unknown type \"tokns\"","errors":[{"field":"types","message":"valid: events, tokens"}]}`,
			wantErr: []string{`eventhook tail: unknown type "tokns" (HTTP 400 Bad Request)`, "  types: valid: events, tokens"}},
		{name: "403", status: 403, ctype: "application/problem+json", body: `{"status":403,"detail":"this token may not subscribe"}`,
			wantErr: []string{"eventhook tail: this token may not subscribe (HTTP 403 Forbidden)"}},
		{name: "not an event stream", status: 200, ctype: "text/html", body: "<html></html>",
			wantErr: []string{"eventhook tail: stream /events/stream: sidecar: response is not an event stream (Content-Type \"text/html\")"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls atomic.Int32
			conn := cmdTestServe(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				calls.Add(1)
				w.Header().Set("Content-Type", tt.ctype)
				w.WriteHeader(tt.status)
				io.WriteString(w, tt.body)
			}), true)
			var stdout, stderr bytes.Buffer
			if code := runTail(cmdTestCtx(t), append(conn, "-events"), &stdout, &stderr); code != 1 {
				t.Errorf("runTail() = %d; want 1", code)
			}
			if calls.Load() != 1 {
				t.Errorf("requests = %d; want 1 (no retry)", calls.Load())
			}
			if got := cmdTestLines(stderr.String()); strings.Join(got, "\n") != strings.Join(tt.wantErr, "\n") {
				t.Errorf("stderr =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.wantErr, "\n"))
			}
		})
	}
}

// cmdTestWaitFor polls cond until it holds or the deadline passes.
func cmdTestWaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(cmdTestTimeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

func TestTailStopsOnCancel(t *testing.T) {
	conn := cmdTestServe(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cmdTestSSE(w)("id: 1\nevent: token\ndata: hi\n\n")
		<-r.Context().Done()
	}), true)
	ctx, cancel := context.WithCancel(cmdTestCtx(t))
	defer cancel()
	var stdout, stderr cmdTestBuffer
	done := make(chan int, 1)
	go func() { done <- runTail(ctx, append(conn, "-workflow", cmdWF), &stdout, &stderr) }()
	cmdTestWaitFor(t, "the first event", func() bool { return strings.Contains(stdout.String(), `"hi"`) })
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("runTail() = %d; want 0 (stderr %q)", code, stderr.String())
		}
	case <-time.After(cmdTestTimeout):
		t.Fatal("runTail did not return after cancel")
	}
}

// TestTailIdleTimeout serves a stream that goes silent: tail gives up on it after -idle-timeout and resumes on a new
// connection.
func TestTailIdleTimeout(t *testing.T) {
	var mu sync.Mutex
	var lastIDs []string
	conn := cmdTestServe(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		lastIDs = append(lastIDs, r.Header.Get("Last-Event-ID"))
		n := len(lastIDs)
		mu.Unlock()
		send := cmdTestSSE(w)
		if n == 1 {
			send("retry: 10\n\nid: a\nevent: data\ndata: 1\n\n") // then silence, not even a keep-alive
		} else {
			send("id: b\nevent: data\ndata: 2\n\n")
		}
		<-r.Context().Done()
	}), false)
	var stdout, stderr bytes.Buffer
	args := append(conn, "-events", "-idle-timeout", "100ms", "-n", "2")
	if code := runTail(cmdTestCtx(t), args, &stdout, &stderr); code != 0 {
		t.Fatalf("runTail() = %d; want 0 (stderr %q)", code, stderr.String())
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(lastIDs, ",") != ",a" {
		t.Errorf("Last-Event-IDs = %q; want none, then a", lastIDs)
	}
	if !strings.Contains(stderr.String(), "no data for 100ms; reconnecting") {
		t.Errorf("stderr = %q; want the idle timeout reported", stderr.String())
	}
}

// TestTailKeepAlivesKeepTheConnection checks that keep-alive comments count as activity for the idle timeout.
func TestTailKeepAlivesKeepTheConnection(t *testing.T) {
	var calls atomic.Int32
	conn := cmdTestServe(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		send := cmdTestSSE(w)
		send("id: a\nevent: data\ndata: 1\n\n")
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for i := 0; i < 15; i++ { // 300 ms of keep-alives, three times the idle timeout
			select {
			case <-tick.C:
				send(": keep-alive\n\n")
			case <-r.Context().Done():
				return
			}
		}
		send("id: b\nevent: data\ndata: 2\n\n")
		<-r.Context().Done()
	}), false)
	var stdout, stderr bytes.Buffer
	if code := runTail(cmdTestCtx(t), append(conn, "-events", "-idle-timeout", "100ms", "-n", "2"), &stdout, &stderr); code != 0 {
		t.Fatalf("runTail() = %d; want 0 (stderr %q)", code, stderr.String())
	}
	if calls.Load() != 1 {
		t.Errorf("connections = %d; want 1 (stderr %q)", calls.Load(), stderr.String())
	}
}

func TestTailPrinterHelpers(t *testing.T) {
	tests := []struct{ in, want string }{
		{"short", "short"},
		{strings.Repeat("é", 80), strings.Repeat("é", 80)},
		{strings.Repeat("é", 81), strings.Repeat("é", 79) + "…"},
		{"a\nb\tc\x01", `a\nb\tc\x01`},
	}
	for _, tt := range tests {
		if got := string(appendSummary(nil, tt.in)); got != tt.want {
			t.Errorf("appendSummary(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
}

// TestOutsideAuth: a SIGHUP reload reports the sections it does not apply, and only those.
func TestOutsideAuth(t *testing.T) {
	running := config.Default()
	next := config.Default()
	next.Auth.UnixSocket = "token"
	if got := outsideAuth(running, next); got != "" {
		t.Errorf("only auth changed: outsideAuth = %q; want nothing", got)
	}
	next.SSE.MaxSubscribers = 7
	next.Log.Level = "debug"
	if got := outsideAuth(running, next); got != "log, sse" {
		t.Errorf("outsideAuth = %q; want \"log, sse\"", got)
	}
}
