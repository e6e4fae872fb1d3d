package event

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/flovyn/eventhook/subjects"
)

// StreamEventType is the kind of a generic stream event.
type StreamEventType string

// The four kinds of generic stream events, as Flovyn spells them on the wire.
const (
	StreamToken    StreamEventType = "TOKEN"
	StreamProgress StreamEventType = "PROGRESS"
	StreamData     StreamEventType = "DATA"
	StreamError    StreamEventType = "ERROR"
)

// SSEName returns the SSE event name of the kind: token, progress, data or error.
func (t StreamEventType) SSEName() string { return strings.ToLower(string(t)) }

// parseStreamEventType accepts the four kinds in any ASCII letter case.
func parseStreamEventType(s string) (StreamEventType, bool) {
	switch t := StreamEventType(asciiUpper(s)); t {
	case StreamToken, StreamProgress, StreamData, StreamError:
		return t, true
	}
	return "", false
}

// StreamEvent is a generic stream event (an LLM token, progress, data or an error) in Flovyn's camelCase wire format. It
// belongs to a workflow, or to a standalone task when WorkflowExecutionID is empty.
//
// Events are shared between subscribers once published: treat a published *StreamEvent as read-only.
type StreamEvent struct {
	// WorkflowExecutionID is the workflow of the stream; empty for a standalone task.
	WorkflowExecutionID string `json:"workflowExecutionId"`
	// TaskExecutionID is the task that produced the event, or empty.
	TaskExecutionID string `json:"taskExecutionId"`
	// Sequence is the producer's sequence number within the stream.
	Sequence int32 `json:"sequence"`
	// Type is the kind of event.
	Type StreamEventType `json:"type"`
	// Payload is delivered verbatim to SSE subscribers (often JSON, or a bare number for progress).
	Payload string `json:"payload"`
	// TimestampMs is the time of the event in milliseconds since the Unix epoch.
	TimestampMs int64 `json:"timestampMs"`

	// TenantID is the tenant the event was published for. It is not part of the JSON body: on NATS it travels in the
	// Flovyn-Tenant-Id header, over HTTP it comes from the request.
	TenantID uuid.UUID `json:"-"`

	// lifecycle is, for a legacy lifecycle payload received from NATS, the lifecycle event it stands for (see
	// forTenant): SSE frames and filters it as that event. nil for every other stream event.
	lifecycle *FlovynEvent
}

// Lifecycle returns, for a legacy lifecycle payload received from NATS (see ForTenant), the lifecycle event it stands
// for, and nil for every other stream event. SSE frames and filters such an event as that lifecycle event.
func (s *StreamEvent) Lifecycle() *FlovynEvent { return s.lifecycle }

// Key returns the id the stream is keyed by: the workflow execution id, or the task execution id of a standalone task.
func (s *StreamEvent) Key() string {
	if s.WorkflowExecutionID != "" {
		return s.WorkflowExecutionID
	}
	return s.TaskExecutionID
}

// Subject returns the NATS subject of the event, flovyn.streams.workflow.<key>.
func (s *StreamEvent) Subject() (string, error) { return subjects.Stream(s.Key()) }

type streamWire struct {
	WorkflowExecutionID *string         `json:"workflowExecutionId"`
	TaskExecutionID     *string         `json:"taskExecutionId"`
	Sequence            int32           `json:"sequence"`
	Type                string          `json:"type"`
	Payload             json.RawMessage `json:"payload"`
	TimestampMs         int64           `json:"timestampMs"`
}

// DecodeStreamEvent parses one StreamEvent from Flovyn's camelCase JSON and validates it: valid UTF-8 throughout, a known
// type, a string payload, and ids that are valid subject tokens (UUID-shaped ids are canonicalised to lower case). An unknown field is an error
// that names it (and the camelCase name when it was sent in snake_case). Errors are *ValidationError values wrapping
// ErrInvalidEvent. The tenant is left for the caller to set.
func DecodeStreamEvent(data []byte) (*StreamEvent, error) {
	if err := checkUTF8(data); err != nil {
		return nil, err
	}
	var w streamWire
	if err := strictUnmarshal(data, &w, streamKeys, camelCase); err != nil {
		return nil, err
	}
	s := &StreamEvent{Sequence: w.Sequence, TimestampMs: w.TimestampMs}
	v := &ValidationError{}
	if w.WorkflowExecutionID != nil {
		s.WorkflowExecutionID = canonicalID(*w.WorkflowExecutionID)
	}
	if w.TaskExecutionID != nil {
		s.TaskExecutionID = canonicalID(*w.TaskExecutionID)
	}
	if t, ok := parseStreamEventType(w.Type); ok {
		s.Type = t
	} else {
		v.add("type", "%q is not a stream event type; use TOKEN, PROGRESS, DATA or ERROR", w.Type)
	}
	if len(w.Payload) > 0 && string(w.Payload) != "null" {
		if w.Payload[0] != '"' {
			v.add("payload", "must be a JSON string (encode structured data as a string, for example \"{\\\"x\\\":1}\")")
		} else if err := json.Unmarshal(w.Payload, &s.Payload); err != nil {
			v.add("payload", "malformed string: %v", err)
		}
	}
	if len(v.Errors) == 0 {
		return s, s.Validate()
	}
	return nil, v
}

// Validate checks the stream's ids: a workflow id, or a task id for a standalone task, each a valid subject token. It
// returns a *ValidationError wrapping ErrInvalidEvent, or nil.
func (s *StreamEvent) Validate() error {
	v := &ValidationError{}
	if s.WorkflowExecutionID == "" && s.TaskExecutionID == "" {
		v.add("workflowExecutionId", "is required (or taskExecutionId, for a standalone task)")
	}
	if s.WorkflowExecutionID != "" {
		if err := subjects.ValidateToken(s.WorkflowExecutionID); err != nil {
			v.add("workflowExecutionId", "%s", tokenProblem(err))
		}
	}
	if s.TaskExecutionID != "" {
		if err := subjects.ValidateToken(s.TaskExecutionID); err != nil {
			v.add("taskExecutionId", "%s", tokenProblem(err))
		}
	}
	if _, ok := parseStreamEventType(string(s.Type)); !ok {
		v.add("type", "%q is not a stream event type; use TOKEN, PROGRESS, DATA or ERROR", s.Type)
	}
	if s.TimestampMs < 0 {
		v.add("timestampMs", "must be milliseconds since the Unix epoch, not negative")
	}
	if !utf8.ValidString(s.Payload) {
		v.add("payload", "%s", notUTF8)
	}
	return v.orNil()
}

func tokenProblem(err error) string {
	return strings.TrimPrefix(err.Error(), subjects.ErrInvalid.Error()+" ")
}

// asciiUpper upper-cases ASCII letters only, so that no other character maps onto a name (as 'ſ' does onto 'S').
func asciiUpper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'a' && c <= 'z' {
			b[i] = c - ('a' - 'A')
		}
	}
	return string(b)
}

// asciiLower lower-cases ASCII letters only.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + ('a' - 'A')
		}
	}
	return string(b)
}

// canonicalID lower-cases a UUID-shaped id and leaves any other id as it is.
func canonicalID(s string) string {
	if len(s) == 36 {
		if id, err := uuid.Parse(s); err == nil {
			return id.String()
		}
	}
	return s
}

// ParseID parses a workflow or task id given in a URL or a query: a UUID (canonicalised to lower case) or any other
// valid subject token. It returns an error wrapping ErrInvalidEvent naming field when the id is not a valid token.
func ParseID(field, s string) (string, error) {
	s = canonicalID(s)
	if err := subjects.ValidateToken(s); err != nil {
		return "", Invalid(field, "%s", tokenProblem(err))
	}
	return s, nil
}

// AppendJSON appends the camelCase wire form of s to dst.
func (s *StreamEvent) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"workflowExecutionId":`...)
	dst = appendJSONString(dst, s.WorkflowExecutionID)
	dst = append(dst, `,"taskExecutionId":`...)
	dst = appendJSONString(dst, s.TaskExecutionID)
	dst = fmt.Appendf(dst, `,"sequence":%d,"type":"%s","payload":`, s.Sequence, s.Type)
	dst = appendJSONString(dst, s.Payload)
	return fmt.Appendf(dst, `,"timestampMs":%d}`, s.TimestampMs)
}
