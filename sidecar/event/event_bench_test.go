package event

import (
	"testing"
	"time"

	"github.com/google/uuid"
)

// BenchmarkDecodeValidate decodes, stamps and validates a typical event: the publish path's CPU work before the bus.
func BenchmarkDecodeValidate(b *testing.B) {
	in := []byte(`{"tenant_id":"` + tenantStr + `","workflow_execution_id":"` + wfStr +
		`","event_type":"task.completed","source":"worker:w-1","data":{"id":"x","kind":"llm","status":"COMPLETED","executionCount":1}}`)
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	now := time.Now()
	for i := 0; i < b.N; i++ {
		e, err := DecodeEvent(in)
		if err != nil {
			b.Fatal(err)
		}
		e.Stamp(DefaultSource, now)
		if err := e.Validate(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeEvent decodes a typical event without stamping or validating it: the fast decoder (the common form)
// and the general path (a string with an escape sends it there).
func BenchmarkDecodeEvent(b *testing.B) {
	for _, c := range []struct{ name, in string }{
		{"fast/tenant_id", `{"tenant_id":"` + tenantStr + `","workflow_execution_id":"` + wfStr +
			`","event_type":"task.completed","source":"worker:w-1","data":{"id":"x","kind":"llm","status":"COMPLETED","executionCount":1}}`},
		{"fast/org_id", `{"org_id":"` + tenantStr + `","workflow_execution_id":"` + wfStr +
			`","event_type":"task.completed","source":"worker:w-1","data":{"id":"x","kind":"llm","status":"COMPLETED","executionCount":1}}`},
		{"fast/both", `{"tenant_id":"` + tenantStr + `","org_id":"` + tenantStr + `","workflow_execution_id":"` + wfStr +
			`","event_type":"task.completed","source":"worker:w-1","data":{"id":"x","kind":"llm","status":"COMPLETED","executionCount":1}}`},
		{"slow/tenant_id", `{"tenant_id":"` + tenantStr + `","workflow_execution_id":"` + wfStr +
			`","event_type":"task.completed","source":"worker:w\u002d1","data":{"id":"x","kind":"llm","status":"COMPLETED","executionCount":1}}`},
	} {
		b.Run(c.name, func(b *testing.B) {
			in := []byte(c.in)
			b.ReportAllocs()
			b.SetBytes(int64(len(in)))
			for i := 0; i < b.N; i++ {
				if _, err := DecodeEvent(in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkEncodeEvent encodes an event to its wire form, as every SSE frame and NATS message does.
func BenchmarkEncodeEvent(b *testing.B) {
	e := ev(uuid.New(), "task.completed").WithWorkflow(uuid.New()).WithCorrelationID("c-1")
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		buf = e.AppendJSON(buf[:0])
	}
}

// BenchmarkEncodeEventOrgID is BenchmarkEncodeEvent with events.tenant_key: org_id.
func BenchmarkEncodeEventOrgID(b *testing.B) {
	e := ev(uuid.New(), "task.completed").WithWorkflow(uuid.New()).WithCorrelationID("c-1")
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		buf = e.AppendJSONAs(buf[:0], TenantKeyOrgID)
	}
}

// BenchmarkCheckUTF8 is the UTF-8 check every body gets before it is decoded (DecodeEvent, DecodeStreamEvent): on a
// typical event, and on one with escapes (which are scanned for lone surrogates).
func BenchmarkCheckUTF8(b *testing.B) {
	for _, c := range []struct{ name, in string }{
		{"plain", `{"tenant_id":"` + tenantStr + `","workflow_execution_id":"` + wfStr +
			`","event_type":"task.completed","source":"worker:w-1","data":{"id":"x","kind":"llm","status":"COMPLETED","executionCount":1}}`},
		{"escapes", `{"tenant_id":"` + tenantStr + `","workflow_execution_id":"` + wfStr +
			`","event_type":"task.completed","source":"worker:w\u002d1","data":{"text":"a \"quoted\" line\nand \ud83d\ude80"}}`},
	} {
		b.Run(c.name, func(b *testing.B) {
			in := []byte(c.in)
			b.SetBytes(int64(len(in)))
			for b.Loop() {
				if err := checkUTF8(in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
