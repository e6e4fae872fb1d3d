package sidecar

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/flovyn/eventhook/sidecar/config"
	"github.com/flovyn/eventhook/sidecar/event"
	"github.com/google/uuid"
)

// jsonEqual reports whether a and b are the same JSON value (key order and spacing aside).
func jsonEqual(a, b string) bool {
	var va, vb any
	if json.Unmarshal([]byte(a), &va) != nil || json.Unmarshal([]byte(b), &vb) != nil {
		return false
	}
	return reflect.DeepEqual(va, vb)
}

// nextState reads the next frame and requires Flovyn's framing of a lifecycle event: `event: data` with a
// StateEventPayload of the given name, with an id, and exactly Flovyn's keys.
func (s *sse) nextState(t testing.TB, name string) event.StateEventPayload {
	t.Helper()
	ev := s.next(t)
	var keys map[string]json.RawMessage
	if ev.Event != "data" || json.Unmarshal([]byte(ev.Data), &keys) != nil {
		t.Fatalf("frame %+v; want event: data with the StateEventPayload of %s", ev, name)
	}
	var p event.StateEventPayload
	if err := json.Unmarshal([]byte(ev.Data), &p); err != nil || len(keys) != 4 || keys["data"] == nil ||
		keys["timestampMs"] == nil || p.Type != "Event" || p.Event != name {
		t.Fatalf("data %s (%v); want {type: Event, event: %s, data, timestampMs}", ev.Data, err, name)
	}
	if ev.ID == "" {
		t.Fatal("a lifecycle frame in Flovyn's framing without id")
	}
	return p
}

// legacyStream is a DATA stream event carrying a StateEventPayload, as Flovyn's services publish it. Its sequence is
// the time's last digits, so that two events of one name are never taken for a retry of one.
func legacyStream(wf, task, name, data string, ts int64) string {
	payload := fmt.Sprintf(`{"type": "Event", "event": %q, "data": %s, "timestampMs": %d}`, name, data, ts)
	return fmt.Sprintf(`{"workflowExecutionId":%q,"taskExecutionId":%q,"sequence":%d,"type":"DATA","payload":%q}`,
		wf, task, ts%100000, payload)
}

func publishStreams(t testing.TB, h *harness, tenant uuid.UUID, lines ...string) {
	t.Helper()
	if _, err := h.unix.PublishStreams(t.Context(), []byte(strings.Join(lines, "\n")), "application/x-ndjson", tenant.String()); err != nil {
		t.Fatalf("POST /v1/streams: %v", err)
	}
}

func TestFlovynFormat(t *testing.T) { testFlovynFormat(t, newHarness(t, nil, nil)) }

func TestFlovynFormatJetStream(t *testing.T) {
	eb := newJetStreamTestBus(t)
	t.Cleanup(func() { eb.Close() })
	testFlovynFormat(t, newHarness(t, nil, eb))
}

// testFlovynFormat: legacy StateEventPayloads published as DATA stream events come out of a format=flovyn stream as
// the same StateEventPayloads under `event: data` (same name, equal data, same time); a type without a legacy name stays
// a lifecycle frame, tokens and data are unchanged, types filters by the lifecycle type, and a resume neither repeats nor
// skips.
func testFlovynFormat(t *testing.T, h *harness) {
	tenant, wf, task := uuid.New(), uuid.New(), uuid.New()
	W, T := wf.String(), task.String()
	path := "/workflow-executions/" + W + "/stream"
	flovyn := func(extra ...string) url.Values {
		q := url.Values{"tenant_id": {tenant.String()}, "format": {"flovyn"}}
		for i := 0; i+1 < len(extra); i += 2 {
			q.Set(extra[i], extra[i+1])
		}
		return q
	}
	suspended := `{"id": "` + W + `", "kind": "chat", "status": "SUSPENDED", "suspendType": "promise"}`
	completed := `{"id": "` + T + `", "kind": "llm", "status": "COMPLETED", "executionCount": 1, "maxRetries": 3, "error": null}`
	publishStreams(t, h, tenant,
		fmt.Sprintf(`{"workflowExecutionId":%q,"taskExecutionId":%q,"type":"TOKEN","payload":"Hel"}`, W, T),
		legacyStream(W, "", "WORKFLOW_SUSPENDED", suspended, 1767225600100),
		legacyStream(W, T, "TASK_COMPLETED", completed, 1767225600123),
		legacyStream(W, "", "CUSTOM_THING", `null`, 1767225600200), // unknown name: custom.thing, which has no legacy name
		fmt.Sprintf(`{"workflowExecutionId":%q,"type":"DATA","payload":"{\"type\":\"Other\"}"}`, W))
	h.publish(t, eventJSON(tenant, "deploy.finished", wfField(wf)))

	// A late subscriber: everything held, lifecycle events of Flovyn's names in Flovyn's framing.
	s := h.stream(t, h.unix, path, flovyn(), "")
	var states []event.StateEventPayload
	var lifecycle, generic []string
	for range 6 {
		ev := s.next(t)
		if ev.ID == "" {
			t.Fatalf("frame %+v without id", ev)
		}
		switch {
		case ev.Event == "data" && strings.Contains(ev.Data, `"type":"Event"`):
			var p event.StateEventPayload
			if err := json.Unmarshal([]byte(ev.Data), &p); err != nil {
				t.Fatalf("state frame %s: %v", ev.Data, err)
			}
			states = append(states, p)
		case ev.Event == "lifecycle":
			var e event.FlovynEvent
			if err := json.Unmarshal([]byte(ev.Data), &e); err != nil {
				t.Fatalf("lifecycle frame %s: %v", ev.Data, err)
			}
			lifecycle = append(lifecycle, e.EventType)
		default:
			generic = append(generic, ev.Event+" "+ev.Data)
		}
	}
	if len(states) != 2 || states[0].Event != "WORKFLOW_SUSPENDED" || !jsonEqual(string(states[0].Data), suspended) ||
		states[0].TimestampMs != 1767225600100 || states[1].Event != "TASK_COMPLETED" ||
		!jsonEqual(string(states[1].Data), completed) || states[1].TimestampMs != 1767225600123 {
		t.Fatalf("state frames %+v; want WORKFLOW_SUSPENDED and TASK_COMPLETED with their data and times", states)
	}
	if strings.Join(lifecycle, ",") != "custom.thing,deploy.finished" {
		t.Fatalf("lifecycle frames %q; want the types without a legacy name: custom.thing, deploy.finished", lifecycle)
	}
	if strings.Join(generic, "|") != `token Hel|data {"type":"Other"}` {
		t.Fatalf("generic frames %q; want the token and the data payload verbatim", generic)
	}

	// Live, two subscribers of the same events, each in its own framing.
	plain := h.stream(t, h.unix, path, url.Values{"tenant_id": {tenant.String()}, "types": {"events"}, "format": {"eventhook"}}, "")
	for range 4 {
		plain.next(t) // what is held
	}
	publishStreams(t, h, tenant, legacyStream(W, T, "TASK_STARTED", `{"id":"`+T+`"}`, 1767225600300))
	if p := s.nextState(t, "TASK_STARTED"); p.TimestampMs != 1767225600300 {
		t.Fatalf("live TASK_STARTED at %d; want 1767225600300", p.TimestampMs)
	}
	if e := plain.nextLifecycle(t, "task.started"); e.TimestampMs != 1767225600300 {
		t.Fatalf("format=eventhook: task.started at %d", e.TimestampMs)
	}

	// Resume with the cursor of the flovyn stream: no duplicate, no hole.
	cursor := s.r.LastEventID()
	s.closer.Close()
	publishStreams(t, h, tenant, legacyStream(W, T, "TASK_FAILED", `{"id":"`+T+`","error":"boom"}`, 1767225600400))
	publishStreams(t, h, tenant, fmt.Sprintf(`{"workflowExecutionId":%q,"type":"TOKEN","payload":"x"}`, W))
	r := h.stream(t, h.unix, path, flovyn(), cursor)
	// Two sources, each in its order; across them, the order the sidecar received them in (a lifecycle feed that lags
	// the store may give its event after the token).
	var gotFailed, gotToken bool
	for range 2 {
		switch ev := r.next(t); {
		case ev.Event == "token" && ev.Data == "x" && !gotToken:
			gotToken = true
		case ev.Event == "data" && strings.Contains(ev.Data, `"TASK_FAILED"`) && !gotFailed:
			var p event.StateEventPayload
			if err := json.Unmarshal([]byte(ev.Data), &p); err != nil || !jsonEqual(string(p.Data), `{"id":"`+T+`","error":"boom"}`) {
				t.Fatalf("TASK_FAILED frame %s (%v)", ev.Data, err)
			}
			gotFailed = true
		default:
			t.Fatalf("frame %+v after resuming; want TASK_FAILED and the token x, once each", ev)
		}
	}
	publishStreams(t, h, tenant, legacyStream(W, T, "TASK_COMPLETED", `{"id":"`+T+`"}`, 1767225600500))
	if p := r.nextState(t, "TASK_COMPLETED"); p.TimestampMs != 1767225600500 {
		t.Fatalf("live TASK_COMPLETED after resuming at %d; want 1767225600500", p.TimestampMs)
	}

	// types filters by the lifecycle type: task.completed gives the TASK_COMPLETED data frames, nothing else.
	only := h.stream(t, h.unix, path, flovyn("types", "task.completed"), "")
	if p := only.nextState(t, "TASK_COMPLETED"); p.TimestampMs != 1767225600123 {
		t.Fatalf("types=task.completed: first TASK_COMPLETED at %d; want 1767225600123", p.TimestampMs)
	}
	if p := only.nextState(t, "TASK_COMPLETED"); p.TimestampMs != 1767225600500 {
		t.Fatalf("types=task.completed: second TASK_COMPLETED at %d; want 1767225600500", p.TimestampMs)
	}
	publishStreams(t, h, tenant, fmt.Sprintf(`{"workflowExecutionId":%q,"type":"TOKEN","payload":"no"}`, W),
		legacyStream(W, "", "WORKFLOW_COMPLETED", `null`, 1767225600600),
		legacyStream(W, T, "TASK_COMPLETED", `{"id":"`+T+`"}`, 1767225600700))
	if p := only.nextState(t, "TASK_COMPLETED"); p.TimestampMs != 1767225600700 {
		t.Fatalf("types=task.completed: live TASK_COMPLETED at %d; want 1767225600700", p.TimestampMs)
	}

	// The task's stream inside the workflow, in Flovyn's framing: its lifecycle events and its tokens (across the two
	// feeds, the order of what one request published is not fixed).
	ofTask := h.stream(t, h.unix, "/task-executions/"+T+"/stream", flovyn("workflow_execution_id", W, "types", "task,tokens"), "")
	var names, tokens []string
	for range 6 {
		switch ev := ofTask.next(t); ev.Event {
		case "token":
			tokens = append(tokens, ev.Data)
		case "data":
			var p event.StateEventPayload
			if err := json.Unmarshal([]byte(ev.Data), &p); err != nil || p.Type != "Event" {
				t.Fatalf("task stream: data frame %s (%v); want a StateEventPayload", ev.Data, err)
			}
			names = append(names, p.Event)
		default:
			t.Fatalf("task stream: frame %+v; want tokens and StateEventPayloads", ev)
		}
	}
	if strings.Join(tokens, ",") != "Hel" ||
		strings.Join(names, ",") != "TASK_COMPLETED,TASK_STARTED,TASK_FAILED,TASK_COMPLETED,TASK_COMPLETED" {
		t.Fatalf("task stream: tokens %q, events %q; want the task's token and its five lifecycle events", tokens, names)
	}
}

// TestFlovynFormatDefault: sse.format: flovyn is the framing of a stream that names none; format=eventhook still gives
// the FlovynEvent; the tenant stream is always eventhook.
func TestFlovynFormatDefault(t *testing.T) {
	cfg := testConfig(t)
	cfg.SSE.Format = "flovyn"
	h := newHarness(t, cfg, nil)
	tenant, wf := uuid.New(), uuid.New()
	q := url.Values{"tenant_id": {tenant.String()}}
	path := "/workflow-executions/" + wf.String() + "/stream"
	def := h.stream(t, h.unix, path, q, "")
	plain := h.stream(t, h.unix, path, url.Values{"tenant_id": {tenant.String()}, "format": {"eventhook"}}, "")
	all := h.stream(t, h.unix, "/events/stream", q, "")
	publishStreams(t, h, tenant, legacyStream(wf.String(), "", "WORKFLOW_STARTED", `{"id":"`+wf.String()+`"}`, 1767225600001))
	if p := def.nextState(t, "WORKFLOW_STARTED"); p.TimestampMs != 1767225600001 {
		t.Fatalf("sse.format flovyn: WORKFLOW_STARTED at %d", p.TimestampMs)
	}
	plain.nextLifecycle(t, "workflow.started")
	all.nextLifecycle(t, "workflow.started")
}

func TestFlovynFormatErrors(t *testing.T) {
	h := newHarness(t, nil, nil)
	tenant := uuid.NewString()
	for _, tt := range []struct{ path, format, detail string }{
		{"/workflow-executions/" + uuid.NewString() + "/stream", "bogus", "eventhook or flovyn"},
		{"/task-executions/" + uuid.NewString() + "/stream", "FLOVYN", "eventhook or flovyn"},
		{"/events/stream", "bogus", "eventhook or flovyn"},
		{"/events/stream", "flovyn", "workflow and task streams only"},
	} {
		status, hdr, body := h.do(t, "GET", tt.path+"?tenant_id="+tenant+"&format="+tt.format, "", "")
		p := problemOf(t, status, hdr, body, http.StatusBadRequest)
		if len(p.Errors) != 1 || p.Errors[0].Field != "format" || !strings.Contains(p.Detail, tt.detail) {
			t.Errorf("%s format=%s: %s; want a 400 on the field format saying %q", tt.path, tt.format, body, tt.detail)
		}
	}
	// format=eventhook on the tenant stream is what it gets anyway.
	s := h.stream(t, h.unix, "/events/stream", url.Values{"tenant_id": {tenant}, "format": {"eventhook"}}, "")
	h.publish(t, eventJSON(uuid.MustParse(tenant), "task.started", ""))
	s.nextLifecycle(t, "task.started")
}

// BenchmarkLifecycleFrame compares the two framings of one lifecycle event for one subscriber: eventhook copies the
// hub's shared frame, flovyn encodes a StateEventPayload into the connection's buffer.
func BenchmarkLifecycleFrame(b *testing.B) {
	wf, task := uuid.New(), uuid.New()
	e := &event.FlovynEvent{ID: uuid.New(), TenantID: uuid.New(), WorkflowExecutionID: &wf, TaskExecutionID: &task,
		EventType: "task.completed", Source: "system", TimestampMs: 1767225600123,
		Data: json.RawMessage(`{"id":"` + task.String() + `","kind":"llm","status":"COMPLETED","executionCount":1,"maxRetries":3}`)}
	wire := lifecycleWire("")(e)
	for _, format := range []string{config.FormatEventhook, config.FormatFlovyn} {
		b.Run(format, func(b *testing.B) {
			c := &sseConn{spec: &streamSpec{flovyn: format == config.FormatFlovyn}}
			buf := make([]byte, 0, 4096)
			b.ReportAllocs()
			for b.Loop() {
				buf = c.appendLifecycle(buf[:0], e, wire)
			}
			b.SetBytes(int64(len(buf)))
		})
	}
}
