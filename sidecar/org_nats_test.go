package sidecar

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// natsConnOf returns the NATS connection of a NATS-backed bus, or nil.
func natsConnOf(b Bus) *nats.Conn {
	switch b := b.(type) {
	case *JetStreamBus:
		return b.conn.nc
	case *NATSBus:
		return b.conn.nc
	}
	return nil
}

// TestOrgNamesOnNATS checks what other producers put on NATS: a lifecycle event whose body names the tenant as org_id,
// and a stream message whose tenant is in Flovyn-Org-Id, reach that tenant's subscribers, live and (JetStream) replayed;
// a body or headers naming two tenants are dropped and counted.
func TestOrgNamesOnNATS(t *testing.T) {
	for _, backend := range []string{"nats", "jetstream"} {
		t.Run(backend, func(t *testing.T) {
			cfg := jetstreamConfig(t)
			cfg.Backend = backend
			bus, err := OpenBus(t.Context(), cfg, NewLogger(LogConfig{Level: "error"}, nil))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { bus.Close() })
			nc := natsConnOf(bus)
			tenant, other, wf := uuid.New(), uuid.New(), uuid.NewString()
			events := Subscribe(t, bus, AllEvents(tenant), StartLive())
			streams := SubscribeStream(t, bus, tenant, wf, StartLive())
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
			if got := ExpectNext(t, events, "by.org"); got.TenantID != tenant {
				t.Fatalf("delivered to tenant %s; want %s", got.TenantID, tenant)
			}
			ExpectNext(t, events, "sentinel")

			subject := "flovyn.streams.workflow." + wf
			token := func(payload string, header ...string) *nats.Msg {
				m := &nats.Msg{Subject: subject, Header: nats.Header{},
					Data: fmt.Appendf(nil, `{"workflowExecutionId":%q,"type":"TOKEN","payload":%q}`, wf, payload)}
				for i := 0; i+1 < len(header); i += 2 {
					m.Header.Set(header[i], header[i+1])
				}
				return m
			}
			pub(token("org", OrgHeader, tenant.String()))
			pub(token("both", TenantHeader, tenant.String(), OrgHeader, strings.ToUpper(tenant.String())))
			pub(token("two", TenantHeader, tenant.String(), OrgHeader, other.String()))
			pub(token("theirs", OrgHeader, other.String()))
			pub(token("sentinel", TenantHeader, tenant.String()))
			for _, want := range []string{"org", "both", "sentinel"} {
				if got := Next(t, streams).Value; got.Payload != want || got.TenantID != tenant {
					t.Fatalf("stream event %q of tenant %s; want %q of %s", got.Payload, got.TenantID, want, tenant)
				}
			}
			if dc, ok := bus.(DropCounter); ok {
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
			replay := SubscribeStream(t, bus, tenant, wf, StartEarliest())
			for _, want := range []string{"org", "both", "sentinel"} {
				if got := Next(t, replay).Value; got.Payload != want {
					t.Fatalf("replayed stream event %q; want %q", got.Payload, want)
				}
			}
			replayEvents := Subscribe(t, bus, AllEvents(tenant), StartEarliest())
			ExpectNext(t, replayEvents, "by.org")
			ExpectNext(t, replayEvents, "sentinel")
		})
	}
}
