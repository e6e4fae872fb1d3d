package event

import (
	"strings"

	"github.com/google/uuid"

	"github.com/flovyn/eventhook/subjects"
)

// EventPattern selects lifecycle events of one tenant. Every optional field that is set must match; an empty
// EventTypePrefix or Source, or a nil id, matches everything.
type EventPattern struct {
	// TenantID is required: a pattern never spans tenants.
	TenantID uuid.UUID
	// WorkflowExecutionID, when set, keeps the events of that workflow.
	WorkflowExecutionID *uuid.UUID
	// TaskExecutionID, when set, keeps the events of that task.
	TaskExecutionID *uuid.UUID
	// EventTypePrefix, when set, keeps the events whose type starts with it (a plain string prefix).
	EventTypePrefix string
	// Source, when set, keeps the events whose source equals it.
	Source string
}

// AllEvents matches every event of tenant.
func AllEvents(tenant uuid.UUID) EventPattern { return EventPattern{TenantID: tenant} }

// ForWorkflow matches the events of one workflow of tenant.
func ForWorkflow(tenant, workflow uuid.UUID) EventPattern {
	return EventPattern{TenantID: tenant, WorkflowExecutionID: &workflow}
}

// ForTask matches the events of one task of tenant.
func ForTask(tenant, task uuid.UUID) EventPattern {
	return EventPattern{TenantID: tenant, TaskExecutionID: &task}
}

// ByType matches the events of tenant whose type starts with prefix.
func ByType(tenant uuid.UUID, prefix string) EventPattern {
	return EventPattern{TenantID: tenant, EventTypePrefix: prefix}
}

// WithSource returns a copy of p that also requires the event's source to equal source.
func (p EventPattern) WithSource(source string) EventPattern {
	p.Source = source
	return p
}

// patternField describes one optional field of EventPattern. patternFields is the one description of the filter
// fields: Matches, Matcher, Subject (the NATS subject narrowing) and IndexID (the backends' subscriber indexes) all
// derive from it, and a test enumerates EventPattern's fields by reflection against it, so that a field cannot be added
// to the struct without every one of them seeing it.
type patternField struct {
	// name is the Go name of the field.
	name string
	// set reports whether p filters on the field.
	set func(p *EventPattern) bool
	// match reports whether e passes the field; called only when set.
	match func(p *EventPattern, e *FlovynEvent) bool
	// index, when not NoID, is the id the field selects events by: backends keep subscribers in an index of it. id
	// returns p's id, eventID the event's (nil when the event has none). The fields with an index come first, the
	// most selective first.
	index   IDField
	id      func(p *EventPattern) uuid.UUID
	eventID func(e *FlovynEvent) *uuid.UUID
	// typePrefix, when not nil, returns the prefix of event types the field narrows the NATS subject to.
	typePrefix func(p *EventPattern) string
}

var patternFields = [...]patternField{
	{
		name:    "TaskExecutionID",
		set:     func(p *EventPattern) bool { return p.TaskExecutionID != nil },
		match:   func(p *EventPattern, e *FlovynEvent) bool { return sameID(e.TaskExecutionID, p.TaskExecutionID) },
		index:   TaskID,
		id:      func(p *EventPattern) uuid.UUID { return *p.TaskExecutionID },
		eventID: func(e *FlovynEvent) *uuid.UUID { return e.TaskExecutionID },
	},
	{
		name: "WorkflowExecutionID",
		set:  func(p *EventPattern) bool { return p.WorkflowExecutionID != nil },
		match: func(p *EventPattern, e *FlovynEvent) bool {
			return sameID(e.WorkflowExecutionID, p.WorkflowExecutionID)
		},
		index:   WorkflowID,
		id:      func(p *EventPattern) uuid.UUID { return *p.WorkflowExecutionID },
		eventID: func(e *FlovynEvent) *uuid.UUID { return e.WorkflowExecutionID },
	},
	{
		name:       "EventTypePrefix",
		set:        func(p *EventPattern) bool { return p.EventTypePrefix != "" },
		match:      func(p *EventPattern, e *FlovynEvent) bool { return strings.HasPrefix(e.EventType, p.EventTypePrefix) },
		typePrefix: func(p *EventPattern) string { return p.EventTypePrefix },
	},
	{
		name:  "Source",
		set:   func(p *EventPattern) bool { return p.Source != "" },
		match: func(p *EventPattern, e *FlovynEvent) bool { return e.Source == p.Source },
	},
}

// sameID reports whether the event's optional id is set and equal to the pattern's.
func sameID(have, want *uuid.UUID) bool { return have != nil && *have == *want }

// IDField names an id by which events are selected and backends index their subscribers: the hub's buckets,
// JetStream's per-workflow index.
type IDField uint8

// The id fields.
const (
	// NoID means no id: the tenant's whole feed.
	NoID IDField = iota
	// WorkflowID is the workflow execution id.
	WorkflowID
	// TaskID is the task execution id.
	TaskID
)

// IndexID is an id of one of the id fields.
type IndexID struct {
	// Field is the id field; NoID for the tenant's whole feed (ID is then nil).
	Field IDField
	// ID is the id.
	ID uuid.UUID
}

// Matches reports whether e passes every field of p that is set. Every backend delivers exactly the events Matches
// accepts.
func (p *EventPattern) Matches(e *FlovynEvent) bool {
	if e.TenantID != p.TenantID {
		return false
	}
	for i := range patternFields {
		if f := &patternFields[i]; f.set(p) && !f.match(p, e) {
			return false
		}
	}
	return true
}

// Matcher returns what Matches does, for a subscription to the tenant's topic, or nil when p filters on nothing but the
// tenant: every event of the topic matches then, and a fan-out to many such subscribers skips a call per event and
// subscriber. The function checks only the fields p sets.
func (p *EventPattern) Matcher() func(*FlovynEvent) bool {
	var set []*patternField
	for i := range patternFields {
		if f := &patternFields[i]; f.set(p) {
			set = append(set, f)
		}
	}
	switch len(set) {
	case 0:
		return nil
	case 1:
		f := set[0]
		return func(e *FlovynEvent) bool { return e.TenantID == p.TenantID && f.match(p, e) }
	}
	return func(e *FlovynEvent) bool {
		if e.TenantID != p.TenantID {
			return false
		}
		for _, f := range set {
			if !f.match(p, e) {
				return false
			}
		}
		return true
	}
}

// IndexID returns the id p selects events by, the most selective one (a task before a workflow), or the zero IndexID
// (NoID) when p names none. A subscriber waits in the index of that id.
func (p *EventPattern) IndexID() IndexID {
	for i := range patternFields {
		if f := &patternFields[i]; f.index != NoID && f.set(p) {
			return IndexID{Field: f.index, ID: f.id(p)}
		}
	}
	return IndexID{}
}

// AppendIndexIDs appends to dst the ids e can be selected by: the zero IndexID (the tenant's whole feed), then each id
// field e has. A publish delivers e to the subscribers indexed under any of them.
func (e *FlovynEvent) AppendIndexIDs(dst []IndexID) []IndexID {
	dst = append(dst, IndexID{})
	for i := range patternFields {
		if f := &patternFields[i]; f.index != NoID {
			if id := f.eventID(e); id != nil {
				dst = append(dst, IndexID{Field: f.index, ID: *id})
			}
		}
	}
	return dst
}

// Subject returns the NATS subscription subject for p: a superset of what Matches accepts (see subjects.EventFilter),
// narrowed by the type prefix.
func (p *EventPattern) Subject() string {
	prefix := ""
	for i := range patternFields {
		if f := &patternFields[i]; f.typePrefix != nil && f.set(p) {
			prefix = f.typePrefix(p)
		}
	}
	s, _ := subjects.EventFilter(p.TenantID.String(), prefix) // a UUID string is always a valid token
	return s
}
