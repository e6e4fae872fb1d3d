package event

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

// ev returns a valid event of tenant and eventType.
func ev(tenant uuid.UUID, eventType string) *FlovynEvent {
	e, _ := NewEvent(tenant, eventType, "system", map[string]string{"t": eventType})
	return e
}

const (
	tenantStr = "3f0c2b1e-8a4d-4c61-9f0e-2d7b5a9c00e1"
	wfStr     = "0b5d8f4e-1c2a-4e3b-8d7f-6a5b4c3d2e1f"
)

func TestDecodeEventMinimal(t *testing.T) {
	e, err := DecodeEvent([]byte(`{"tenant_id":"` + strings.ToUpper(tenantStr) + `","event_type":"workflow.completed"}`))
	if err != nil {
		t.Fatal(err)
	}
	e.Stamp(DefaultSource, time.UnixMilli(1700000000000))
	if err := e.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if e.TenantID.String() != tenantStr {
		t.Fatalf("tenant %s; want canonical lower case %s", e.TenantID, tenantStr)
	}
	if e.ID == uuid.Nil || e.Source != "system" || e.TimestampMs != 1700000000000 {
		t.Fatalf("stamping gave id %s source %q ts %d", e.ID, e.Source, e.TimestampMs)
	}
	// Every key is emitted, absent optionals as null (serde requires data to be present).
	var m map[string]any
	if err := json.Unmarshal(e.AppendJSON(nil), &m); err != nil {
		t.Fatalf("output is not JSON: %v", err)
	}
	for _, k := range []string{"id", "tenant_id", "workflow_execution_id", "task_execution_id", "event_type", "source",
		"data", "timestamp_ms", "correlation_id"} {
		v, ok := m[k]
		if !ok {
			t.Errorf("output lacks %q", k)
		}
		if (k == "data" || k == "workflow_execution_id" || k == "task_execution_id" || k == "correlation_id") && v != nil {
			t.Errorf("%s = %v; want null", k, v)
		}
	}
	if len(m) != 9 {
		t.Errorf("output has %d keys; want 9", len(m))
	}
}

func TestEventRoundTrip(t *testing.T) {
	in := `{"id":"9d7c6b5a-4e3f-4a1b-8c2d-1e0f9a8b7c6d","tenant_id":"` + tenantStr + `","workflow_execution_id":"` + wfStr +
		`","task_execution_id":null,"event_type":"task.completed","source":"worker:w-1 <\"x\">","data":{"a": [1, 2],` + "\n" +
		`"s":"line\nbreak \u2028"},"timestamp_ms":1700000000123,"correlation_id":"c-1"}`
	e, err := DecodeEvent([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	out := e.AppendJSON(nil)
	if strings.ContainsAny(string(out), "\n\r") {
		t.Fatalf("encoded event spans lines: %s", out)
	}
	again, err := DecodeEvent(out)
	if err != nil {
		t.Fatalf("re-decoding %s: %v", out, err)
	}
	if string(again.AppendJSON(nil)) != string(out) {
		t.Fatalf("round trip changed the event:\n%s\n%s", out, again.AppendJSON(nil))
	}
	// encoding/json reads what AppendJSON writes, field for field.
	var std map[string]any
	if err := json.Unmarshal(out, &std); err != nil {
		t.Fatal(err)
	}
	if std["source"] != `worker:w-1 <"x">` || std["workflow_execution_id"] != wfStr || std["correlation_id"] != "c-1" {
		t.Fatalf("decoded %v", std)
	}
	viaMarshal, _ := json.Marshal(e)
	if string(viaMarshal) != string(out) {
		t.Fatalf("json.Marshal = %s; want %s", viaMarshal, out)
	}
}

func TestDecodeEventErrors(t *testing.T) {
	tests := []struct {
		name      string
		in        string
		field     string
		msgSubstr string
	}{
		{"camelCase field", `{"tenantId":"` + tenantStr + `","event_type":"a"}`, "tenantId", `did you mean "tenant_id"`},
		{"unknown field", `{"tenant_id":"` + tenantStr + `","event_type":"a","colour":1}`, "colour", "unknown field"},
		{"bad uuid", `{"tenant_id":"nope","event_type":"a"}`, "tenant_id", "not a UUID"},
		{"bad workflow uuid", `{"tenant_id":"` + tenantStr + `","workflow_execution_id":"wf-1","event_type":"a"}`,
			"workflow_execution_id", "not a UUID"},
		{"timestamp string", `{"tenant_id":"` + tenantStr + `","event_type":"a","timestamp_ms":"now"}`, "timestamp_ms", "integer"},
		{"array", `[1]`, "", "expected a JSON object"},
		{"syntax", `{"tenant_id":`, "", "malformed JSON"},
		{"empty", ``, "", "empty body"},
		{"trailing", `{"event_type":"a"} {}`, "", "unexpected data after"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeEvent([]byte(tt.in))
			var ve *ValidationError
			if !errors.As(err, &ve) || !errors.Is(err, ErrInvalidEvent) {
				t.Fatalf("DecodeEvent(%s) = %v; want a *ValidationError", tt.in, err)
			}
			if ve.Errors[0].Field != tt.field || !strings.Contains(ve.Errors[0].Message, tt.msgSubstr) {
				t.Fatalf("error %+v; want field %q and a message containing %q", ve.Errors[0], tt.field, tt.msgSubstr)
			}
		})
	}
}

// A body with a bad id and a missing event type is answered with both, so that one round trip shows what to fix.
func TestDecodeEventNamesEveryBadField(t *testing.T) {
	_, err := DecodeEvent([]byte(`{"tenant_id":"nope","workflow_execution_id":"wf-1"}`))
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("DecodeEvent = %v; want a *ValidationError", err)
	}
	var fields []string
	for _, fe := range ve.Errors {
		fields = append(fields, fe.Field)
	}
	if got, want := strings.Join(fields, ","), "tenant_id,workflow_execution_id,event_type"; got != want {
		t.Fatalf("fields named %s; want %s (%v)", got, want, err)
	}
}

func TestValidate(t *testing.T) {
	good := func() *FlovynEvent {
		e, _ := NewEvent(uuid.MustParse(tenantStr), "task.started", "system", nil)
		return e
	}
	long := strings.Repeat("x", 256)
	tests := []struct {
		name  string
		edit  func(*FlovynEvent)
		field string
	}{
		{"good", func(*FlovynEvent) {}, ""},
		{"nil tenant", func(e *FlovynEvent) { e.TenantID = uuid.Nil }, "tenant_id"},
		{"empty type", func(e *FlovynEvent) { e.EventType = "" }, "event_type"},
		{"wildcard type", func(e *FlovynEvent) { e.EventType = "task.*" }, "event_type"},
		{"gt type", func(e *FlovynEvent) { e.EventType = "task.>" }, "event_type"},
		{"space type", func(e *FlovynEvent) { e.EventType = "task started" }, "event_type"},
		{"dollar type", func(e *FlovynEvent) { e.EventType = "$JS.API" }, "event_type"},
		{"empty token", func(e *FlovynEvent) { e.EventType = "task..started" }, "event_type"},
		{"long type", func(e *FlovynEvent) { e.EventType = long }, "event_type"},
		{"empty source", func(e *FlovynEvent) { e.Source = "" }, "source"},
		{"long source", func(e *FlovynEvent) { e.Source = long }, "source"},
		{"control in source", func(e *FlovynEvent) { e.Source = "a\nb" }, "source"},
		{"long correlation", func(e *FlovynEvent) { e.WithCorrelationID(long) }, "correlation_id"},
		{"negative time", func(e *FlovynEvent) { e.TimestampMs = -1 }, "timestamp_ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := good()
			tt.edit(e)
			err := e.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Validate() = %v; want nil", err)
				}
				return
			}
			var ve *ValidationError
			if !errors.As(err, &ve) || ve.Errors[0].Field != tt.field {
				t.Fatalf("Validate() = %v; want an error on %s", err, tt.field)
			}
		})
	}
}

func TestPatternMatches(t *testing.T) {
	tenant, wf, task := uuid.New(), uuid.New(), uuid.New()
	e := ev(tenant, "workflow.completed").WithWorkflow(wf).WithTask(task)
	e.Source = "worker:1"
	tests := []struct {
		name string
		p    EventPattern
		want bool
	}{
		{"all", AllEvents(tenant), true},
		{"other tenant", AllEvents(uuid.New()), false},
		{"workflow", ForWorkflow(tenant, wf), true},
		{"other workflow", ForWorkflow(tenant, uuid.New()), false},
		{"task", ForTask(tenant, task), true},
		{"other task", ForTask(tenant, uuid.New()), false},
		{"category prefix", ByType(tenant, "workflow"), true},
		{"partial token prefix", ByType(tenant, "workflow.comp"), true},
		{"other prefix", ByType(tenant, "task"), false},
		{"source", AllEvents(tenant).WithSource("worker:1"), true},
		{"other source", AllEvents(tenant).WithSource("system"), false},
	}
	for _, tt := range tests {
		p := tt.p
		if got := p.Matches(e); got != tt.want {
			t.Errorf("%s: Matches(%s) = %v; want %v", tt.name, e.EventType, got, tt.want)
		}
	}
	if p := ForWorkflow(tenant, wf); p.Matches(ev(tenant, "no.workflow")) {
		t.Error("a workflow pattern matched an event without a workflow")
	}
}

func TestDecodeStreamEvent(t *testing.T) {
	s, err := DecodeStreamEvent([]byte(`{"workflowExecutionId":"` + strings.ToUpper(wfStr) +
		`","taskExecutionId":"t-1","sequence":3,"type":"token","payload":"Hel","timestampMs":5}`))
	if err != nil {
		t.Fatal(err)
	}
	if s.WorkflowExecutionID != wfStr || s.Type != StreamToken || s.Key() != wfStr || s.Sequence != 3 {
		t.Fatalf("decoded %+v", s)
	}
	subj, _ := s.Subject()
	if subj != "flovyn.streams.workflow."+wfStr {
		t.Fatalf("Subject() = %q", subj)
	}
	standalone, err := DecodeStreamEvent([]byte(`{"workflowExecutionId":"","taskExecutionId":"task-9","type":"PROGRESS","payload":"0.5"}`))
	if err != nil || standalone.Key() != "task-9" {
		t.Fatalf("standalone task: %+v, %v; want key task-9", standalone, err)
	}
	var back StreamEvent
	if err := json.Unmarshal(s.AppendJSON(nil), &back); err != nil || back.Payload != "Hel" || back.Type != StreamToken {
		t.Fatalf("AppendJSON round trip: %+v, %v", back, err)
	}

	for _, tc := range []struct{ in, field string }{
		{`{"workflow_execution_id":"w","type":"TOKEN"}`, "workflow_execution_id"},
		{`{"workflowExecutionId":"w","type":"WORD"}`, "type"},
		{`{"workflowExecutionId":"","type":"DATA"}`, "workflowExecutionId"},
		{`{"workflowExecutionId":"a.b","type":"DATA"}`, "workflowExecutionId"},
		{`{"workflowExecutionId":"*","type":"DATA"}`, "workflowExecutionId"},
		{`{"workflowExecutionId":"w","taskExecutionId":"t >","type":"DATA"}`, "taskExecutionId"},
		{`{"workflowExecutionId":"w","type":"DATA","payload":{"x":1}}`, "payload"},
	} {
		_, err := DecodeStreamEvent([]byte(tc.in))
		var ve *ValidationError
		if !errors.As(err, &ve) || ve.Errors[0].Field != tc.field {
			t.Errorf("DecodeStreamEvent(%s) = %v; want an error on %s", tc.in, err, tc.field)
		}
	}
	_, err = DecodeStreamEvent([]byte(`{"workflow_execution_id":"w","type":"TOKEN"}`))
	if !strings.Contains(err.Error(), `"workflowExecutionId"`) {
		t.Errorf("snake_case input error %q does not suggest the camelCase name", err)
	}
}

func TestLegacyEventTypes(t *testing.T) {
	for name, want := range map[string]string{
		"WORKFLOW_CREATED": "workflow.created", "WORKFLOW_SUSPENDED": "workflow.suspended", "WORKFLOW_CANCELLED": "workflow.cancelled",
		"TASK_COMPLETED": "task.completed", "TIMER_FIRED": "timer.fired", "PROMISE_REJECTED": "promise.rejected",
		"CHILD_WORKFLOW_COMPLETED":              "child_workflow.completed",
		"CHILD_WORKFLOW_CANCELLATION_REQUESTED": "child_workflow.cancellation_requested",
		"OPERATION_COMPLETED":                   "operation.completed", "CANCELLATION_REQUESTED": "cancellation.requested",
		"STATE_SET": "state.set", "STATE_CLEARED": "state.cleared", "RETRY_REQUESTED": "retry.requested",
	} {
		if got, known := LegacyEventType(name); got != want || !known {
			t.Errorf("LegacyEventType(%s) = %q, %v; want %q, true", name, got, known, want)
		}
	}
	if got, known := LegacyEventType("FOO_BAR_BAZ"); got != "foo.bar_baz" || known {
		t.Errorf("LegacyEventType(FOO_BAR_BAZ) = %q, %v; want foo.bar_baz, false", got, known)
	}
	if len(legacyTypes) != 29 {
		t.Errorf("the table has %d names; Flovyn's server has 29", len(legacyTypes))
	}
}

func TestLegacyConversion(t *testing.T) {
	tenant := uuid.MustParse(tenantStr)
	task := uuid.NewString()
	payload := `{"type":"Event","event":"TASK_COMPLETED","data":{"id":"` + task + `","kind":"llm","status":"COMPLETED","executionCount":1,"maxRetries":3},"timestampMs":42}`
	s := &StreamEvent{TenantID: tenant, WorkflowExecutionID: wfStr, TaskExecutionID: task, Sequence: 7, Type: StreamData, Payload: payload}
	p := s.Legacy()
	if p == nil || p.Event != "TASK_COMPLETED" {
		t.Fatalf("Legacy() = %+v; want the TASK_COMPLETED payload", p)
	}
	e, known, err := LegacyToEvent(s, p)
	if err != nil || !known {
		t.Fatalf("LegacyToEvent: %v, known %v", err, known)
	}
	if e.EventType != "task.completed" || e.WorkflowExecutionID.String() != wfStr || e.TaskExecutionID.String() != task ||
		e.TimestampMs != 42 || e.TenantID != tenant {
		t.Fatalf("converted %s", e.AppendJSON(nil))
	}
	if !strings.Contains(string(e.Data), `"executionCount":1`) || !strings.HasPrefix(string(e.Data), `{"id":"`+task) {
		t.Fatalf("snapshot changed: %s", e.Data)
	}
	again, _, _ := LegacyToEvent(s, s.Legacy())
	if again.ID != e.ID {
		t.Fatal("a retried legacy publish got another id: it would not be deduplicated")
	}
	s2 := *s
	s2.Sequence = 8
	if third, _, _ := LegacyToEvent(&s2, s2.Legacy()); third.ID == e.ID {
		t.Fatal("another sequence got the same id")
	}

	for _, notLegacy := range []*StreamEvent{
		{Type: StreamToken, Payload: payload},
		{Type: StreamData, Payload: `{"type":"Other","event":"TASK_COMPLETED"}`},
		{Type: StreamData, Payload: `{"type":"Event","event":5}`},
		{Type: StreamData, Payload: `"Event"`},
		{Type: StreamData, Payload: `{"type":"Event"`},
	} {
		if p := notLegacy.Legacy(); p != nil {
			t.Errorf("Legacy(%s %s) = %+v; want nil", notLegacy.Type, notLegacy.Payload, p)
		}
	}
	bad := &StreamEvent{TenantID: tenant, WorkflowExecutionID: "not-a-uuid", Type: StreamData, Payload: payload}
	if _, _, err := LegacyToEvent(bad, bad.Legacy()); !errors.Is(err, ErrInvalidEvent) {
		t.Fatalf("legacy event with a non-UUID workflow id: %v; want ErrInvalidEvent", err)
	}
}

func TestPositionParse(t *testing.T) {
	p := Position{Epoch: 0xfffffffffffff, Seq: 42}
	got, err := ParsePosition(p.String())
	if err != nil || got != p {
		t.Fatalf("ParsePosition(%q) = %v, %v", p.String(), got, err)
	}
	for _, bad := range []string{"", "-", "x", "1-", "-1", "1-x", "+1-1", "1-+1", "1-1-1", "zzzzzzzzzzzzzzzz-1"} {
		if _, err := ParsePosition(bad); !errors.Is(err, ErrInvalidEvent) {
			t.Errorf("ParsePosition(%q) = %v; want ErrInvalidEvent", bad, err)
		}
	}
}

// FuzzDecodeEvent checks that the decoder never panics, that what it accepts and validates encodes to JSON that
// encoding/json reads and that decodes back to the same bytes.
func FuzzDecodeEvent(f *testing.F) {
	for _, s := range []string{
		`{"tenant_id":"` + tenantStr + `","event_type":"workflow.completed"}`,
		`{"id":"9d7c6b5a-4e3f-4a1b-8c2d-1e0f9a8b7c6d","tenant_id":"` + tenantStr + `","workflow_execution_id":"` + wfStr +
			`","task_execution_id":null,"event_type":"task.completed","source":"w","data":{"a":[1,"\u2028"]},"timestamp_ms":1,"correlation_id":"c"}`,
		`{"tenantId":"x"}`, `[]`, `{"data":"\ud800"}`, `{"event_type":"a.*"}`, `null`, `{"source":"\u0000"}`,
		`{"org_id":"` + tenantStr + `","event_type":"workflow.completed"}`,
		`{"tenant_id":"` + tenantStr + `","org_id":"` + strings.ToUpper(tenantStr) + `","event_type":"a"}`,
		`{"tenant_id":"` + tenantStr + `","org_id":"` + wfStr + `","event_type":"a"}`, `{"orgId":"x"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		e, err := DecodeEvent(in)
		if err != nil {
			if !errors.Is(err, ErrInvalidEvent) {
				t.Fatalf("DecodeEvent error %v does not wrap ErrInvalidEvent", err)
			}
			return
		}
		e.Stamp(DefaultSource, time.Now())
		if e.Validate() != nil {
			return
		}
		out := e.AppendJSON(nil)
		if !json.Valid(out) {
			t.Fatalf("AppendJSON produced invalid JSON: %s", out)
		}
		back, err := DecodeEvent(out)
		if err != nil {
			t.Fatalf("re-decoding %s: %v", out, err)
		}
		if string(back.AppendJSON(nil)) != string(out) {
			t.Fatalf("round trip changed %s", out)
		}
		org := e.AppendJSONAs(nil, TenantKeyOrgID) // events.tenant_key: org_id reads back as the same event
		if back, err := DecodeEvent(org); err != nil || string(back.AppendJSON(nil)) != string(out) {
			t.Fatalf("re-decoding %s: %v; want %s", org, err, out)
		}
		if _, err := e.Subject(); err != nil {
			t.Fatalf("a valid event has no subject: %v", err)
		}
	})
}
