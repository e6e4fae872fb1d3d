package event

import (
	"errors"
	"strings"
	"testing"
)

// orgOtherStr is a tenant other than tenantStr.
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
