package sidecar

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flovyn/eventhook/sidecar/bus"
	"github.com/flovyn/eventhook/sidecar/bus/bustest"
	"github.com/flovyn/eventhook/sidecar/client"
	"github.com/flovyn/eventhook/sidecar/config"
	"github.com/flovyn/eventhook/sidecar/event"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
)

// harness is a real server on TCP 127.0.0.1 and on a Unix socket, with clients for both.
type harness struct {
	srv    *Server
	bus    bus.Bus
	cfg    *config.Config
	socket string
	unix   *client.Sidecar // over the socket
	tcp    *client.Sidecar // over TCP
	served chan error
}

// socketDir returns a short temporary directory: Unix socket paths must stay under 108 bytes.
func socketDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "eh")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func testConfig(t testing.TB) *config.Config {
	cfg := config.Default()
	cfg.Backend = "memory"
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.HTTP.UnixSocket = filepath.Join(socketDir(t), "eh.sock")
	cfg.SSE.Heartbeat = config.Duration(time.Hour)
	return cfg
}

func newHarness(t testing.TB, cfg *config.Config, eb bus.Bus) *harness {
	t.Helper()
	if cfg == nil {
		cfg = testConfig(t)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("test config: %v", err)
	}
	if eb == nil {
		eb = bus.NewMemory(bus.MemoryOptions{Feed: bus.FeedOptions{EventBuffer: cfg.Memory.EventBuffer, StreamBuffer: cfg.Memory.StreamBuffer,
			Encoders: FrameEncoders(cfg.Events.TenantKey)}})
		t.Cleanup(func() { eb.Close() })
	}
	srv, err := NewServer(Options{Config: cfg, Bus: eb, Logger: config.NewLogger(config.Log{Level: "error"}, io.Discard),
		Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	h := &harness{srv: srv, bus: eb, cfg: cfg, socket: cfg.HTTP.UnixSocket, served: make(chan error, 1)}
	go func() { h.served <- srv.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	if h.unix, err = client.New(h.socket, ""); err != nil {
		t.Fatal(err)
	}
	if h.tcp, err = client.New("http://"+srv.Addr().String(), ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.unix.Close)
	t.Cleanup(h.tcp.Close)
	return h
}

// do sends a raw request over the socket and returns the status, headers and body.
func (h *harness) do(t testing.TB, method, path, contentType, body string, header ...string) (int, http.Header, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), bustest.WaitFor) // an unexpected stream must not hang the test
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, h.unix.BaseURL()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := h.unix.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

// problemOf decodes a problem+json answer, failing unless it is one with the wanted status.
func problemOf(t testing.TB, status int, hdr http.Header, body []byte, want int) event.Problem {
	t.Helper()
	if status != want {
		t.Fatalf("status %d; want %d (body %s)", status, want, body)
	}
	if ct := hdr.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type %q; want application/problem+json", ct)
	}
	var p event.Problem
	if err := json.Unmarshal(body, &p); err != nil || p.Status != want || p.Detail == "" || p.Title == "" || p.Type == "" {
		t.Fatalf("not a complete problem: %s (%v)", body, err)
	}
	return p
}

// sse is an open SSE stream in a test.
type sse struct {
	r      *client.SSEReader
	closer io.Closer
	events chan client.SSEEvent
	errc   chan error
}

func (h *harness) stream(t testing.TB, c *client.Sidecar, path string, q url.Values, last string) *sse {
	t.Helper()
	r, closer, err := c.Stream(t.Context(), path, q, last)
	if err != nil {
		t.Fatalf("GET %s?%s: %v", path, q.Encode(), err)
	}
	return newSSE(t, r, closer)
}

// streamHeader opens a stream as stream does, with extra request headers given as name, value pairs.
func (h *harness) streamHeader(t testing.TB, c *client.Sidecar, path string, q url.Values, header ...string) *sse {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, (&url.URL{Path: path, RawQuery: q.Encode()}).String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	r, closer, err := c.OpenStream(req)
	if err != nil {
		t.Fatalf("GET %s?%s %v: %v", path, q.Encode(), header, err)
	}
	return newSSE(t, r, closer)
}

// newSSE reads the stream r in a goroutine, which ends when the stream ends or is closed (at the latest by the test's
// cleanup).
func newSSE(t testing.TB, r *client.SSEReader, closer io.Closer) *sse {
	s := &sse{r: r, closer: closer, events: make(chan client.SSEEvent, 1024), errc: make(chan error, 1)}
	go func() { // ends when the stream ends or is closed
		for {
			ev, err := r.Next()
			if err != nil {
				s.errc <- err
				close(s.events)
				return
			}
			s.events <- ev
		}
	}()
	t.Cleanup(func() { closer.Close() })
	return s
}

func (s *sse) next(t testing.TB) client.SSEEvent {
	t.Helper()
	select {
	case ev, ok := <-s.events:
		if !ok {
			t.Fatalf("stream ended: %v", <-s.errc)
		}
		return ev
	case <-time.After(bustest.WaitFor):
		t.Fatalf("no SSE event within %v", bustest.WaitFor)
	}
	return client.SSEEvent{}
}

// nextLifecycle reads the next frame and requires a lifecycle event of the given type.
func (s *sse) nextLifecycle(t testing.TB, eventType string) event.FlovynEvent {
	t.Helper()
	ev := s.next(t)
	if ev.Event != "lifecycle" {
		t.Fatalf("frame %+v; want a lifecycle event %s", ev, eventType)
	}
	e, err := event.DecodeEvent([]byte(ev.Data))
	if err != nil {
		t.Fatalf("lifecycle data %q: %v", ev.Data, err)
	}
	if e.EventType != eventType {
		t.Fatalf("lifecycle event %s; want %s", e.EventType, eventType)
	}
	if ev.ID == "" {
		t.Fatal("lifecycle frame without id")
	}
	return *e
}

func (s *sse) ended(t testing.TB) {
	t.Helper()
	select {
	case _, ok := <-s.events:
		if ok {
			t.Fatal("got another frame; want the stream to end")
		}
	case <-time.After(bustest.WaitFor):
		t.Fatalf("stream still open after %v", bustest.WaitFor)
	}
}

func eventJSON(tenant uuid.UUID, eventType string, extra string) string {
	return fmt.Sprintf(`{"tenant_id":%q,"event_type":%q%s}`, tenant, eventType, extra)
}

func wfField(wf uuid.UUID) string   { return fmt.Sprintf(`,"workflow_execution_id":%q`, wf) }
func taskField(id uuid.UUID) string { return fmt.Sprintf(`,"task_execution_id":%q`, id) }

func (h *harness) publish(t testing.TB, body string) event.PublishReply {
	t.Helper()
	r, err := h.unix.PublishEvent(t.Context(), []byte(body), "")
	if err != nil {
		t.Fatalf("publish %s: %v", body, err)
	}
	return r
}

func TestPublishOverSocketStreamOverTCP(t *testing.T) {
	h := newHarness(t, nil, nil)
	tenant, wf := uuid.New(), uuid.New()
	s := h.stream(t, h.tcp, "/workflow-executions/"+wf.String()+"/stream", url.Values{"tenant_id": {tenant.String()}}, "")

	// What curl -d sends: application/x-www-form-urlencoded, read as JSON.
	status, hdr, body := h.do(t, "POST", "/v1/events", "application/x-www-form-urlencoded",
		eventJSON(tenant, "workflow.started", wfField(wf)+`,"data":{"step": 1}`))
	if status != http.StatusAccepted {
		t.Fatalf("status %d: %s", status, body)
	}
	var res struct {
		ID        string  `json:"id"`
		Sequence  *uint64 `json:"sequence"`
		Duplicate *bool   `json:"duplicate"`
	}
	if err := json.Unmarshal(body, &res); err != nil || res.ID == "" || res.Sequence == nil || res.Duplicate == nil ||
		hdr.Get("Content-Type") != "application/json" {
		t.Fatalf("answer %s (%v); want id, sequence and duplicate", body, err)
	}
	got := s.nextLifecycle(t, "workflow.started")
	if got.ID.String() != res.ID || string(got.Data) != `{"step":1}` || got.Source != "system" || got.TimestampMs == 0 {
		t.Fatalf("delivered %s", got.AppendJSON(nil))
	}
	// The same id again is a duplicate with the original sequence, and is not delivered twice.
	again := h.publish(t, eventJSON(tenant, "workflow.started", wfField(wf)+`,"id":"`+res.ID+`"`))
	if !again.Duplicate || again.Sequence != *res.Sequence {
		t.Fatalf("republish = %+v; want duplicate with sequence %d", again, *res.Sequence)
	}
	h.publish(t, eventJSON(tenant, "workflow.completed", wfField(wf)))
	s.nextLifecycle(t, "workflow.completed")
}

func TestPublishErrors(t *testing.T) {
	cfg := testConfig(t)
	cfg.Events.MaxEventBytes = 2048
	h := newHarness(t, cfg, nil)
	tenant := uuid.New()
	tests := []struct {
		name        string
		method      string
		path        string
		contentType string
		body        string
		header      []string
		status      int
		field       string
		detail      string
	}{
		{"camelCase field", "POST", "/v1/events", "", `{"tenantId":"` + tenant.String() + `","event_type":"a"}`, nil, 400, "tenantId", "tenant_id"},
		{"no tenant", "POST", "/v1/events", "", `{"event_type":"a"}`, nil, 400, "tenant_id", "required"},
		{"bad type", "POST", "/v1/events", "", eventJSON(tenant, "a.*", ""), nil, 400, "event_type", "token"},
		{"header disagrees", "POST", "/v1/events", "", eventJSON(tenant, "a", ""), []string{event.TenantHeader, uuid.NewString()}, 400, "tenant_id", "disagrees"},
		{"bad header", "POST", "/v1/events", "", `{"event_type":"a"}`, []string{event.TenantHeader, "x"}, 400, event.TenantHeader, "UUID"},
		{"malformed", "POST", "/v1/events", "application/json", `{"event_type":`, nil, 400, "", "malformed JSON"},
		{"array to single", "POST", "/v1/events", "application/json", `[` + eventJSON(tenant, "a", "") + `]`, nil, 400, "", "/v1/events/batch"},
		{"too large", "POST", "/v1/events", "", eventJSON(tenant, "a", `,"data":"`+strings.Repeat("x", 3000)+`"`), nil, 413, "", "bytes"},
		{"content type", "POST", "/v1/events", "text/csv", "a,b", nil, 415, "", "application/json"},
		{"no route", "GET", "/v2/nothing", "", "", nil, 404, "", "/openapi.json"},
		{"method", "GET", "/v1/events", "", "", nil, 405, "", "POST"},
		{"stream without tenant", "POST", "/v1/streams", "", `{"workflowExecutionId":"w","type":"TOKEN","payload":"x"}`, nil, 400, event.TenantHeader, "required"},
		{"stream bad id", "POST", "/v1/streams", "", `{"workflowExecutionId":"a.>","type":"TOKEN"}`, []string{event.TenantHeader, tenant.String()}, 400, "workflowExecutionId", "not allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, hdr, body := h.do(t, tt.method, tt.path, tt.contentType, tt.body, tt.header...)
			p := problemOf(t, status, hdr, body, tt.status)
			if !strings.Contains(p.Detail, tt.detail) {
				t.Errorf("detail %q; want it to mention %q", p.Detail, tt.detail)
			}
			if tt.field != "" && (len(p.Errors) == 0 || p.Errors[0].Field != tt.field) {
				t.Errorf("errors %+v; want the field %q named", p.Errors, tt.field)
			}
			if tt.status == 405 && hdr.Get("Allow") != "POST" {
				t.Errorf("Allow %q; want POST", hdr.Get("Allow"))
			}
		})
	}
	// Nothing of the above reached the bus.
	sub := bustest.Subscribe(t, h.bus, event.AllEvents(tenant), bus.StartEarliest())
	h.publish(t, eventJSON(tenant, "sentinel", ""))
	bustest.ExpectNext(t, sub, "sentinel")
}

func TestPublishBatch(t *testing.T) {
	cfg := testConfig(t)
	cfg.Events.MaxBatch = 5
	h := newHarness(t, cfg, nil)
	tenant := uuid.New()
	sub := bustest.Subscribe(t, h.bus, event.AllEvents(tenant), bus.StartLive())
	ndjson := eventJSON(tenant, "b.n0", "") + "\n\n" + `{"event_type":"b.n1"}` + "\r\n" + eventJSON(tenant, "b.n2", "") + "\n"
	res, err := h.unix.PublishBatch(t.Context(), []byte(ndjson), tenant.String())
	if err != nil || len(res) != 3 {
		t.Fatalf("batch: %+v, %v", res, err)
	}
	for i, r := range res {
		if r.Index != i || r.ID == "" || r.Sequence == 0 || r.Duplicate || r.Error != nil {
			t.Fatalf("result %d = %+v", i, r)
		}
		bustest.ExpectNext(t, sub, fmt.Sprintf("b.n%d", i))
	}
	// A JSON array works too, and a repeated id is a duplicate.
	arr := `[` + eventJSON(tenant, "b.n3", "") + `,` + eventJSON(tenant, "b.n0", `,"id":"`+res[0].ID+`"`) + `]`
	status, _, body := h.do(t, "POST", "/v1/events/batch", "application/json", arr)
	var out struct{ Results []event.PublishReply }
	if status != 202 || json.Unmarshal(body, &out) != nil || len(out.Results) != 2 || !out.Results[1].Duplicate ||
		out.Results[1].Sequence != res[0].Sequence {
		t.Fatalf("array batch: %d %s", status, body)
	}
	bustest.ExpectNext(t, sub, "b.n3")

	// One invalid entry: 400 naming [i].field, and nothing published.
	bad := eventJSON(tenant, "b.ok", "") + "\n" + eventJSON(tenant, "b..bad", "") + "\n" + `{"tenant_id":"x","event_type":"y"}`
	status, hdr, body := h.do(t, "POST", "/v1/events/batch", "application/x-ndjson", bad)
	p := problemOf(t, status, hdr, body, 400)
	if len(p.Errors) != 2 || p.Errors[0].Field != "[1].event_type" || p.Errors[1].Field != "[2].tenant_id" {
		t.Fatalf("errors %+v; want [1].event_type and [2].tenant_id", p.Errors)
	}
	// Too many entries: 413.
	many := strings.Repeat(eventJSON(tenant, "b.many", "")+"\n", 6)
	status, hdr, body = h.do(t, "POST", "/v1/events/batch", "application/x-ndjson", many)
	problemOf(t, status, hdr, body, 413)

	h.publish(t, eventJSON(tenant, "sentinel", ""))
	bustest.ExpectNext(t, sub, "sentinel")
}

func TestStreamsAndLegacy(t *testing.T) { testStreamsAndLegacy(t, newHarness(t, nil, nil)) }

func testStreamsAndLegacy(t *testing.T, h *harness) {
	tenant, wf, task := uuid.New(), uuid.New(), uuid.New()
	q := url.Values{"tenant_id": {tenant.String()}}
	s := h.stream(t, h.unix, "/workflow-executions/"+wf.String()+"/stream", q, "")

	token := fmt.Sprintf(`{"workflowExecutionId":%q,"taskExecutionId":%q,"sequence":1,"type":"TOKEN","payload":"Hel"}`, wf, task)
	multi := fmt.Sprintf(`{"workflowExecutionId":%q,"sequence":2,"type":"DATA","payload":"line1\nline2\r\nline3"}`, wf)
	legacy := fmt.Sprintf(`{"workflowExecutionId":%q,"taskExecutionId":%q,"sequence":3,"type":"DATA","payload":%q}`, wf, task,
		`{"type":"Event","event":"TASK_COMPLETED","data":{"id":"`+task.String()+`","status":"COMPLETED"},"timestampMs":7}`)
	res, err := h.unix.PublishStreams(t.Context(), []byte(token+"\n"+multi+"\n"+legacy), "application/x-ndjson", tenant.String())
	if err != nil || len(res) != 3 || res[2].ID == "" {
		t.Fatalf("streams publish: %+v, %v", res, err)
	}
	// Two sources: the generic stream in its order, and the converted lifecycle event (not also delivered as a data
	// frame). Across the two feeds the order is the one the sidecar received them in, which the test does not fix.
	var generic []client.SSEEvent
	var got event.FlovynEvent
	for range 3 {
		ev := s.next(t)
		if ev.Event != "lifecycle" {
			generic = append(generic, ev)
			continue
		}
		if err := json.Unmarshal([]byte(ev.Data), &got); err != nil || got.EventType != "task.completed" {
			t.Fatalf("lifecycle frame %s (%v); want task.completed", ev.Data, err)
		}
	}
	if len(generic) != 2 || generic[0].Event != "token" || generic[0].Data != "Hel" ||
		generic[1].Event != "data" || generic[1].Data != "line1\nline2\nline3" {
		t.Fatalf("generic frames %+v; want token Hel, then the multi-line payload back", generic)
	}
	if got.TaskExecutionID == nil || *got.TaskExecutionID != task || string(got.Data) != `{"id":"`+task.String()+`","status":"COMPLETED"}` {
		t.Fatalf("converted %s", got.AppendJSON(nil))
	}
	// A retried legacy publish is deduplicated.
	again, err := h.unix.PublishStreams(t.Context(), []byte(legacy), "application/json", tenant.String())
	if err != nil || len(again) != 1 || !again[0].Duplicate {
		t.Fatalf("legacy retry: %+v, %v; want a duplicate", again, err)
	}
	// A long request (an LLM's tokens; JetStream pipelines it) is stored and delivered in its order.
	var many strings.Builder
	const n = 200
	for i := range n {
		fmt.Fprintf(&many, `{"workflowExecutionId":%q,"sequence":%d,"type":"TOKEN","payload":"t%d"}`+"\n", wf, 10+i, i)
	}
	res, err = h.unix.PublishStreams(t.Context(), []byte(many.String()), "application/x-ndjson", tenant.String())
	if err != nil || len(res) != n {
		t.Fatalf("%d tokens in one request: %d results, %v", n, len(res), err)
	}
	for i := 1; i < n; i++ {
		if res[i].Sequence <= res[i-1].Sequence {
			t.Fatalf("result %d has sequence %d after %d; want the request's order", i, res[i].Sequence, res[i-1].Sequence)
		}
	}
	for i := range n {
		if ev := s.next(t); ev.Event != "token" || ev.Data != fmt.Sprint("t", i) {
			t.Fatalf("frame %+v; want token t%d", ev, i)
		}
	}
}

// TestStandaloneTaskStream is Flovyn's bug report: a standalone task's stream must see TASK_STARTED, every progress
// event and TASK_COMPLETED.
func TestStandaloneTaskStream(t *testing.T) {
	h := newHarness(t, nil, nil)
	tenant, task := uuid.New(), uuid.New()
	s := h.stream(t, h.unix, "/task-executions/"+task.String()+"/stream", url.Values{"tenant_id": {tenant.String()}}, "")
	h.publish(t, eventJSON(tenant, "task.started", taskField(task)))
	for _, p := range []string{"0.25", "0.5", "1"} {
		body := fmt.Sprintf(`{"workflowExecutionId":"","taskExecutionId":%q,"type":"PROGRESS","payload":%q}`, task, p)
		if _, err := h.unix.PublishStreams(t.Context(), []byte(body), "", tenant.String()); err != nil {
			t.Fatal(err)
		}
	}
	h.publish(t, eventJSON(tenant, "task.completed", taskField(task)))
	s.nextLifecycle(t, "task.started")
	for _, p := range []string{"0.25", "0.5", "1"} {
		if ev := s.next(t); ev.Event != "progress" || ev.Data != p {
			t.Fatalf("frame %+v; want progress %s", ev, p)
		}
	}
	s.nextLifecycle(t, "task.completed")
}

func TestStreamTypes(t *testing.T) {
	h := newHarness(t, nil, nil)
	tenant, wf := uuid.New(), uuid.New()
	path := "/workflow-executions/" + wf.String() + "/stream"
	q := func(types string) url.Values { return url.Values{"tenant_id": {tenant.String()}, "types": {types}} }
	onlyCompleted := h.stream(t, h.unix, path, q("task.completed"), "")
	tokensAndWorkflow := h.stream(t, h.unix, path, q(" Tokens , workflow "), "")
	prefix := h.stream(t, h.unix, path, q("task.*"), "")

	h.publish(t, eventJSON(tenant, "task.started", wfField(wf)))
	tok := fmt.Sprintf(`{"workflowExecutionId":%q,"type":"TOKEN","payload":"t"}`, wf)
	if _, err := h.unix.PublishStreams(t.Context(), []byte(tok), "", tenant.String()); err != nil {
		t.Fatal(err)
	}
	h.publish(t, eventJSON(tenant, "workflowx.other", wfField(wf)))
	h.publish(t, eventJSON(tenant, "workflow.completed", wfField(wf)))
	h.publish(t, eventJSON(tenant, "task.completed", wfField(wf)))

	onlyCompleted.nextLifecycle(t, "task.completed")
	if ev := tokensAndWorkflow.next(t); ev.Event != "token" {
		t.Fatalf("frame %+v; want the token", ev)
	}
	tokensAndWorkflow.nextLifecycle(t, "workflow.completed") // the category excludes workflowx.other
	prefix.nextLifecycle(t, "task.started")
	prefix.nextLifecycle(t, "task.completed")

	for _, bad := range []string{"task.**", "a..b", ",", "*", "a b", "$x"} {
		status, hdr, body := h.do(t, "GET", path+"?tenant_id="+tenant.String()+"&types="+url.QueryEscape(bad), "", "")
		p := problemOf(t, status, hdr, body, 400)
		if !strings.Contains(p.Detail, "events, tokens, progress, data, errors") {
			t.Errorf("types=%q: detail %q does not list what is valid", bad, p.Detail)
		}
	}
	status, hdr, body := h.do(t, "GET", "/events/stream?tenant_id="+tenant.String()+"&types=tokens", "", "")
	problemOf(t, status, hdr, body, 400)
}

func TestStreamResume(t *testing.T) { testStreamResume(t, newHarness(t, nil, nil)) }

// TestStreamResumeJetStream resumes a merged workflow stream (lifecycle + generic) on the JetStream backend: both feeds
// go on with no hole and no duplicate.
func TestStreamResumeJetStream(t *testing.T) {
	eb := newJetStreamTestBus(t)
	t.Cleanup(func() { eb.Close() })
	testStreamResume(t, newHarness(t, nil, eb))
}

func TestStreamsAndLegacyJetStream(t *testing.T) {
	eb := newJetStreamTestBus(t)
	t.Cleanup(func() { eb.Close() })
	testStreamsAndLegacy(t, newHarness(t, nil, eb))
}

func testStreamResume(t *testing.T, h *harness) {
	tenant, wf := uuid.New(), uuid.New()
	path := "/workflow-executions/" + wf.String() + "/stream"
	q := url.Values{"tenant_id": {tenant.String()}}
	pub := func(typ string) { h.publish(t, eventJSON(tenant, typ, wfField(wf))) }
	tok := func(p string) {
		body := fmt.Sprintf(`{"workflowExecutionId":%q,"type":"TOKEN","payload":%q}`, wf, p)
		if _, err := h.unix.PublishStreams(t.Context(), []byte(body), "", tenant.String()); err != nil {
			t.Fatal(err)
		}
	}
	pub("e.n1")
	tok("t1")
	pub("e.n2")
	s := h.stream(t, h.unix, path, q, "") // a late subscriber: replay, in arrival order
	s.nextLifecycle(t, "e.n1")
	if ev := s.next(t); ev.Data != "t1" {
		t.Fatalf("frame %+v; want t1", ev)
	}
	last := s.nextLifecycle(t, "e.n2")
	_ = last
	cursor := s.r.LastEventID()
	s.closer.Close()

	tok("t2")
	pub("e.n3")
	r := h.stream(t, h.unix, path, q, cursor) // Last-Event-ID: no duplicate, no hole
	if ev := r.next(t); ev.Data != "t2" {
		t.Fatalf("frame %+v; want t2 first after resuming", ev)
	}
	r.nextLifecycle(t, "e.n3")

	// last_event_id query for clients that cannot set headers; the header wins when both are there.
	q2 := url.Values{"tenant_id": {tenant.String()}, "last_event_id": {cursor}}
	viaQuery := h.stream(t, h.unix, path, q2, "")
	if ev := viaQuery.next(t); ev.Data != "t2" {
		t.Fatalf("query cursor: frame %+v; want t2", ev)
	}
	q3 := url.Values{"tenant_id": {tenant.String()}, "last_event_id": {"zz-1.zz-1"}}
	both := h.stream(t, h.unix, path, q3, cursor)
	if ev := both.next(t); ev.Data != "t2" {
		t.Fatalf("header and query: frame %+v; want the header's cursor used", ev)
	}
	// earliest replays what is held; a malformed cursor is a reset gap, then what is held (never a 400: an EventSource
	// would give up); a stale epoch is a reset gap.
	tenantStream := h.stream(t, h.unix, "/events/stream", q, event.CursorEarliest)
	tenantStream.nextLifecycle(t, "e.n1")
	garbage := h.stream(t, h.unix, path, q, "garbage")
	if ev := garbage.next(t); ev.Event != "gap" || ev.Data != `{"reason":"reset","missed":null}` {
		t.Fatalf("frame %+v; want a reset gap for a malformed cursor", ev)
	}
	garbage.nextLifecycle(t, "e.n1")
	stale := h.stream(t, h.unix, "/events/stream", q, event.Cursor{Events: event.Position{Epoch: 77, Seq: 3}, HasEvents: true}.String())
	if ev := stale.next(t); ev.Event != "gap" || !strings.Contains(ev.Data, `"reason":"reset"`) || !strings.Contains(ev.Data, `"missed":null`) {
		t.Fatalf("frame %+v; want a reset gap", ev)
	}
	stale.nextLifecycle(t, "e.n1")
}

// TestTenantStreamStartsLive checks that /events/stream without a cursor delivers every event acknowledged after its
// headers were flushed, and none from before.
func TestTenantStreamStartsLive(t *testing.T) {
	h := newHarness(t, nil, nil)
	tenant := uuid.New()
	h.publish(t, eventJSON(tenant, "before", ""))
	s := h.stream(t, h.tcp, "/events/stream", url.Values{"tenant_id": {tenant.String()}, "source": {"worker:1"}}, "")
	h.publish(t, eventJSON(tenant, "other.source", ""))
	h.publish(t, eventJSON(tenant, "after", `,"source":"worker:1"`))
	s.nextLifecycle(t, "after")
}

func TestTenantIsolationOverHTTP(t *testing.T) {
	h := newHarness(t, nil, nil)
	a, b, wf := uuid.New(), uuid.New(), uuid.New()
	s := h.stream(t, h.unix, "/workflow-executions/"+wf.String()+"/stream", url.Values{"tenant_id": {a.String()}}, "")
	h.publish(t, eventJSON(b, "secret", wfField(wf)))
	body := fmt.Sprintf(`{"workflowExecutionId":%q,"type":"TOKEN","payload":"secret"}`, wf)
	if _, err := h.unix.PublishStreams(t.Context(), []byte(body), "", b.String()); err != nil {
		t.Fatal(err)
	}
	h.publish(t, eventJSON(a, "mine", wfField(wf)))
	s.nextLifecycle(t, "mine")
	for _, bad := range []string{"a.b", "*", ">", "%2A", "a%20b", "$SYS"} {
		status, hdr, body := h.do(t, "GET", "/workflow-executions/"+bad+"/stream?tenant_id="+a.String(), "", "")
		problemOf(t, status, hdr, body, 400)
	}
}

func TestKeepAliveAndHeadersFlushed(t *testing.T) {
	cfg := testConfig(t)
	cfg.SSE.Heartbeat = config.Duration(time.Second) // the smallest the configuration allows
	h := newHarness(t, cfg, nil)
	ctx, cancel := context.WithTimeout(t.Context(), bustest.WaitFor)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", h.unix.BaseURL()+"/events/stream?tenant_id="+uuid.NewString(), nil)
	resp, err := h.unix.Do(req) // returns once the headers arrive: nothing was published
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	for k, want := range map[string]string{"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s = %q; want %q", k, got, want)
		}
	}
	r := client.NewSSEReader(resp.Body)
	go func() {
		for {
			if _, err := r.Next(); err != nil {
				return
			}
		}
	}()
	deadline := time.Now().Add(bustest.WaitFor)
	for r.Comments() < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("%d keep-alive comments; want one within %v", r.Comments(), bustest.WaitFor)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if r.Retry() != sseRetry {
		t.Errorf("retry hint %v; want %v", r.Retry(), sseRetry)
	}
}

func TestDisconnectFreesSubscriber(t *testing.T) {
	cfg := testConfig(t)
	cfg.SSE.MaxSubscribersPerTenant = 2
	h := newHarness(t, cfg, nil)
	tenant := uuid.New()
	q := url.Values{"tenant_id": {tenant.String()}}
	s1 := h.stream(t, h.unix, "/events/stream", q, "")
	h.stream(t, h.unix, "/events/stream", q, "")
	status, hdr, body := h.do(t, "GET", "/events/stream?tenant_id="+tenant.String(), "", "")
	problemOf(t, status, hdr, body, 429)
	if hdr.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	s1.closer.Close()
	deadline := time.Now().Add(bustest.WaitFor)
	for {
		h.srv.subs.mu.Lock()
		n := h.srv.subs.perTenant[tenant]
		h.srv.subs.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d streams counted after a client left; want 1", n)
		}
		time.Sleep(2 * time.Millisecond)
	}
	h.stream(t, h.unix, "/events/stream", q, "") // the slot is free again
}

func TestOpsEndpoints(t *testing.T) {
	h := newHarness(t, nil, nil)
	for _, path := range []string{"/healthz", "/readyz"} {
		if status, _, body := h.do(t, "GET", path, "", ""); status != 200 {
			t.Errorf("%s: %d %s", path, status, body)
		}
	}
	h.publish(t, eventJSON(uuid.New(), "m.x", ""))
	_, _, metrics := h.do(t, "GET", "/metrics", "", "")
	for _, fam := range []string{"eventhook_published_total", "eventhook_publish_duration_seconds", "eventhook_sse_subscribers",
		"eventhook_backend_connected"} {
		if !bytes.Contains(metrics, []byte(fam)) {
			t.Errorf("/metrics lacks %s", fam)
		}
	}
	status, hdr, body := h.do(t, "POST", "/v1/events", "", `{"event_type":"a"}`)
	problemOf(t, status, hdr, body, 400)
	_, _, metrics = h.do(t, "GET", "/metrics", "", "")
	if !bytes.Contains(metrics, []byte(`eventhook_rejected_total{reason="invalid"} 1`)) {
		t.Errorf("/metrics does not count the rejected publish")
	}
}

// TestOpenAPIMatchesRouter holds the OpenAPI document against the router: every route is documented, and every documented
// operation is served (not 404, not 405).
func TestOpenAPIMatchesRouter(t *testing.T) {
	h := newHarness(t, nil, nil)
	status, _, body := h.do(t, "GET", "/openapi.json", "", "")
	var doc struct {
		OpenAPI string                    `json:"openapi"`
		Paths   map[string]map[string]any `json:"paths"`
	}
	if status != 200 || json.Unmarshal(body, &doc) != nil || doc.OpenAPI != "3.1.0" {
		t.Fatalf("openapi.json: %d %.200s", status, body)
	}
	n := 0
	for path, ops := range doc.Paths {
		for method := range ops {
			n++
			concrete := strings.ReplaceAll(path, "{id}", uuid.NewString())
			req := httptestRequest(strings.ToUpper(method), concrete)
			pattern := ""
			rt := h.srv.routeFor(req)
			if rt != nil {
				pattern = rt.path
			}
			if pattern != path {
				t.Errorf("documented %s %s is routed to %q", method, path, pattern)
			}
		}
	}
	if n != len(h.srv.routes) {
		t.Errorf("the document has %d operations; the router %d", n, len(h.srv.routes))
	}
	for _, rt := range h.srv.routes {
		if _, ok := doc.Paths[rt.path][strings.ToLower(rt.method)]; !ok {
			t.Errorf("route %s %s is not documented", rt.method, rt.path)
		}
	}
}

func httptestRequest(method, path string) *http.Request {
	req, _ := http.NewRequest(method, "http://eventhook"+path, nil)
	return req
}

func TestCORS(t *testing.T) {
	cfg := testConfig(t)
	cfg.HTTP.CORSOrigins = []string{"https://app.example"}
	h := newHarness(t, cfg, nil)
	status, hdr, _ := h.do(t, "OPTIONS", "/v1/events", "", "", "Origin", "https://app.example", "Access-Control-Request-Method", "POST")
	if status != 204 || hdr.Get("Access-Control-Allow-Origin") != "https://app.example" {
		t.Fatalf("preflight: %d %v", status, hdr)
	}
	_, hdr, _ = h.do(t, "GET", "/healthz", "", "", "Origin", "https://evil.example")
	if hdr.Get("Access-Control-Allow-Origin") != "" {
		t.Fatal("an origin not listed was allowed")
	}
}

func TestShutdownEndsStreamsAndRemovesSocket(t *testing.T) {
	h := newHarness(t, nil, nil)
	s := h.stream(t, h.unix, "/events/stream", url.Values{"tenant_id": {uuid.NewString()}}, "")
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	if err := h.srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown with an open stream: %v", err)
	}
	s.ended(t)
	if err := <-h.served; err != nil {
		t.Fatalf("Serve returned %v after a clean shutdown", err)
	}
	if _, err := os.Lstat(h.socket); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket still there after shutdown: %v", err)
	}
}

// TestShutdownWaitsForStreams: the SSE connections are hijacked, so the http.Server does not wait for them; Shutdown
// does. When it returns, no SSE goroutine runs (the bus may be closed under no stream), and once the clients and the
// bus are closed too, no goroutine the test started is left.
func TestShutdownWaitsForStreams(t *testing.T) {
	base := bustest.Goroutines(0)
	cfg := testConfig(t)
	mem := bus.NewMemory(bus.MemoryOptions{Feed: bus.FeedOptions{Encoders: FrameEncoders(cfg.Events.TenantKey)}})
	h := newHarness(t, cfg, mem)
	h.srv.streamEnding = func() { time.Sleep(100 * time.Millisecond) } // streams that take a while to end
	tenant, wf := uuid.New(), uuid.New()
	q := url.Values{"tenant_id": {tenant.String()}}
	var streams []*sse
	for i := range 20 {
		path := "/events/stream"
		if i%2 == 1 {
			path = "/workflow-executions/" + wf.String() + "/stream"
		}
		streams = append(streams, h.stream(t, h.unix, path, q, ""))
	}
	h.publish(t, eventJSON(tenant, "workflow.started", wfField(wf)))
	for _, s := range streams {
		s.nextLifecycle(t, "workflow.started")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := h.srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	// A goroutine whose last deferred call (the wait group's Done) has run may not have returned yet: allow it a few
	// milliseconds, far less than the 100 ms a stream takes to end here, which a Shutdown that did not wait would show.
	deadline := time.Now().Add(20 * time.Millisecond)
	for n := countGoroutines("sidecar.(*sseConn).run"); n != 0; n = countGoroutines("sidecar.(*sseConn).run") {
		if time.Now().After(deadline) {
			t.Fatalf("%d SSE goroutines still running after Shutdown returned; want 0", n)
		}
		runtime.Gosched()
	}
	for _, s := range streams {
		s.ended(t)
	}
	h.unix.Close()
	h.tcp.Close()
	if err := mem.Close(); err != nil {
		t.Fatal(err)
	}
	if n := bustest.Goroutines(base); n > base {
		buf := make([]byte, 1<<20)
		t.Fatalf("%d goroutines after Shutdown and Close; %d before:\n%s", n, base, buf[:runtime.Stack(buf, true)])
	}
}

// countGoroutines returns the number of goroutines whose stack has a frame of fn.
func countGoroutines(fn string) int {
	buf := make([]byte, 1<<22)
	return strings.Count(string(buf[:runtime.Stack(buf, true)]), fn+"(")
}

func TestUnixSocketFile(t *testing.T) {
	h := newHarness(t, nil, nil)
	fi, err := os.Stat(h.socket)
	if err != nil || fi.Mode().Perm() != 0o660 || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("socket %v mode %v; want a socket with mode 0660", err, fi.Mode())
	}
	// A live socket is refused with a clear error.
	cfg := testConfig(t)
	cfg.HTTP.UnixSocket = h.socket
	cfg.HTTP.Listen = ""
	other, _ := NewServer(Options{Config: cfg, Bus: h.bus, Logger: config.NewLogger(config.Log{}, io.Discard), Registry: prometheus.NewRegistry()})
	if err := other.Listen(); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Fatalf("Listen on a live socket = %v; want a clear refusal", err)
	}
	// A stale socket (no one answering) is replaced.
	stale := filepath.Join(socketDir(t), "stale.sock")
	l, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	cfg.HTTP.UnixSocket = stale
	replaced, _ := NewServer(Options{Config: cfg, Bus: h.bus, Logger: config.NewLogger(config.Log{}, io.Discard), Registry: prometheus.NewRegistry()})
	if err := replaced.Listen(); err != nil {
		t.Fatalf("Listen on a stale socket: %v", err)
	}
	replaced.Shutdown(t.Context())
	// A regular file is never removed.
	file := filepath.Join(socketDir(t), "file")
	os.WriteFile(file, []byte("keep"), 0o600)
	cfg.HTTP.UnixSocket = file
	notSock, _ := NewServer(Options{Config: cfg, Bus: h.bus, Logger: config.NewLogger(config.Log{}, io.Discard), Registry: prometheus.NewRegistry()})
	if err := notSock.Listen(); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("Listen on a regular file = %v", err)
	}
	if b, _ := os.ReadFile(file); string(b) != "keep" {
		t.Fatal("the regular file was touched")
	}
}

// failingBus stores the first `ok` events, then answers ErrUnavailable.
type failingBus struct {
	bus.Bus
	mu sync.Mutex
	ok int
}

// take reports whether the next publish may go through.
func (b *failingBus) take() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ok == 0 {
		return false
	}
	b.ok--
	return true
}

func (b *failingBus) PublishEvent(ctx context.Context, e *event.FlovynEvent) (bus.PublishResult, error) {
	if !b.take() {
		return bus.PublishResult{}, fmt.Errorf("publish: %w: test", bus.ErrUnavailable)
	}
	return b.Bus.PublishEvent(ctx, e)
}

func (b *failingBus) PublishStream(ctx context.Context, e *event.StreamEvent) (bus.PublishResult, error) {
	if !b.take() {
		return bus.PublishResult{}, fmt.Errorf("publish: %w: test", bus.ErrUnavailable)
	}
	return b.Bus.PublishStream(ctx, e)
}

// TestBatchBackendFailure: a backend failure mid-batch is a 503 with Retry-After and per-entry results saying which
// entries were stored.
func TestBatchBackendFailure(t *testing.T) {
	mem := bus.NewMemory(bus.MemoryOptions{})
	t.Cleanup(func() { mem.Close() })
	h := newHarness(t, nil, &failingBus{Bus: mem, ok: 1})
	tenant := uuid.New()
	body := eventJSON(tenant, "a.n0", "") + "\n" + eventJSON(tenant, "a.n1", "") + "\n" + eventJSON(tenant, "a.n2", "")
	status, hdr, raw := h.do(t, "POST", "/v1/events/batch", "application/x-ndjson", body)
	p := problemOf(t, status, hdr, raw, 503)
	if hdr.Get("Retry-After") == "" || len(p.Results) != 3 {
		t.Fatalf("503 %s; want Retry-After and three results", raw)
	}
	var keys struct{ Results []map[string]json.RawMessage }
	_ = json.Unmarshal(raw, &keys)
	if p.Results[0].Error != nil || keys.Results[0]["sequence"] == nil || p.Results[1].Error == nil || p.Results[2].Error == nil ||
		p.Results[1].Error.Status != 503 {
		t.Fatalf("results %s; want the first stored and the others failed with 503", raw)
	}
	if !strings.Contains(p.Detail, "a retry of the whole request is safe") {
		t.Errorf("detail %q; want it to say that a retry of the whole batch is safe (dedup)", p.Detail)
	}
}

// TestStreamsBackendFailure: stream events have no id, so a partly stored /v1/streams request tells the client to send
// again only what failed; a single stream event that fails is a plain 503.
func TestStreamsBackendFailure(t *testing.T) {
	mem := bus.NewMemory(bus.MemoryOptions{})
	t.Cleanup(func() { mem.Close() })
	fb := &failingBus{Bus: mem, ok: 1}
	h := newHarness(t, nil, fb)
	tenant := uuid.New().String()
	tok := `{"workflowExecutionId":"w","type":"TOKEN","payload":"x"}`
	status, hdr, raw := h.do(t, "POST", "/v1/streams", "application/x-ndjson", tok+"\n"+tok+"\n"+tok, event.TenantHeader, tenant)
	p := problemOf(t, status, hdr, raw, 503)
	if len(p.Results) != 3 || p.Results[0].Error != nil || p.Results[1].Error == nil || p.Results[2].Error == nil {
		t.Fatalf("503 %s; want the first stored and the others failed", raw)
	}
	if !strings.Contains(p.Detail, "send again only the entries with an error") {
		t.Errorf("detail %q; want it to say that only the failed entries should be sent again", p.Detail)
	}
	status, hdr, raw = h.do(t, "POST", "/v1/streams", "application/json", tok, event.TenantHeader, tenant)
	if p := problemOf(t, status, hdr, raw, 503); p.Results != nil || hdr.Get("Retry-After") == "" {
		t.Fatalf("a single failed stream event: %s; want a plain 503 with Retry-After", raw)
	}
}

// TestUnavailableDetails: a 503 says whether the event was stored when the sidecar knows, and that it may be when a
// publish was sent but not confirmed.
func TestUnavailableDetails(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("publish: %w: not connected to NATS", bus.ErrUnavailable), "nothing was stored"},
		{fmt.Errorf("publish: %w: %w: lost", bus.ErrUnavailable, bus.ErrUnconfirmed), "may or may not be stored"},
		{fmt.Errorf("publish: %w", context.DeadlineExceeded), "may or may not be stored"},
	} {
		p, internal := problemFor(tt.err)
		if p.Status != 503 || p.RetryAfter <= 0 || internal || !strings.Contains(p.Detail, tt.want) {
			t.Errorf("problemFor(%v) = %+v (internal %v); want a 503 with Retry-After saying %q", tt.err, p, internal, tt.want)
		}
	}
}
