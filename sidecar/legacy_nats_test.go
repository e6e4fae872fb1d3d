package sidecar

import (
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/google/uuid"
)

// TestLegacyFromNATSIsALifecycleFrame: Flovyn's server publishes its lifecycle events as DATA stream events carrying a
// StateEventPayload, straight onto the workflow's stream subject, without a tenant. A subscriber gets each as the one
// lifecycle frame a publish of the same bytes over /v1/streams gives (never a data frame), filtered by types as a
// lifecycle event.
func TestLegacyFromNATSIsALifecycleFrame(t *testing.T) {
	for _, be := range natsBackends {
		t.Run(be.name, func(t *testing.T) {
			cfg := testConfig(t)
			b := be.open(t)
			t.Cleanup(func() { b.Close() })
			h := newHarness(t, cfg, b)
			tenant, wf, task := uuid.New(), uuid.New(), uuid.New()
			path := "/workflow-executions/" + wf.String() + "/stream"
			q := func(types string) url.Values {
				v := url.Values{"tenant_id": {tenant.String()}}
				if types != "" {
					v.Set("types", types)
				}
				return v
			}
			all := h.stream(t, h.unix, path, q(""), "")
			completed := h.stream(t, h.unix, path, q("task.completed"), "")
			tokens := h.stream(t, h.unix, path, q("tokens"), "")
			fq := q("")
			fq.Set("format", "flovyn")
			flovyn := h.stream(t, h.unix, path, fq, "")

			payload := fmt.Sprintf(`{"type":"Event","event":"TASK_COMPLETED","data":{"id":%q,"kind":"llm","status":"COMPLETED","executionCount":1,"maxRetries":3},"timestampMs":1764000000123}`, task)
			body := fmt.Sprintf(`{"workflowExecutionId":%q,"taskExecutionId":"","sequence":0,"type":"DATA","payload":%q,"timestampMs":1764000000124}`, wf, payload)
			// Over HTTP first: converted by the sidecar, and its lifecycle event names the workflow for the tenant.
			if _, err := h.unix.PublishStreams(t.Context(), []byte(body), "application/json", tenant.String()); err != nil {
				t.Fatal(err)
			}
			viaHTTP := all.next(t)
			if viaHTTP.Event != "lifecycle" || !strings.Contains(viaHTTP.Data, `"event_type":"task.completed"`) {
				t.Fatalf("frame %+v; want the converted lifecycle event", viaHTTP)
			}
			if got := completed.next(t); got.Data != viaHTTP.Data {
				t.Fatalf("types=task.completed got %+v", got)
			}
			waitOwner(t, b, wf.String(), tenant)
			// Then the same bytes straight onto NATS, as Flovyn's server sends them.
			nc := connOf(b)
			if err := nc.Publish("flovyn.streams.workflow."+wf.String(), []byte(body)); err != nil {
				t.Fatal(err)
			}
			viaNATS := all.next(t)
			if viaNATS.Event != "lifecycle" || viaNATS.Data != viaHTTP.Data {
				t.Fatalf("from NATS: frame %+v\nwant the same lifecycle frame as over HTTP: %s", viaNATS, viaHTTP.Data)
			}
			if got := completed.next(t); got.Event != "lifecycle" || got.Data != viaHTTP.Data {
				t.Fatalf("types=task.completed got %+v from NATS", got)
			}
			// Under Flovyn's framing both are the server's own frame back: event: data with the StateEventPayload.
			for _, from := range []string{"HTTP", "NATS"} {
				if got := flovyn.next(t); got.Event != "data" || !jsonEqual(got.Data, payload) {
					t.Fatalf("format=flovyn, from %s: %+v; want event: data with %s", from, got, payload)
				}
			}
			// A token after it: the tokens-only subscriber gets it first (no data frame, no lifecycle frame before).
			tok := fmt.Sprintf(`{"workflowExecutionId":%q,"type":"TOKEN","payload":"after"}`, wf)
			if err := nc.Publish("flovyn.streams.workflow."+wf.String(), []byte(tok)); err != nil {
				t.Fatal(err)
			}
			if got := tokens.next(t); got.Event != "token" || got.Data != "after" {
				t.Fatalf("types=tokens got %+v; want only the token", got)
			}
			if got := all.next(t); got.Event != "token" || got.Data != "after" {
				t.Fatalf("got %+v; want the token (one lifecycle frame per legacy event)", got)
			}
		})
	}
}
