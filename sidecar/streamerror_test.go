package sidecar

import (
	"fmt"
	"net/url"
	"testing"

	"github.com/google/uuid"
)

// TestStreamErrorFrame: a stream ERROR is framed stream-error, so that an EventSource does not hand it to onerror
// (meant for a lost connection); types=errors selects it, and Flovyn's framing keeps Flovyn's name, error.
func TestStreamErrorFrame(t *testing.T) {
	h := newHarness(t, nil, nil)
	tenant, wf := uuid.New(), uuid.New()
	path := "/workflow-executions/" + wf.String() + "/stream"
	q := func(extra ...string) url.Values {
		v := url.Values{"tenant_id": {tenant.String()}}
		for i := 0; i+1 < len(extra); i += 2 {
			v.Set(extra[i], extra[i+1])
		}
		return v
	}
	plain := h.stream(t, h.unix, path, q(), "")
	errorsOnly := h.stream(t, h.unix, path, q("types", "errors"), "")
	flovyn := h.stream(t, h.unix, path, q("format", "flovyn"), "")
	for _, body := range []string{
		fmt.Sprintf(`{"workflowExecutionId":%q,"type":"TOKEN","payload":"t"}`, wf),
		fmt.Sprintf(`{"workflowExecutionId":%q,"type":"ERROR","payload":"{\"message\":\"rate limited\"}"}`, wf),
	} {
		if _, err := h.unix.PublishStreams(t.Context(), []byte(body), "application/json", tenant.String()); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct {
		name   string
		s      *sse
		events []string
	}{
		{"default framing", plain, []string{"token", "stream-error"}},
		{"types=errors", errorsOnly, []string{"stream-error"}},
		{"format=flovyn", flovyn, []string{"token", "error"}},
	} {
		for _, want := range tt.events {
			if ev := tt.s.next(t); ev.Event != want {
				t.Fatalf("%s: frame %+v; want event %s", tt.name, ev, want)
			}
		}
	}
}
