package natsbus

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/flovyn/eventhook/sidecar/bus"
	"github.com/flovyn/eventhook/sidecar/bus/bustest"
	"github.com/flovyn/eventhook/sidecar/event"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// BenchmarkLateSubscriber measures a late subscriber to a 10-event workflow in a tenant that has 1,000,000 events
// stored: the time from SubscribeEvents(ForWorkflow, StartEarliest) to the tenth event. Target: ≤ 50 ms. The same run
// times, once, the way without the per-workflow index: an ordered consumer over the tenant's subjects.
func BenchmarkLateSubscriber(b *testing.B) {
	const stored = 1_000_000
	cfg := testOptions(b)
	eb := newJetStreamTestBus(b, cfg)
	defer eb.Close()
	ctx := context.Background()
	tenant, wf := uuid.New(), uuid.New()
	batch := make([]*event.FlovynEvent, 0, 1000)
	start := time.Now()
	for i := range stored {
		e := bustest.Event(tenant, "bulk.event")
		if i%(stored/10) == stored/20 { // the workflow's 10 events are spread through the history
			e = bustest.Event(tenant, fmt.Sprintf("wf.n%d", i/(stored/10))).WithWorkflow(wf)
		}
		batch = append(batch, e)
		if len(batch) == cap(batch) {
			if _, errs := eb.PublishEvents(ctx, batch); errs[len(errs)-1] != nil {
				b.Fatal(errs[len(errs)-1])
			}
			batch = batch[:0]
		}
	}
	b.Logf("stored %d events in %v", stored, time.Since(start).Round(time.Millisecond))
	info, _ := eb.events.stream.Info(ctx)
	for deadline := time.Now().Add(10 * time.Minute); ; { // measure the steady state: the indexer has caught up
		floor, err := eb.indexFloor(ctx)
		if err == nil && floor >= info.State.LastSeq {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("indexer at %d of %d after 10 minutes", floor, info.State.LastSeq)
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.Logf("indexed in %v", time.Since(start).Round(time.Millisecond))

	for b.Loop() {
		s, err := eb.SubscribeEvents(ctx, event.ForWorkflow(tenant, wf), bus.StartEarliest())
		if err != nil {
			b.Fatal(err)
		}
		for i := range 10 {
			if got := bustest.NextEvent(b, s); got.EventType != fmt.Sprintf("wf.n%d", i) {
				b.Fatalf("got %s; want wf.n%d", got.EventType, i)
			}
		}
		s.Close()
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/subscribe")

	// Without the index: scan the tenant's subjects for the workflow's events.
	scanStart := time.Now()
	cons, err := eb.js.OrderedConsumer(ctx, eb.events.name, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{"flovyn.events." + tenant.String() + ".>"}})
	if err != nil {
		b.Fatal(err)
	}
	found := 0
	for found < 10 {
		batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			b.Fatal(err)
		}
		for msg := range batch.Messages() {
			if e, err := event.DecodeEvent(msg.Data()); err == nil && e.WorkflowExecutionID != nil && *e.WorkflowExecutionID == wf {
				found++
			}
		}
	}
	b.ReportMetric(float64(time.Since(scanStart).Milliseconds()), "ms/scan-without-index")
}

// BenchmarkJetStreamPublish compares one event published through the bus (validation done, the PubAck and the index
// entry awaited) with the direct nats.go path (js.Publish of the same bytes) on the same embedded server, with the
// default file store and with sync_always (fsync every write).
func BenchmarkJetStreamPublish(b *testing.B) {
	for _, sync := range []bool{false, true} {
		cfg := testOptions(b)
		cfg.Conn.SyncAlways = sync
		eb := newJetStreamTestBus(b, cfg)
		tenant, wf := uuid.New(), uuid.New()
		ctx := context.Background()
		b.Run(fmt.Sprintf("sync_always=%v/bus", sync), func(b *testing.B) {
			for b.Loop() {
				if _, err := eb.PublishEvent(ctx, bustest.Event(tenant, "task.completed").WithWorkflow(wf)); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("sync_always=%v/bus-no-index", sync), func(b *testing.B) {
			for b.Loop() {
				if _, err := eb.PublishEvent(ctx, bustest.Event(tenant, "task.completed")); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("sync_always=%v/direct", sync), func(b *testing.B) {
			for b.Loop() {
				e := bustest.Event(tenant, "task.completed").WithWorkflow(wf)
				m := &nats.Msg{Subject: "flovyn.events." + tenant.String() + ".task.completed", Header: nats.Header{},
					Data: e.AppendJSON(nil)}
				m.Header.Set(jetstream.MsgIDHeader, e.ID.String())
				if _, err := eb.js.PublishMsg(ctx, m); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("sync_always=%v/bus-batch100", sync), func(b *testing.B) {
			for b.Loop() {
				events := make([]*event.FlovynEvent, 100)
				for i := range events {
					events[i] = bustest.Event(tenant, "task.completed").WithWorkflow(wf)
				}
				if _, errs := eb.PublishEvents(ctx, events); errs[99] != nil {
					b.Fatal(errs[99])
				}
			}
		})
		eb.Close()
	}
}

// BenchmarkJetStreamStreamBatch measures a request of 100 stream events (an LLM's tokens) stored in JetStream:
// pipelined as POST /v1/streams publishes them, and one after another, each waiting for its ack.
func BenchmarkJetStreamStreamBatch(b *testing.B) {
	eb := newJetStreamTestBus(b, nil)
	defer eb.Close()
	ctx := context.Background()
	tenant, wf := uuid.New(), uuid.New()
	tokens := func() []*event.StreamEvent {
		out := make([]*event.StreamEvent, 100)
		for i := range out {
			out[i] = &event.StreamEvent{TenantID: tenant, WorkflowExecutionID: wf.String(), Sequence: int32(i), Type: event.StreamToken, Payload: "tok"}
		}
		return out
	}
	b.Run("pipelined", func(b *testing.B) {
		for b.Loop() {
			if _, errs := eb.PublishBatch(ctx, nil, tokens()); errs[99] != nil {
				b.Fatal(errs[99])
			}
		}
	})
	b.Run("one-by-one", func(b *testing.B) {
		for b.Loop() {
			for _, s := range tokens() {
				if _, err := eb.PublishStream(ctx, s); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
