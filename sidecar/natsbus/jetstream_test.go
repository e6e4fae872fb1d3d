package natsbus

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/flovyn/eventhook/sidecar/bus"
	"github.com/flovyn/eventhook/sidecar/bus/bustest"
	"github.com/flovyn/eventhook/sidecar/event"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
)

// testOptions are the options of a NATS bus on an embedded server of its own, in-process only, with its store in a
// temporary directory, whose feeds close with their last subscriber.
func testOptions(t testing.TB) *Options {
	return &Options{Conn: ConnOptions{Embedded: true, StoreDir: t.TempDir()}, Linger: -1}
}

// testLogger returns a logger of level writing to w (os.Stderr when nil).
func testLogger(w io.Writer, level slog.Level) *slog.Logger {
	if w == nil {
		w = os.Stderr
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

func newJetStreamTestBus(t testing.TB, cfg *Options) *JetStream {
	t.Helper()
	if cfg == nil {
		cfg = testOptions(t)
	}
	b, err := NewJetStream(t.Context(), *cfg, testLogger(io.Discard, slog.LevelError))
	if err != nil {
		t.Fatalf("NewJetStream: %v", err)
	}
	return b
}

func jetstreamContract() bustest.Contract {
	return bustest.Contract{
		NewBus: func(t testing.TB, o bustest.Options) bus.Bus {
			cfg := testOptions(t)
			cfg.TenantKey, cfg.Feed.Encoders = o.TenantKey, o.Encoders
			return newJetStreamTestBus(t, cfg)
		},
		EventBuffer:   1024,
		RefeedsLagged: true,
		Durable:       true,
		NATSFed:       true,
	}
}

func TestJetStreamContract(t *testing.T) { bustest.Run(t, jetstreamContract()) }

// TestJetStreamSurvivesRestart closes the bus (and its embedded server) and opens another on the same store: every
// acknowledged event is there, and a cursor of the first process resumes exactly after its event.
func TestJetStreamSurvivesRestart(t *testing.T) {
	cfg := testOptions(t)
	b := newJetStreamTestBus(t, cfg)
	tenant, wf := uuid.New(), uuid.New()
	s := bustest.Subscribe(t, b, event.AllEvents(tenant), bus.StartLive())
	for i := range 5 {
		bustest.PublishEvent(t, b, bustest.Event(tenant, fmt.Sprintf("e.n%d", i)).WithWorkflow(wf))
	}
	var cursor event.Position
	for i := range 2 {
		cursor = bustest.Next(t, s).Pos
		_ = i
	}
	b.Close()

	b2 := newJetStreamTestBus(t, cfg)
	defer b2.Close()
	r := bustest.Subscribe(t, b2, event.AllEvents(tenant), bus.StartAfter(cursor))
	for _, want := range []string{"e.n2", "e.n3", "e.n4"} {
		bustest.ExpectNext(t, r, want)
	}
	all := bustest.Subscribe(t, b2, event.ForWorkflow(tenant, wf), bus.StartEarliest()) // the index survived too
	for i := range 5 {
		bustest.ExpectNext(t, all, fmt.Sprintf("e.n%d", i))
	}
	bustest.PublishEvent(t, b2, bustest.Event(tenant, "after").WithWorkflow(wf))
	bustest.ExpectNext(t, r, "after")
	bustest.ExpectNext(t, all, "after")
}

// TestJetStreamStreamEventsAcrossRestart: what a restart of the embedded server does to generic stream events depends
// on jetstream.streams_storage. On file storage they survive and a cursor resumes right after its event; on memory
// storage (the default) the stream is gone with the server and created anew, so nothing published before is held and
// a cursor of the old stream gets a reset gap, then what the new one holds. Lifecycle events survive either way.
func TestJetStreamStreamEventsAcrossRestart(t *testing.T) {
	for _, storage := range []string{"file", "memory"} {
		t.Run(storage, func(t *testing.T) {
			cfg := testOptions(t)
			cfg.Streams.StreamsStorage = storage
			b := newJetStreamTestBus(t, cfg)
			tenant, wf := uuid.New(), uuid.New()
			s := bustest.SubscribeStream(t, b, tenant, wf.String(), bus.StartLive())
			for _, p := range []string{"a", "b", "c"} {
				bustest.PublishStream(t, b, bustest.Stream(tenant, wf.String(), "", 0, event.StreamToken, p))
			}
			bustest.PublishEvent(t, b, bustest.Event(tenant, "workflow.started").WithWorkflow(wf))
			cursor := bustest.Next(t, s).Pos // after "a"
			b.Close()

			b2 := newJetStreamTestBus(t, cfg)
			defer b2.Close()
			r := bustest.SubscribeStream(t, b2, tenant, wf.String(), bus.StartAfter(cursor))
			bustest.ExpectNext(t, bustest.Subscribe(t, b2, event.ForWorkflow(tenant, wf), bus.StartEarliest()), "workflow.started")
			if storage == "file" {
				for _, want := range []string{"b", "c"} {
					if d := bustest.Next(t, r); d.Value == nil || d.Value.Payload != want {
						t.Fatalf("delivery %+v after the restart; want the token %s", d, want)
					}
				}
			} else if d := bustest.Next(t, r); d.Gap == nil || d.Gap.Reason != event.GapReset {
				t.Fatalf("first delivery %+v after the restart; want a reset gap (the memory stream is new)", d)
			}
			bustest.PublishStream(t, b2, bustest.Stream(tenant, wf.String(), "", 0, event.StreamToken, "after"))
			if d := bustest.Next(t, r); d.Value == nil || d.Value.Payload != "after" {
				t.Fatalf("delivery %+v; want the token published after the restart", d)
			}
		})
	}
}

// TestJetStreamForeignPublishers checks that events published straight onto NATS by another producer reach
// subscribers, and that what is not a valid event of the subject's tenant is dropped and counted.
func TestJetStreamForeignPublishers(t *testing.T) {
	b := newJetStreamTestBus(t, nil)
	defer b.Close()
	tenant, other := uuid.New(), uuid.New()
	s := bustest.Subscribe(t, b, event.AllEvents(tenant), bus.StartLive())
	js, _ := jetstream.New(b.conn.nc)
	pub := func(subject, body string) {
		t.Helper()
		if _, err := js.Publish(t.Context(), subject, []byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	base := "flovyn.events." + tenant.String() + "."
	pub(base+"workflow.started", `{"event_type":"workflow.started","data":{"by":"rust"}}`) // minimal: stamped on receipt
	pub(base+"spoof", fmt.Sprintf(`{"tenant_id":%q,"event_type":"spoof"}`, other))         // body names another tenant
	pub(base+"garbage", `not json`)
	pub(base+"mismatch", `{"event_type":"other.type"}`)
	pub(base+"sentinel", `{"event_type":"sentinel"}`)
	got := bustest.ExpectNext(t, s, "workflow.started")
	if got.TenantID != tenant || got.ID == uuid.Nil || got.Source != "system" || string(got.Data) != `{"by":"rust"}` {
		t.Fatalf("foreign event delivered as %s", got.AppendJSON(nil))
	}
	bustest.ExpectNext(t, s, "sentinel")
	if invalid, _ := b.Dropped(); invalid != 3 {
		t.Fatalf("Dropped() invalid = %d; want 3", invalid)
	}
}

// TestJetStreamUntenantedStreams checks the rule for stream events without the Flovyn-Tenant-Id header whose workflow
// no lifecycle event names: held back and counted, unless streams.accept_untenanted.
func TestJetStreamUntenantedStreams(t *testing.T) {
	for _, accept := range []bool{false, true} {
		t.Run(fmt.Sprint("accept=", accept), func(t *testing.T) {
			cfg := testOptions(t)
			cfg.AcceptUntenanted = accept
			b := newJetStreamTestBus(t, cfg)
			defer b.Close()
			tenant, wf := uuid.New(), uuid.NewString()
			s := bustest.SubscribeStream(t, b, tenant, wf, bus.StartLive())
			raw := fmt.Sprintf(`{"workflowExecutionId":%q,"type":"TOKEN","payload":"raw"}`, wf)
			if err := b.conn.nc.Publish("flovyn.streams.workflow."+wf, []byte(raw)); err != nil {
				t.Fatal(err)
			}
			bustest.PublishStream(t, b, bustest.Stream(tenant, wf, "", 1, event.StreamToken, "mine"))
			first := bustest.Next(t, s).Value.Payload
			if want := map[bool]string{false: "mine", true: "raw"}[accept]; first != want {
				t.Fatalf("first payload %q; want %q", first, want)
			}
			if _, untenanted := b.Dropped(); untenanted != 1 {
				t.Fatalf("untenanted count %d; want 1", untenanted)
			}
		})
	}
}

// TestJetStreamRefeedsOvertaken: a subscriber overtaken by live traffic is re-fed from the store, with no gap and no hole.
func TestJetStreamRefeedsOvertaken(t *testing.T) {
	cfg := testOptions(t)
	cfg.Feed.EventBuffer = 8
	b := newJetStreamTestBus(t, cfg)
	defer b.Close()
	tenant := uuid.New()
	s := bustest.Subscribe(t, b, event.AllEvents(tenant), bus.StartLive())
	n := 100
	events := make([]*event.FlovynEvent, n)
	for i := range events {
		events[i] = bustest.Event(tenant, fmt.Sprintf("e.n%d", i))
	}
	if _, errs := b.PublishEvents(t.Context(), events); errs[n-1] != nil {
		t.Fatal(errs[n-1])
	}
	for i := range n {
		bustest.ExpectNext(t, s, fmt.Sprintf("e.n%d", i))
	}
}

// TestJetStreamCursorExpiredAndReset: a cursor older than what the stream holds gets an expired gap, then the oldest
// held; a cursor of another stream (recreated) gets a reset gap.
func TestJetStreamCursorExpiredAndReset(t *testing.T) {
	b := newJetStreamTestBus(t, nil)
	defer b.Close()
	tenant := uuid.New()
	first := bustest.PublishEvent(t, b, bustest.Event(tenant, "old"))
	bustest.PublishEvent(t, b, bustest.Event(tenant, "old2"))
	bustest.PublishEvent(t, b, bustest.Event(tenant, "kept"))
	if err := b.events.stream.Purge(t.Context(), jetstream.WithPurgeSequence(first.Sequence+2)); err != nil {
		t.Fatal(err)
	}
	s := bustest.Subscribe(t, b, event.AllEvents(tenant), bus.StartAfter(event.Position{Epoch: b.events.epoch, Seq: first.Sequence}))
	if d := bustest.Next(t, s); d.Gap == nil || d.Gap.Reason != event.GapExpired {
		t.Fatalf("first delivery %+v; want an expired gap", d)
	}
	bustest.ExpectNext(t, s, "kept")
	r := bustest.Subscribe(t, b, event.AllEvents(tenant), bus.StartAfter(event.Position{Epoch: 1, Seq: 1}))
	if d := bustest.Next(t, r); d.Gap == nil || d.Gap.Reason != event.GapReset {
		t.Fatalf("first delivery %+v; want a reset gap", d)
	}
	bustest.ExpectNext(t, r, "kept")
}

// TestFilterEquivalence publishes random events and subscribes with random patterns on the memory and the JetStream
// backends: both deliver the same events, in the same order, and exactly those Matches accepts.
func TestFilterEquivalence(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, uint64(time.Now().UnixNano())))
	tenants := []uuid.UUID{uuid.New(), uuid.New()}
	wfs := []uuid.UUID{uuid.New(), uuid.New(), uuid.New()}
	types := []string{"workflow.started", "workflow.completed", "workflowx.y", "task.started", "task.completed", "a.b.c"}
	sources := []string{"system", "worker:1"}
	var events []*event.FlovynEvent
	for range 150 {
		e := bustest.Event(tenants[rng.IntN(2)], types[rng.IntN(len(types))])
		e.Source = sources[rng.IntN(2)]
		if rng.IntN(3) > 0 {
			e.WithWorkflow(wfs[rng.IntN(len(wfs))])
		}
		if rng.IntN(2) == 0 {
			e.WithTask(wfs[rng.IntN(len(wfs))])
		}
		events = append(events, e)
	}
	var patterns []event.EventPattern
	for range 40 {
		p := event.AllEvents(tenants[rng.IntN(2)])
		switch rng.IntN(4) {
		case 1:
			w := wfs[rng.IntN(len(wfs))]
			p.WorkflowExecutionID = &w
		case 2:
			w := wfs[rng.IntN(len(wfs))]
			p.TaskExecutionID = &w
		}
		if rng.IntN(2) == 0 {
			typ := types[rng.IntN(len(types))]
			p.EventTypePrefix = typ[:rng.IntN(len(typ)+1)]
		}
		if rng.IntN(4) == 0 {
			p.Source = sources[rng.IntN(2)]
		}
		patterns = append(patterns, p)
	}
	deliver := func(b bus.Bus) [][]uuid.UUID {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		subs := make([]bus.Subscription[event.FlovynEvent], len(patterns))
		for i, p := range patterns {
			s, err := b.SubscribeEvents(ctx, p, bus.StartLive())
			if err != nil {
				t.Fatal(err)
			}
			subs[i] = s
		}
		for _, e := range events {
			c := *e
			bustest.PublishEvent(t, b, &c)
		}
		var sentinels []*event.FlovynEvent
		for _, tenant := range tenants { // sentinels prove that nothing else arrived after the expected events
			for _, src := range sources {
				for _, typ := range types {
					s := bustest.Event(tenant, typ)
					s.Source = src
					s.WithWorkflow(wfs[0]).WithTask(wfs[0])
					sentinels = append(sentinels, s)
					bustest.PublishEvent(t, b, s)
				}
			}
		}
		out := make([][]uuid.UUID, len(patterns))
		for i, s := range subs {
			want := 0
			for _, e := range events {
				if patterns[i].Matches(e) {
					want++
				}
			}
			for range want {
				out[i] = append(out[i], bustest.NextEvent(t, s).ID)
			}
			for _, sen := range sentinels {
				if patterns[i].Matches(sen) {
					if got := bustest.NextEvent(t, s); got.ID != sen.ID {
						t.Fatalf("pattern %d (%+v): got %s after its events; want the sentinel", i, patterns[i], got.AppendJSON(nil))
					}
					break
				}
			}
		}
		return out
	}
	mem := bus.NewMemory(bus.MemoryOptions{})
	defer mem.Close()
	js := newJetStreamTestBus(t, nil)
	defer js.Close()
	a, b := deliver(mem), deliver(js)
	for i, p := range patterns {
		var want []uuid.UUID
		for _, e := range events {
			if p.Matches(e) {
				want = append(want, e.ID)
			}
		}
		if fmt.Sprint(a[i]) != fmt.Sprint(want) || fmt.Sprint(b[i]) != fmt.Sprint(want) {
			t.Fatalf("pattern %d (%+v): memory %v, jetstream %v; want %v", i, p, a[i], b[i], want)
		}
	}
}

// TestJetStreamSeamUnderLoad subscribes from the store (earliest, and after cursors) while events are being published,
// many times over: every subscription sees every event after its start exactly once, in order — no hole and no repeat
// where the replay from the store meets the live feed, whichever of the two is ahead.
func TestJetStreamSeamUnderLoad(t *testing.T) {
	cfg := testOptions(t)
	// The live feed lags behind the store (as under load), so the replay often meets it ahead of the feed.
	cfg.feedHook = func() { time.Sleep(200 * time.Microsecond) }
	b, err := NewJetStream(t.Context(), *cfg, testLogger(io.Discard, slog.LevelError))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	tenant, wf := uuid.New(), uuid.New()
	const total = 400
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range total {
			e := bustest.Event(tenant, fmt.Sprintf("e.n%d", i)).WithWorkflow(wf)
			if _, err := b.PublishEvent(context.Background(), e); err != nil {
				t.Errorf("publish %d: %v", i, err)
				return
			}
		}
	}()
	check := func(s bus.Subscription[event.FlovynEvent], from int) {
		t.Helper()
		defer s.Close()
		for want := from; want < total; want++ {
			if got := bustest.NextEvent(t, s).EventType; got != fmt.Sprintf("e.n%d", want) {
				t.Fatalf("got %s; want e.n%d", got, want)
			}
		}
	}
	for round := 0; round < 12; round++ {
		p := event.AllEvents(tenant)
		if round%2 == 1 {
			p = event.ForWorkflow(tenant, wf) // through the index
		}
		s, err := b.SubscribeEvents(t.Context(), p, bus.StartEarliest())
		if err != nil {
			t.Fatal(err)
		}
		// Read a few, then resume from a cursor with another subscription.
		var cursor event.Position
		n := 3 + round
		for i := range n {
			d := bustest.Next(t, s)
			if d.Value.EventType != fmt.Sprintf("e.n%d", i) {
				t.Fatalf("round %d: got %s; want e.n%d", round, d.Value.EventType, i)
			}
			cursor = d.Pos
		}
		r, err := b.SubscribeEvents(t.Context(), p, bus.StartAfter(cursor))
		if err != nil {
			t.Fatal(err)
		}
		check(s, n)
		check(r, n)
	}
	<-done
}
