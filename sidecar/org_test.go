package sidecar

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Flovyn renamed tenants to orgs: org_id, Flovyn-Org-Id and ?org_id= are other names of tenant_id, Flovyn-Tenant-Id and
// ?tenant_id=, wherever the sidecar reads a tenant.

const orgOtherStr = "7c1e5a9b-2d3f-4b6a-8e0c-9f1a2b3c4d5e"

func TestDecodeEventOrgID(t *testing.T) {
	const tail = `,"event_type":"workflow.completed"}`
	tests := []struct {
		name      string
		in        string
		want      string // the tenant, when accepted
		fast      bool   // the fast decoder takes it (no detour through the general path)
		field     string // when refused: the field named
		msgSubstr string
	}{
		{name: "org_id alone", in: `{"org_id":"` + tenantStr + `"` + tail, want: tenantStr, fast: true},
		{name: "both equal", in: `{"tenant_id":"` + tenantStr + `","org_id":"` + tenantStr + `"` + tail, want: tenantStr, fast: true},
		{name: "both equal, org first", in: `{"org_id":"` + tenantStr + `","tenant_id":"` + tenantStr + `"` + tail, want: tenantStr, fast: true},
		{name: "both equal, cases differ", in: `{"tenant_id":"` + strings.ToUpper(tenantStr) + `","org_id":"` + tenantStr + `"` + tail,
			want: tenantStr, fast: true},
		{name: "org_id null", in: `{"tenant_id":"` + tenantStr + `","org_id":null` + tail, want: tenantStr, fast: true},
		{name: "tenant_id null", in: `{"tenant_id":null,"org_id":"` + tenantStr + `"` + tail, want: tenantStr, fast: true},
		{name: "org_id escaped", in: `{"org_id":"` + tenantStr[:35] + `\u0031"` + tail, want: tenantStr[:35] + "1"},
		{name: "disagree", in: `{"tenant_id":"` + tenantStr + `","org_id":"` + orgOtherStr + `"` + tail,
			field: "org_id", msgSubstr: "disagrees with tenant_id " + tenantStr},
		{name: "disagree, org first", in: `{"org_id":"` + orgOtherStr + `","tenant_id":"` + tenantStr + `"` + tail,
			field: "org_id", msgSubstr: "disagrees with tenant_id"},
		{name: "disagree with a nil tenant_id", in: `{"tenant_id":"00000000-0000-0000-0000-000000000000","org_id":"` + tenantStr + `"` + tail,
			field: "org_id", msgSubstr: "disagrees with tenant_id"},
		{name: "nil org_id disagrees", in: `{"tenant_id":"` + tenantStr + `","org_id":"00000000-0000-0000-0000-000000000000"` + tail,
			field: "org_id", msgSubstr: "disagrees with tenant_id"},
		{name: "bad org_id", in: `{"org_id":"acme"` + tail, field: "org_id", msgSubstr: "not a UUID"},
		{name: "org_id twice", in: `{"org_id":"` + tenantStr + `","org_id":"` + tenantStr + `"` + tail, field: "org_id", msgSubstr: "twice"},
		{name: "camelCase orgId", in: `{"orgId":"` + tenantStr + `"` + tail, field: "orgId", msgSubstr: `did you mean "org_id"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := DecodeEvent([]byte(tt.in))
			if tt.field != "" {
				var ve *ValidationError
				if !errors.As(err, &ve) || !errors.Is(err, ErrInvalidEvent) {
					t.Fatalf("DecodeEvent(%s) = %v; want a *ValidationError", tt.in, err)
				}
				if fe := ve.Errors[0]; fe.Field != tt.field || !strings.Contains(fe.Message, tt.msgSubstr) {
					t.Fatalf("DecodeEvent(%s) error %+v; want field %q and a message containing %q", tt.in, fe, tt.field, tt.msgSubstr)
				}
				if _, ok := decodeEventFast([]byte(tt.in)); ok {
					t.Fatalf("decodeEventFast(%s) accepted what the general path refuses", tt.in)
				}
				return
			}
			if err != nil {
				t.Fatalf("DecodeEvent(%s) = %v; want the tenant %s", tt.in, err, tt.want)
			}
			if e.TenantID.String() != tt.want {
				t.Fatalf("DecodeEvent(%s).TenantID = %s; want %s", tt.in, e.TenantID, tt.want)
			}
			fast, ok := decodeEventFast([]byte(tt.in))
			if ok != tt.fast {
				t.Fatalf("decodeEventFast(%s) ok = %v; want %v", tt.in, ok, tt.fast)
			}
			slow, err := decodeEventSlow([]byte(tt.in))
			if err != nil || slow.TenantID != e.TenantID || (ok && fast.TenantID != e.TenantID) {
				t.Fatalf("the decoders disagree on %s: slow %v (%v), fast %v", tt.in, slow, err, fast)
			}
		})
	}
}

// TestOrgNamesOverHTTP checks every place the HTTP API reads a tenant: the body's org_id, the Flovyn-Org-Id header and
// the org_id query parameter are accepted as the tenant, and any two names of the tenant that disagree are a 400 naming
// both.
func TestOrgNamesOverHTTP(t *testing.T) {
	h := newHarness(t, nil, nil)
	tenant, other, wf := uuid.New(), uuid.New(), uuid.New()
	ts, ots := tenant.String(), other.String()
	wfPath := "/workflow-executions/" + wf.String() + "/stream"
	byQuery := h.stream(t, h.unix, wfPath, url.Values{"org_id": {ts}}, "")
	byHeader := h.streamHeader(t, h.unix, "/events/stream", nil, OrgHeader, ts)
	bothEqual := h.streamHeader(t, h.tcp, "/events/stream", url.Values{"tenant_id": {ts}, "org_id": {strings.ToUpper(ts)}},
		TenantHeader, ts, OrgHeader, ts)
	others := h.stream(t, h.unix, "/events/stream", url.Values{"org_id": {ots}}, "")

	orgEvent := func(id uuid.UUID, typ string) string {
		return fmt.Sprintf(`{"org_id":%q,"event_type":%q%s}`, id, typ, wfField(wf))
	}
	accepted := []struct {
		name, typ, path, contentType, body string
		header                             []string
	}{
		{"body org_id", "e.body", "/v1/events", "", orgEvent(tenant, "e.body"), nil},
		{"body both equal", "e.both", "/v1/events", "", fmt.Sprintf(`{"tenant_id":%q,"org_id":%q,"event_type":"e.both"%s}`, tenant, tenant, wfField(wf)), nil},
		{"org header", "e.header", "/v1/events", "", fmt.Sprintf(`{"event_type":"e.header"%s}`, wfField(wf)), []string{OrgHeader, ts}},
		{"both headers equal", "e.headers", "/v1/events", "", fmt.Sprintf(`{"event_type":"e.headers"%s}`, wfField(wf)),
			[]string{TenantHeader, ts, OrgHeader, strings.ToUpper(ts)}},
		{"body org_id and org header", "e.match", "/v1/events", "", orgEvent(tenant, "e.match"), []string{OrgHeader, ts}},
		{"batch of org_id", "e.batch", "/v1/events/batch", "application/x-ndjson", orgEvent(tenant, "e.batch"), nil},
	}
	for _, tt := range accepted {
		status, _, body := h.do(t, "POST", tt.path, tt.contentType, tt.body, tt.header...)
		if status != http.StatusAccepted {
			t.Fatalf("%s: status %d (%s); want 202", tt.name, status, body)
		}
		for _, s := range []*sse{byQuery, byHeader, bothEqual} {
			if got := s.nextLifecycle(t, tt.typ); got.TenantID != tenant {
				t.Fatalf("%s: delivered to tenant %s; want %s", tt.name, got.TenantID, tenant)
			}
		}
	}
	// A stream event whose tenant is given by Flovyn-Org-Id.
	tok := fmt.Sprintf(`{"workflowExecutionId":%q,"type":"TOKEN","payload":"hi"}`, wf)
	if status, _, body := h.do(t, "POST", "/v1/streams", "", tok, OrgHeader, ts); status != http.StatusAccepted {
		t.Fatalf("stream event with %s: status %d (%s)", OrgHeader, status, body)
	}
	if ev := byQuery.next(t); ev.Event != "token" || ev.Data != "hi" {
		t.Fatalf("frame %+v; want the token", ev)
	}

	refused := []struct {
		name, method, path, contentType, body string
		header                                []string
		field, msgSubstr                      string
	}{
		{"body disagrees", "POST", "/v1/events", "", fmt.Sprintf(`{"tenant_id":%q,"org_id":%q,"event_type":"x"}`, tenant, other), nil,
			"org_id", "disagrees with tenant_id " + ts},
		{"batch entry disagrees", "POST", "/v1/events/batch", "application/x-ndjson",
			orgEvent(tenant, "x") + "\n" + fmt.Sprintf(`{"tenant_id":%q,"org_id":%q,"event_type":"x"}`, tenant, other), nil,
			"[1].org_id", "disagrees with tenant_id"},
		{"headers disagree", "POST", "/v1/events", "", `{"event_type":"x"}`, []string{TenantHeader, ts, OrgHeader, ots},
			OrgHeader, "disagrees with " + TenantHeader + " " + ts},
		{"body org_id and tenant header disagree", "POST", "/v1/events", "", orgEvent(tenant, "x"), []string{TenantHeader, ots},
			"tenant_id", "disagrees with the " + TenantHeader + " header " + ots},
		{"body tenant_id and org header disagree", "POST", "/v1/events", "", eventJSON(tenant, "x", ""), []string{OrgHeader, ots},
			"tenant_id", "disagrees with the " + OrgHeader + " header " + ots},
		{"bad org header", "POST", "/v1/events", "", `{"event_type":"x"}`, []string{OrgHeader, "acme"}, OrgHeader, "UUID"},
		{"stream headers disagree", "POST", "/v1/streams", "", tok, []string{TenantHeader, ts, OrgHeader, ots}, OrgHeader, "disagrees"},
		{"stream without tenant", "POST", "/v1/streams", "", tok, nil, TenantHeader, OrgHeader},
		{"query disagrees", "GET", "/events/stream?tenant_id=" + ts + "&org_id=" + ots, "", "", nil, "org_id", "disagrees with tenant_id " + ts},
		{"query org_id and tenant header disagree", "GET", wfPath + "?org_id=" + ts, "", "", []string{TenantHeader, ots},
			"org_id", "disagrees with the " + TenantHeader + " header"},
		{"stream headers disagree on SSE", "GET", wfPath, "", "", []string{OrgHeader, ts, TenantHeader, ots}, OrgHeader, "disagrees with " + TenantHeader},
		{"bad org query", "GET", "/events/stream?org_id=acme", "", "", nil, "org_id", "UUID"},
		{"no tenant on SSE", "GET", "/events/stream", "", "", nil, "tenant_id", "org_id"},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			status, hdr, body := h.do(t, tt.method, tt.path, tt.contentType, tt.body, tt.header...)
			p := problemOf(t, status, hdr, body, http.StatusBadRequest)
			if len(p.Errors) == 0 || p.Errors[0].Field != tt.field || !strings.Contains(p.Errors[0].Message, tt.msgSubstr) {
				t.Fatalf("errors %+v; want field %q with a message containing %q", p.Errors, tt.field, tt.msgSubstr)
			}
		})
	}
	// Nothing refused reached anyone: the sentinel comes next, and the other tenant got nothing at all.
	h.publish(t, orgEvent(tenant, "sentinel"))
	byHeader.nextLifecycle(t, "sentinel")
	h.publish(t, orgEvent(other, "theirs"))
	others.nextLifecycle(t, "theirs")
}

func TestCORSAllowsOrgHeader(t *testing.T) {
	cfg := testConfig(t)
	cfg.HTTP.CORSOrigins = []string{"https://app.example"}
	h := newHarness(t, cfg, nil)
	status, hdr, _ := h.do(t, "OPTIONS", "/events/stream", "", "", "Origin", "https://app.example",
		"Access-Control-Request-Method", "GET", "Access-Control-Request-Headers", "flovyn-org-id")
	allowed := strings.Split(hdr.Get("Access-Control-Allow-Headers"), ", ")
	if status != http.StatusNoContent || !contains(allowed, OrgHeader) || !contains(allowed, TenantHeader) {
		t.Fatalf("preflight: %d, Access-Control-Allow-Headers %q; want %s and %s", status, allowed, TenantHeader, OrgHeader)
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

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
			events := subscribe(t, bus, AllEvents(tenant), StartLive())
			streams := subscribeStream(t, bus, tenant, wf, StartLive())
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
			if got := expectNext(t, events, "by.org"); got.TenantID != tenant {
				t.Fatalf("delivered to tenant %s; want %s", got.TenantID, tenant)
			}
			expectNext(t, events, "sentinel")

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
				if got := next(t, streams).Value; got.Payload != want || got.TenantID != tenant {
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
			replay := subscribeStream(t, bus, tenant, wf, StartEarliest())
			for _, want := range []string{"org", "both", "sentinel"} {
				if got := next(t, replay).Value; got.Payload != want {
					t.Fatalf("replayed stream event %q; want %q", got.Payload, want)
				}
			}
			replayEvents := subscribe(t, bus, AllEvents(tenant), StartEarliest())
			expectNext(t, replayEvents, "by.org")
			expectNext(t, replayEvents, "sentinel")
		})
	}
}
