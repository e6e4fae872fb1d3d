package natsbus

import (
	"sync"

	"github.com/flovyn/eventhook/sidecar/event"
	"github.com/google/uuid"
)

// Stream events without a tenant.
//
// Flovyn's own server publishes its stream events straight onto flovyn.streams.workflow.<id> with no Flovyn-Tenant-Id
// header. The only messages on NATS that name a tenant are lifecycle events: an event of tenant T whose
// workflow_execution_id is W (or, for a standalone task, whose task_execution_id is W) makes W's stream T's. The tenant
// an untenanted stream event goes to is, in this order:
//
//  1. the owner of its stream key: the first tenant whose lifecycle events named it. With jetstream the owner is read
//     from the per-workflow index (jsowner.go), which every sidecar of a cluster shares and which survives restarts;
//     with nats (no store) it is the first tenant this process saw name the key;
//  2. streams.untenanted_tenant_id, for a single-tenant deployment;
//  3. with streams.accept_untenanted, every tenant with subscribers of the key;
//  4. none: the event waits for its owner to be known (jetstream: it stays in the stream, and the owner's subscribers
//     are fed it from there once the owner is known; nats: a bounded queue per key), and is counted as untenanted.
//
// "First" makes the owner permanent: a tenant that names another tenant's workflow in its own lifecycle events later
// never gets that workflow's stream. A subscriber gets an untenanted event only when its tenant is the event's tenant by
// these rules, live or replayed.

// ownerCacheMax bounds the owners a bus remembers; the oldest are forgotten first (and read again when needed).
const ownerCacheMax = 100_000

// ownerTable remembers the owner of stream keys. An owner never changes once known, so the table never needs to be
// invalidated, only bounded.
type ownerTable struct {
	mu    sync.Mutex
	m     map[string]uuid.UUID
	order []string // keys in the order they were learnt, for the bound
	head  int
}

// get returns the owner of key, if known.
func (o *ownerTable) get(key string) (uuid.UUID, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	t, ok := o.m[key]
	return t, ok
}

// claim records tenant as the owner of key unless the key has one, and returns the owner.
func (o *ownerTable) claim(key string, tenant uuid.UUID) uuid.UUID {
	t, _ := o.claimNew(key, tenant)
	return t
}

// claimNew is claim, and also reports whether the claim made tenant the owner.
func (o *ownerTable) claimNew(key string, tenant uuid.UUID) (uuid.UUID, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if t, ok := o.m[key]; ok {
		return t, false
	}
	if o.m == nil {
		o.m = make(map[string]uuid.UUID)
	}
	if len(o.m) >= ownerCacheMax {
		delete(o.m, o.order[o.head])
		o.order[o.head] = ""
		if o.head++; o.head > len(o.order)/2 {
			o.order = append(o.order[:0], o.order[o.head:]...)
			o.head = 0
		}
	}
	o.m[key] = tenant
	o.order = append(o.order, key)
	return tenant, true
}

// claimsOf returns the stream keys a lifecycle event names: its workflow, and its task (a standalone task's stream is
// keyed by the task).
func claimsOf(e *event.FlovynEvent, buf *[2]string) []string {
	out := buf[:0]
	if e.WorkflowExecutionID != nil {
		out = append(out, e.WorkflowExecutionID.String())
	}
	if e.TaskExecutionID != nil {
		out = append(out, e.TaskExecutionID.String())
	}
	return out
}
