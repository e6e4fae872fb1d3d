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

// Matches reports whether e passes every field of p that is set. Every backend delivers exactly the events Matches accepts.
func (p *EventPattern) Matches(e *FlovynEvent) bool {
	if e.TenantID != p.TenantID {
		return false
	}
	if p.WorkflowExecutionID != nil && (e.WorkflowExecutionID == nil || *e.WorkflowExecutionID != *p.WorkflowExecutionID) {
		return false
	}
	if p.TaskExecutionID != nil && (e.TaskExecutionID == nil || *e.TaskExecutionID != *p.TaskExecutionID) {
		return false
	}
	if p.EventTypePrefix != "" && !strings.HasPrefix(e.EventType, p.EventTypePrefix) {
		return false
	}
	return p.Source == "" || e.Source == p.Source
}

// matcher returns p.Matches for a subscription to the tenant's topic, or nil when p filters on nothing but the tenant:
// every event of the topic matches then, and a fan-out to many such subscribers skips a call per event and subscriber.
func (p *EventPattern) Matcher() func(*FlovynEvent) bool {
	if p.WorkflowExecutionID == nil && p.TaskExecutionID == nil && p.EventTypePrefix == "" && p.Source == "" {
		return nil
	}
	return p.Matches
}

// Subject returns the NATS subscription subject for p: a superset of what Matches accepts (see subjects.EventFilter).
func (p *EventPattern) Subject() string {
	s, _ := subjects.EventFilter(p.TenantID.String(), p.EventTypePrefix) // a UUID string is always a valid token
	return s
}
