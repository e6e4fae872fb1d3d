package sidecar

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
)

// BenchmarkPublishIdle publishes workflow events into a tenant that has n idle subscribers of other workflows, with the
// indexed fan-out (kept) and the original design's per-tenant broadcast (for comparison). Target: 10,000 idle
// subscribers cost at most 1.25 × the publish with none.
func BenchmarkPublishIdle(b *testing.B) {
	for _, shape := range []struct {
		name      string
		broadcast bool
	}{{"indexed", false}, {"broadcast", true}} {
		for _, n := range []int{0, 100, 10_000} {
			b.Run(fmt.Sprintf("%s/idle=%d", shape.name, n), func(b *testing.B) {
				bus := NewMemoryBus(MemoryOptions{broadcast: shape.broadcast})
				defer bus.Close()
				ctx := context.Background()
				tenant, wf := uuid.New(), uuid.New()
				for range n {
					if _, err := bus.SubscribeEvents(ctx, ForWorkflow(tenant, uuid.New()), StartLive()); err != nil {
						b.Fatal(err)
					}
				}
				events := make([]FlovynEvent, 1024)
				for i := range events {
					events[i] = *ev(tenant, "task.completed").WithWorkflow(wf).WithTask(uuid.New())
				}
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					e := &events[i%len(events)]
					e.ID[0], e.ID[1], e.ID[2], e.ID[3] = byte(i), byte(i>>8), byte(i>>16), byte(i>>24) // a new id: no dedup hit
					if _, err := bus.PublishEvent(ctx, e); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkFanout publishes one event to n matching subscribers and drains every one of them: the cost of one event
// delivered n times. deliveries/s is the figure to compare.
func BenchmarkFanout(b *testing.B) {
	for _, n := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("subs=%d", n), func(b *testing.B) {
			bus := NewMemoryBus(MemoryOptions{})
			defer bus.Close()
			ctx := context.Background()
			tenant := uuid.New()
			subs := make([]Subscription[FlovynEvent], n)
			for i := range subs {
				s, err := bus.SubscribeEvents(ctx, AllEvents(tenant), StartLive())
				if err != nil {
					b.Fatal(err)
				}
				subs[i] = s
			}
			e := ev(tenant, "task.completed")
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				e.ID[0], e.ID[1], e.ID[2], e.ID[3] = byte(i), byte(i>>8), byte(i>>16), byte(i>>24)
				if _, err := bus.PublishEvent(ctx, e); err != nil {
					b.Fatal(err)
				}
				for _, s := range subs {
					if _, ok := s.Next(); !ok {
						b.Fatal("a subscriber missed the event")
					}
					<-s.Ready()
				}
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "deliveries/s")
		})
	}
}

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
