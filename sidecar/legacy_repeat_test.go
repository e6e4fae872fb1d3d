package sidecar

import (
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/flovyn/eventhook/sidecar/bus"
	"github.com/google/uuid"
)

// TestRepeatedLegacyEventsAreKept is what Flovyn's server sends for a chat run: the same names again and again in one
// workflow, every one with sequence 0 and no task id, told apart only by their time. Each is a lifecycle event of its
// own, on every backend; only a byte-for-byte retry is a duplicate. The id used to be derived from (workflow, task,
// sequence, name): 22 of these 24 were answered duplicate and dropped.
func TestRepeatedLegacyEventsAreKept(t *testing.T) {
	for _, backend := range []string{"memory", "nats", "jetstream"} {
		t.Run(backend, func(t *testing.T) {
			var eb bus.Bus
			switch backend {
			case "nats":
				eb = newNATSTestBus(t)
			case "jetstream":
				eb = newJetStreamTestBus(t)
			}
			if eb != nil {
				t.Cleanup(func() { eb.Close() })
			}
			testRepeatedLegacy(t, newHarness(t, nil, eb))
		})
	}
}

func testRepeatedLegacy(t *testing.T, h *harness) {
	const n = 24
	tenant, wf := uuid.New(), uuid.New()
	s := h.stream(t, h.unix, "/workflow-executions/"+wf.String()+"/stream", url.Values{"tenant_id": {tenant.String()}}, "")
	names := [2]string{"WORKFLOW_STARTED", "WORKFLOW_SUSPENDED"}
	lines := make([]string, n)
	for i := range lines {
		payload := fmt.Sprintf(`{"type":"Event","event":%q,"data":{"id":%q,"kind":"chat","status":"RUNNING"},"timestampMs":%d}`,
			names[i%2], wf, 1764000000000+int64(i)*1000)
		lines[i] = fmt.Sprintf(`{"workflowExecutionId":%q,"taskExecutionId":"","sequence":0,"type":"DATA","payload":%q}`, wf, payload)
	}
	res, err := h.unix.PublishStreams(t.Context(), []byte(strings.Join(lines, "\n")), "application/x-ndjson", tenant.String())
	if err != nil || len(res) != n {
		t.Fatalf("publish: %d results, %v", len(res), err)
	}
	ids := map[string]bool{}
	for i, r := range res {
		if r.Duplicate || r.ID == "" || ids[r.ID] {
			t.Fatalf("entry %d: %+v; want a new lifecycle event with an id of its own", i, r)
		}
		ids[r.ID] = true
	}
	for i := range n {
		want := "workflow.started"
		if i%2 == 1 {
			want = "workflow.suspended"
		}
		if e := s.nextLifecycle(t, want); e.ID.String() != res[i].ID {
			t.Fatalf("lifecycle event %d has id %s; want %s (the publish's order)", i, e.ID, res[i].ID)
		}
	}
	// A byte-for-byte retry (of one entry, then of the whole request) is a duplicate with the original sequence.
	again, err := h.unix.PublishStreams(t.Context(), []byte(lines[5]), "application/json", tenant.String())
	if err != nil || len(again) != 1 || !again[0].Duplicate || again[0].ID != res[5].ID || again[0].Sequence != res[5].Sequence {
		t.Fatalf("retry of entry 5: %+v, %v; want duplicate of %+v", again, err, res[5])
	}
	all, err := h.unix.PublishStreams(t.Context(), []byte(strings.Join(lines, "\n")), "application/x-ndjson", tenant.String())
	if err != nil || len(all) != n {
		t.Fatalf("retry of the request: %d results, %v", len(all), err)
	}
	for i, r := range all {
		if !r.Duplicate || r.Sequence != res[i].Sequence {
			t.Fatalf("retried entry %d: %+v; want duplicate of sequence %d", i, r, res[i].Sequence)
		}
	}
	// The same bytes for another tenant are that tenant's own event.
	other, err := h.unix.PublishStreams(t.Context(), []byte(lines[5]), "application/json", uuid.NewString())
	if err != nil || len(other) != 1 || other[0].Duplicate || other[0].ID == res[5].ID {
		t.Fatalf("entry 5 for another tenant: %+v, %v; want a new event with another id", other, err)
	}
}
