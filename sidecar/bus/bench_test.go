package bus_test

// The benchmarks build the bus as the daemon does: with the HTTP side's SSE encoders, so that every publish encodes
// its frame once, as in production.

import (
	"context"
	"fmt"
	"testing"

	"github.com/flovyn/eventhook/sidecar"
	"github.com/flovyn/eventhook/sidecar/bus"
	"github.com/flovyn/eventhook/sidecar/bus/bustest"
	"github.com/flovyn/eventhook/sidecar/event"
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
				o := bus.MemoryOptions{Feed: bus.FeedOptions{Encoders: sidecar.FrameEncoders("")}}
				if shape.broadcast {
					o = bus.Broadcast(o)
				}
				mb := bus.NewMemory(o)
				defer mb.Close()
				ctx := context.Background()
				tenant, wf := uuid.New(), uuid.New()
				for range n {
					if _, err := mb.SubscribeEvents(ctx, event.ForWorkflow(tenant, uuid.New()), bus.StartLive()); err != nil {
						b.Fatal(err)
					}
				}
				events := make([]event.FlovynEvent, 1024)
				for i := range events {
					events[i] = *bustest.Event(tenant, "task.completed").WithWorkflow(wf).WithTask(uuid.New())
				}
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					e := &events[i%len(events)]
					e.ID[0], e.ID[1], e.ID[2], e.ID[3] = byte(i), byte(i>>8), byte(i>>16), byte(i>>24) // a new id: no dedup hit
					if _, err := mb.PublishEvent(ctx, e); err != nil {
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
			mb := bus.NewMemory(bus.MemoryOptions{Feed: bus.FeedOptions{Encoders: sidecar.FrameEncoders("")}})
			defer mb.Close()
			ctx := context.Background()
			tenant := uuid.New()
			subs := make([]bus.Subscription[event.FlovynEvent], n)
			woken := make([]chan struct{}, n)
			for i := range subs {
				s, err := mb.SubscribeEvents(ctx, event.AllEvents(tenant), bus.StartLive())
				if err != nil {
					b.Fatal(err)
				}
				subs[i] = s
				woken[i] = make(chan struct{}, 1)
				ch := woken[i]
				s.SetNotify(func() {
					select {
					case ch <- struct{}{}:
					default:
					}
				})
			}
			e := bustest.Event(tenant, "task.completed")
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				e.ID[0], e.ID[1], e.ID[2], e.ID[3] = byte(i), byte(i>>8), byte(i>>16), byte(i>>24)
				if _, err := mb.PublishEvent(ctx, e); err != nil {
					b.Fatal(err)
				}
				for j, s := range subs {
					if _, ok := s.Next(); !ok {
						b.Fatal("a subscriber missed the event")
					}
					<-woken[j]
				}
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "deliveries/s")
		})
	}
}
