package natsbus

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/flovyn/eventhook/sidecar/bus"
	"github.com/flovyn/eventhook/sidecar/bus/bustest"
	"github.com/flovyn/eventhook/sidecar/event"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
)

// waitFloor waits until the indexer's ack floor reaches seq.
func waitFloor(t testing.TB, b *JetStream, seq uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		floor, err := b.indexFloor(t.Context())
		if err == nil && floor >= seq {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("index floor %d (%v) after 10s, want %d", floor, err, seq)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// indexEntries returns the stream sequences the index holds for a workflow of tenant.
func indexEntries(t testing.TB, b *JetStream, tenant, wf uuid.UUID) []uint64 {
	t.Helper()
	subj := indexSubject(tenant.String(), "w", wf.String())
	var out []uint64
	for seq := uint64(0); ; {
		m, err := b.index.GetMsg(t.Context(), seq+1, jetstream.WithGetMsgSubject(subj))
		if err != nil {
			return out
		}
		seq = m.Sequence
		var v uint64
		for _, c := range m.Data {
			v = v*10 + uint64(c-'0')
		}
		out = append(out, v)
	}
}

// TestIndexerBursts publishes a burst through the bus and events straight onto NATS, and checks that the indexer
// writes an entry for each (once), that its ack floor covers them all, and that a late subscriber gets them.
func TestIndexerBursts(t *testing.T) {
	b := newJetStreamTestBus(t, nil)
	defer b.Close()
	ctx := t.Context()
	tenant, wf := uuid.New(), uuid.New()
	var events []*event.FlovynEvent
	for range 700 { // more than one pull
		events = append(events, bustest.Event(tenant, "task.completed").WithWorkflow(wf))
	}
	res, errs := b.PublishEvents(ctx, events)
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	rawEvent(t, b, tenant, "task.started", wf.String()) // a core NATS publish: stored a moment later
	info, err := b.events.stream.Info(ctx)
	for deadline := time.Now().Add(10 * time.Second); err == nil && info.State.LastSeq <= res[699].Sequence && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
		info, err = b.events.stream.Info(ctx)
	}
	if err != nil {
		t.Fatal(err)
	}
	waitFloor(t, b, info.State.LastSeq)
	got := indexEntries(t, b, tenant, wf)
	if len(got) != 701 || got[0] != res[0].Sequence || got[699] != res[699].Sequence || got[700] != info.State.LastSeq {
		t.Fatalf("index of the workflow: %d entries (first %v), want 701 from %d to %d", len(got), got[:min(3, len(got))],
			res[0].Sequence, info.State.LastSeq)
	}
	s, err := b.SubscribeEvents(ctx, event.ForWorkflow(tenant, wf), bus.StartEarliest())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range 701 {
		if e := bustest.NextEvent(t, s); i < 700 && e.ID != events[i].ID {
			t.Fatalf("late subscriber: event %d is %s, want %s", i, e.ID, events[i].ID)
		}
	}
}

// TestIndexerStartsAtTheOldFloor checks the first start after an upgrade: the indexer of earlier versions
// (eventhook-indexer, acking per burst) had indexed up to its ack floor, and the new consumer starts right after it,
// keeps that start across restarts, and indexes what follows.
func TestIndexerStartsAtTheOldFloor(t *testing.T) {
	cfg := testOptions(t)
	b := newJetStreamTestBus(t, cfg)
	ctx := t.Context()
	tenant, wf := uuid.New(), uuid.New()
	var events []*event.FlovynEvent
	for range 5 {
		events = append(events, bustest.Event(tenant, "task.completed").WithWorkflow(wf))
	}
	res, _ := b.PublishEvents(ctx, events)
	waitFloor(t, b, res[4].Sequence)
	// As an earlier version left it: only the old consumer, its floor at the third event.
	if err := b.js.DeleteConsumer(ctx, b.events.name, IndexerName); err != nil {
		t.Fatal(err)
	}
	old, err := b.js.CreateConsumer(ctx, b.events.name, jetstream.ConsumerConfig{Durable: oldIndexerName,
		AckPolicy: jetstream.AckAllPolicy, FilterSubject: "flovyn.events.>"})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := old.Fetch(3, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var third jetstream.Msg
	for m := range batch.Messages() {
		third = m
	}
	if third == nil {
		t.Fatal("the old consumer got nothing")
	}
	if err := third.DoubleAck(ctx); err != nil {
		t.Fatal(err)
	}
	b.Close()

	for restart := range 2 {
		b = newJetStreamTestBus(t, cfg)
		if got := b.indexer.CachedInfo().Config.OptStartSeq; got != res[2].Sequence+1 {
			t.Errorf("start %d: the indexer starts at %d, want %d (right after the old floor)", restart, got, res[2].Sequence+1)
		}
		more, err := b.PublishEvent(ctx, bustest.Event(tenant, "task.completed").WithWorkflow(wf))
		if err != nil {
			t.Fatal(err)
		}
		waitFloor(t, b, more.Sequence)
		b.Close()
	}
	if _, err := jetstreamConsumerInfo(cfg, oldIndexerName); err != nil {
		t.Errorf("the old consumer is gone: %v; it is left for the sidecars of earlier versions", err)
	}
}

// jetstreamConsumerInfo reads a consumer of the events stream on a bus opened for the purpose.
func jetstreamConsumerInfo(cfg *Options, name string) (*jetstream.ConsumerInfo, error) {
	b, err := NewJetStream(context.Background(), *cfg, testLogger(io.Discard, slog.LevelError))
	if err != nil {
		return nil, err
	}
	defer b.Close()
	c, err := b.js.Consumer(context.Background(), b.events.name, name)
	if err != nil {
		return nil, err
	}
	return c.Info(context.Background())
}
