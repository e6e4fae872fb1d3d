package sidecar

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/flovyn/eventhook/sidecar/event"
)

// FuzzFrames: whatever a client sends, what the sidecar accepts is framed as valid UTF-8, and the data of a lifecycle
// frame, in either framing and under either tenant key, is valid JSON: no frame the daemon writes is text that Flovyn's
// Rust services (serde) or a browser would refuse.
func FuzzFrames(f *testing.F) {
	for _, seed := range []string{
		`{"tenant_id":"3f0c2b1e-8a4d-4c61-9f0e-2d7b5a9c00e1","event_type":"task.completed","source":"w","data":{"k":"v"}}`,
		`{"tenant_id":"3f0c2b1e-8a4d-4c61-9f0e-2d7b5a9c00e1","event_type":"a.b","data":"\ud83d\ude80 \u00e9 \"q\""}`,
		"{\"tenant_id\":\"3f0c2b1e-8a4d-4c61-9f0e-2d7b5a9c00e1\",\"event_type\":\"a.b\",\"source\":\"w\xff\"}",
		`{"tenant_id":"3f0c2b1e-8a4d-4c61-9f0e-2d7b5a9c00e1","event_type":"a.b","data":{"\ud800":1}}`,
		`{"workflowExecutionId":"wf-1","type":"TOKEN","payload":"line1\nline2\r\n\u2028 \ud800"}`,
		`{"workflowExecutionId":"wf-1","type":"DATA","payload":"{\"type\":\"Event\",\"event\":\"TASK_COMPLETED\",\"data\":{\"x\":\"é\"},\"timestampMs\":1}"}`,
		"{\"workflowExecutionId\":\"wf-1\",\"type\":\"ERROR\",\"payload\":\"\xed\xa0\x80\"}",
	} {
		f.Add([]byte(seed))
	}
	tenant := uuid.MustParse("3f0c2b1e-8a4d-4c61-9f0e-2d7b5a9c00e1")
	now := time.UnixMilli(1_800_000_000_000)
	f.Fuzz(func(t *testing.T, body []byte) {
		if e, err := event.DecodeEvent(body); err == nil {
			e.Stamp(event.DefaultSource, now)
			if e.Validate() == nil {
				checkLifecycleFrames(t, body, e)
			}
		}
		if s, err := event.DecodeStreamEvent(body); err == nil {
			s.TenantID = tenant
			frame := appendStreamFrame(nil, s)
			if !utf8.Valid(frame) {
				t.Fatalf("the stream frame of %q is not valid UTF-8: %q", body, frame)
			}
			if p := s.Legacy(); p != nil {
				if v, ok := s.ForTenant(tenant, p, event.DefaultSource, now); ok {
					checkLifecycleFrames(t, body, v.Lifecycle())
				}
			}
		}
	})
}

// checkLifecycleFrames requires every framing of e to be valid UTF-8 with a JSON data line.
func checkLifecycleFrames(t *testing.T, body []byte, e *event.FlovynEvent) {
	t.Helper()
	frames := [][]byte{
		appendLifecycleFrame(nil, e, event.TenantKeyTenantID),
		appendLifecycleFrame(nil, e, event.TenantKeyOrgID),
	}
	if p, ok := event.LegacyPayload(e); ok {
		frames = append(frames, appendStateEventFrame(nil, &p))
	}
	for _, frame := range frames {
		if !utf8.Valid(frame) {
			t.Fatalf("a lifecycle frame of %q is not valid UTF-8: %q", body, frame)
		}
		_, data, ok := strings.Cut(string(frame), "\ndata: ")
		data = strings.TrimSuffix(data, "\n\n")
		if !ok || strings.Contains(data, "\n") || !json.Valid([]byte(data)) {
			t.Fatalf("the data of a lifecycle frame of %q is not one line of JSON: %q", body, frame)
		}
	}
}
