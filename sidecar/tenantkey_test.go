package sidecar

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/flovyn/eventhook/sidecar/bus"
	"github.com/flovyn/eventhook/sidecar/bus/bustest"
	"github.com/flovyn/eventhook/sidecar/client"
	"github.com/flovyn/eventhook/sidecar/event"
	"github.com/flovyn/eventhook/sidecar/natsbus"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// events.tenant_key: org_id writes every lifecycle event the daemon writes with org_id in place of tenant_id.

// TestTenantKeyOrgOutput runs the daemon with events.tenant_key: org_id on each backend: every lifecycle event it writes
// — SSE frames, live and replayed, and the NATS message bodies — carries org_id and no tenant_id, and reads back as the
// same event. The last case is a bus whose deliveries carry no shared encoding: the SSE writer encodes them itself.
func TestTenantKeyOrgOutput(t *testing.T) {
	for _, c := range []struct {
		name, backend string
		unencoded     bool
	}{{"memory", "memory", false}, {"nats", "nats", false}, {"jetstream", "jetstream", false}, {"unencoded", "memory", true}} {
		t.Run(c.name, func(t *testing.T) {
			backend := c.backend
			cfg := testConfig(t)
			cfg.Backend = backend
			cfg.NATS.EmbeddedListen = ""
			cfg.NATS.StoreDir = t.TempDir()
			cfg.Events.TenantKey = event.TenantKeyOrgID
			eb := openBus(t, cfg)
			t.Cleanup(func() { eb.Close() })
			if c.unencoded {
				eb = unencodedBus{eb}
			}
			h := newHarness(t, cfg, eb)
			tenant, wf := uuid.New(), uuid.New()
			wantKey := `"org_id":"` + tenant.String() + `"`

			// The NATS body, as another subscriber of the cluster reads it.
			var natsBodies chan *nats.Msg
			if nc := connOf(eb); nc != nil {
				natsBodies = make(chan *nats.Msg, 16)
				sub, err := nc.ChanSubscribe("flovyn.events."+tenant.String()+".>", natsBodies)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { sub.Unsubscribe() })
				if err := nc.Flush(); err != nil {
					t.Fatal(err)
				}
			}
			live := h.stream(t, h.unix, "/workflow-executions/"+wf.String()+"/stream", url.Values{"tenant_id": {tenant.String()}}, "")
			r := h.publish(t, eventJSON(tenant, "workflow.started", wfField(wf)))
			checkOrgFrame(t, live.next(t), wantKey, r.ID)

			if natsBodies != nil {
				select {
				case m := <-natsBodies:
					checkOrgJSON(t, "NATS body", m.Data, wantKey, r.ID)
				case <-time.After(bustest.WaitFor):
					t.Fatalf("no NATS message within %v", bustest.WaitFor)
				}
			}
			if js, ok := eb.(*natsbus.JetStream); ok {
				jsc, err := jetstream.New(js.Conn())
				if err != nil {
					t.Fatal(err)
				}
				stored, err := jsc.Stream(t.Context(), cfg.JetStream.EventsStream)
				if err != nil {
					t.Fatal(err)
				}
				m, err := stored.GetLastMsgForSubject(t.Context(), "flovyn.events."+tenant.String()+".workflow.started")
				if err != nil {
					t.Fatal(err)
				}
				checkOrgJSON(t, "stored message", m.Data, wantKey, r.ID)
			}
			// A replay (earliest), where the backend holds the event: from a store or a ring.
			if backend != "nats" {
				replay := h.stream(t, h.unix, "/events/stream", url.Values{"org_id": {tenant.String()}}, event.CursorEarliest)
				checkOrgFrame(t, replay.next(t), wantKey, r.ID)
			}
		})
	}
}

// unencodedBus is a bus whose lifecycle deliveries have no shared SSE encoding (Delivery.Wire), as a bus of another
// package may give.
type unencodedBus struct{ bus.Bus }

func (b unencodedBus) SubscribeEvents(ctx context.Context, p event.EventPattern, from bus.Start) (bus.Subscription[event.FlovynEvent], error) {
	s, err := b.Bus.SubscribeEvents(ctx, p, from)
	if err != nil {
		return nil, err
	}
	return unencodedSub{s}, nil
}

type unencodedSub struct {
	bus.Subscription[event.FlovynEvent]
}

func (s unencodedSub) Next() (bus.Delivery[event.FlovynEvent], bool) {
	d, ok := s.Subscription.Next()
	d.Wire = nil
	return d, ok
}

func checkOrgFrame(t testing.TB, ev client.SSEEvent, wantKey, id string) {
	t.Helper()
	if ev.Event != "lifecycle" {
		t.Fatalf("frame %+v; want a lifecycle event", ev)
	}
	checkOrgJSON(t, "SSE frame", []byte(ev.Data), wantKey, id)
}

// checkOrgJSON requires the JSON of event id with its tenant under org_id only.
func checkOrgJSON(t testing.TB, what string, data []byte, wantKey, id string) {
	t.Helper()
	if !strings.Contains(string(data), wantKey) || strings.Contains(string(data), "tenant_id") {
		t.Fatalf("%s %s; want %s and no tenant_id", what, data, wantKey)
	}
	e, err := event.DecodeEvent(data)
	if err != nil || e.ID.String() != id {
		t.Fatalf("%s %s decodes to %v, %v; want the event %s", what, data, e, err, id)
	}
	if back := e.AppendJSONAs(nil, event.TenantKeyOrgID); string(back) != string(data) {
		t.Fatalf("%s %s; re-encoded %s", what, data, back)
	}
}
