package natsbus

import (
	"fmt"
	"testing"

	"github.com/flovyn/eventhook/sidecar/bus"
	"github.com/flovyn/eventhook/sidecar/bus/bustest"
	"github.com/flovyn/eventhook/sidecar/event"
	"github.com/flovyn/eventhook/subjects"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
)

// publishToken publishes a token on a workflow's generic stream and returns its position.
func publishToken(t testing.TB, b *JetStream, tenant uuid.UUID, wf, payload string) event.Position {
	t.Helper()
	res, err := b.PublishStream(t.Context(), bustest.Stream(tenant, wf, "", 0, event.StreamToken, payload))
	if err != nil {
		t.Fatalf("PublishStream: %v", err)
	}
	return event.Position{Epoch: b.stream.epoch, Seq: res.Sequence}
}

func expectToken(t testing.TB, s bus.Subscription[event.StreamEvent], payload string) {
	t.Helper()
	if d := bustest.Next(t, s); d.Value == nil || d.Value.Payload != payload {
		t.Fatalf("delivery %+v; want the token %q", d, payload)
	}
}

// purgeWorkflow purges a workflow's generic stream subject, as Flovyn's server does after the workflow ends.
func purgeWorkflow(t testing.TB, b *JetStream, wf string) {
	t.Helper()
	if err := b.stream.stream.Purge(t.Context(), jetstream.WithPurgeSubject(subjects.StreamsPrefix+wf)); err != nil {
		t.Fatal(err)
	}
}

// TestJetStreamSubjectPurgeIsExpiry: another writer purging a workflow's subject is retention. A cursor into the purged
// range gets an expired gap (the stream's first sequence does not move for a per-subject purge, so this needs the
// per-subject check), then live events; a cursor of another workflow is not affected.
func TestJetStreamSubjectPurgeIsExpiry(t *testing.T) {
	b := newJetStreamTestBus(t, nil)
	defer b.Close()
	tenant, other := uuid.New(), uuid.NewString()
	otherFirst := publishToken(t, b, tenant, other, "o1") // before: the stream's first sequence stays this one
	// A cursor into the purged range, and one at its last event.
	for _, at := range []string{"a", "c"} {
		t.Run("cursor at "+at, func(t *testing.T) {
			wf := uuid.NewString()
			cursors := map[string]event.Position{}
			for _, p := range []string{"a", "b", "c"} {
				cursors[p] = publishToken(t, b, tenant, wf, p)
				publishToken(t, b, tenant, other, "o-"+p)
			}
			purgeWorkflow(t, b, wf)
			if info, err := b.stream.stream.Info(t.Context()); err != nil || info.State.FirstSeq != otherFirst.Seq {
				t.Fatalf("stream info %+v, %v; want the first sequence unmoved by the subject purge", info, err)
			}
			s := bustest.SubscribeStream(t, b, tenant, wf, bus.StartAfter(cursors[at]))
			if d := bustest.Next(t, s); d.Gap == nil || d.Gap.Reason != event.GapExpired || d.Gap.Missed != -1 {
				t.Fatalf("first delivery %+v; want an expired gap with missed unknown", d)
			}
			live := publishToken(t, b, tenant, wf, "live")
			expectToken(t, s, "live")
			// Resuming from the new event is exact again: no gap.
			r := bustest.SubscribeStream(t, b, tenant, wf, bus.StartAfter(live))
			publishToken(t, b, tenant, wf, "next")
			expectToken(t, r, "next")
		})
	}

	// A cursor whose event is still held resumes exactly, with no gap, though the stream lost messages after it.
	s := bustest.SubscribeStream(t, b, tenant, other, bus.StartAfter(otherFirst))
	for _, p := range []string{"o-a", "o-b", "o-c", "o-a", "o-b", "o-c"} {
		expectToken(t, s, p)
	}
}

// TestJetStreamLiveStreamSurvivesPurge: a subscriber connected while its workflow's subject is purged keeps getting
// the workflow's new events, with no gap (it missed nothing); a subscriber arriving after the purge gets what the
// store still holds.
func TestJetStreamLiveStreamSurvivesPurge(t *testing.T) {
	b := newJetStreamTestBus(t, nil)
	defer b.Close()
	tenant, wf := uuid.New(), uuid.NewString()
	s := bustest.SubscribeStream(t, b, tenant, wf, bus.StartEarliest())
	publishToken(t, b, tenant, wf, "a")
	publishToken(t, b, tenant, wf, "b")
	expectToken(t, s, "a")
	expectToken(t, s, "b")
	purgeWorkflow(t, b, wf)
	for _, p := range []string{"c", "d"} {
		publishToken(t, b, tenant, wf, p)
		expectToken(t, s, p)
	}
	s.Close()

	late := bustest.SubscribeStream(t, b, tenant, wf, bus.StartEarliest())
	expectToken(t, late, "c")
	expectToken(t, late, "d")
	publishToken(t, b, tenant, wf, "e")
	expectToken(t, late, "e")
}

// TestJetStreamOvertakenReaderGetsExpiry: a reader overtaken by live traffic is re-fed from the store; when the store
// no longer holds what it missed (another writer purged the workflow's subject meanwhile), it gets an expired gap
// before what follows, never a silent hole.
func TestJetStreamOvertakenReaderGetsExpiry(t *testing.T) {
	cfg := testOptions(t)
	cfg.Feed.StreamBuffer = 4
	b := newJetStreamTestBus(t, cfg)
	defer b.Close()
	tenant, wf := uuid.New(), uuid.NewString()
	slow := bustest.SubscribeStream(t, b, tenant, wf, bus.StartLive())
	fast := bustest.SubscribeStream(t, b, tenant, wf, bus.StartLive())
	publishToken(t, b, tenant, wf, "a")
	expectToken(t, slow, "a")
	for i := range 20 {
		p := fmt.Sprintf("t%d", i)
		publishToken(t, b, tenant, wf, p)
	}
	expectToken(t, fast, "a")
	for i := range 20 {
		expectToken(t, fast, fmt.Sprintf("t%d", i)) // the feed has passed them all: slow is overtaken
	}
	purgeWorkflow(t, b, wf)
	publishToken(t, b, tenant, wf, "z")
	if d := bustest.Next(t, slow); d.Gap == nil || d.Gap.Reason != event.GapExpired {
		t.Fatalf("delivery after being overtaken across a purge %+v; want an expired gap", d)
	}
	expectToken(t, slow, "z")
}
