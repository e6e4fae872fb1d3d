package natsbus

import (
	"fmt"
	"strings"
	"testing"

	"github.com/flovyn/eventhook/sidecar/bus"
	"github.com/flovyn/eventhook/sidecar/bus/bustest"
	"github.com/flovyn/eventhook/sidecar/event"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestOrgNamesOnNATS checks what other producers put on NATS: a lifecycle event whose body names the tenant as org_id,
// and a stream message whose tenant is in Flovyn-Org-Id, reach that tenant's subscribers, live and (JetStream) replayed;
// a body or headers naming two tenants are dropped and counted.
func TestOrgNamesOnNATS(t *testing.T) {
	for _, be := range natsBackends {
		backend := be.name
		t.Run(backend, func(t *testing.T) {
			b := be.open(t, testOptions(t))
			t.Cleanup(func() { b.Close() })
			nc := connOf(b)
			tenant, other, wf := uuid.New(), uuid.New(), uuid.NewString()
			events := bustest.Subscribe(t, b, event.AllEvents(tenant), bus.StartLive())
			streams := bustest.SubscribeStream(t, b, tenant, wf, bus.StartLive())
			js, err := jetstream.New(nc)
			if err != nil {
				t.Fatal(err)
			}
			pub := func(m *nats.Msg) { // stored and acknowledged with jetstream; in order on one connection with nats
				t.Helper()
				if backend == "jetstream" {
					_, err = js.PublishMsg(t.Context(), m)
				} else {
					err = nc.PublishMsg(m)
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			base := "flovyn.events." + tenant.String() + "."
			pub(&nats.Msg{Subject: base + "by.org", Data: fmt.Appendf(nil, `{"org_id":%q,"event_type":"by.org"}`, tenant)})
			pub(&nats.Msg{Subject: base + "two", Data: fmt.Appendf(nil, `{"tenant_id":%q,"org_id":%q,"event_type":"two"}`, tenant, other)})
			pub(&nats.Msg{Subject: base + "sentinel", Data: []byte(`{"event_type":"sentinel"}`)})
			if got := bustest.ExpectNext(t, events, "by.org"); got.TenantID != tenant {
				t.Fatalf("delivered to tenant %s; want %s", got.TenantID, tenant)
			}
			bustest.ExpectNext(t, events, "sentinel")

			subject := "flovyn.streams.workflow." + wf
			token := func(payload string, header ...string) *nats.Msg {
				m := &nats.Msg{Subject: subject, Header: nats.Header{},
					Data: fmt.Appendf(nil, `{"workflowExecutionId":%q,"type":"TOKEN","payload":%q}`, wf, payload)}
				for i := 0; i+1 < len(header); i += 2 {
					m.Header.Set(header[i], header[i+1])
				}
				return m
			}
			pub(token("org", event.OrgHeader, tenant.String()))
			pub(token("both", event.TenantHeader, tenant.String(), event.OrgHeader, strings.ToUpper(tenant.String())))
			pub(token("two", event.TenantHeader, tenant.String(), event.OrgHeader, other.String()))
			pub(token("theirs", event.OrgHeader, other.String()))
			pub(token("sentinel", event.TenantHeader, tenant.String()))
			for _, want := range []string{"org", "both", "sentinel"} {
				if got := bustest.Next(t, streams).Value; got.Payload != want || got.TenantID != tenant {
					t.Fatalf("stream event %q of tenant %s; want %q of %s", got.Payload, got.TenantID, want, tenant)
				}
			}
			if dc, ok := b.(bus.DropCounter); ok {
				invalid, untenanted := dc.Dropped()
				if invalid < 2 || untenanted != 0 {
					t.Fatalf("Dropped() = %d invalid, %d untenanted; want the two-tenant event and token counted invalid",
						invalid, untenanted)
				}
			}
			if backend != "jetstream" {
				return
			}
			// The replay reads the same headers from the store.
			replay := bustest.SubscribeStream(t, b, tenant, wf, bus.StartEarliest())
			for _, want := range []string{"org", "both", "sentinel"} {
				if got := bustest.Next(t, replay).Value; got.Payload != want {
					t.Fatalf("replayed stream event %q; want %q", got.Payload, want)
				}
			}
			replayEvents := bustest.Subscribe(t, b, event.AllEvents(tenant), bus.StartEarliest())
			bustest.ExpectNext(t, replayEvents, "by.org")
			bustest.ExpectNext(t, replayEvents, "sentinel")
		})
	}
}
