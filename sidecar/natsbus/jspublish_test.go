package natsbus

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flovyn/eventhook/sidecar/bus"
	"github.com/flovyn/eventhook/sidecar/bus/bustest"
	"github.com/flovyn/eventhook/sidecar/event"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
)

// TestJetStreamResendsUnackedEvents loses the first send of every publish, as a stream leader that dies before it
// answers does: the lifecycle events are sent again after resendAfter (a whole batch in one round) and stored once;
// a stream event too (each publish gives it a Nats-Msg-Id of its own).
func TestJetStreamResendsUnackedEvents(t *testing.T) {
	cfg := testOptions(t)
	cfg.Streams.PublishTimeout = 2 * time.Second
	var everyOther atomic.Bool // lose only every other first send
	var sent atomic.Int64
	lose := func(m *nats.Msg) *nats.Msg {
		if everyOther.Load() && sent.Add(1)%2 == 0 {
			return m
		}
		return &nats.Msg{Subject: "lost." + m.Subject, Header: m.Header, Data: m.Data}
	}
	cfg.firstSend = lose
	b, err := NewJetStream(t.Context(), *cfg, testLogger(io.Discard, slog.LevelError))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	hole, err := b.conn.nc.SubscribeSync("lost.>") // receives the first sends and answers none
	if err != nil {
		t.Fatal(err)
	}
	defer hole.Unsubscribe()
	ctx := t.Context()
	tenant := uuid.New()

	start := time.Now()
	res, err := b.PublishEvent(ctx, bustest.Event(tenant, "a.one"))
	if err != nil || res.Sequence != 1 || res.Duplicate {
		t.Fatalf("PublishEvent with its first send lost = %+v, %v; want stored at 1 by the resend", res, err)
	}
	if took := time.Since(start); took < resendAfter {
		t.Errorf("acked after %v, before any resend", took)
	}
	if b.Resent() != 1 {
		t.Errorf("Resent() = %d; want 1", b.Resent())
	}

	batch := make([]*event.FlovynEvent, 50)
	for i := range batch {
		batch[i] = bustest.Event(tenant, "a.batch")
	}
	start = time.Now()
	results, errs := b.PublishEvents(ctx, batch)
	for i := range batch {
		if errs[i] != nil || results[i].Sequence != uint64(i+2) {
			t.Fatalf("entry %d: %+v, %v; want stored at %d, in order", i, results[i], errs[i], i+2)
		}
	}
	if took := time.Since(start); took > 3*resendAfter || b.Resent() != 2 {
		t.Errorf("a batch of 50 with every first send lost took %v and %d resend rounds; want one round", took, b.Resent()-1)
	}

	// Half the first sends answered: only the others are sent again, and every answer is a first store.
	everyOther.Store(true)
	for i := range batch[:10] {
		batch[i] = bustest.Event(tenant, "a.half")
	}
	results, errs = b.PublishEvents(ctx, batch[:10])
	for i := range 10 {
		// The answered first sends are stored first, in order (52–56); the resent ones after them (57–61).
		want := uint64(52 + i/2)
		if i%2 == 0 {
			want = uint64(57 + i/2)
		}
		if errs[i] != nil || results[i].Sequence != want || results[i].Duplicate {
			t.Fatalf("entry %d: %+v, %v; want stored at %d, not a duplicate", i, results[i], errs[i], want)
		}
	}
	everyOther.Store(false)

	// A stream event has a Nats-Msg-Id of its publish: it is sent again too, and stored once.
	tok := &event.StreamEvent{TenantID: tenant, WorkflowExecutionID: uuid.NewString(), Type: event.StreamToken, Payload: "x"}
	if res, err := b.PublishStream(ctx, tok); err != nil || res.Duplicate {
		t.Fatalf("PublishStream with its first send lost = %+v, %v; want stored by the resend, not a duplicate", res, err)
	}
	// A send that is never answered fails at the deadline, saying it may be stored.
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if _, err := b.PublishEvent(short, bustest.Event(tenant, "a.late")); !errors.Is(err, bus.ErrUnavailable) || !errors.Is(err, bus.ErrUnconfirmed) {
		t.Fatalf("PublishEvent unanswered before its deadline: %v; want ErrUnavailable and ErrUnconfirmed", err)
	}
	for name, want := range map[string]uint64{b.events.name: 61, b.stream.name: 1} {
		info, err := b.js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if got := info.CachedInfo().State.Msgs; got != want {
			t.Errorf("stream %s holds %d messages; want %d (each stored once)", name, got, want)
		}
	}
	for deadline := time.Now().Add(bustest.WaitFor); ; time.Sleep(10 * time.Millisecond) {
		if n, _, _ := hole.Pending(); n == 58 {
			break
		} else if time.Now().After(deadline) {
			t.Errorf("%d first sends lost; want 58", n)
			break
		}
	}
	// Sends never answered are given up after publish_timeout: none stays pending in nats.go, whose publishing stalls
	// when 4000 are.
	for deadline := time.Now().Add(bustest.WaitFor); b.js.PublishAsyncPending() > 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d sends still pending %v after the last publish", b.js.PublishAsyncPending(), bustest.WaitFor)
		}
	}
}

// TestJetStreamWaitsForALeader: a publish that no stream answers (no responders: the stream is electing a leader)
// waits for one within its deadline, sending again each resendAfter, instead of failing at once; lifecycle and stream
// events alike are stored once.
func TestJetStreamWaitsForALeader(t *testing.T) {
	cfg := testOptions(t)
	var nobody atomic.Int64 // first sends that went where nothing answers
	cfg.firstSend = func(m *nats.Msg) *nats.Msg {
		nobody.Add(1)
		return &nats.Msg{Subject: "nobody." + m.Subject, Header: m.Header, Data: m.Data}
	}
	b, err := NewJetStream(t.Context(), *cfg, testLogger(io.Discard, slog.LevelError))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	tenant := uuid.New()
	start := time.Now()
	results, errs := b.PublishBatch(t.Context(), []*event.FlovynEvent{bustest.Event(tenant, "a.one"), nil},
		[]*event.StreamEvent{nil, {TenantID: tenant, WorkflowExecutionID: uuid.NewString(), Type: event.StreamToken, Payload: "x"}})
	for i := range 2 {
		if errs[i] != nil || results[i].Duplicate {
			t.Fatalf("entry %d with no stream answering its first send: %+v, %v; want stored by a resend", i, results[i], errs[i])
		}
	}
	if took := time.Since(start); took < resendAfter || nobody.Load() != 2 {
		t.Errorf("stored after %v, %d first sends unanswered; want both stored by the resend after %v", took, nobody.Load(), resendAfter)
	}
}
