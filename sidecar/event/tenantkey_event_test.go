package event

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/uuid"
)

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
