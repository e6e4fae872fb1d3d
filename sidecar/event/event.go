package event

import (
	"bytes"
	"cmp"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/flovyn/eventhook/subjects"
)

// Limits of the event model.
const (
	// MaxSourceBytes bounds FlovynEvent.Source.
	MaxSourceBytes = 255
	// MaxCorrelationIDBytes bounds FlovynEvent.CorrelationID.
	MaxCorrelationIDBytes = 255
	// DefaultSource is stamped on an event published without a source.
	DefaultSource = "system"
)

// ErrInvalidEvent is the family of every validation and decoding error of events; check it with errors.Is. The concrete
// error is a *ValidationError that lists the bad fields.
var ErrInvalidEvent = errors.New("event: invalid event")

// FieldError says what is wrong with one field of an input.
type FieldError struct {
	// Field is the JSON name of the field, prefixed "[i]." inside a batch.
	Field string `json:"field"`
	// Message says what is wrong and, where it can, how to fix it.
	Message string `json:"message"`
}

// ValidationError lists every problem found in one input. It wraps ErrInvalidEvent.
type ValidationError struct {
	// Errors holds one entry per bad field, in the order found.
	Errors []FieldError
}

// Error joins the field errors into one line.
func (e *ValidationError) Error() string {
	var b strings.Builder
	b.WriteString("invalid event: ")
	for i, fe := range e.Errors {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(fe.Field)
		b.WriteString(": ")
		b.WriteString(fe.Message)
	}
	return b.String()
}

// Unwrap makes errors.Is(err, ErrInvalidEvent) true.
func (e *ValidationError) Unwrap() error { return ErrInvalidEvent }

func (e *ValidationError) add(field, format string, args ...any) {
	e.Errors = append(e.Errors, FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
}

func (e *ValidationError) orNil() error {
	if e == nil || len(e.Errors) == 0 {
		return nil
	}
	return e
}

// Invalid returns a *ValidationError wrapping ErrInvalidEvent with one FieldError: field, and the message format makes.
func Invalid(field, format string, args ...any) *ValidationError {
	v := &ValidationError{}
	v.add(field, format, args...)
	return v
}

// FlovynEvent is a lifecycle event: a workflow or task state change, scoped to a tenant. Its JSON form is the wire format
// of lifecycle events (snake_case, every field always present), which Flovyn's Rust services read unchanged.
//
// Events are shared between subscribers once published: treat a published *FlovynEvent as read-only.
type FlovynEvent struct {
	// ID identifies the event; the sidecar generates one when the publisher sent none.
	ID uuid.UUID
	// TenantID scopes the event; never uuid.Nil.
	TenantID uuid.UUID
	// WorkflowExecutionID is the workflow the event belongs to, or nil.
	WorkflowExecutionID *uuid.UUID
	// TaskExecutionID is the task the event belongs to, or nil.
	TaskExecutionID *uuid.UUID
	// EventType is a dot-separated type such as "workflow.completed".
	EventType string
	// Source names the producer, such as "system" or "worker:worker-123".
	Source string
	// Data is the event's payload as compact JSON; nil stands for JSON null.
	Data json.RawMessage
	// TimestampMs is the time of the event in milliseconds since the Unix epoch.
	TimestampMs int64
	// CorrelationID links related events for tracing, or nil.
	CorrelationID *string
}

// NewEvent returns an event of tenant with a fresh id, the current time and data encoded as JSON. It returns an error
// wrapping ErrInvalidEvent when data cannot be encoded. The event is not validated: call Validate.
func NewEvent(tenant uuid.UUID, eventType, source string, data any) (*FlovynEvent, error) {
	raw, err := json.Marshal(data)
	if err != nil {
		return nil, Invalid("data", "cannot be encoded as JSON: %v", err)
	}
	return &FlovynEvent{
		ID:          uuid.New(),
		TenantID:    tenant,
		EventType:   eventType,
		Source:      source,
		Data:        raw,
		TimestampMs: time.Now().UnixMilli(),
	}, nil
}

// WithWorkflow sets the workflow execution id and returns e.
func (e *FlovynEvent) WithWorkflow(id uuid.UUID) *FlovynEvent {
	e.WorkflowExecutionID = &id
	return e
}

// WithTask sets the task execution id and returns e.
func (e *FlovynEvent) WithTask(id uuid.UUID) *FlovynEvent {
	e.TaskExecutionID = &id
	return e
}

// WithCorrelationID sets the correlation id and returns e.
func (e *FlovynEvent) WithCorrelationID(id string) *FlovynEvent {
	e.CorrelationID = &id
	return e
}

// Stamp fills what a publisher may leave out: a fresh id, source (when empty) and the current time (when zero).
func (e *FlovynEvent) Stamp(source string, now time.Time) {
	if e.ID == uuid.Nil {
		e.ID = uuid.New()
	}
	if e.Source == "" {
		e.Source = source
	}
	if e.TimestampMs == 0 {
		e.TimestampMs = now.UnixMilli()
	}
}

// Validate checks every rule of a lifecycle event (ids, a valid event type, source and correlation id within their
// limits, a timestamp) and returns a *ValidationError (wrapping ErrInvalidEvent) naming each bad field,
// or nil. It expects a stamped event: a nil id or an empty source are errors here.
func (e *FlovynEvent) Validate() error {
	v := &ValidationError{}
	if e.ID == uuid.Nil {
		v.add("id", "must be a non-nil UUID (omit it to have one generated)")
	}
	if e.TenantID == uuid.Nil {
		v.add("tenant_id", "is required and must be a non-nil UUID (in the body as tenant_id or org_id, or in the "+
			"Flovyn-Tenant-Id or Flovyn-Org-Id header)")
	}
	checkEventType(v, e.EventType)
	if why := checkPrintable(e.Source, MaxSourceBytes); why != "" {
		v.add("source", "%s", why)
	} else if !utf8.ValidString(e.Source) {
		v.add("source", "%s", notUTF8)
	}
	if e.CorrelationID != nil && len(*e.CorrelationID) > MaxCorrelationIDBytes {
		v.add("correlation_id", "is %d bytes; at most %d are allowed", len(*e.CorrelationID), MaxCorrelationIDBytes)
	} else if e.CorrelationID != nil && !utf8.ValidString(*e.CorrelationID) {
		v.add("correlation_id", "%s", notUTF8)
	}
	if len(e.Data) > 0 && badString(e.Data) {
		field, _ := badInValue(e.Data, skipSpace(e.Data, 0), "data")
		v.add(cmp.Or(field, "data"), "%s", notUTF8)
	}
	if e.TimestampMs < 0 {
		v.add("timestamp_ms", "must be milliseconds since the Unix epoch, not negative")
	}
	return v.orNil()
}

// checkEventType adds to v what is wrong with an event type, if anything.
func checkEventType(v *ValidationError, eventType string) {
	if err := subjects.ValidateEventType(eventType); err != nil {
		v.add("event_type", "%s; use dot-separated tokens of letters, digits, '_' and '-', such as \"workflow.completed\"",
			strings.TrimLeft(strings.TrimPrefix(err.Error(), subjects.ErrInvalid.Error()+" event type"), " :"))
	}
}

func checkPrintable(s string, limit int) string {
	if s == "" {
		return "must not be empty"
	}
	if len(s) > limit {
		return fmt.Sprintf("is %d bytes; at most %d are allowed", len(s), limit)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return fmt.Sprintf("control character at byte %d; only printable characters are allowed", i)
		}
	}
	return ""
}

// Subject returns the NATS subject of the event, flovyn.events.<tenant_id>.<event_type>.
func (e *FlovynEvent) Subject() (string, error) {
	return subjects.Event(e.TenantID.String(), e.EventType)
}

// eventWire is the decoding form: ids as strings so that a bad one is reported with its field name.
type eventWire struct {
	ID                  *string         `json:"id"`
	TenantID            *string         `json:"tenant_id"`
	OrgID               *string         `json:"org_id"` // Flovyn's newer name of tenant_id
	WorkflowExecutionID *string         `json:"workflow_execution_id"`
	TaskExecutionID     *string         `json:"task_execution_id"`
	EventType           string          `json:"event_type"`
	Source              *string         `json:"source"`
	Data                json.RawMessage `json:"data"`
	TimestampMs         *int64          `json:"timestamp_ms"`
	CorrelationID       *string         `json:"correlation_id"`
}

// DecodeEvent parses one FlovynEvent from its JSON wire form. A body that is not valid UTF-8 throughout is an error
// naming the field that is not (data.<path> inside the data). Optional fields may be omitted; an unknown field is an
// error that names it (and the snake_case name when it was sent in camelCase). Ids are parsed as UUIDs and canonicalised to
// lower case. The tenant may be given as tenant_id or as org_id (Flovyn's name of the tenant since 2026-01-12), or as
// both when they are equal; a tenant_id and an org_id that disagree are an error naming both (null counts as absent).
// The event is neither stamped nor validated: call Stamp and Validate. Errors are *ValidationError values wrapping
// ErrInvalidEvent.
func DecodeEvent(data []byte) (*FlovynEvent, error) {
	if err := checkUTF8(data); err != nil {
		return nil, err
	}
	if e, ok := decodeEventFast(data); ok {
		return e, nil
	}
	return decodeEventSlow(data)
}

// decodeEventSlow is DecodeEvent's general path: encoding/json, with errors that name the field.
func decodeEventSlow(data []byte) (*FlovynEvent, error) {
	var w eventWire
	if err := strictUnmarshal(data, &w, eventKeys, snakeCase); err != nil {
		return nil, err
	}
	e := &FlovynEvent{EventType: w.EventType, Data: compactJSON(w.Data), CorrelationID: w.CorrelationID}
	v := &ValidationError{}
	if w.ID != nil {
		e.ID = parseUUIDField(v, "id", *w.ID)
	}
	if w.TenantID != nil {
		e.TenantID = parseUUIDField(v, "tenant_id", *w.TenantID)
	}
	if w.OrgID != nil {
		org := parseUUIDField(v, "org_id", *w.OrgID)
		switch {
		case len(v.Errors) > 0: // a bad tenant_id or org_id: already said
		case w.TenantID != nil && org != e.TenantID:
			v.add("org_id", "%s disagrees with tenant_id %s; send one of them (org_id is the newer name of tenant_id), "+
				"or the same tenant in both", org, e.TenantID)
		default:
			e.TenantID = org
		}
	}
	if w.WorkflowExecutionID != nil {
		id := parseUUIDField(v, "workflow_execution_id", *w.WorkflowExecutionID)
		e.WorkflowExecutionID = &id
	}
	if w.TaskExecutionID != nil {
		id := parseUUIDField(v, "task_execution_id", *w.TaskExecutionID)
		e.TaskExecutionID = &id
	}
	if w.Source != nil {
		e.Source = *w.Source
	}
	if w.TimestampMs != nil {
		e.TimestampMs = *w.TimestampMs
	}
	if len(v.Errors) > 0 {
		checkEventType(v, e.EventType) // so that one answer names every field to fix, not just the bad ids
		return nil, v
	}
	return e, nil
}

func parseUUIDField(v *ValidationError, field, s string) uuid.UUID {
	id, err := uuid.Parse(s)
	if err != nil || len(s) != 36 {
		v.add(field, "%q is not a UUID (expected the form 3f0c2b1e-8a4d-4c61-9f0e-2d7b5a9c00e1)", s)
		return uuid.Nil
	}
	return id
}

// compactJSON returns raw without insignificant whitespace, so that an encoded event is always one line; nil and JSON
// null both become nil.
func compactJSON(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	if !bytes.ContainsAny(raw, " \t\r\n") {
		return raw
	}
	var b bytes.Buffer
	b.Grow(len(raw))
	if err := json.Compact(&b, raw); err != nil {
		return raw // cannot happen: the decoder has validated raw
	}
	return b.Bytes()
}

// naming turns a field name sent by a client into the name the format expects, for the hint of an unknown-field error.
type naming func(string) string

// eventKeys and streamKeys are the exact top-level keys of the two wire formats.
var (
	eventKeys = keySet("id", "tenant_id", "org_id", "workflow_execution_id", "task_execution_id", "event_type", "source",
		"data", "timestamp_ms", "correlation_id")
	streamKeys = keySet("workflowExecutionId", "taskExecutionId", "sequence", "type", "payload", "timestampMs")
)

func keySet(keys ...string) map[string]bool {
	m := make(map[string]bool, len(keys))
	for _, k := range keys {
		m[k] = true
	}
	return m
}

// strictUnmarshal decodes exactly one JSON object into dst. Its keys must be exactly known ones (encoding/json alone
// would match them case-insensitively), each at most once; trailing data is an error. Errors are *ValidationError values
// whose field and message a person can act on.
func strictUnmarshal(data []byte, dst any, known map[string]bool, hint naming) error {
	seen := make(map[string]bool, len(known))
	err := forEachKey(data, func(k string) error {
		switch {
		case !known[k]:
			if want := hint(k); want != k && known[want] {
				return Invalid(k, "unknown field; did you mean %q?", want)
			}
			return Invalid(k, "unknown field")
		case seen[k]:
			return Invalid(k, "appears twice; send each field once")
		}
		seen[k] = true
		return nil
	})
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return describeDecodeError(err, hint)
	}
	if dec.More() {
		return Invalid("", "unexpected data after the JSON value (send one value, or use the batch endpoint)")
	}
	return nil
}

// DescribeJSONError describes err, an error of encoding/json decoding a lifecycle event (or an array of them), as
// DecodeEvent does: an error wrapping ErrInvalidEvent that names the field in snake_case.
func DescribeJSONError(err error) error { return describeDecodeError(err, snakeCase) }

func describeDecodeError(err error, hint naming) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return Invalid("", "malformed JSON at byte %d: %s", syn.Offset, syn.Error())
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			return Invalid("", "expected a JSON object, got %s", typ.Value)
		}
		return Invalid(field, "expected %s, got %s", jsonKind(typ.Type.String()), typ.Value)
	case errors.Is(err, io.EOF):
		return Invalid("", "empty body: expected a JSON object")
	}
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		name, _ = strconv.Unquote(name)
		if want := hint(name); want != name {
			return Invalid(name, "unknown field; did you mean %q?", want)
		}
		return Invalid(name, "unknown field")
	}
	if strings.Contains(msg, "unexpected EOF") {
		return Invalid("", "malformed JSON: unexpected end of input")
	}
	return Invalid("", "malformed JSON: %s", strings.TrimPrefix(msg, "json: "))
}

func jsonKind(goType string) string {
	switch strings.TrimPrefix(goType, "*") {
	case "string":
		return "a string"
	case "int64", "int32", "int", "uint64":
		return "an integer"
	default:
		return goType
	}
}

// snakeCase turns camelCase into snake_case: "tenantId" → "tenant_id".
func snakeCase(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' {
			if i > 0 {
				b.WriteByte('_')
			}
			c += 'a' - 'A'
		}
		b.WriteByte(c)
	}
	return b.String()
}

// camelCase turns snake_case into camelCase: "workflow_execution_id" → "workflowExecutionId".
func camelCase(s string) string {
	var b strings.Builder
	up := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '_' {
			up = b.Len() > 0
			continue
		}
		if up && c >= 'a' && c <= 'z' {
			c -= 'a' - 'A'
		}
		up = false
		b.WriteByte(c)
	}
	return b.String()
}

// TenantKey is the JSON key under which an encoded FlovynEvent carries its tenant: TenantKeyTenantID (the default; the
// empty TenantKey means it too) or TenantKeyOrgID, the name Flovyn uses since it renamed tenants to orgs. Decoding
// accepts both whatever the TenantKey; it is the configuration key events.tenant_key.
type TenantKey string

// The TenantKey values.
const (
	// TenantKeyTenantID writes the tenant as "tenant_id".
	TenantKeyTenantID TenantKey = "tenant_id"
	// TenantKeyOrgID writes the tenant as "org_id".
	TenantKeyOrgID TenantKey = "org_id"
)

// AppendJSON appends the wire form of e to dst: every field present, absent optionals as null, one line. The tenant is
// written as "tenant_id" (see AppendJSONAs).
func (e *FlovynEvent) AppendJSON(dst []byte) []byte { return e.AppendJSONAs(dst, TenantKeyTenantID) }

// AppendJSONAs appends the wire form of e to dst as AppendJSON does, with the tenant under key: "org_id" for
// TenantKeyOrgID, "tenant_id" for any other value.
func (e *FlovynEvent) AppendJSONAs(dst []byte, key TenantKey) []byte {
	dst = append(dst, `{"id":"`...)
	dst = AppendUUID(dst, e.ID)
	if key == TenantKeyOrgID {
		dst = append(dst, `","org_id":"`...)
	} else {
		dst = append(dst, `","tenant_id":"`...)
	}
	dst = AppendUUID(dst, e.TenantID)
	dst = append(dst, `","workflow_execution_id":`...)
	dst = appendOptUUID(dst, e.WorkflowExecutionID)
	dst = append(dst, `,"task_execution_id":`...)
	dst = appendOptUUID(dst, e.TaskExecutionID)
	dst = append(dst, `,"event_type":`...)
	dst = appendJSONString(dst, e.EventType)
	dst = append(dst, `,"source":`...)
	dst = appendJSONString(dst, e.Source)
	dst = append(dst, `,"data":`...)
	if len(e.Data) == 0 {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, e.Data...)
	}
	dst = append(dst, `,"timestamp_ms":`...)
	dst = strconv.AppendInt(dst, e.TimestampMs, 10)
	dst = append(dst, `,"correlation_id":`...)
	if e.CorrelationID == nil {
		dst = append(dst, "null"...)
	} else {
		dst = appendJSONString(dst, *e.CorrelationID)
	}
	return append(dst, '}')
}

// MarshalJSON returns the wire form of e, with the tenant as "tenant_id" (see AppendJSON).
func (e FlovynEvent) MarshalJSON() ([]byte, error) {
	return e.AppendJSON(make([]byte, 0, 256+len(e.Data))), nil
}

// UnmarshalJSON decodes the wire form strictly, as DecodeEvent does.
func (e *FlovynEvent) UnmarshalJSON(data []byte) error {
	d, err := DecodeEvent(data)
	if err != nil {
		return err
	}
	*e = *d
	return nil
}

// AppendUUID appends the canonical (lower-case, hyphenated) form of id to dst.
func AppendUUID(dst []byte, id uuid.UUID) []byte {
	var buf [36]byte
	hex.Encode(buf[0:8], id[0:4])
	buf[8] = '-'
	hex.Encode(buf[9:13], id[4:6])
	buf[13] = '-'
	hex.Encode(buf[14:18], id[6:8])
	buf[18] = '-'
	hex.Encode(buf[19:23], id[8:10])
	buf[23] = '-'
	hex.Encode(buf[24:], id[10:])
	return append(dst, buf[:]...)
}

func appendOptUUID(dst []byte, id *uuid.UUID) []byte {
	if id == nil {
		return append(dst, "null"...)
	}
	dst = append(dst, '"')
	dst = AppendUUID(dst, *id)
	return append(dst, '"')
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string, escaping what JSON requires and what HTML-embedding would trip on.
// Invalid UTF-8 is kept byte for byte only where valid; each invalid byte becomes U+FFFD, as encoding/json does.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
