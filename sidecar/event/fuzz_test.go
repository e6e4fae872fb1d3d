package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/google/uuid"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/flovyn/eventhook/subjects"
)

// Fixtures of the fuzz targets. tenantStr and wfStr come from event_test.go.
const (
	fzTaskStr  = "5e4d3c2b-1a0f-4e9d-8c7b-6a5f4e3d2c1b"
	fzOtherStr = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"
)

var fzTenant = uuid.MustParse(tenantStr)

// fzLegacyPayload returns a legacy StateEventPayload carrying the event name and the timestamp, as a JSON string value.
func fzLegacyPayload(name string, ts int64) string {
	p, _ := json.Marshal(`{"type":"Event","event":"` + name + `","data":{"taskId":"t","state":"COMPLETED"},"timestampMs":` +
		strconv.FormatInt(ts, 10) + `}`)
	return string(p)
}

// fzStreamJSON returns a stream event in Flovyn's camelCase wire form.
func fzStreamJSON(wf, task string, seq int, typ, payload string) string {
	return `{"workflowExecutionId":"` + wf + `","taskExecutionId":"` + task + `","sequence":` + strconv.Itoa(seq) +
		`,"type":"` + typ + `","payload":` + payload + `,"timestampMs":1700000000000}`
}

// fzIsLegacy is the definition of a legacy payload, written independently of StreamEvent.Legacy: a DATA payload is legacy exactly
// when it parses as a JSON object with "type": "Event" and a string "event".
func fzIsLegacy(s *StreamEvent) bool {
	if s.Type != StreamData {
		return false
	}
	var fields map[string]json.RawMessage
	if json.Unmarshal([]byte(s.Payload), &fields) != nil || fields == nil {
		return false
	}
	str := func(raw json.RawMessage) (string, bool) {
		var v any
		if raw == nil || json.Unmarshal(raw, &v) != nil {
			return "", false
		}
		s, ok := v.(string)
		return s, ok
	}
	typ, ok := str(fields["type"])
	if !ok || typ != "Event" {
		return false
	}
	_, ok = str(fields["event"])
	return ok
}

// fzTopLevelKeys returns the keys of the JSON object in, or nil when in is not one.
func fzTopLevelKeys(in []byte) map[string]json.RawMessage {
	var m map[string]json.RawMessage
	if json.Unmarshal(in, &m) != nil {
		return nil
	}
	return m
}

var fzStreamFields = map[string]bool{
	"workflowExecutionId": true, "taskExecutionId": true, "sequence": true, "type": true, "payload": true, "timestampMs": true,
}

// FuzzDecodeStreamEvent checks the decoder of generic stream events: errors are ErrInvalidEvent, an accepted
// event has a key that is one literal subject token under flovyn.streams.workflow., ids are canonical, the encoding
// round-trips, and a legacy payload is recognised exactly as fzIsLegacy defines it and converts to a valid lifecycle event
// with a deterministic id.
func FuzzDecodeStreamEvent(f *testing.F) {
	up := strings.ToUpper(wfStr)
	for _, s := range []string{
		fzStreamJSON(wfStr, "", 3, "TOKEN", `"Hel"`),
		fzStreamJSON(up, strings.ToUpper(fzTaskStr), 4, "token", `"lo\nworld"`),
		fzStreamJSON("", fzTaskStr, 1, "PROGRESS", `"0.5"`),
		fzStreamJSON("wf-123", "task_1", 0, "Data", `"{\"x\":1}"`),
		fzStreamJSON(wfStr, "", 9, "ERROR", `null`),
		`{"workflowExecutionId":"` + wfStr + `","type":"DATA"}`,
		`{"workflowExecutionId":"` + wfStr + `","type":"DATA","payload":{"x":1}}`,
		`{"workflowExecutionId":"` + wfStr + `","type":"DATA","payload":12}`,
		`{"workflowExecutionId":"` + wfStr + `","type":"DATA","payload":"\ud800\u2028<&>"}`,
		`{"workflow_execution_id":"` + wfStr + `","type":"TOKEN"}`,
		`{"workflowExecutionId":"` + wfStr + `","type":"TOKEN","tenantId":"` + tenantStr + `"}`,
		`{"workflowExecutionId":"","taskExecutionId":"","type":"TOKEN"}`,
		`{"type":"TOKEN"}`,
		`{"workflowExecutionId":"*","type":"TOKEN"}`,
		`{"workflowExecutionId":">","type":"TOKEN"}`,
		`{"workflowExecutionId":"a.b","type":"TOKEN"}`,
		`{"workflowExecutionId":"a.*","type":"TOKEN"}`,
		`{"workflowExecutionId":"$SYS","type":"TOKEN"}`,
		`{"workflowExecutionId":"%2A","type":"TOKEN"}`,
		`{"workflowExecutionId":" wf","type":"TOKEN"}`,
		`{"workflowExecutionId":"wf\u0000","type":"TOKEN"}`,
		`{"workflowExecutionId":"wf\u00e9","type":"TOKEN"}`,
		`{"workflowExecutionId":"wf","taskExecutionId":"t.>","type":"TOKEN"}`,
		`{"workflowExecutionId":"` + strings.Repeat("w", 256) + `","type":"TOKEN"}`,
		`{"workflowExecutionId":"` + strings.Repeat("w", 255) + `","type":"TOKEN"}`,
		`{"workflowExecutionId":"wf","type":"LOG"}`,
		`{"workflowExecutionId":"wf","type":"TOKEN","sequence":2147483648}`,
		`{"workflowExecutionId":"wf","type":"TOKEN","sequence":-1,"timestampMs":-5}`,
		`{"workflowExecutionId":"wf","type":"TOKEN"} {"x":1}`,
		`{"workflowExecutionId":1,"type":"TOKEN"}`,
		`null`, `[]`, `{}`, ``, `"x"`, `{`,
		// Legacy lifecycle events.
		fzStreamJSON(wfStr, fzTaskStr, 7, "DATA", fzLegacyPayload("TASK_COMPLETED", 1700000000001)),
		fzStreamJSON(wfStr, "", 8, "DATA", fzLegacyPayload("WORKFLOW_SUSPENDED", 0)),
		fzStreamJSON("", fzTaskStr, 2, "DATA", fzLegacyPayload("CHILD_WORKFLOW_COMPLETED", 5)),
		fzStreamJSON(wfStr, "", 8, "DATA", fzLegacyPayload("FOO_BAR_BAZ", 0)),
		fzStreamJSON(wfStr, "", 8, "DATA", fzLegacyPayload("BAD*NAME", 0)),
		fzStreamJSON(wfStr, "", 8, "DATA", fzLegacyPayload("", 0)),
		fzStreamJSON("wf-1", "", 8, "DATA", fzLegacyPayload("TASK_STARTED", 0)),
		fzStreamJSON(wfStr, "", 8, "TOKEN", fzLegacyPayload("TASK_STARTED", 0)),
		fzStreamJSON(wfStr, "", 8, "DATA", `"{\"type\":\"Event\",\"event\":3}"`),
		fzStreamJSON(wfStr, "", 8, "DATA", `"{\"type\":\"event\",\"event\":\"TASK_STARTED\"}"`),
		fzStreamJSON(wfStr, "", 8, "DATA", `"{\"type\":\"Event\",\"event\":\"TASK_STARTED\",\"data\":[1e400]}"`),
		fzStreamJSON(wfStr, "", 8, "DATA", `"{\"type\":\"Event\",\"event\":\"TASK_STARTED\",\"timestampMs\":\"x\"}"`),
		// Deviations the fuzzer found, since fixed: regression seeds.
		fzStreamJSON(wfStr, "", 8, "DATA", `" {\"type\":\"Event\",\"event\":\"TASK_STARTED\"}"`),
		fzStreamJSON(wfStr, "", 8, "DATA", `"{\"type\":\"\\u0045vent\",\"event\":\"TASK_STARTED\"}"`),
		fzStreamJSON(wfStr, "", 8, "DATA", `"{\"type\":\"Event\",\"event\":null}"`),
		fzStreamJSON(wfStr, "", 8, "DATA", `"{\"type\":\"Event\",\"event\":\"TASK_STARTED\",\"timestampMs\":-5}"`),
		fzStreamJSON(wfStr, "", 8, "PROGREſS", `"x"`),
		`{"WORKFLOWEXECUTIONID":"wf","Type":"TOKEN","ſequence":1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		s, err := DecodeStreamEvent(in)
		if err != nil {
			var ve *ValidationError
			if !errors.Is(err, ErrInvalidEvent) || !errors.As(err, &ve) || len(ve.Errors) == 0 {
				t.Fatalf("DecodeStreamEvent(%q) error %v: want a *ValidationError wrapping ErrInvalidEvent", in, err)
			}
			return
		}
		// Only the six camelCase names are fields of the format.
		for k := range fzTopLevelKeys(in) {
			if !fzStreamFields[k] {
				t.Fatalf("DecodeStreamEvent(%q) accepted the unknown field %q", in, k)
			}
		}
		key := s.Key()
		if err := subjects.ValidateToken(key); err != nil {
			t.Fatalf("DecodeStreamEvent(%q) accepted the key %q: %v", in, key, err)
		}
		if s.WorkflowExecutionID == "" && key != s.TaskExecutionID || s.WorkflowExecutionID != "" && key != s.WorkflowExecutionID {
			t.Fatalf("Key() = %q for workflow %q, task %q", key, s.WorkflowExecutionID, s.TaskExecutionID)
		}
		for _, id := range []string{s.WorkflowExecutionID, s.TaskExecutionID} {
			if id == "" {
				continue
			}
			if got, err := ParseID("id", id); err != nil || got != id {
				t.Fatalf("DecodeStreamEvent(%q) kept the id %q, not canonical: ParseID = %q, %v", in, id, got, err)
			}
		}
		switch s.Type {
		case StreamToken, StreamProgress, StreamData, StreamError:
		default:
			t.Fatalf("DecodeStreamEvent(%q) accepted the type %q", in, s.Type)
		}
		if raw, ok := fzTopLevelKeys(in)["type"]; ok {
			var typ string
			_ = json.Unmarshal(raw, &typ)
			if fzASCIIUpper(typ) != string(s.Type) {
				t.Fatalf("DecodeStreamEvent(%q) read the type %q as %q", in, typ, s.Type)
			}
		}
		subj, err := s.Subject()
		if err != nil {
			t.Fatalf("Subject() of an accepted event: %v", err)
		}
		if subj != subjects.StreamsPrefix+key || strings.Count(subj, ".") != 3 || strings.ContainsAny(subj, "*> \t\r\n$") ||
			!server.IsValidLiteralSubject(subj) {
			t.Fatalf("Subject() = %q for key %q: want one literal token under %q", subj, key, subjects.StreamsPrefix)
		}
		if back, err := subjects.ParseStream(subj); err != nil || back != key {
			t.Fatalf("ParseStream(%q) = %q, %v; want %q", subj, back, err, key)
		}

		out := s.AppendJSON(nil)
		if !json.Valid(out) || bytes.ContainsAny(out, "\r\n") {
			t.Fatalf("AppendJSON = %q: not one line of valid JSON", out)
		}
		back, err := DecodeStreamEvent(out)
		if err != nil {
			t.Fatalf("DecodeStreamEvent(AppendJSON) = %v for %s", err, out)
		}
		if *back != *s {
			t.Fatalf("round trip changed the event:\n got %+v\nwant %+v", *back, *s)
		}
		if again := back.AppendJSON(nil); !bytes.Equal(again, out) {
			t.Fatalf("AppendJSON is not stable: %s then %s", out, again)
		}

		s.TenantID = fzTenant
		p := s.Legacy()
		if want := fzIsLegacy(s); (p != nil) != want {
			t.Fatalf("Legacy() = %+v for payload %q; the definition says legacy = %v", p, s.Payload, want)
		}
		if p == nil {
			return
		}
		fzCheckLegacy(t, s, p)
	})
}

// fzCheckLegacy checks the conversion of the legacy payload p carried by s.
func fzCheckLegacy(t *testing.T, s *StreamEvent, p *StateEventPayload) {
	t.Helper()
	if s.Type != StreamData || p.Type != "Event" {
		t.Fatalf("Legacy() = %+v for a %s event", p, s.Type)
	}
	wantType, wantKnown := LegacyEventType(p.Event)
	e, known, err := LegacyToEvent(s, p)
	if known != wantKnown {
		t.Fatalf("LegacyToEvent known = %v; LegacyEventType(%q) says %v", known, p.Event, wantKnown)
	}
	if err != nil {
		if !errors.Is(err, ErrInvalidEvent) {
			t.Fatalf("LegacyToEvent error %v does not wrap ErrInvalidEvent", err)
		}
		return
	}
	if e.EventType != wantType || e.TenantID != s.TenantID || !bytes.Equal(e.Data, p.Data) {
		t.Fatalf("LegacyToEvent = type %q, tenant %s, data %s; want %q, %s, %s", e.EventType, e.TenantID, e.Data,
			wantType, s.TenantID, p.Data)
	}
	if e.ID == uuid.Nil {
		t.Fatalf("LegacyToEvent gave no deterministic id")
	}
	if (s.WorkflowExecutionID != "") != (e.WorkflowExecutionID != nil) ||
		e.WorkflowExecutionID != nil && e.WorkflowExecutionID.String() != s.WorkflowExecutionID ||
		(s.TaskExecutionID != "") != (e.TaskExecutionID != nil) ||
		e.TaskExecutionID != nil && e.TaskExecutionID.String() != s.TaskExecutionID {
		t.Fatalf("LegacyToEvent ids = %v, %v; want %q, %q", e.WorkflowExecutionID, e.TaskExecutionID,
			s.WorkflowExecutionID, s.TaskExecutionID)
	}
	again, _, err := LegacyToEvent(s, p)
	if err != nil || again.ID != e.ID {
		t.Fatalf("LegacyToEvent is not deterministic: %v then %v (%v)", e.ID, again.ID, err)
	}
	next := *s
	next.Sequence++
	if other, _, err := LegacyToEvent(&next, p); err != nil || other.ID == e.ID {
		t.Fatalf("the next sequence gives the same id %v (%v): a new event would be dropped as a duplicate", e.ID, err)
	}
	e.Stamp(DefaultSource, time.Now())
	if err := e.Validate(); err != nil {
		t.Fatalf("LegacyToEvent accepted an event that does not validate: %v", err)
	}
	subj, err := e.Subject()
	if err != nil || !strings.HasPrefix(subj, subjects.EventsPrefix+s.TenantID.String()+".") {
		t.Fatalf("converted event subject %q, %v: not in the tenant's namespace", subj, err)
	}
}

func fzASCIIUpper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'a' && c <= 'z' {
			b[i] = c - ('a' - 'A')
		}
	}
	return string(b)
}

func fzASCIILower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + ('a' - 'A')
		}
	}
	return string(b)
}

// FuzzParseTypes checks the `types` parameter: errors are *ValidationError on "types" that list what is
// valid, the filter is exactly the union of its items (checked against a model of the parameter: fzTypeItems, fzItemKind, fzItemMatchesType), Prefix is a prefix of every
// selected type, the tenant stream never selects a generic kind, and String gives an equivalent filter back.
func FuzzParseTypes(f *testing.F) {
	for _, s := range []string{
		"", " ", " , ", ",", "events", "EVENTS", "Event", "lifecycle", "tokens", "token", "TOKEN", "progress", "data",
		"errors", "error", "task.completed", "task.completed,tokens", " task.completed , progress ", "workflow",
		"workflow,task", "workflow.*", "workflow.>", "workflow.comp", "child_workflow.*", "a.b.*", "a.b.>", "*", ">",
		"workflow.", ".workflow", "workflow..x", "workflow.*.x", "workflow.$x", "$SYS", "workflow %2A", "workflow.%2A",
		"work flow", "workflow\tx", "workflow\x00", "wörkflow", "to\u212aens", "PROGREſS", "events,data,bogus",
		"task.completed,,", strings.Repeat("a", 256), strings.Repeat("a.", 127) + "a", "tasks.*,task.completed,task",
		"workflow.completed,workflow.failed", "events.*", "data.x", "DATA.x",
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, raw string, lifecycleOnly bool) {
		tf, err := ParseTypes(raw, lifecycleOnly)
		items := fzTypeItems(raw)
		if err != nil {
			var ve *ValidationError
			if !errors.Is(err, ErrInvalidEvent) || !errors.As(err, &ve) || len(ve.Errors) != 1 || ve.Errors[0].Field != "types" {
				t.Fatalf("ParseTypes(%q) error %v: want a *ValidationError on \"types\"", raw, err)
			}
			msg := ve.Errors[0].Message
			if !strings.Contains(msg, typesHelp) && !(lifecycleOnly && strings.Contains(msg, "generic stream kind")) {
				t.Fatalf("ParseTypes(%q) error %q does not say what is valid", raw, msg)
			}
			// Every item valid alone, and at least one item: the whole list must be valid too.
			if len(items) == 0 {
				return
			}
			for _, it := range items {
				if _, err := ParseTypes(it, lifecycleOnly); err != nil {
					return
				}
			}
			t.Fatalf("ParseTypes(%q) = %v, yet each of its items %q is valid alone", raw, err, items)
		}
		kinds := []StreamEventType{StreamToken, StreamProgress, StreamData, StreamError}
		if strings.TrimSpace(raw) == "" {
			if !tf.MatchesType("workflow.completed") || !tf.Lifecycle() || tf.Prefix() != "" {
				t.Fatalf("ParseTypes(%q) does not select every lifecycle event", raw)
			}
			for _, k := range kinds {
				if tf.MatchesKind(k) == lifecycleOnly {
					t.Fatalf("ParseTypes(%q, %v).MatchesKind(%s) = %v", raw, lifecycleOnly, k, !lifecycleOnly)
				}
			}
		} else if len(items) == 0 {
			t.Fatalf("ParseTypes(%q) accepted a list that names nothing", raw)
		}
		if lifecycleOnly {
			if tf.Streams() {
				t.Fatalf("ParseTypes(%q, true) selects generic stream kinds", raw)
			}
			for _, k := range kinds {
				if tf.MatchesKind(k) {
					t.Fatalf("ParseTypes(%q, true).MatchesKind(%s) = true", raw, k)
				}
			}
		}
		if !tf.Lifecycle() && !tf.Streams() {
			t.Fatalf("ParseTypes(%q) accepted a filter that selects nothing", raw)
		}

		candidates := fzTypeCandidates(items)
		prefix := tf.Prefix()
		alone := make([]TypeFilter, len(items))
		for i, it := range items {
			if alone[i], err = ParseTypes(it, lifecycleOnly); err != nil {
				t.Fatalf("ParseTypes(%q) accepted the list, but its item %q alone is an error: %v", raw, it, err)
			}
		}
		round, err := ParseTypes(tf.String(), lifecycleOnly)
		if err != nil {
			t.Fatalf("ParseTypes(String() = %q) of ParseTypes(%q): %v", tf.String(), raw, err)
		}
		for _, c := range candidates {
			got := tf.MatchesType(c)
			if got && !strings.HasPrefix(c, prefix) {
				t.Fatalf("ParseTypes(%q): MatchesType(%q) but Prefix() = %q", raw, c, prefix)
			}
			union := len(items) == 0 // a blank list selects every lifecycle event
			for i, it := range items {
				one := alone[i].MatchesType(c)
				if one != fzItemMatchesType(it, c) {
					t.Fatalf("ParseTypes(%q).MatchesType(%q) = %v; the model says %v", it, c, one, !one)
				}
				union = union || one
			}
			if got != union {
				t.Fatalf("ParseTypes(%q).MatchesType(%q) = %v; the union of its items %q says %v", raw, c, got, items, union)
			}
			if round.MatchesType(c) != got {
				t.Fatalf("ParseTypes(%q) and its String() %q disagree on %q", raw, tf.String(), c)
			}
		}
		for _, k := range kinds {
			got := tf.MatchesKind(k)
			union := len(items) == 0 && !lifecycleOnly
			for i, it := range items {
				one := alone[i].MatchesKind(k)
				if want := fzItemKind(it) == k; one != want {
					t.Fatalf("ParseTypes(%q).MatchesKind(%s) = %v; the model says %v", it, k, one, want)
				}
				union = union || one
			}
			if got != union {
				t.Fatalf("ParseTypes(%q).MatchesKind(%s) = %v; the union of its items says %v", raw, k, got, union)
			}
			if round.MatchesKind(k) != got {
				t.Fatalf("ParseTypes(%q) and its String() %q disagree on %s", raw, tf.String(), k)
			}
		}
	})
}

// fzTypeItems splits a types parameter: a comma list, each item trimmed, empty items ignored.
func fzTypeItems(raw string) []string {
	var items []string
	for _, it := range strings.Split(raw, ",") {
		if it = strings.TrimSpace(it); it != "" {
			items = append(items, it)
		}
	}
	return items
}

// fzTypeCandidates returns lifecycle types to probe a filter with: fixed ones and ones derived from the items.
func fzTypeCandidates(items []string) []string {
	c := []string{"workflow", "workflow.completed", "workflow.comp", "workflowx.y", "task.completed", "task",
		"child_workflow.completed", "a", "a.b", "a.b.c", "events", "data.x"}
	for _, it := range items {
		base := strings.TrimSuffix(strings.TrimSuffix(it, ".*"), ".>")
		c = append(c, it, it+".x", it+".x.y", it+"x", base, base+".x", base+".x.y", base+"x", strings.ToUpper(it))
		if i := strings.LastIndexByte(base, '.'); i > 0 {
			c = append(c, base[:i], base[:i]+".y")
		}
	}
	return c
}

// fzItemKind is the generic kind an item of the types parameter names (case-insensitive), "" for none.
func fzItemKind(it string) StreamEventType {
	switch fzASCIILower(it) {
	case "tokens", "token":
		return StreamToken
	case "progress":
		return StreamProgress
	case "data":
		return StreamData
	case "errors", "error":
		return StreamError
	}
	return ""
}

// fzItemMatchesType is the meaning of one valid item for the lifecycle type t.
func fzItemMatchesType(it, t string) bool {
	switch fzASCIILower(it) {
	case "events", "event", "lifecycle":
		return true
	}
	if fzItemKind(it) != "" {
		return false
	}
	if base, ok := strings.CutSuffix(it, ".*"); ok {
		return strings.HasPrefix(t, base+".")
	}
	if base, ok := strings.CutSuffix(it, ".>"); ok {
		return strings.HasPrefix(t, base+".")
	}
	if strings.Contains(it, ".") {
		return t == it
	}
	return t == it || strings.HasPrefix(t, it+".")
}

// FuzzParseCursor checks cursors and positions: parsing never panics, errors are ErrInvalidEvent on the
// field "cursor", an accepted cursor is at most maxCursorBytes and its String() parses back to it, and the String() of every
// cursor the server can issue parses back to it.
func FuzzParseCursor(f *testing.F) {
	for _, s := range []string{
		"", ".", "earliest", "1-0.", ".1-0", "abc-12.def-34", "ABC-12.DEF-34", "0-0.0-0", "-1.", "1-.", "+1-2.", "1-+2.",
		"1--2.", "1-2-3.", "1-2.3-4.5-6", "1-2..", " 1-2.", "1-2 .", "1_0-2.", "0x1-2.", "zzzzzzzzzzzzz-1.",
		"3w5e11264sgsf-18446744073709551615.3w5e11264sgsf-18446744073709551615", "3w5e11264sgsg-1.",
		"1-18446744073709551616.", "%31-2.", "1-2.*", "1-2.>", "ü-1.", "1-2\x00.", strings.Repeat("0", 60) + "1-2.",
	} {
		f.Add(s, uint64(0), uint64(0), uint64(0), uint64(0), false, false)
	}
	f.Add("", uint64(1), uint64(2), uint64(3), uint64(4), true, true)
	f.Add("", uint64(math.MaxUint64), uint64(math.MaxUint64), uint64(math.MaxUint64), uint64(math.MaxUint64), true, true)
	f.Add("", uint64(1<<52-1), uint64(math.MaxUint32), uint64(1700000000000), uint64(math.MaxUint32), true, true)
	f.Add("", uint64(1700000000000), uint64(123456), uint64(0), uint64(0), true, false)
	f.Fuzz(func(t *testing.T, s string, e1, q1, e2, q2 uint64, hasEvents, hasStreams bool) {
		c, err := ParseCursor(s)
		if err != nil {
			fzCheckCursorError(t, "ParseCursor", s, err)
		} else {
			if len(s) > maxCursorBytes {
				t.Fatalf("ParseCursor accepted %d bytes: %q", len(s), s)
			}
			fzCheckCursorRoundTrip(t, c)
		}
		if p, err := ParsePosition(s); err != nil {
			fzCheckCursorError(t, "ParsePosition", s, err)
		} else {
			if strings.ContainsAny(s, ".+ ") {
				t.Fatalf("ParsePosition accepted %q", s)
			}
			back, err := ParsePosition(p.String())
			if err != nil || back != p {
				t.Fatalf("ParsePosition(%q) = %+v; its String() %q parses to %+v, %v", s, p, p.String(), back, err)
			}
		}
		fzCheckCursorRoundTrip(t, Cursor{Events: Position{Epoch: e1, Seq: q1}, Streams: Position{Epoch: e2, Seq: q2},
			HasEvents: hasEvents, HasStreams: hasStreams})
	})
}

func fzCheckCursorError(t *testing.T, fn, s string, err error) {
	t.Helper()
	var ve *ValidationError
	if !errors.Is(err, ErrInvalidEvent) || !errors.As(err, &ve) || len(ve.Errors) != 1 || ve.Errors[0].Field != "cursor" {
		t.Fatalf("%s(%q) error %v: want a *ValidationError on \"cursor\"", fn, s, err)
	}
}

// fzCheckCursorRoundTrip checks that c's String() parses back to c (positions the cursor does not hold are ignored).
func fzCheckCursorRoundTrip(t *testing.T, c Cursor) {
	t.Helper()
	if !c.HasEvents {
		c.Events = Position{}
	}
	if !c.HasStreams {
		c.Streams = Position{}
	}
	s := c.String()
	back, err := ParseCursor(s)
	if err != nil || back != c {
		t.Fatalf("ParseCursor(%q) = %+v, %v; want %+v", s, back, err, c)
	}
	if back.String() != s {
		t.Fatalf("String() is not canonical: %q then %q", s, back.String())
	}
}

// FuzzSubjectBuild checks the subject grammar from the sidecar's side: a subject is built only from valid
// parts, lies in its own family's namespace, holds no wildcard or whitespace and parses back to its parts; ParseID
// accepts exactly the valid tokens and canonicalises UUIDs to lower case.
func FuzzSubjectBuild(f *testing.F) {
	for _, s := range [][3]string{
		{tenantStr, "workflow.completed", wfStr},
		{strings.ToUpper(tenantStr), "task.completed", strings.ToUpper(wfStr)},
		{"tenant-1", "a", "task_1"},
		{"", "", ""},
		{"*", "a.*", "*"},
		{">", "a.>", ">"},
		{"a.b", "a..b", "a.b"},
		{"$SYS", "$SYS.x", "$G"},
		{"%2A", "a.%2A", "%3E"},
		{" t", "a. b", "wf "},
		{"t\x00", "a.b\x00", "\x00"},
		{"tén", "wörkflow.x", "ünï"},
		{"t", ".a", "a\n"},
		{"t", "a.", "a\u00a0"},
		{strings.Repeat("t", 255), strings.Repeat("a", 255), strings.Repeat("w", 255)},
		{strings.Repeat("t", 256), strings.Repeat("a", 256), strings.Repeat("w", 256)},
		{"{" + tenantStr + "}", "x", "urn:uuid:" + wfStr},
		{strings.ReplaceAll(tenantStr, "-", ""), "x", strings.ReplaceAll(strings.ToUpper(wfStr), "-", "")},
		{"flovyn.events.x", "flovyn.streams.workflow.x", "flovyn.streams.workflow.x"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, tenant, eventType, key string) {
		fzCheckEventSubject(t, tenant, eventType)
		fzCheckStreamSubject(t, key)
		for _, id := range []string{tenant, key, eventType} {
			fzCheckParseID(t, id)
			fzCheckParseID(t, strings.ToUpper(id))
		}
		// Arbitrary strings as subjects: whatever parses builds the same subject again.
		for _, subj := range []string{tenant, eventType, key, subjects.EventsPrefix + key, subjects.StreamsPrefix + key,
			subjects.EventsPrefix + tenant + "." + eventType} {
			if ten, typ, err := subjects.ParseEvent(subj); err == nil {
				if again, err := subjects.Event(ten, typ); err != nil || again != subj {
					t.Fatalf("ParseEvent(%q) = %q, %q; Event gives %q, %v", subj, ten, typ, again, err)
				}
			} else if !errors.Is(err, subjects.ErrInvalid) {
				t.Fatalf("ParseEvent(%q) error %v does not wrap ErrInvalid", subj, err)
			}
			if k, err := subjects.ParseStream(subj); err == nil {
				if again, err := subjects.Stream(k); err != nil || again != subj {
					t.Fatalf("ParseStream(%q) = %q; Stream gives %q, %v", subj, k, again, err)
				}
			} else if !errors.Is(err, subjects.ErrInvalid) {
				t.Fatalf("ParseStream(%q) error %v does not wrap ErrInvalid", subj, err)
			}
		}
	})
}

// fzValidToken is the token rule (1 to 255 ASCII letters, digits, '_' or '-'), written independently of
// subjects.ValidateToken.
func fzValidToken(s string) bool {
	if s == "" || len(s) > 255 {
		return false
	}
	for _, r := range s {
		if !(r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r) || r == '_' || r == '-')) {
			return false
		}
	}
	return true
}

// fzValidEventType is the event type rule, written independently of subjects.ValidateEventType.
func fzValidEventType(s string) bool {
	if s == "" || len(s) > 255 || s[0] == '$' {
		return false
	}
	for _, tok := range strings.Split(s, ".") {
		if !fzValidToken(tok) {
			return false
		}
	}
	return true
}

// fzCheckSubjectText checks what every subject must be: literal, in its family's namespace, no wildcard, whitespace,
// control character or '$'.
func fzCheckSubjectText(t *testing.T, subj, prefix string) {
	t.Helper()
	if !strings.HasPrefix(subj, prefix) || !server.IsValidLiteralSubject(subj) || strings.ContainsAny(subj, "*>$") {
		t.Fatalf("subject %q: want a literal subject under %q", subj, prefix)
	}
	for _, r := range subj {
		if unicode.IsSpace(r) || unicode.IsControl(r) || r >= unicode.MaxASCII {
			t.Fatalf("subject %q holds %q", subj, r)
		}
	}
	if strings.Contains(subj, "..") || strings.HasSuffix(subj, ".") {
		t.Fatalf("subject %q has an empty token", subj)
	}
}

func fzCheckEventSubject(t *testing.T, tenant, eventType string) {
	t.Helper()
	valid := fzValidToken(tenant) && fzValidEventType(eventType)
	subj, err := subjects.Event(tenant, eventType)
	if err != nil {
		if !errors.Is(err, subjects.ErrInvalid) {
			t.Fatalf("Event(%q, %q) error %v does not wrap ErrInvalid", tenant, eventType, err)
		}
		if valid {
			t.Fatalf("Event(%q, %q) = %v; the rules say both are valid", tenant, eventType, err)
		}
		return
	}
	if !valid {
		t.Fatalf("Event(%q, %q) = %q; the rules say a part is invalid", tenant, eventType, subj)
	}
	fzCheckSubjectText(t, subj, subjects.EventsPrefix+tenant+".")
	if subj != subjects.EventsPrefix+tenant+"."+eventType {
		t.Fatalf("Event(%q, %q) = %q", tenant, eventType, subj)
	}
	if ten, typ, err := subjects.ParseEvent(subj); err != nil || ten != tenant || typ != eventType {
		t.Fatalf("ParseEvent(%q) = %q, %q, %v; want %q, %q", subj, ten, typ, err, tenant, eventType)
	}
	if _, err := subjects.ParseStream(subj); err == nil {
		t.Fatalf("ParseStream accepted the event subject %q", subj)
	}
}

func fzCheckStreamSubject(t *testing.T, key string) {
	t.Helper()
	subj, err := subjects.Stream(key)
	if err != nil {
		if !errors.Is(err, subjects.ErrInvalid) {
			t.Fatalf("Stream(%q) error %v does not wrap ErrInvalid", key, err)
		}
		if fzValidToken(key) {
			t.Fatalf("Stream(%q) = %v; the token rule says the key is valid", key, err)
		}
		return
	}
	if !fzValidToken(key) {
		t.Fatalf("Stream(%q) = %q; the token rule says the key is invalid", key, subj)
	}
	fzCheckSubjectText(t, subj, subjects.StreamsPrefix)
	if subj != subjects.StreamsPrefix+key || strings.Count(subj, ".") != 3 {
		t.Fatalf("Stream(%q) = %q", key, subj)
	}
	if k, err := subjects.ParseStream(subj); err != nil || k != key {
		t.Fatalf("ParseStream(%q) = %q, %v; want %q", subj, k, err, key)
	}
	if _, _, err := subjects.ParseEvent(subj); err == nil {
		t.Fatalf("ParseEvent accepted the stream subject %q", subj)
	}
}

func fzCheckParseID(t *testing.T, id string) {
	t.Helper()
	got, err := ParseID("workflow_execution_id", id)
	if err != nil {
		var ve *ValidationError
		if !errors.Is(err, ErrInvalidEvent) || !errors.As(err, &ve) || len(ve.Errors) != 1 ||
			ve.Errors[0].Field != "workflow_execution_id" {
			t.Fatalf("ParseID(%q) error %v: want a *ValidationError on the field", id, err)
		}
		if fzValidToken(id) {
			t.Fatalf("ParseID(%q) = %v; the token rule says it is valid", id, err)
		}
		return
	}
	if !fzValidToken(got) || !fzValidToken(id) {
		t.Fatalf("ParseID(%q) = %q; not a valid token", id, got)
	}
	if u, err := uuid.Parse(id); err == nil && len(id) == 36 {
		if got != strings.ToLower(id) || got != u.String() {
			t.Fatalf("ParseID(%q) = %q; want the lower-case UUID %q", id, got, u.String())
		}
	} else if got != id {
		t.Fatalf("ParseID(%q) = %q; a non-UUID id must be kept as it is", id, got)
	}
	if again, err := ParseID("x", got); err != nil || again != got {
		t.Fatalf("ParseID is not idempotent: %q then %q, %v", got, again, err)
	}
}

// FuzzDecodeEventFast checks the fast decoder against the general one: wherever the fast one succeeds, the general one
// succeeds too and gives the same event.
func FuzzDecodeEventFast(f *testing.F) {
	for _, s := range []string{
		`{"tenant_id":"` + tenantStr + `","event_type":"workflow.completed"}`,
		`{"id":"9d7c6b5a-4e3f-4a1b-8c2d-1e0f9a8b7c6d","tenant_id":"` + strings.ToUpper(tenantStr) + `","workflow_execution_id":"` + wfStr +
			`","task_execution_id":null,"event_type":"task.completed","source":"w","data":{"a": [1, "x"]},"timestamp_ms":1,"correlation_id":"c"}`,
		`{}`, ` { "data" : null } `, `{"timestamp_ms":1.5}`, `{"timestamp_ms":1e3}`, `{"source":"a","source":"b"}`,
		`{"TENANT_ID":"` + tenantStr + `"}`, `{"data":{"a":1}} x`, `{"event_type":"\u0061"}`, `{"id":"{` + wfStr + `}"}`,
		`{"org_id":"` + tenantStr + `"}`, `{"org_id":null,"tenant_id":"` + tenantStr + `"}`,
		`{"tenant_id":"` + tenantStr + `","org_id":"` + strings.ToUpper(tenantStr) + `"}`,
		`{"org_id":"` + tenantStr + `","tenant_id":"` + wfStr + `"}`, `{"org_id":"` + tenantStr + `","org_id":"` + tenantStr + `"}`,
		`{"tenant_id":"00000000-0000-0000-0000-000000000000","org_id":"` + tenantStr + `"}`,
		`{"tenant_id":"` + tenantStr + `","org_id":"00000000-0000-0000-0000-000000000000"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		fast, ok := decodeEventFast(in)
		if !ok {
			return
		}
		var w eventWire
		if err := strictUnmarshal(in, &w, eventKeys, snakeCase); err != nil {
			t.Fatalf("fast decoder accepted %q; the general one refuses it: %v", in, err)
		}
		slow, err := decodeEventSlow(in)
		if err != nil {
			t.Fatalf("fast decoder accepted %q; the general one refuses it: %v", in, err)
		}
		if string(fast.AppendJSON(nil)) != string(slow.AppendJSON(nil)) {
			t.Fatalf("decoders disagree on %q:\nfast %s\nslow %s", in, fast.AppendJSON(nil), slow.AppendJSON(nil))
		}
	})
}
