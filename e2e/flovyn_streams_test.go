package e2e

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flovyn/eventhook/sidecar/client"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// flovynServer publishes as Flovyn's own server does: lifecycle events on flovyn.events.<tenant>.<type> (saying org_id,
// as it has since tenants became orgs), and stream events (tokens, and lifecycle events in their legacy form) on
// flovyn.streams.workflow.<id> with no tenant header.
type flovynServer struct {
	t  *testing.T
	js jetstream.JetStream
}

func (f flovynServer) lifecycle(tenant, wf uuid.UUID, eventType string) {
	f.t.Helper()
	body := fmt.Sprintf(`{"id":%q,"org_id":%q,"workflow_execution_id":%q,"task_execution_id":null,"event_type":%q,`+
		`"source":"flovyn-server","data":null,"timestamp_ms":%d,"correlation_id":null}`,
		uuid.New(), tenant, wf, eventType, time.Now().UnixMilli())
	if _, err := f.js.Publish(f.t.Context(), "flovyn.events."+tenant.String()+"."+eventType, []byte(body)); err != nil {
		f.t.Fatalf("server: publish %s: %v", eventType, err)
	}
}

func (f flovynServer) stream(wf uuid.UUID, typ, payload string) {
	f.t.Helper()
	body := fmt.Sprintf(`{"workflowExecutionId":%q,"taskExecutionId":"","sequence":0,"type":%q,"payload":%q,"timestampMs":%d}`,
		wf, typ, payload, time.Now().UnixMilli())
	msg := &nats.Msg{Subject: "flovyn.streams.workflow." + wf.String(), Data: []byte(body)} // no tenant header
	if _, err := f.js.PublishMsg(f.t.Context(), msg); err != nil {
		f.t.Fatalf("server: publish a %s stream event: %v", typ, err)
	}
}

// TestFlovynServerStreamsReachTheirTenant runs two sidecars on a nats-server beside what Flovyn's server publishes: a
// token before any lifecycle event names its workflow, the lifecycle event of tenant T, 24 legacy lifecycle events
// with sequence 0 (a chat run that suspends and resumes), another token. T's subscribers, on either sidecar and after
// a restart, get all of it in the stream's order — the legacy events as lifecycle frames, or as Flovyn's data frames
// under format=flovyn — and a subscriber of another tenant that guesses the workflow id gets none of it.
func TestFlovynServerStreamsReachTheirTenant(t *testing.T) {
	eh, ns := binaries(t)
	u, js := sharedServer(t, ns)
	createStream(t, js, flovynStreams)
	dirA, dirB := shortDir(t), shortDir(t)
	a := startSidecar(t, eh, dirA, sharedConfig(dirA, u, ""))
	b := startSidecar(t, eh, dirB, sharedConfig(dirB, u, ""))
	server := flovynServer{t: t, js: js}
	tenant, intruder, wf := uuid.New(), uuid.New(), uuid.New()
	path := "/workflow-executions/" + wf.String() + "/stream"
	q := url.Values{"tenant_id": {tenant.String()}}

	live := openSSE(t, a.client, path, q, "") // open before anything is published
	guess := openSSE(t, a.client, path, url.Values{"tenant_id": {intruder.String()}}, "")

	server.stream(wf, "TOKEN", "early") // before any lifecycle event names the workflow
	server.lifecycle(tenant, wf, "workflow.created")
	names := [2]string{"WORKFLOW_STARTED", "WORKFLOW_SUSPENDED"}
	for i := range 24 {
		server.stream(wf, "DATA", fmt.Sprintf(`{"type":"Event","event":%q,"data":{"id":%q,"kind":"chat","status":"RUNNING"},"timestampMs":%d}`,
			names[i%2], wf, time.Now().UnixMilli()+int64(i)))
	}
	server.stream(wf, "TOKEN", "late")

	// The stream's own order: early, 24 lifecycle events alternating started/suspended, late; the server's
	// workflow.created (from the lifecycle feed) anywhere among them.
	want := []string{"token:early"}
	for i := range 24 {
		want = append(want, "lifecycle:"+map[int]string{0: "workflow.started", 1: "workflow.suspended"}[i%2])
	}
	want = append(want, "token:late")
	check := func(name string, got []string) {
		t.Helper()
		var stream []string
		created := 0
		for _, g := range got {
			if g == "lifecycle:workflow.created" {
				created++
				continue
			}
			stream = append(stream, g)
		}
		if created != 1 || strings.Join(stream, " ") != strings.Join(want, " ") {
			t.Fatalf("%s got %v\nwant workflow.created once among %v", name, got, want)
		}
	}
	check("the live subscriber on sidecar A", kinds(t, frames(t, live, len(want)+1), tenant))
	check("a late subscriber on sidecar B", kinds(t, frames(t, openSSE(t, b.client, path, q, ""), len(want)+1), tenant))

	// Flovyn's framing: the legacy events as the server's own data frames.
	fq := url.Values{"tenant_id": {tenant.String()}, "format": {"flovyn"}, "types": {"workflow.suspended"}}
	for i, f := range frames(t, openSSE(t, a.client, path, fq, ""), 12) {
		var p struct{ Type, Event string }
		if f.Event != "data" || json.Unmarshal([]byte(f.Data), &p) != nil || p.Type != "Event" || p.Event != "WORKFLOW_SUSPENDED" {
			t.Fatalf("format=flovyn frame %d: %+v; want event: data with a WORKFLOW_SUSPENDED StateEventPayload", i, f)
		}
	}

	// The intruder got nothing: its first frame is the token it publishes itself, with its own tenant.
	body := fmt.Sprintf(`{"workflowExecutionId":%q,"type":"TOKEN","payload":"sentinel"}`, wf)
	if _, err := a.client.PublishStreams(t.Context(), []byte(body), "", intruder.String()); err != nil {
		t.Fatal(err)
	}
	if f := frames(t, guess, 1)[0]; f.Event != "token" || f.Data != "sentinel" {
		t.Fatalf("the other tenant's subscriber got %+v; want only its own sentinel", f)
	}

	// After a restart, sidecar B still knows whose workflow it is: from the index in JetStream.
	b.signal(syscall.SIGTERM)
	if code := b.wait(t, 20*time.Second); code != 0 {
		t.Fatalf("eventhook exited with %d after SIGTERM", code)
	}
	b = startSidecar(t, eh, dirB, sharedConfig(dirB, u, ""))
	check("a late subscriber on sidecar B after its restart", kinds(t, frames(t, openSSE(t, b.client, path, q, ""), len(want)+1), tenant))
	if n := b.metric(t, `eventhook_received_dropped_total{reason="untenanted"}`); n != 0 {
		t.Errorf("the restarted sidecar counted %v untenanted stream events; want 0 (the owner is in the index)", n)
	}
}

// kinds names each frame "<event>:<what>" (the payload of a token, the type of a lifecycle event), checking that every
// lifecycle event is tenant's.
func kinds(t *testing.T, fs []client.SSEEvent, tenant uuid.UUID) []string {
	t.Helper()
	var out []string
	for _, f := range fs {
		switch f.Event {
		case "lifecycle":
			var e struct {
				TenantID  string `json:"tenant_id"`
				EventType string `json:"event_type"`
			}
			if err := json.Unmarshal([]byte(f.Data), &e); err != nil || e.TenantID != tenant.String() {
				t.Fatalf("lifecycle frame %s (%v); want an event of tenant %s", f.Data, err, tenant)
			}
			out = append(out, "lifecycle:"+e.EventType)
		default:
			out = append(out, f.Event+":"+f.Data)
		}
	}
	return out
}
