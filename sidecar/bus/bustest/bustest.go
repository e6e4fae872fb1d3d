package bustest

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/flovyn/eventhook/sidecar/bus"
	"github.com/flovyn/eventhook/sidecar/event"
	"github.com/google/uuid"
)

// Contract describes a backend to the suite: how to build one, and the few things backends may differ in (see the
// delivery promises in the bus package's documentation). Backend-specific needs come in through its fields: NewBus
// builds the bus however the backend must (an embedded NATS server, say).
type Contract struct {
	// NewBus returns a fresh bus built with o; the suite closes it.
	NewBus func(t testing.TB, o Options) bus.Bus
	// EventBuffer is the number of lifecycle events the bus holds per tenant for live subscribers.
	EventBuffer int
	// RefeedsLagged is true when an overtaken subscriber is re-fed from a store instead of getting a lagged gap.
	RefeedsLagged bool
	// Durable is true when cursors survive restarts, so no reset gap exists.
	Durable bool
	// NoHistory is true when the backend holds nothing published before a subscriber asked for it (core NATS).
	NoHistory bool
	// AsyncFeed is true when deliveries reach the hub asynchronously after the publish returns, so a test cannot make a
	// reader fall behind on purpose (core NATS; the hub's overtaking logic is the memory backend's, tested there).
	AsyncFeed bool
	// NATSFed is true when live deliveries come through a NATS feed: an event acknowledged just before a live start may
	// still be on its way, and come.
	NATSFed bool
}

// Options are what the suite asks of a bus it builds.
type Options struct {
	// TenantKey is the key under which the bus writes the tenant of a lifecycle event where it writes events (NATS).
	TenantKey event.TenantKey
	// Encoders are the encoders the bus makes Delivery.Wire with.
	Encoders bus.Encoders
}

// contractEncoders are the encoders the suite gives a bus: each item's JSON, lifecycle events with the tenant under key.
func contractEncoders(key event.TenantKey) bus.Encoders {
	return bus.Encoders{
		Event:  func(e *event.FlovynEvent) []byte { return e.AppendJSONAs(nil, key) },
		Stream: func(s *event.StreamEvent) []byte { return s.AppendJSON(nil) },
	}
}

// Run checks every promise of the bus interfaces against one backend, each as a subtest. Every backend runs it
// unchanged. It reads deliveries as the SSE writer does: woken only through Subscription.SetNotify.
func Run(t *testing.T, c Contract) {
	tests := []struct {
		name string
		fn   func(*testing.T, Contract)
	}{
		{"PublishSubscribe", testPublishSubscribe},
		{"FilterByType", testFilterByType},
		{"FilterByWorkflowTaskSource", testFilterByIDs},
		{"TenantIsolation", testTenantIsolation},
		{"Order", testOrder},
		{"GapWhenOvertaken", testGapWhenOvertaken},
		{"PublishNeverBlocks", testPublishNeverBlocks},
		{"CursorResume", testCursorResume},
		{"CursorBeyondRing", testCursorBeyondRing},
		{"CursorFromEarlierProcess", testCursorReset},
		{"LateSubscriber", testLateSubscriber},
		{"Dedup", testDedup},
		{"Streams", testStreams},
		{"StreamIsolation", testStreamIsolation},
		{"TenantKey", testTenantKey},
		{"CloseFreesEverything", testCloseFrees},
		{"ContextCancelCloses", testContextCancel},
		{"WakeUp", func(t *testing.T, c Contract) { WakeUp(t, newTestBus(t, c)) }},
		{"BusCloseEndsGoroutines", testCloseEndsGoroutines},
		{"BusCloseEndsSubscriptions", testBusClose},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, c) })
	}
}

// --- helpers ---

// WaitFor is how long the helpers wait for a delivery before they fail the test.
const WaitFor = 5 * time.Second

func newTestBus(t testing.TB, c Contract) bus.Bus {
	t.Helper()
	b := c.NewBus(t, Options{Encoders: contractEncoders(event.TenantKeyTenantID)})
	t.Cleanup(func() { b.Close() })
	return b
}

// Next waits for the next delivery of s, failing the test after WaitFor. It waits as the SSE writer does: woken only
// through s.SetNotify (which it sets).
func Next[T any](t testing.TB, s bus.Subscription[T]) bus.Delivery[T] {
	t.Helper()
	deadline := time.NewTimer(WaitFor)
	defer deadline.Stop()
	woken := make(chan struct{}, 1)
	s.SetNotify(func() { // the wake-up the SSE writer relies on, and nothing else
		select {
		case woken <- struct{}{}:
		default:
		}
	})
	for {
		if d, ok := s.Next(); ok {
			return d
		}
		select {
		case <-woken:
		case <-s.Done():
			if d, ok := s.Next(); ok {
				return d
			}
			t.Fatalf("subscription ended while waiting for a delivery")
		case <-deadline.C:
			t.Fatalf("no delivery within %v", WaitFor)
		}
	}
}

// NextEvent waits for the next delivery, as Next does, and requires it to be an event.
func NextEvent(t testing.TB, s bus.Subscription[event.FlovynEvent]) *event.FlovynEvent {
	t.Helper()
	d := Next(t, s)
	if d.Gap != nil {
		t.Fatalf("got gap %+v; want an event", *d.Gap)
	}
	return d.Value
}

// PublishEvent publishes e on b, failing the test on an error.
func PublishEvent(t testing.TB, b bus.Bus, e *event.FlovynEvent) bus.PublishResult {
	t.Helper()
	r, err := b.PublishEvent(t.Context(), e)
	if err != nil {
		t.Fatalf("PublishEvent(%s): %v", e.EventType, err)
	}
	return r
}

// Subscribe subscribes to p on b from from, failing the test on an error; the test closes the subscription.
func Subscribe(t testing.TB, b bus.Bus, p event.EventPattern, from bus.Start) bus.Subscription[event.FlovynEvent] {
	t.Helper()
	s, err := b.SubscribeEvents(t.Context(), p, from)
	if err != nil {
		t.Fatalf("SubscribeEvents: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// Event returns a valid lifecycle event of tenant with the given type, source "system" and a small data object.
func Event(tenant uuid.UUID, eventType string) *event.FlovynEvent {
	e, _ := event.NewEvent(tenant, eventType, "system", map[string]string{"t": eventType})
	return e
}

// ExpectNext requires the next event to have the given type; a sentinel published after events that must not arrive
// proves, by arriving first, that they did not.
func ExpectNext(t testing.TB, s bus.Subscription[event.FlovynEvent], eventType string) *event.FlovynEvent {
	t.Helper()
	got := NextEvent(t, s)
	if got.EventType != eventType {
		t.Fatalf("next event type = %q; want %q", got.EventType, eventType)
	}
	return got
}

// --- the promises ---

func testPublishSubscribe(t *testing.T, c Contract) {
	b := newTestBus(t, c)
	tenant := uuid.New()
	s := Subscribe(t, b, event.AllEvents(tenant), bus.StartLive())
	e := Event(tenant, "workflow.completed")
	r := PublishEvent(t, b, e)
	got := NextEvent(t, s)
	if got.ID != e.ID || got.EventType != "workflow.completed" || string(got.Data) != `{"t":"workflow.completed"}` {
		t.Fatalf("got %s; want %s", got.AppendJSON(nil), e.AppendJSON(nil))
	}
	if r.Duplicate || r.Sequence == 0 {
		t.Fatalf("PublishResult = %+v; want a fresh sequence", r)
	}
	// Publishing to a tenant with no subscriber is not an error.
	PublishEvent(t, b, Event(uuid.New(), "workflow.started"))
}

func testFilterByType(t *testing.T, c Contract) {
	b := newTestBus(t, c)
	tenant := uuid.New()
	wf := Subscribe(t, b, event.ByType(tenant, "workflow"), bus.StartLive())
	comp := Subscribe(t, b, event.ByType(tenant, "workflow.comp"), bus.StartLive())
	for _, typ := range []string{"task.started", "workflow.started", "workflowx.other", "workflow.completed", "end"} {
		PublishEvent(t, b, Event(tenant, typ))
	}
	ExpectNext(t, wf, "workflow.started")
	ExpectNext(t, wf, "workflowx.other") // a plain string prefix, as Matches says
	ExpectNext(t, wf, "workflow.completed")
	ExpectNext(t, comp, "workflow.completed") // the design's dotted-prefix bug missed this one
	PublishEvent(t, b, Event(tenant, "workflow.comp.sentinel"))
	ExpectNext(t, comp, "workflow.comp.sentinel")
}

func testFilterByIDs(t *testing.T, c Contract) {
	b := newTestBus(t, c)
	tenant, wfA, wfB, task := uuid.New(), uuid.New(), uuid.New(), uuid.New()
	byWF := Subscribe(t, b, event.ForWorkflow(tenant, wfA), bus.StartLive())
	byTask := Subscribe(t, b, event.ForTask(tenant, task), bus.StartLive())
	bySource := Subscribe(t, b, event.AllEvents(tenant).WithSource("worker:1"), bus.StartLive())

	PublishEvent(t, b, Event(tenant, "workflow.started").WithWorkflow(wfB))
	PublishEvent(t, b, Event(tenant, "no.ids"))
	PublishEvent(t, b, Event(tenant, "task.started").WithWorkflow(wfA).WithTask(task))
	other := Event(tenant, "from.worker").WithWorkflow(wfA)
	other.Source = "worker:1"
	PublishEvent(t, b, other)

	ExpectNext(t, byWF, "task.started")
	ExpectNext(t, byWF, "from.worker")
	ExpectNext(t, byTask, "task.started")
	ExpectNext(t, bySource, "from.worker")
	sentinel := Event(tenant, "sentinel").WithWorkflow(wfA).WithTask(task)
	sentinel.Source = "worker:1"
	PublishEvent(t, b, sentinel)
	ExpectNext(t, byWF, "sentinel")
	ExpectNext(t, byTask, "sentinel")
	ExpectNext(t, bySource, "sentinel")
}

func testTenantIsolation(t *testing.T, c Contract) {
	b := newTestBus(t, c)
	a, other := uuid.New(), uuid.New()
	wf := uuid.New()
	all := Subscribe(t, b, event.AllEvents(a), bus.StartEarliest())
	byWF := Subscribe(t, b, event.ForWorkflow(a, wf), bus.StartEarliest())
	PublishEvent(t, b, Event(other, "test.event").WithWorkflow(wf)) // same workflow id, other tenant
	PublishEvent(t, b, Event(a, "sentinel").WithWorkflow(wf))
	ExpectNext(t, all, "sentinel")
	ExpectNext(t, byWF, "sentinel")
	late := Subscribe(t, b, event.AllEvents(a), bus.StartEarliest())
	ExpectNext(t, late, "sentinel")
}

func testOrder(t *testing.T, c Contract) {
	b := newTestBus(t, c)
	tenant, wf := uuid.New(), uuid.New()
	all := Subscribe(t, b, event.AllEvents(tenant), bus.StartLive())
	byWF := Subscribe(t, b, event.ForWorkflow(tenant, wf), bus.StartLive())
	n := min(200, c.EventBuffer)
	for i := range n {
		PublishEvent(t, b, Event(tenant, fmt.Sprintf("e.n%d", i)).WithWorkflow(wf))
	}
	var last uint64
	for i := range n {
		for _, s := range []bus.Subscription[event.FlovynEvent]{all, byWF} {
			d := Next(t, s)
			if d.Gap != nil || d.Value.EventType != fmt.Sprintf("e.n%d", i) {
				t.Fatalf("delivery %d = %+v; want e.n%d", i, d, i)
			}
			if s == all {
				if d.Pos.Seq <= last {
					t.Fatalf("sequence %d after %d: not increasing", d.Pos.Seq, last)
				}
				last = d.Pos.Seq
			}
		}
	}
}

func testGapWhenOvertaken(t *testing.T, c Contract) {
	if c.RefeedsLagged {
		t.Skip("this backend re-feeds an overtaken subscriber from its store: no lagged gap")
	}
	if c.AsyncFeed {
		t.Skip("deliveries are asynchronous: the reader cannot be made to fall behind on purpose")
	}
	b := newTestBus(t, c)
	tenant := uuid.New()
	s := Subscribe(t, b, event.AllEvents(tenant), bus.StartLive())
	total := c.EventBuffer + 10
	for i := range total {
		PublishEvent(t, b, Event(tenant, fmt.Sprintf("e.n%d", i)))
	}
	// Every position is accounted for: delivered in order, or counted in a lagged gap; and the reader was told.
	checkAccounted(t, s, 0, total, event.GapLagged)
}

// checkAccounted reads s until the event e.n<total-1> and checks that the events e.n<from>… arrive in order, that every
// position skipped is counted by a gap of the given reason, and that there was at least one gap.
func checkAccounted(t *testing.T, s bus.Subscription[event.FlovynEvent], from, total int, reason event.GapReason) {
	t.Helper()
	want, gaps := from, 0
	for want < total {
		d := Next(t, s)
		if d.Gap != nil {
			if d.Gap.Reason != reason || d.Gap.Missed <= 0 {
				t.Fatalf("gap %+v; want %s with a count", *d.Gap, reason)
			}
			want += int(d.Gap.Missed)
			gaps++
			continue
		}
		if got := d.Value.EventType; got != fmt.Sprintf("e.n%d", want) {
			t.Fatalf("got %s; want e.n%d (after %d gaps)", got, want, gaps)
		}
		want++
	}
	if want != total || gaps == 0 {
		t.Fatalf("accounted for %d of %d positions with %d gaps; want all, and a gap", want, total, gaps)
	}
}

func testPublishNeverBlocks(t *testing.T, c Contract) {
	b := newTestBus(t, c)
	tenant := uuid.New()
	Subscribe(t, b, event.AllEvents(tenant), bus.StartLive()) // never read
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for i := range 3 * c.EventBuffer {
		if _, err := b.PublishEvent(ctx, Event(tenant, "flood")); err != nil {
			t.Fatalf("publish %d with a stalled subscriber: %v", i, err)
		}
	}
}

func testCursorResume(t *testing.T, c Contract) {
	b := newTestBus(t, c)
	tenant := uuid.New()
	s := Subscribe(t, b, event.AllEvents(tenant), bus.StartLive())
	for i := range 5 {
		PublishEvent(t, b, Event(tenant, fmt.Sprintf("e.n%d", i)))
	}
	var cursor event.Position
	for i := range 3 {
		d := Next(t, s)
		if d.Gap != nil || d.Value.EventType != fmt.Sprintf("e.n%d", i) {
			t.Fatalf("delivery %d = %+v", i, d)
		}
		cursor = d.Pos
	}
	s.Close() // the client goes away after e.n2 and comes back with its cursor
	parsed, err := event.ParsePosition(cursor.String())
	if err != nil || parsed != cursor {
		t.Fatalf("ParsePosition(%q) = %v, %v; want %v", cursor.String(), parsed, err, cursor)
	}
	PublishEvent(t, b, Event(tenant, "e.n5"))
	r := Subscribe(t, b, event.AllEvents(tenant), bus.StartAfter(parsed))
	for _, want := range []string{"e.n3", "e.n4", "e.n5"} {
		ExpectNext(t, r, want)
	}
	PublishEvent(t, b, Event(tenant, "e.n6")) // and then live, with no hole at the seam
	ExpectNext(t, r, "e.n6")
}

func testCursorBeyondRing(t *testing.T, c Contract) {
	if c.Durable {
		t.Skip("a durable backend still holds the events a small ring would have dropped")
	}
	b := newTestBus(t, c)
	tenant := uuid.New()
	s := Subscribe(t, b, event.AllEvents(tenant), bus.StartLive())
	PublishEvent(t, b, Event(tenant, "e.first"))
	cursor := Next(t, s).Pos
	total := c.EventBuffer + 7
	for i := range total {
		PublishEvent(t, b, Event(tenant, fmt.Sprintf("e.n%d", i)))
	}
	// Read on to the end, so that the ring surely holds the last ones before the client comes back.
	last := fmt.Sprintf("e.n%d", total-1)
	for d := Next(t, s); d.Value == nil || d.Value.EventType != last; d = Next(t, s) {
	}
	s.Close()
	r := Subscribe(t, b, event.AllEvents(tenant), bus.StartAfter(cursor))
	checkAccounted(t, r, 0, total, event.GapExpired)
}

func testCursorReset(t *testing.T, c Contract) {
	if c.Durable {
		t.Skip("a durable backend's cursors survive restarts")
	}
	if c.NoHistory {
		t.Skip("core NATS holds nothing published before a subscriber")
	}
	b := newTestBus(t, c)
	tenant := uuid.New()
	PublishEvent(t, b, Event(tenant, "e.held"))
	stale := event.Position{Epoch: 12345, Seq: 1} // from an earlier process
	r := Subscribe(t, b, event.AllEvents(tenant), bus.StartAfter(stale))
	d := Next(t, r)
	if d.Gap == nil || d.Gap.Reason != event.GapReset {
		t.Fatalf("first delivery = %+v; want a reset gap", d)
	}
	ExpectNext(t, r, "e.held") // then what is held
}

func testLateSubscriber(t *testing.T, c Contract) {
	if c.NoHistory {
		t.Skip("core NATS holds nothing published before a subscriber")
	}
	b := newTestBus(t, c)
	tenant, wf, other := uuid.New(), uuid.New(), uuid.New()
	PublishEvent(t, b, Event(tenant, "workflow.started").WithWorkflow(wf))
	PublishEvent(t, b, Event(tenant, "workflow.started").WithWorkflow(other))
	PublishEvent(t, b, Event(tenant, "workflow.completed").WithWorkflow(wf))
	s := Subscribe(t, b, event.ForWorkflow(tenant, wf), bus.StartEarliest())
	ExpectNext(t, s, "workflow.started")
	ExpectNext(t, s, "workflow.completed")
	PublishEvent(t, b, Event(tenant, "live").WithWorkflow(wf))
	ExpectNext(t, s, "live")

	// A live start replays nothing held, and delivers what is published after it. An event acknowledged just before
	// may still be on its way through a NATS feed and come too (every event acknowledged after the start is
	// delivered; one acknowledged just before it may be too).
	live := Subscribe(t, b, event.AllEvents(tenant), bus.StartLive())
	PublishEvent(t, b, Event(tenant, "after"))
	if got := NextEvent(t, live); got.EventType == "live" && c.NATSFed {
		ExpectNext(t, live, "after")
	} else if got.EventType != "after" {
		t.Fatalf("first live delivery %q; want after (or live, still in flight through NATS)", got.EventType)
	}
}

func testDedup(t *testing.T, c Contract) {
	b := newTestBus(t, c)
	tenant, other := uuid.New(), uuid.New()
	s := Subscribe(t, b, event.AllEvents(tenant), bus.StartLive())
	e := Event(tenant, "once")
	first := PublishEvent(t, b, e)
	again := *e
	second := PublishEvent(t, b, &again)
	if first.Duplicate || !second.Duplicate || second.Sequence != first.Sequence {
		t.Fatalf("results %+v then %+v; want the second a duplicate with the original sequence", first, second)
	}
	// The same id in another tenant is another event: one tenant can never suppress another's.
	foreign := *e
	foreign.TenantID = other
	if r := PublishEvent(t, b, &foreign); r.Duplicate {
		t.Fatalf("the same id in another tenant was taken as a duplicate")
	}
	ExpectNext(t, s, "once")
	PublishEvent(t, b, Event(tenant, "sentinel"))
	ExpectNext(t, s, "sentinel")
}

// Stream returns a stream event of tenant on the workflow wf (or the standalone task task when wf is empty).
func Stream(tenant uuid.UUID, wf, task string, seq int32, typ event.StreamEventType, payload string) *event.StreamEvent {
	return &event.StreamEvent{TenantID: tenant, WorkflowExecutionID: wf, TaskExecutionID: task, Sequence: seq, Type: typ,
		Payload: payload, TimestampMs: time.Now().UnixMilli()}
}

// SubscribeStream subscribes to tenant's stream key on b from from, failing the test on an error; the test closes the
// subscription.
func SubscribeStream(t testing.TB, b bus.Bus, tenant uuid.UUID, key string, from bus.Start) bus.Subscription[event.StreamEvent] {
	t.Helper()
	s, err := b.SubscribeStream(t.Context(), tenant, key, from)
	if err != nil {
		t.Fatalf("SubscribeStream(%s): %v", key, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// PublishStream publishes s on b, failing the test on an error.
func PublishStream(t testing.TB, b bus.Bus, s *event.StreamEvent) {
	t.Helper()
	if _, err := b.PublishStream(t.Context(), s); err != nil {
		t.Fatalf("PublishStream: %v", err)
	}
}

func testStreams(t *testing.T, c Contract) {
	b := newTestBus(t, c)
	tenant := uuid.New()
	wf, task := uuid.NewString(), uuid.NewString()
	early := Stream(tenant, wf, task, 1, event.StreamToken, "Hel")
	var s bus.Subscription[event.StreamEvent]
	if c.NoHistory {
		s = SubscribeStream(t, b, tenant, wf, bus.StartEarliest())
	}
	PublishStream(t, b, early)
	if !c.NoHistory {
		s = SubscribeStream(t, b, tenant, wf, bus.StartEarliest())
	}
	if got := Next(t, s).Value; got.Payload != "Hel" {
		t.Fatalf("late subscriber got %+v; want the earlier token", got)
	}
	for i, p := range []string{"lo", "0.5", "line1\nline2"} {
		PublishStream(t, b, Stream(tenant, wf, task, int32(i+2), event.StreamToken, p))
	}
	for _, want := range []string{"lo", "0.5", "line1\nline2"} {
		if got := Next(t, s).Value; got.Payload != want {
			t.Fatalf("got payload %q; want %q", got.Payload, want)
		}
	}
	// A standalone task's stream is keyed by the task id, never by an empty workflow id.
	standalone := uuid.NewString()
	ts := SubscribeStream(t, b, tenant, standalone, bus.StartLive())
	PublishStream(t, b, Stream(tenant, "", standalone, 1, event.StreamProgress, "0.25"))
	if got := Next(t, ts).Value; got.Payload != "0.25" || got.Key() != standalone {
		t.Fatalf("standalone task stream got %+v", got)
	}
	if _, err := b.PublishStream(t.Context(), Stream(tenant, "", "", 1, event.StreamData, "x")); !errors.Is(err, event.ErrInvalidEvent) {
		t.Fatalf("PublishStream without ids = %v; want ErrInvalidEvent", err)
	}
	for _, bad := range []string{"", "a.b", "*", ">", "a b"} {
		if _, err := b.SubscribeStream(t.Context(), tenant, bad, bus.StartLive()); !errors.Is(err, event.ErrInvalidEvent) {
			t.Errorf("SubscribeStream(%q) = %v; want ErrInvalidEvent", bad, err)
		}
	}
}

func testStreamIsolation(t *testing.T, c Contract) {
	b := newTestBus(t, c)
	a, other := uuid.New(), uuid.New()
	wf := uuid.NewString()
	s := SubscribeStream(t, b, a, wf, bus.StartEarliest())
	PublishStream(t, b, Stream(other, wf, "", 1, event.StreamToken, "secret")) // another tenant guessed the workflow id
	PublishStream(t, b, Stream(a, wf, "", 2, event.StreamToken, "mine"))
	if got := Next(t, s).Value; got.Payload != "mine" {
		t.Fatalf("got %q; want only tenant A's stream events", got.Payload)
	}
}

// goroutines polls until the number of goroutines is at most want, and returns the last count.
//
// With want 0 it waits until the count is steady for a while (background work of an earlier step has ended) and
// returns it.
// testTenantKey: a bus built with a tenant key delivers each lifecycle event with its tenant, and Delivery.Wire is what
// the encoder it was given makes of the event, once for every subscriber. A NATS-fed bus reads back its own messages,
// written with that key.
func testTenantKey(t *testing.T, c Contract) {
	for _, key := range []event.TenantKey{event.TenantKeyTenantID, event.TenantKeyOrgID} {
		t.Run(string(key), func(t *testing.T) {
			b := c.NewBus(t, Options{TenantKey: key, Encoders: contractEncoders(key)})
			t.Cleanup(func() { b.Close() })
			tenant := uuid.New()
			s := Subscribe(t, b, event.AllEvents(tenant), bus.StartLive())
			e := Event(tenant, "workflow.completed").WithWorkflow(uuid.New())
			PublishEvent(t, b, e)
			d := Next(t, s)
			if d.Gap != nil || d.Value.ID != e.ID || d.Value.TenantID != tenant {
				t.Fatalf("delivered %+v; want the event of tenant %s", d, tenant)
			}
			if want := e.AppendJSONAs(nil, key); string(d.Wire) != string(want) {
				t.Fatalf("Wire = %q; want %q", d.Wire, want)
			}
		})
	}
}

// Goroutines polls the number of goroutines until it is at most want, for WaitFor at most, and returns it; with want
// 0 it returns the count once it has been steady for a while (a baseline).
func Goroutines(want int) int {
	deadline := time.Now().Add(WaitFor)
	n := runtime.NumGoroutine()
	if want == 0 {
		for steady := 0; steady < 50 && time.Now().Before(deadline); steady++ {
			time.Sleep(time.Millisecond)
			if m := runtime.NumGoroutine(); m != n {
				n, steady = m, 0
			}
		}
		return n
	}
	for n > want && time.Now().Before(deadline) {
		runtime.Gosched()
		time.Sleep(time.Millisecond) // polling with a deadline, not settling
		n = runtime.NumGoroutine()
	}
	return n
}

func testCloseFrees(t *testing.T, c Contract) {
	b := newTestBus(t, c)
	tenant := uuid.New()
	// Warm up: what a backend creates once, on first use (a reply subscription, say), is not a leak.
	warm := Subscribe(t, b, event.AllEvents(tenant), bus.StartLive())
	PublishEvent(t, b, Event(tenant, "warm").WithWorkflow(uuid.New()))
	ExpectNext(t, warm, "warm")
	warm.Close()
	base := Goroutines(0)
	var subs []bus.Subscription[event.FlovynEvent]
	for i := range 200 {
		p := event.ForWorkflow(tenant, uuid.New())
		if i%2 == 0 {
			p = event.AllEvents(tenant)
		}
		s, err := b.SubscribeEvents(t.Context(), p, bus.StartLive())
		if err != nil {
			t.Fatal(err)
		}
		subs = append(subs, s)
	}
	PublishEvent(t, b, Event(tenant, "pending")) // something left unread in half of them
	for _, s := range subs {
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		select {
		case <-s.Done():
		default:
			t.Fatal("Done not closed after Close")
		}
		if d, ok := s.Next(); ok {
			t.Fatalf("closed subscription still holds %+v", d)
		}
	}
	if n := Goroutines(base); n > base {
		buf := make([]byte, 1<<20)
		t.Fatalf("%d goroutines after closing every subscription; %d before:\n%s", n, base, buf[:runtime.Stack(buf, true)])
	}
}

func testContextCancel(t *testing.T, c Contract) {
	b := newTestBus(t, c)
	ctx, cancel := context.WithCancel(t.Context())
	s, err := b.SubscribeEvents(ctx, event.AllEvents(uuid.New()), bus.StartLive())
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case <-s.Done():
	case <-time.After(WaitFor):
		t.Fatal("cancelling the subscribe context did not end the subscription")
	}
}

func testBusClose(t *testing.T, c Contract) {
	b := c.NewBus(t, Options{Encoders: contractEncoders(event.TenantKeyTenantID)})
	s, err := b.SubscribeEvents(t.Context(), event.AllEvents(uuid.New()), bus.StartLive())
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case <-s.Done():
	case <-time.After(WaitFor):
		t.Fatal("closing the bus did not end its subscriptions")
	}
	if _, err := b.PublishEvent(t.Context(), Event(uuid.New(), "late")); !errors.Is(err, bus.ErrClosed) {
		t.Fatalf("PublishEvent after Close = %v; want ErrClosed", err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// WakeUp checks that a reader waiting on Subscription.SetNotify, as the SSE writer does, is woken by events published
// while it waits (lifecycle and stream events), and when the subscription ends. A Subscription that does not pass
// SetNotify on (a wrapper, say) fails it: its reader would see new deliveries only when something else woke it.
func WakeUp(t testing.TB, b bus.Bus) {
	tenant, wf := uuid.New(), uuid.NewString()
	events, err := b.SubscribeEvents(t.Context(), event.AllEvents(tenant), bus.StartLive())
	if err != nil {
		t.Fatalf("SubscribeEvents: %v", err)
	}
	defer events.Close()
	streams := SubscribeStream(t, b, tenant, wf, bus.StartLive())
	for i := range 3 {
		// The reader has drained everything and waits; the publish comes from another goroutine.
		go b.PublishEvent(context.WithoutCancel(t.Context()), Event(tenant, fmt.Sprintf("wake.n%d", i)))
		if e := NextEvent(t, events); e.EventType != fmt.Sprintf("wake.n%d", i) {
			t.Fatalf("woken for %q; want wake.n%d", e.EventType, i)
		}
		go b.PublishStream(context.WithoutCancel(t.Context()), Stream(tenant, wf, "", int32(i), event.StreamToken, "t"))
		if d := Next(t, streams); d.Value == nil || d.Value.Sequence != int32(i) {
			t.Fatalf("woken for %+v; want the token %d", d, i)
		}
	}
	woken := make(chan struct{}, 1)
	events.SetNotify(func() {
		select {
		case woken <- struct{}{}:
		default:
		}
	})
	events.Close()
	select {
	case <-woken:
	case <-time.After(WaitFor):
		t.Fatalf("Close did not wake the reader within %v", WaitFor)
	}
}

// testCloseEndsGoroutines: once the bus is closed, nothing it started runs any more (feeds, janitors, an embedded
// server), whatever subscriptions were open.
func testCloseEndsGoroutines(t *testing.T, c Contract) {
	base := Goroutines(0)
	b := c.NewBus(t, Options{Encoders: contractEncoders(event.TenantKeyTenantID)})
	tenant, wf := uuid.New(), uuid.New()
	s, err := b.SubscribeEvents(t.Context(), event.ForWorkflow(tenant, wf), bus.StartLive())
	if err != nil {
		t.Fatal(err)
	}
	st, err := b.SubscribeStream(t.Context(), tenant, wf.String(), bus.StartEarliest())
	if err != nil {
		t.Fatal(err)
	}
	PublishEvent(t, b, Event(tenant, "open").WithWorkflow(wf))
	ExpectNext(t, s, "open")
	PublishStream(t, b, Stream(tenant, wf.String(), "", 1, event.StreamToken, "t"))
	Next(t, st)
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if n := Goroutines(base); n > base {
		buf := make([]byte, 1<<20)
		t.Fatalf("%d goroutines after Close; %d before the bus:\n%s", n, base, buf[:runtime.Stack(buf, true)])
	}
}
