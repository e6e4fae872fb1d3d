package sidecar

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/flovyn/eventhook/sidecar/event"
	"github.com/google/uuid"
)

// Flovyn renamed tenants to orgs: org_id, Flovyn-Org-Id and ?org_id= are other names of tenant_id, Flovyn-Tenant-Id and
// ?tenant_id=, wherever the sidecar reads a tenant.

// TestOrgNamesOverHTTP checks every place the HTTP API reads a tenant: the body's org_id, the Flovyn-Org-Id header and
// the org_id query parameter are accepted as the tenant, and any two names of the tenant that disagree are a 400 naming
// both.
func TestOrgNamesOverHTTP(t *testing.T) {
	h := newHarness(t, nil, nil)
	tenant, other, wf := uuid.New(), uuid.New(), uuid.New()
	ts, ots := tenant.String(), other.String()
	wfPath := "/workflow-executions/" + wf.String() + "/stream"
	byQuery := h.stream(t, h.unix, wfPath, url.Values{"org_id": {ts}}, "")
	byHeader := h.streamHeader(t, h.unix, "/events/stream", nil, event.OrgHeader, ts)
	bothEqual := h.streamHeader(t, h.tcp, "/events/stream", url.Values{"tenant_id": {ts}, "org_id": {strings.ToUpper(ts)}},
		event.TenantHeader, ts, event.OrgHeader, ts)
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
		{"org header", "e.header", "/v1/events", "", fmt.Sprintf(`{"event_type":"e.header"%s}`, wfField(wf)), []string{event.OrgHeader, ts}},
		{"both headers equal", "e.headers", "/v1/events", "", fmt.Sprintf(`{"event_type":"e.headers"%s}`, wfField(wf)),
			[]string{event.TenantHeader, ts, event.OrgHeader, strings.ToUpper(ts)}},
		{"body org_id and org header", "e.match", "/v1/events", "", orgEvent(tenant, "e.match"), []string{event.OrgHeader, ts}},
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
	if status, _, body := h.do(t, "POST", "/v1/streams", "", tok, event.OrgHeader, ts); status != http.StatusAccepted {
		t.Fatalf("stream event with %s: status %d (%s)", event.OrgHeader, status, body)
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
		{"headers disagree", "POST", "/v1/events", "", `{"event_type":"x"}`, []string{event.TenantHeader, ts, event.OrgHeader, ots},
			event.OrgHeader, "disagrees with " + event.TenantHeader + " " + ts},
		{"body org_id and tenant header disagree", "POST", "/v1/events", "", orgEvent(tenant, "x"), []string{event.TenantHeader, ots},
			"tenant_id", "disagrees with the " + event.TenantHeader + " header " + ots},
		{"body tenant_id and org header disagree", "POST", "/v1/events", "", eventJSON(tenant, "x", ""), []string{event.OrgHeader, ots},
			"tenant_id", "disagrees with the " + event.OrgHeader + " header " + ots},
		{"bad org header", "POST", "/v1/events", "", `{"event_type":"x"}`, []string{event.OrgHeader, "acme"}, event.OrgHeader, "UUID"},
		{"stream headers disagree", "POST", "/v1/streams", "", tok, []string{event.TenantHeader, ts, event.OrgHeader, ots}, event.OrgHeader, "disagrees"},
		{"stream without tenant", "POST", "/v1/streams", "", tok, nil, event.TenantHeader, event.OrgHeader},
		{"query disagrees", "GET", "/events/stream?tenant_id=" + ts + "&org_id=" + ots, "", "", nil, "org_id", "disagrees with tenant_id " + ts},
		{"query org_id and tenant header disagree", "GET", wfPath + "?org_id=" + ts, "", "", []string{event.TenantHeader, ots},
			"org_id", "disagrees with the " + event.TenantHeader + " header"},
		{"stream headers disagree on SSE", "GET", wfPath, "", "", []string{event.OrgHeader, ts, event.TenantHeader, ots}, event.OrgHeader, "disagrees with " + event.TenantHeader},
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
	if status != http.StatusNoContent || !contains(allowed, event.OrgHeader) || !contains(allowed, event.TenantHeader) {
		t.Fatalf("preflight: %d, Access-Control-Allow-Headers %q; want %s and %s", status, allowed, event.TenantHeader, event.OrgHeader)
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
