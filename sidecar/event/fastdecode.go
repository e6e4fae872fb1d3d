package event

import (
	"encoding/json"
	"strconv"
	"unicode/utf8"

	"github.com/google/uuid"
)

// decodeEventFast decodes the common case of a FlovynEvent in one pass over the bytes, without reflection: an object
// whose keys are exactly the format's, each once, with plain strings (no escapes, valid UTF-8), canonical-length UUIDs
// and an integer timestamp. It returns false for anything else, and DecodeEvent then takes the general path, which
// accepts every valid input and explains every invalid one. The two must agree wherever this one succeeds
// (FuzzDecodeEventFast checks it).
//
// org_id, Flovyn's newer name of tenant_id, is read aside and reconciled with tenant_id at the end (see endOrg): an
// event without org_id pays one bit test for it.
func decodeEventFast(data []byte) (*FlovynEvent, bool) {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return nil, false
	}
	e := &FlovynEvent{}
	var seen uint16
	var org uuid.UUID // org_id's value, when seen holds keyOrgSet
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == '}' {
		return e, skipSpace(data, i+1) == len(data)
	}
	for {
		if i >= len(data) || data[i] != '"' {
			return nil, false
		}
		key, next, ok := plainString(data, i)
		if !ok {
			return nil, false
		}
		i = skipSpace(data, next)
		if i >= len(data) || data[i] != ':' {
			return nil, false
		}
		i = skipSpace(data, i+1)
		end := skipValue(data, i)
		if end < 0 {
			return nil, false
		}
		val := data[i:end]
		bit, ok := eventKeyBit(key)
		if !ok || seen&bit != 0 {
			return nil, false
		}
		switch bit {
		case keyOrgID:
			if string(val) != "null" {
				if org, ok = orgField(val); !ok {
					return nil, false
				}
				seen |= keyOrgSet
			}
		case keyTenantID:
			if string(val) != "null" {
				seen |= keyTenantSet
			}
			fallthrough
		default:
			if !e.setField(bit, val) {
				return nil, false
			}
		}
		seen |= bit
		i = skipSpace(data, end)
		if i >= len(data) {
			return nil, false
		}
		if data[i] == '}' {
			if seen&keyOrgSet != 0 && !e.endOrg(org, seen) {
				return nil, false
			}
			return e, skipSpace(data, i+1) == len(data)
		}
		if data[i] != ',' {
			return nil, false
		}
		i = skipSpace(data, i+1)
	}
}

// Bits of decodeEventFast's seen set beyond one per key: tenant_id and org_id held a value (not null).
const (
	keyTenantID  = 1 << 1
	keyOrgID     = 1 << 9
	keyTenantSet = 1 << 10
	keyOrgSet    = 1 << 11
)

// eventKeyBit numbers the keys of the format.
func eventKeyBit(key []byte) (uint16, bool) {
	switch string(key) {
	case "id":
		return 1 << 0, true
	case "tenant_id":
		return keyTenantID, true
	case "workflow_execution_id":
		return 1 << 2, true
	case "task_execution_id":
		return 1 << 3, true
	case "event_type":
		return 1 << 4, true
	case "source":
		return 1 << 5, true
	case "data":
		return 1 << 6, true
	case "timestamp_ms":
		return 1 << 7, true
	case "correlation_id":
		return 1 << 8, true
	case "org_id":
		return keyOrgID, true
	}
	return 0, false
}

// orgField reads a value of org_id other than null; false when it is not in the fast form, or is the nil UUID (the
// general path then says what is wrong).
func orgField(val []byte) (uuid.UUID, bool) {
	s, _, ok := plainString(val, 0)
	if !ok || len(s) != 36 {
		return uuid.Nil, false
	}
	id, err := uuid.ParseBytes(s)
	return id, err == nil && id != uuid.Nil
}

// endOrg makes org the event's tenant; false when tenant_id named another (the general path explains the conflict).
func (e *FlovynEvent) endOrg(org uuid.UUID, seen uint16) bool {
	if seen&keyTenantSet != 0 && e.TenantID != org {
		return false
	}
	e.TenantID = org
	return true
}

// setField sets the field numbered bit from its raw JSON value; false when the value is not in the fast form.
func (e *FlovynEvent) setField(bit uint16, val []byte) bool {
	isNull := string(val) == "null"
	switch bit {
	case 1 << 0, 1 << 1, 1 << 2, 1 << 3:
		if isNull {
			return true
		}
		s, _, ok := plainString(val, 0)
		if !ok || len(s) != 36 {
			return false
		}
		id, err := uuid.ParseBytes(s)
		if err != nil {
			return false
		}
		switch bit {
		case 1 << 0:
			e.ID = id
		case 1 << 1:
			e.TenantID = id
		case 1 << 2:
			e.WorkflowExecutionID = ptr(id)
		default:
			e.TaskExecutionID = ptr(id)
		}
	case 1 << 4, 1 << 5, 1 << 8:
		if isNull {
			return true
		}
		s, end, ok := plainString(val, 0)
		if !ok || end != len(val) {
			return false
		}
		str := string(s)
		switch bit {
		case 1 << 4:
			e.EventType = str
		case 1 << 5:
			e.Source = str
		default:
			e.CorrelationID = ptr(str)
		}
	case 1 << 6:
		if !json.Valid(val) {
			return false
		}
		e.Data = compactJSON(val)
	case 1 << 7:
		if isNull {
			return true
		}
		if !jsonInteger(val) {
			return false // 00, +1, 1.5, 1e3: the general path says what is wrong
		}
		n, err := strconv.ParseInt(string(val), 10, 64)
		if err != nil {
			return false
		}
		e.TimestampMs = n
	}
	return true
}

// ptr returns a pointer to a copy of v. Taking the address of a local in one branch would move that local to the heap
// on every path: the id and tenant_id of every event, and its event_type and source, would each cost an allocation.
func ptr[T any](v T) *T { return &v }

// plainString returns the contents of the JSON string at data[i] and the index after it, when the string has no
// escapes, no control characters and is valid UTF-8: then its bytes are its value.
func plainString(data []byte, i int) ([]byte, int, bool) {
	if i >= len(data) || data[i] != '"' {
		return nil, 0, false
	}
	for j := i + 1; j < len(data); j++ {
		switch c := data[j]; {
		case c == '"':
			s := data[i+1 : j]
			return s, j + 1, utf8.Valid(s)
		case c == '\\' || c < 0x20:
			return nil, 0, false
		}
	}
	return nil, 0, false
}

// jsonInteger reports whether b is a JSON number without fraction or exponent: -?(0|[1-9][0-9]*).
func jsonInteger(b []byte) bool {
	if len(b) > 0 && b[0] == '-' {
		b = b[1:]
	}
	if len(b) == 0 || (b[0] == '0' && len(b) > 1) {
		return false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
