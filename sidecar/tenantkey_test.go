package sidecar

import (
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
)

// events.tenant_key: org_id writes every lifecycle event the daemon writes with org_id in place of tenant_id.

func TestAppendJSONAs(t *testing.T) {
	e := &FlovynEvent{ID: uuid.MustParse("9d7c6b5a-4e3f-4a1b-8c2d-1e0f9a8b7c6d"), TenantID: uuid.MustParse(tenantStr),
		EventType: "task.completed", Source: "system", Data: json.RawMessage(`{"a":1}`), TimestampMs: 1700000000123}
	e.WithWorkflow(uuid.MustParse(wfStr))
	// The default wire form, byte for byte.
	const tenantForm = `{"id":"9d7c6b5a-4e3f-4a1b-8c2d-1e0f9a8b7c6d","tenant_id":"` + tenantStr + `","workflow_execution_id":"` + wfStr +
		`","task_execution_id":null,"event_type":"task.completed","source":"system","data":{"a":1},"timestamp_ms":1700000000123,"correlation_id":null}`
	orgForm := strings.Replace(tenantForm, `"tenant_id"`, `"org_id"`, 1)
	for _, c := range []struct {
		name string
		got  []byte
		want string
	}{
		{"AppendJSON", e.AppendJSON(nil), tenantForm},
		{"MarshalJSON", must(json.Marshal(e)), tenantForm},
		{"AppendJSONAs(tenant_id)", e.AppendJSONAs(nil, TenantKeyTenantID), tenantForm},
		{`AppendJSONAs("")`, e.AppendJSONAs(nil, ""), tenantForm},
		{"AppendJSONAs(org_id)", e.AppendJSONAs(nil, TenantKeyOrgID), orgForm},
	} {
		if string(c.got) != c.want {
			t.Errorf("%s = %s; want %s", c.name, c.got, c.want)
		}
	}
	back, err := DecodeEvent([]byte(orgForm))
	if err != nil || string(back.AppendJSON(nil)) != tenantForm {
		t.Fatalf("DecodeEvent(org form) = %v, %v; want the same event", back, err)
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

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
			cfg.Events.TenantKey = TenantKeyOrgID
			bus, err := OpenBus(t.Context(), cfg, NewLogger(LogConfig{Level: "error"}, nil))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { bus.Close() })
			if c.unencoded {
				bus = unencodedBus{bus}
			}
			h := newHarness(t, cfg, bus)
			tenant, wf := uuid.New(), uuid.New()
			wantKey := `"org_id":"` + tenant.String() + `"`

			// The NATS body, as another subscriber of the cluster reads it.
			var natsBodies chan *nats.Msg
			if nc := natsConnOf(bus); nc != nil {
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
				case <-time.After(waitFor):
					t.Fatalf("no NATS message within %v", waitFor)
				}
			}
			if js, ok := bus.(*JetStreamBus); ok {
				stored, err := js.js.Stream(t.Context(), cfg.JetStream.EventsStream)
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
				replay := h.stream(t, h.unix, "/events/stream", url.Values{"org_id": {tenant.String()}}, CursorEarliest)
				checkOrgFrame(t, replay.next(t), wantKey, r.ID)
			}
		})
	}
}

// unencodedBus is a bus whose lifecycle deliveries have no shared SSE encoding (Delivery.Wire), as a bus of another
// package may give.
type unencodedBus struct{ Bus }

func (b unencodedBus) SubscribeEvents(ctx context.Context, p EventPattern, from Start) (Subscription[FlovynEvent], error) {
	s, err := b.Bus.SubscribeEvents(ctx, p, from)
	if err != nil {
		return nil, err
	}
	return unencodedSub{s}, nil
}

type unencodedSub struct{ Subscription[FlovynEvent] }

func (s unencodedSub) Next() (Delivery[FlovynEvent], bool) {
	d, ok := s.Subscription.Next()
	d.Wire = nil
	return d, ok
}

func (s unencodedSub) setNotify(f func()) { s.Subscription.(notifier).setNotify(f) }

func checkOrgFrame(t testing.TB, ev SSEEvent, wantKey, id string) {
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
	e, err := DecodeEvent(data)
	if err != nil || e.ID.String() != id {
		t.Fatalf("%s %s decodes to %v, %v; want the event %s", what, data, e, err, id)
	}
	if back := e.AppendJSONAs(nil, TenantKeyOrgID); string(back) != string(data) {
		t.Fatalf("%s %s; re-encoded %s", what, data, back)
	}
}
