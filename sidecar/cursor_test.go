package sidecar

import (
	"bytes"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/flovyn/eventhook/sidecar/client"
	"github.com/flovyn/eventhook/sidecar/config"
	"github.com/flovyn/eventhook/sidecar/event"
	"github.com/google/uuid"
)

func TestUnreadableCursors(t *testing.T) { testUnreadableCursors(t, newHarness(t, nil, nil)) }

func TestUnreadableCursorsJetStream(t *testing.T) {
	eb := newJetStreamTestBus(t)
	t.Cleanup(func() { eb.Close() })
	testUnreadableCursors(t, newHarness(t, nil, eb))
}

// testUnreadableCursors: a cursor the sidecar cannot read is a 200 with a reset gap first, then what the stream gives
// without a cursor: a workflow stream replays everything held then goes live, the tenant stream goes live. The value is
// never echoed, and each is counted.
func testUnreadableCursors(t *testing.T, h *harness) {
	tenant := uuid.New()
	// held publishes three events on a new workflow and returns its stream's path.
	held := func() (string, uuid.UUID) {
		wf := uuid.New()
		h.publish(t, eventJSON(tenant, "e.n1", wfField(wf)))
		publishStreams(t, h, tenant, fmt.Sprintf(`{"workflowExecutionId":%q,"type":"TOKEN","payload":"t1"}`, wf))
		h.publish(t, eventJSON(tenant, "e.n2", wfField(wf)))
		return "/workflow-executions/" + wf.String() + "/stream", wf
	}
	path, _ := held()
	first := h.stream(t, h.unix, path, url.Values{"tenant_id": {tenant.String()}}, "")
	for range 3 {
		first.next(t)
	}
	real := first.r.LastEventID()
	first.closer.Close()
	truncated := real[:strings.LastIndexByte(real, '-')+1] // "<events>.<epoch>-": the stream part lost its sequence
	if _, err := event.ParseCursor(truncated); err == nil {
		t.Fatalf("cursor %q cut to %q is still readable", real, truncated)
	}

	tests := []struct {
		name          string
		header, query string
	}{
		{name: "Flovyn's frame number", header: "17"},
		{name: "truncated cursor", header: truncated},
		{name: "10 KB", header: strings.Repeat("9", 10<<10)},
		{name: "control characters in the query", query: "1\x00\x01\x1b[31m\n\r\x7f7"},
		{name: "tab and bytes above ASCII in the header", header: "1\t7\xff\xfe"},
		{name: "header wins over a good query", header: "x-y.z", query: real},
	}
	n := 0
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The workflow stream: the gap, everything held in its order, then live.
			path, wf := held()
			q := url.Values{"tenant_id": {tenant.String()}}
			if tt.query != "" {
				q.Set("last_event_id", tt.query)
			}
			s := h.stream(t, h.unix, path, q, tt.header)
			var frames []client.SSEEvent
			next := func(s *sse, want string) {
				t.Helper()
				ev := s.next(t)
				frames = append(frames, ev)
				got := ev.Event + " " + ev.Data
				if ev.Event == "lifecycle" {
					if e, err := event.DecodeEvent([]byte(ev.Data)); err == nil {
						got = "lifecycle " + e.EventType
					}
				}
				if got != want {
					t.Fatalf("frame %d %+v; want %s", len(frames), ev, want)
				}
			}
			const gap = `gap {"reason":"reset","missed":null}`
			next(s, gap)
			next(s, "lifecycle e.n1")
			next(s, "token t1")
			next(s, "lifecycle e.n2")
			live := fmt.Sprintf("e.live%d", i)
			h.publish(t, eventJSON(tenant, live, wfField(wf)))
			next(s, "lifecycle "+live)

			// The tenant stream: the gap, then live only.
			ts := h.stream(t, h.unix, "/events/stream", q, tt.header)
			next(ts, gap)
			after := fmt.Sprintf("after.n%d", i)
			h.publish(t, eventJSON(tenant, after, ""))
			next(ts, "lifecycle "+after)
			n += 2

			for _, ev := range frames {
				for _, v := range []string{tt.header, tt.query} {
					if len(v) >= 10 && v != real && strings.Contains(ev.Data, v) {
						t.Fatalf("frame %+v echoes the cursor sent", ev)
					}
				}
			}
		})
	}
	_, _, metrics := h.do(t, "GET", "/metrics", "", "")
	if want := fmt.Sprintf("eventhook_unreadable_cursors_total %d\n", n); !bytes.Contains(metrics, []byte(want)) {
		i := bytes.Index(metrics, []byte("eventhook_unreadable_cursors_total "))
		t.Errorf("/metrics lacks %q; it has %.60q", want, metrics[max(i, 0):])
	}
}

// TestUnreadableCursorLog: the debug log shows at most 64 bytes of an unreadable cursor, escaped; other levels nothing.
func TestUnreadableCursorLog(t *testing.T) {
	for _, format := range []string{"text", "json"} {
		var buf bytes.Buffer
		s := &Server{log: config.NewLogger(config.Log{Level: "debug", Format: format}, &buf)}
		v := "\x1b[2J\x00\n" + strings.Repeat("A", 10<<10)
		s.unreadableCursor(httptestRequest("GET", "/events/stream"), "Last-Event-ID", v)
		out := buf.String()
		if strings.Count(out, "\n") != 1 || strings.ContainsAny(strings.TrimSuffix(out, "\n"), "\x1b\x00\n") ||
			strings.Contains(out, strings.Repeat("A", 64)) || !strings.Contains(out, strings.Repeat("A", 58)) ||
			!strings.Contains(out, "10246") {
			t.Errorf("%s log %q; want one line, escaped, with 64 bytes of the cursor and its length", format, out)
		}
		buf.Reset()
		s = &Server{log: config.NewLogger(config.Log{Level: "info", Format: format}, &buf)}
		s.unreadableCursor(httptestRequest("GET", "/events/stream"), "Last-Event-ID", v)
		if buf.Len() != 0 {
			t.Errorf("%s log at info: %q; want nothing", format, buf.String())
		}
	}
}
