package event

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// StateEventPayload is the legacy form of a lifecycle event: the payload string of a DATA stream event, as Flovyn
// services used to send it, for example {"type":"Event","event":"TASK_COMPLETED","data":{…},"timestampMs":…}.
type StateEventPayload struct {
	// Type is always "Event".
	Type string `json:"type"`
	// Event is the legacy name, such as TASK_COMPLETED.
	Event string `json:"event"`
	// Data is the snapshot (WorkflowSnapshot, TaskSnapshot, …), kept unchanged as the lifecycle event's data.
	Data json.RawMessage `json:"data"`
	// TimestampMs is the time of the event, or 0.
	TimestampMs int64 `json:"timestampMs"`
}

// legacyTypes maps Flovyn's legacy event names to dotted event types: the 29 names Flovyn's server uses for its
// workflow and task states.
var legacyTypes = map[string]string{
	"WORKFLOW_CREATED":   "workflow.created",
	"WORKFLOW_STARTED":   "workflow.started",
	"WORKFLOW_COMPLETED": "workflow.completed",
	"WORKFLOW_FAILED":    "workflow.failed",
	"WORKFLOW_SUSPENDED": "workflow.suspended",
	"WORKFLOW_RESUMED":   "workflow.resumed",
	"WORKFLOW_CANCELLED": "workflow.cancelled",

	"TASK_CREATED":   "task.created",
	"TASK_STARTED":   "task.started",
	"TASK_COMPLETED": "task.completed",
	"TASK_FAILED":    "task.failed",
	"TASK_CANCELLED": "task.cancelled",

	"TIMER_STARTED":   "timer.started",
	"TIMER_FIRED":     "timer.fired",
	"TIMER_CANCELLED": "timer.cancelled",

	"PROMISE_CREATED":  "promise.created",
	"PROMISE_RESOLVED": "promise.resolved",
	"PROMISE_REJECTED": "promise.rejected",

	"CHILD_WORKFLOW_INITIATED":              "child_workflow.initiated",
	"CHILD_WORKFLOW_STARTED":                "child_workflow.started",
	"CHILD_WORKFLOW_COMPLETED":              "child_workflow.completed",
	"CHILD_WORKFLOW_FAILED":                 "child_workflow.failed",
	"CHILD_WORKFLOW_CANCELLATION_REQUESTED": "child_workflow.cancellation_requested",
	"CHILD_WORKFLOW_CANCELLATION_FAILED":    "child_workflow.cancellation_failed",

	"OPERATION_COMPLETED":    "operation.completed",
	"CANCELLATION_REQUESTED": "cancellation.requested",
	"STATE_SET":              "state.set",
	"STATE_CLEARED":          "state.cleared",
	"RETRY_REQUESTED":        "retry.requested",
}

// LegacyEventType returns the dotted event type of a legacy event name and whether the name is one of Flovyn's known
// names. An unknown name is lower-cased with a dot after its first word: FOO_BAR_BAZ → foo.bar_baz.
func LegacyEventType(name string) (eventType string, known bool) {
	if t, ok := legacyTypes[name]; ok {
		return t, true
	}
	lower := strings.ToLower(name)
	if first, rest, ok := strings.Cut(lower, "_"); ok {
		return first + "." + rest, false
	}
	return lower, false
}

// Legacy returns the StateEventPayload carried by s when s is a legacy lifecycle event: a DATA event whose payload is a
// JSON object with "type": "Event" and a string "event" (keys matched exactly). Otherwise it returns nil.
func (s *StreamEvent) Legacy() *StateEventPayload {
	if p := strings.TrimLeft(s.Payload, " \t\r\n"); s.Type != StreamData || p == "" || p[0] != '{' {
		return nil
	}
	var fields map[string]json.RawMessage
	if json.Unmarshal([]byte(s.Payload), &fields) != nil {
		return nil
	}
	var p StateEventPayload
	ev := fields["event"]
	if json.Unmarshal(fields["type"], &p.Type) != nil || p.Type != "Event" || len(ev) == 0 || ev[0] != '"' ||
		json.Unmarshal(ev, &p.Event) != nil {
		return nil
	}
	p.Data = compactJSON(fields["data"])
	if ts, ok := fields["timestampMs"]; ok {
		p.TimestampMs, _ = strconv.ParseInt(string(ts), 10, 64)
	}
	return &p
}

// LegacyNamespace is the UUIDv5 namespace of the ids given to converted legacy events.
var LegacyNamespace = uuid.MustParse("7a1c9e52-6f0b-4d3e-9c8a-1b2f3e4d5c6a")

// LegacyToEvent converts the legacy lifecycle event p, carried by the stream event s, into a FlovynEvent of s's tenant:
// type from the name table, ids from s (which must be UUIDs), data = the snapshot unchanged, and a deterministic id
// derived from the whole stream event (see legacyID), so that a retried publish is deduplicated and two distinct events
// are never taken for one. s must be as it was sent: its timestamp not yet stamped. It returns the event, whether the
// name was known, and a *ValidationError wrapping ErrInvalidEvent when an id is not a UUID or the name gives no valid
// event type. The event is not stamped.
func LegacyToEvent(s *StreamEvent, p *StateEventPayload) (*FlovynEvent, bool, error) {
	eventType, known := LegacyEventType(p.Event)
	e := &FlovynEvent{
		TenantID:    s.TenantID,
		EventType:   eventType,
		Data:        p.Data,
		TimestampMs: p.TimestampMs,
	}
	if e.TimestampMs <= 0 { // absent, or not a time: the stream event's
		e.TimestampMs = max(s.TimestampMs, 0)
	}
	v := &ValidationError{}
	if s.WorkflowExecutionID != "" {
		id := parseUUIDField(v, "workflowExecutionId", s.WorkflowExecutionID)
		e.WorkflowExecutionID = &id
	}
	if s.TaskExecutionID != "" {
		id := parseUUIDField(v, "taskExecutionId", s.TaskExecutionID)
		e.TaskExecutionID = &id
	}
	if err := e.Validate(); err != nil {
		for _, fe := range err.(*ValidationError).Errors {
			if fe.Field == "event_type" {
				v.add("payload.event", "%q gives the event type %q: %s", p.Event, eventType, fe.Message)
			}
		}
	}
	if err := v.orNil(); err != nil {
		return nil, known, err
	}
	e.ID = legacyID(s)
	return e, known, nil
}

// legacyID is the id of the lifecycle event a legacy stream event becomes: a UUIDv5 of everything the stream event
// holds — tenant, workflow and task ids, sequence, type, timestampMs and the payload's bytes (which carry the name, the
// snapshot and the payload's own time). Flovyn keeps none of (workflow, task, sequence, name) unique: its server sends
// sequence 0 and the same name again every time a workflow suspends and resumes. So only a byte-for-byte retry gets the
// same id (and is deduplicated), and two distinct events never share one.
func legacyID(s *StreamEvent) uuid.UUID {
	b := make([]byte, 0, 128+len(s.Payload))
	b = append(b, s.TenantID.String()...)
	b = append(b, '/')
	b = append(b, s.WorkflowExecutionID...)
	b = append(b, '/')
	b = append(b, s.TaskExecutionID...)
	b = append(b, '/')
	b = strconv.AppendInt(b, int64(s.Sequence), 10)
	b = append(b, '/')
	b = append(b, s.Type...)
	b = append(b, '/')
	b = strconv.AppendInt(b, s.TimestampMs, 10)
	b = append(b, '/')
	b = append(b, s.Payload...)
	return uuid.NewSHA1(LegacyNamespace, b)
}

// legacyNames maps dotted event types back to Flovyn's legacy names: legacyTypes inverted. A type made from an unknown
// legacy name (FOO_BAR → foo.bar) has no entry: only Flovyn's own names are written back.
var legacyNames = func() map[string]string {
	m := make(map[string]string, len(legacyTypes))
	for name, eventType := range legacyTypes {
		m[eventType] = name
	}
	return m
}()

// LegacyName returns Flovyn's legacy name of a dotted event type (TASK_COMPLETED for task.completed) and whether the
// type has one: only the types of Flovyn's name table do, so LegacyName(t) of a type t that LegacyEventType gave for a
// known name returns that name.
func LegacyName(eventType string) (name string, ok bool) {
	name, ok = legacyNames[eventType]
	return name, ok
}

// LegacyPayload returns the StateEventPayload that Flovyn's server writes for the lifecycle event e — its legacy name,
// its data and its time — and false when e's type has no legacy name (see LegacyName).
func LegacyPayload(e *FlovynEvent) (StateEventPayload, bool) {
	name, ok := LegacyName(e.EventType)
	if !ok {
		return StateEventPayload{}, false
	}
	return StateEventPayload{Type: "Event", Event: name, Data: e.Data, TimestampMs: e.TimestampMs}, true
}

// AppendJSON appends p to dst as Flovyn's server encodes it, on one line:
// {"type":"Event","event":"TASK_COMPLETED","data":{…},"timestampMs":1700000000000}. The type is always "Event"; data
// is written as it is (it must be valid JSON without line breaks outside strings, as a FlovynEvent's data is: compact),
// null when empty.
func (p *StateEventPayload) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"type":"Event","event":`...)
	dst = appendJSONString(dst, p.Event)
	dst = append(dst, `,"data":`...)
	if len(p.Data) == 0 {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, p.Data...)
	}
	dst = append(dst, `,"timestampMs":`...)
	dst = strconv.AppendInt(dst, p.TimestampMs, 10)
	return append(dst, '}')
}

// ForTenant returns the stream event s as delivered to tenant: s itself when it is already that tenant's, else a copy.
// A legacy lifecycle payload (a DATA event carrying a StateEventPayload, as Flovyn's server publishes its lifecycle
// events onto the stream) gets the lifecycle event it stands for, exactly as a publish over HTTP would have converted
// it, so that subscribers get one lifecycle frame, never a data frame. ts stamps a converted event that carries no time
// (the message's time in the stream, so that a replay gives the same event). It returns false for a legacy payload
// that converts to no valid lifecycle event (ids that are not UUIDs): the caller drops it as invalid.
func (s *StreamEvent) ForTenant(tenant uuid.UUID, p *StateEventPayload, source string, ts time.Time) (*StreamEvent, bool) {
	v := s
	if s.TenantID != tenant || p != nil {
		c := *s
		c.TenantID = tenant
		v = &c
	}
	if p == nil {
		return v, true
	}
	e, _, err := LegacyToEvent(v, p)
	if err != nil {
		return nil, false
	}
	e.Stamp(source, ts)
	if e.Validate() != nil {
		return nil, false
	}
	v.lifecycle = e
	return v, true
}
