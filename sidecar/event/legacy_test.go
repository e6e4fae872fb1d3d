package event

import (
	"encoding/json"
	"testing"

	"github.com/google/uuid"
)

func TestLegacyNameRoundTrip(t *testing.T) {
	for name := range legacyTypes {
		eventType, known := LegacyEventType(name)
		if back, ok := LegacyName(eventType); !known || !ok || back != name {
			t.Errorf("LegacyName(LegacyEventType(%q) = %q) = %q, %v; want %q, true", name, eventType, back, ok, name)
		}
	}
	for _, eventType := range []string{"foo.bar_baz", "task", "task.completed.extra", "Task.Completed", ""} {
		if name, ok := LegacyName(eventType); ok {
			t.Errorf("LegacyName(%q) = %q, true; want no legacy name", eventType, name)
		}
	}
}

// TestStateEventPayloadJSON: the encoding is valid JSON with exactly Flovyn's keys, and reads back (as a DATA stream
// event's payload) as the same legacy event.
func TestStateEventPayloadJSON(t *testing.T) {
	wf := uuid.New()
	tests := []struct {
		name string
		e    FlovynEvent
		want string
	}{
		{"snapshot", FlovynEvent{EventType: "task.completed", Data: json.RawMessage(`{"id":"t","status":"COMPLETED","error":"<\u2028>"}`), TimestampMs: 1767225600123},
			`{"type":"Event","event":"TASK_COMPLETED","data":{"id":"t","status":"COMPLETED","error":"<\u2028>"},"timestampMs":1767225600123}`},
		{"no data", FlovynEvent{EventType: "workflow.started", WorkflowExecutionID: &wf, TimestampMs: 5},
			`{"type":"Event","event":"WORKFLOW_STARTED","data":null,"timestampMs":5}`},
		{"child workflow", FlovynEvent{EventType: "child_workflow.cancellation_failed", Data: json.RawMessage(`[1,"x"]`)},
			`{"type":"Event","event":"CHILD_WORKFLOW_CANCELLATION_FAILED","data":[1,"x"],"timestampMs":0}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, ok := LegacyPayload(&tt.e)
			if !ok {
				t.Fatalf("LegacyPayload(%s) = false; want a payload", tt.e.EventType)
			}
			got := string(p.AppendJSON(nil))
			if got != tt.want || !json.Valid([]byte(got)) {
				t.Fatalf("AppendJSON = %s; want %s", got, tt.want)
			}
			back := (&StreamEvent{Type: StreamData, Payload: got}).Legacy()
			if back == nil || back.Event != p.Event || back.TimestampMs != tt.e.TimestampMs || string(back.Data) != string(tt.e.Data) {
				t.Fatalf("Legacy() of the encoding = %+v; want %+v", back, p)
			}
		})
	}
	if p, ok := LegacyPayload(&FlovynEvent{EventType: "deploy.finished"}); ok {
		t.Fatalf("LegacyPayload(deploy.finished) = %+v, true; want none", p)
	}
}
