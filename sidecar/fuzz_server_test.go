package sidecar

import (
	"encoding/json"
	"errors"
	"io"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/flovyn/eventhook/sidecar/bus"
	"github.com/flovyn/eventhook/sidecar/config"
	"github.com/flovyn/eventhook/sidecar/event"
	"github.com/flovyn/eventhook/subjects"
	"github.com/google/uuid"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/prometheus/client_golang/prometheus"
)

// Fixtures: two tenants and a workflow (the event package's tests use the same).
const (
	tenantStr  = "3f0c2b1e-8a4d-4c61-9f0e-2d7b5a9c00e1"
	wfStr      = "0b5d8f4e-1c2a-4e3b-8d7f-6a5b4c3d2e1f"
	fzOtherStr = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"
	fzTaskStr  = "5e4d3c2b-1a0f-4e9d-8c7b-6a5f4e3d2c1b"
)

// fzLegacyPayload returns a legacy StateEventPayload carrying the event name and the timestamp, as a JSON string value.
func fzLegacyPayload(name string, ts int64) string {
	p, _ := json.Marshal(`{"type":"Event","event":"` + name + `","data":{"taskId":"t","state":"COMPLETED"},"timestampMs":` +
		strconv.FormatInt(ts, 10) + `}`)
	return string(p)
}

// fzStreamJSON returns a stream event in Flovyn's camelCase wire form.
func fzStreamJSON(wf, task string, seq int, typ, payload string) string {
	return `{"workflowExecutionId":"` + wf + `","taskExecutionId":"` + task + `","sequence":` + strconv.Itoa(seq) +
		`,"type":"` + typ + `","payload":` + payload + `,"timestampMs":1700000000000}`
}

// FuzzEventValidateIsolation checks tenant isolation on the publish path: whatever the body and the
// Flovyn-Tenant-Id header, an event that is accepted belongs to the body's tenant, else the header's, else the default
// tenant, and its subject lies under flovyn.events.<that tenant>. — never in another tenant's namespace. The same holds
// for stream events and the lifecycle events converted from legacy payloads. The body's tenant may be named tenant_id
// or org_id (a body naming two tenants is refused), and the header is tried under both its names, Flovyn-Tenant-Id and
// Flovyn-Org-Id.
func FuzzEventValidateIsolation(f *testing.F) {
	ev := func(extra string) string {
		return `{"event_type":"workflow.completed"` + extra + `}`
	}
	for _, s := range []struct{ body, header string }{
		{ev(`,"tenant_id":"` + tenantStr + `"`), ""},
		{ev(`,"tenant_id":"` + tenantStr + `"`), tenantStr},
		{ev(`,"tenant_id":"` + strings.ToUpper(tenantStr) + `"`), tenantStr},
		{ev(`,"tenant_id":"` + tenantStr + `"`), fzOtherStr},
		{ev(``), fzOtherStr},
		{ev(``), strings.ToUpper(fzOtherStr)},
		{ev(``), ""},
		{ev(``), "00000000-0000-0000-0000-000000000000"},
		{ev(`,"tenant_id":"00000000-0000-0000-0000-000000000000"`), fzOtherStr},
		{ev(`,"tenant_id":null`), fzOtherStr},
		{ev(`,"tenant_id":"` + tenantStr + `.x"`), ""},
		{ev(`,"tenant_id":"{` + tenantStr + `}"`), ""},
		{ev(`,"tenant_id":"` + strings.ReplaceAll(tenantStr, "-", "") + `"`), ""},
		{ev(`,"tenantId":"` + tenantStr + `"`), ""},
		{ev(``), "urn:uuid:" + fzOtherStr},
		{ev(``), " " + fzOtherStr},
		{ev(``), "*"},
		{ev(``), ">"},
		{`{"event_type":"` + fzOtherStr + `.workflow.completed","tenant_id":"` + tenantStr + `"}`, ""},
		{`{"event_type":"*","tenant_id":"` + tenantStr + `"}`, ""},
		{`{"event_type":">","tenant_id":"` + tenantStr + `"}`, ""},
		{`{"event_type":"a.b\u0000","tenant_id":"` + tenantStr + `"}`, ""},
		{fzStreamJSON(wfStr, "", 1, "TOKEN", `"x"`), tenantStr},
		{fzStreamJSON(wfStr, "", 1, "TOKEN", `"x"`), ""},
		{fzStreamJSON(wfStr, fzTaskStr, 7, "DATA", fzLegacyPayload("TASK_COMPLETED", 1)), fzOtherStr},
		{fzStreamJSON(fzOtherStr, "", 7, "DATA", fzLegacyPayload("WORKFLOW_COMPLETED", 1)), tenantStr},
		{fzStreamJSON(wfStr, "", 7, "DATA", `"{\"type\":\"Event\",\"event\":\"X\",\"tenant_id\":\"`+fzOtherStr+`\"}"`), tenantStr},
		{ev(`,"org_id":"` + tenantStr + `"`), ""},
		{ev(`,"org_id":"` + tenantStr + `"`), fzOtherStr},
		{ev(`,"org_id":"` + tenantStr + `","tenant_id":"` + fzOtherStr + `"`), ""},
		{ev(`,"org_id":"` + tenantStr + `","tenant_id":"` + strings.ToUpper(tenantStr) + `"`), tenantStr},
		{ev(`,"org_id":null,"tenant_id":"` + tenantStr + `"`), ""},
		{ev(`,"org_id":"00000000-0000-0000-0000-000000000000"`), fzOtherStr},
		{ev(`,"tenant_id":"00000000-0000-0000-0000-000000000000","org_id":"` + tenantStr + `"`), fzOtherStr},
		{ev(`,"orgId":"` + tenantStr + `"`), ""},
	} {
		f.Add([]byte(s.body), s.header)
	}
	newServer := func(defaultTenant string) *Server {
		cfg := config.Default()
		cfg.Backend = "memory"
		cfg.Events.DefaultTenantID = defaultTenant
		eb := bus.NewMemory(bus.MemoryOptions{})
		f.Cleanup(func() { eb.Close() })
		srv, err := NewServer(Options{Config: cfg, Bus: eb, Logger: config.NewLogger(config.Log{Level: "error"}, io.Discard),
			Registry: prometheus.NewRegistry()})
		if err != nil {
			f.Fatal(err)
		}
		return srv
	}
	servers := []*Server{newServer(""), newServer(fzOtherStr)}
	f.Fuzz(func(t *testing.T, body []byte, header string) {
		var headerTenant uuid.UUID
		if id, err := uuid.Parse(header); err == nil && len(header) == 36 {
			headerTenant = id
		}
		var bodyTenant, bodyOrg uuid.UUID
		var named struct {
			TenantID *string `json:"tenant_id"`
			OrgID    *string `json:"org_id"`
		}
		twoTenants := false // the body names two tenants
		if json.Unmarshal(body, &named) == nil {
			if named.TenantID != nil {
				bodyTenant, _ = uuid.Parse(*named.TenantID)
			}
			if named.OrgID != nil {
				bodyOrg, _ = uuid.Parse(*named.OrgID)
			}
			twoTenants = named.TenantID != nil && named.OrgID != nil && bodyTenant != bodyOrg
			if bodyTenant == uuid.Nil {
				bodyTenant = bodyOrg
			}
		}
		for i := range 2 * len(servers) {
			srv, headerName := servers[i/2], tenantHeaders[i%2]
			r := httptest.NewRequest("POST", "/v1/events", nil)
			if header != "" {
				r.Header[headerName] = []string{header}
			}
			want := bodyTenant
			if want == uuid.Nil {
				want = headerTenant
			}
			if want == uuid.Nil {
				want = srv.defaultTenant
			}
			if e, err := srv.prepareEvent(r, body, ""); err == nil {
				if e.TenantID != want || e.TenantID == uuid.Nil {
					t.Fatalf("body %q, header %q: the event went to tenant %s; want %s", body, header, e.TenantID, want)
				}
				if bodyTenant != uuid.Nil && headerTenant != uuid.Nil && bodyTenant != headerTenant {
					t.Fatalf("body %q, header %q: accepted a body and a header that disagree", body, header)
				}
				if twoTenants {
					t.Fatalf("body %q: accepted a tenant_id and an org_id that disagree", body)
				}
				if header != "" && headerTenant == uuid.Nil {
					t.Fatalf("accepted the malformed tenant header %q", header)
				}
				fzCheckTenantSubject(t, e)
			} else if !errors.Is(err, event.ErrInvalidEvent) && !fzIsTooLarge(err) {
				t.Fatalf("prepareEvent(%q) error %v: want a validation error", body, err)
			}

			tenant, err := srv.tenantFor(r, uuid.Nil, event.TenantHeader)
			if err != nil || tenant == uuid.Nil {
				continue
			}
			if want := headerTenant; want == uuid.Nil && tenant != srv.defaultTenant || want != uuid.Nil && tenant != want {
				t.Fatalf("header %q gave the stream tenant %s", header, tenant)
			}
			en, err := srv.prepareStream(body, tenant)
			if err != nil {
				if !errors.Is(err, event.ErrInvalidEvent) && !fzIsTooLarge(err) {
					t.Fatalf("prepareStream(%q) error %v: want a validation error", body, err)
				}
				continue
			}
			switch {
			case en.event != nil:
				if en.event.TenantID != tenant {
					t.Fatalf("legacy body %q, header %q: converted to tenant %s", body, header, en.event.TenantID)
				}
				fzCheckTenantSubject(t, en.event)
			case en.stream != nil:
				if en.stream.TenantID != tenant {
					t.Fatalf("stream body %q, header %q: tenant %s", body, header, en.stream.TenantID)
				}
				if subj, err := en.stream.Subject(); err != nil || !strings.HasPrefix(subj, subjects.StreamsPrefix) ||
					strings.Count(subj, ".") != 3 {
					t.Fatalf("stream body %q: subject %q, %v", body, subj, err)
				}
			default:
				t.Fatalf("prepareStream(%q) gave nothing", body)
			}
		}
	})
}

func fzIsTooLarge(err error) bool {
	var tl *errTooLarge
	return errors.As(err, &tl)
}

// fzCheckTenantSubject checks that an accepted event's subject is in its own tenant's namespace and parses back.
func fzCheckTenantSubject(t *testing.T, e *event.FlovynEvent) {
	t.Helper()
	if err := e.Validate(); err != nil {
		t.Fatalf("an accepted event does not validate: %v", err)
	}
	subj, err := e.Subject()
	if err != nil {
		t.Fatalf("an accepted event has no subject: %v", err)
	}
	prefix := subjects.EventsPrefix + e.TenantID.String() + "."
	if !strings.HasPrefix(subj, prefix) || subj != prefix+e.EventType || !server.IsValidLiteralSubject(subj) {
		t.Fatalf("event of tenant %s, type %q: subject %q leaves %q", e.TenantID, e.EventType, subj, prefix)
	}
	if ten, typ, err := subjects.ParseEvent(subj); err != nil || ten != e.TenantID.String() || typ != e.EventType {
		t.Fatalf("ParseEvent(%q) = %q, %q, %v", subj, ten, typ, err)
	}
}
