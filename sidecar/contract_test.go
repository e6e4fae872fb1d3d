package sidecar

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"testing"
	"time"

	"github.com/google/uuid"
)

// contract describes a backend to the contract suite: how to build one, and the few things SPEC §1 lets backends differ in.
type contract struct {
	// newBus returns a fresh bus; the suite closes it.
	newBus func(t testing.TB) Bus
	// eventBuffer is the number of lifecycle events the bus holds per tenant for live subscribers.
	eventBuffer int
	// refeedsLagged is true when an overtaken subscriber is re-fed from a store instead of getting a lagged gap.
	refeedsLagged bool
	// durable is true when cursors survive restarts, so no reset gap exists.
	durable bool
	// noHistory is true when the backend holds nothing published before a subscriber asked for it (core NATS).
	noHistory bool
	// asyncFeed is true when deliveries reach the hub asynchronously after the publish returns, so a test cannot make a
	// reader fall behind on purpose (core NATS; the hub's overtaking logic is the memory backend's, tested there).
	asyncFeed bool
	// natsFed is true when live deliveries come through a NATS feed: an event acknowledged just before a live start may
	// still be on its way, and come.
	natsFed bool
	// backend names the backend in a configuration (memory, nats, jetstream), for the cases that build their bus from
	// one with OpenBus.
	backend string
}

// runContract checks every promise of the bus interfaces against one backend. Every backend runs it unchanged.
func runContract(t *testing.T, c contract) {
	tests := []struct {
		name string
		fn   func(*testing.T, contract)
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
		{"BusCloseEndsSubscriptions", testBusClose},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, c) })
	}
}

// --- helpers ---

// newConfiguredBus opens the contract's backend with OpenBus from a test configuration that edit changes; the test
// closes it.
func newConfiguredBus(t testing.TB, c contract, edit func(*Config)) Bus {
	t.Helper()
	cfg := jetstreamConfig(t)
	cfg.Backend = c.backend
	edit(cfg)
	b, err := OpenBus(t.Context(), cfg, NewLogger(LogConfig{Level: "error"}, io.Discard))
	if err != nil {
		t.Fatalf("OpenBus(%s): %v", c.backend, err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

const waitFor = 5 * time.Second

func newTestBus(t testing.TB, c contract) Bus {
	t.Helper()
	b := c.newBus(t)
	t.Cleanup(func() { b.Close() })
	return b
}

// next waits for the next delivery of s, failing the test after a deadline.
func next[T any](t testing.TB, s Subscription[T]) Delivery[T] {
	t.Helper()
	deadline := time.NewTimer(waitFor)
	defer deadline.Stop()
	for {
		if d, ok := s.Next(); ok {
			return d
		}
		select {
		case <-s.Ready():
		case <-s.Done():
			if d, ok := s.Next(); ok {
				return d
			}
			t.Fatalf("subscription ended while waiting for a delivery")
		case <-deadline.C:
			t.Fatalf("no delivery within %v", waitFor)
		}
	}
}

// nextEvent waits for the next delivery and requires it to be an event.
func nextEvent(t testing.TB, s Subscription[FlovynEvent]) *FlovynEvent {
	t.Helper()
	d := next(t, s)
	if d.Gap != nil {
		t.Fatalf("got gap %+v; want an event", *d.Gap)
	}
	return d.Value
}

func publishEvent(t testing.TB, b Bus, e *FlovynEvent) PublishResult {
	t.Helper()
	r, err := b.PublishEvent(t.Context(), e)
	if err != nil {
		t.Fatalf("PublishEvent(%s): %v", e.EventType, err)
	}
	return r
}

func subscribe(t testing.TB, b Bus, p EventPattern, from Start) Subscription[FlovynEvent] {
	t.Helper()
	s, err := b.SubscribeEvents(t.Context(), p, from)
	if err != nil {
		t.Fatalf("SubscribeEvents: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func ev(tenant uuid.UUID, eventType string) *FlovynEvent {
	e, _ := NewEvent(tenant, eventType, "system", map[string]string{"t": eventType})
	return e
}

// expectNext requires the next event to have the given type; a sentinel published after events that must not arrive
// proves, by arriving first, that they did not.
func expectNext(t testing.TB, s Subscription[FlovynEvent], eventType string) *FlovynEvent {
	t.Helper()
	got := nextEvent(t, s)
	if got.EventType != eventType {
		t.Fatalf("next event type = %q; want %q", got.EventType, eventType)
	}
	return got
}

// --- the promises ---

func testPublishSubscribe(t *testing.T, c contract) {
	b := newTestBus(t, c)
	tenant := uuid.New()
	s := subscribe(t, b, AllEvents(tenant), StartLive())
	e := ev(tenant, "workflow.completed")
	r := publishEvent(t, b, e)
	got := nextEvent(t, s)
	if got.ID != e.ID || got.EventType != "workflow.completed" || string(got.Data) != `{"t":"workflow.completed"}` {
		t.Fatalf("got %s; want %s", got.AppendJSON(nil), e.AppendJSON(nil))
	}
	if r.Duplicate || r.Sequence == 0 {
		t.Fatalf("PublishResult = %+v; want a fresh sequence", r)
	}
	// Publishing to a tenant with no subscriber is not an error.
	publishEvent(t, b, ev(uuid.New(), "workflow.started"))
}

func testFilterByType(t *testing.T, c contract) {
	b := newTestBus(t, c)
	tenant := uuid.New()
	wf := subscribe(t, b, ByType(tenant, "workflow"), StartLive())
	comp := subscribe(t, b, ByType(tenant, "workflow.comp"), StartLive())
	for _, typ := range []string{"task.started", "workflow.started", "workflowx.other", "workflow.completed", "end"} {
		publishEvent(t, b, ev(tenant, typ))
	}
	expectNext(t, wf, "workflow.started")
	expectNext(t, wf, "workflowx.other") // a plain string prefix, as Matches says
	expectNext(t, wf, "workflow.completed")
	expectNext(t, comp, "workflow.completed") // the design's dotted-prefix bug missed this one
	publishEvent(t, b, ev(tenant, "workflow.comp.sentinel"))
	expectNext(t, comp, "workflow.comp.sentinel")
}

func testFilterByIDs(t *testing.T, c contract) {
	b := newTestBus(t, c)
	tenant, wfA, wfB, task := uuid.New(), uuid.New(), uuid.New(), uuid.New()
	byWF := subscribe(t, b, ForWorkflow(tenant, wfA), StartLive())
	byTask := subscribe(t, b, ForTask(tenant, task), StartLive())
	bySource := subscribe(t, b, AllEvents(tenant).WithSource("worker:1"), StartLive())

	publishEvent(t, b, ev(tenant, "workflow.started").WithWorkflow(wfB))
	publishEvent(t, b, ev(tenant, "no.ids"))
	publishEvent(t, b, ev(tenant, "task.started").WithWorkflow(wfA).WithTask(task))
	other := ev(tenant, "from.worker").WithWorkflow(wfA)
	other.Source = "worker:1"
	publishEvent(t, b, other)

	expectNext(t, byWF, "task.started")
	expectNext(t, byWF, "from.worker")
	expectNext(t, byTask, "task.started")
	expectNext(t, bySource, "from.worker")
	sentinel := ev(tenant, "sentinel").WithWorkflow(wfA).WithTask(task)
	sentinel.Source = "worker:1"
	publishEvent(t, b, sentinel)
	expectNext(t, byWF, "sentinel")
	expectNext(t, byTask, "sentinel")
	expectNext(t, bySource, "sentinel")
}

func testTenantIsolation(t *testing.T, c contract) {
	b := newTestBus(t, c)
	a, other := uuid.New(), uuid.New()
	wf := uuid.New()
	all := subscribe(t, b, AllEvents(a), StartEarliest())
	byWF := subscribe(t, b, ForWorkflow(a, wf), StartEarliest())
	publishEvent(t, b, ev(other, "test.event").WithWorkflow(wf)) // same workflow id, other tenant
	publishEvent(t, b, ev(a, "sentinel").WithWorkflow(wf))
	expectNext(t, all, "sentinel")
	expectNext(t, byWF, "sentinel")
	late := subscribe(t, b, AllEvents(a), StartEarliest())
	expectNext(t, late, "sentinel")
}

func testOrder(t *testing.T, c contract) {
	b := newTestBus(t, c)
	tenant, wf := uuid.New(), uuid.New()
	all := subscribe(t, b, AllEvents(tenant), StartLive())
	byWF := subscribe(t, b, ForWorkflow(tenant, wf), StartLive())
	n := min(200, c.eventBuffer)
	for i := range n {
		publishEvent(t, b, ev(tenant, fmt.Sprintf("e.n%d", i)).WithWorkflow(wf))
	}
	var last uint64
	for i := range n {
		for _, s := range []Subscription[FlovynEvent]{all, byWF} {
			d := next(t, s)
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

func testGapWhenOvertaken(t *testing.T, c contract) {
	if c.refeedsLagged {
		t.Skip("this backend re-feeds an overtaken subscriber from its store: no lagged gap")
	}
	if c.asyncFeed {
		t.Skip("deliveries are asynchronous: the reader cannot be made to fall behind on purpose")
	}
	b := newTestBus(t, c)
	tenant := uuid.New()
	s := subscribe(t, b, AllEvents(tenant), StartLive())
	total := c.eventBuffer + 10
	for i := range total {
		publishEvent(t, b, ev(tenant, fmt.Sprintf("e.n%d", i)))
	}
	// Every position is accounted for: delivered in order, or counted in a lagged gap; and the reader was told.
	checkAccounted(t, s, 0, total, GapLagged)
}

// checkAccounted reads s until the event e.n<total-1> and checks that the events e.n<from>… arrive in order, that every
// position skipped is counted by a gap of the given reason, and that there was at least one gap.
func checkAccounted(t *testing.T, s Subscription[FlovynEvent], from, total int, reason GapReason) {
	t.Helper()
	want, gaps := from, 0
	for want < total {
		d := next(t, s)
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

func testPublishNeverBlocks(t *testing.T, c contract) {
	b := newTestBus(t, c)
	tenant := uuid.New()
	subscribe(t, b, AllEvents(tenant), StartLive()) // never read
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for i := range 3 * c.eventBuffer {
		if _, err := b.PublishEvent(ctx, ev(tenant, "flood")); err != nil {
			t.Fatalf("publish %d with a stalled subscriber: %v", i, err)
		}
	}
}

func testCursorResume(t *testing.T, c contract) {
	b := newTestBus(t, c)
	tenant := uuid.New()
	s := subscribe(t, b, AllEvents(tenant), StartLive())
	for i := range 5 {
		publishEvent(t, b, ev(tenant, fmt.Sprintf("e.n%d", i)))
	}
	var cursor Position
	for i := range 3 {
		d := next(t, s)
		if d.Gap != nil || d.Value.EventType != fmt.Sprintf("e.n%d", i) {
			t.Fatalf("delivery %d = %+v", i, d)
		}
		cursor = d.Pos
	}
	s.Close() // the client goes away after e.n2 and comes back with its cursor
	parsed, err := ParsePosition(cursor.String())
	if err != nil || parsed != cursor {
		t.Fatalf("ParsePosition(%q) = %v, %v; want %v", cursor.String(), parsed, err, cursor)
	}
	publishEvent(t, b, ev(tenant, "e.n5"))
	r := subscribe(t, b, AllEvents(tenant), StartAfter(parsed))
	for _, want := range []string{"e.n3", "e.n4", "e.n5"} {
		expectNext(t, r, want)
	}
	publishEvent(t, b, ev(tenant, "e.n6")) // and then live, with no hole at the seam
	expectNext(t, r, "e.n6")
}

func testCursorBeyondRing(t *testing.T, c contract) {
	if c.durable {
		t.Skip("a durable backend still holds the events a small ring would have dropped")
	}
	b := newTestBus(t, c)
	tenant := uuid.New()
	s := subscribe(t, b, AllEvents(tenant), StartLive())
	publishEvent(t, b, ev(tenant, "e.first"))
	cursor := next(t, s).Pos
	total := c.eventBuffer + 7
	for i := range total {
		publishEvent(t, b, ev(tenant, fmt.Sprintf("e.n%d", i)))
	}
	// Read on to the end, so that the ring surely holds the last ones before the client comes back.
	last := fmt.Sprintf("e.n%d", total-1)
	for d := next(t, s); d.Value == nil || d.Value.EventType != last; d = next(t, s) {
	}
	s.Close()
	r := subscribe(t, b, AllEvents(tenant), StartAfter(cursor))
	checkAccounted(t, r, 0, total, GapExpired)
}

func testCursorReset(t *testing.T, c contract) {
	if c.durable {
		t.Skip("a durable backend's cursors survive restarts")
	}
	if c.noHistory {
		t.Skip("core NATS holds nothing published before a subscriber")
	}
	b := newTestBus(t, c)
	tenant := uuid.New()
	publishEvent(t, b, ev(tenant, "e.held"))
	stale := Position{Epoch: 12345, Seq: 1} // from an earlier process
	r := subscribe(t, b, AllEvents(tenant), StartAfter(stale))
	d := next(t, r)
	if d.Gap == nil || d.Gap.Reason != GapReset {
		t.Fatalf("first delivery = %+v; want a reset gap", d)
	}
	expectNext(t, r, "e.held") // then what is held
}

func testLateSubscriber(t *testing.T, c contract) {
	if c.noHistory {
		t.Skip("core NATS holds nothing published before a subscriber")
	}
	b := newTestBus(t, c)
	tenant, wf, other := uuid.New(), uuid.New(), uuid.New()
	publishEvent(t, b, ev(tenant, "workflow.started").WithWorkflow(wf))
	publishEvent(t, b, ev(tenant, "workflow.started").WithWorkflow(other))
	publishEvent(t, b, ev(tenant, "workflow.completed").WithWorkflow(wf))
	s := subscribe(t, b, ForWorkflow(tenant, wf), StartEarliest())
	expectNext(t, s, "workflow.started")
	expectNext(t, s, "workflow.completed")
	publishEvent(t, b, ev(tenant, "live").WithWorkflow(wf))
	expectNext(t, s, "live")

	// A live start replays nothing held, and delivers what is published after it. An event acknowledged just before
	// may still be on its way through a NATS feed and come too (SPEC §4 promises every event acknowledged after the
	// start, and nothing older than that is lost by coming).
	live := subscribe(t, b, AllEvents(tenant), StartLive())
	publishEvent(t, b, ev(tenant, "after"))
	if got := nextEvent(t, live); got.EventType == "live" && c.natsFed {
		expectNext(t, live, "after")
	} else if got.EventType != "after" {
		t.Fatalf("first live delivery %q; want after (or live, still in flight through NATS)", got.EventType)
	}
}

func testDedup(t *testing.T, c contract) {
	b := newTestBus(t, c)
	tenant, other := uuid.New(), uuid.New()
	s := subscribe(t, b, AllEvents(tenant), StartLive())
	e := ev(tenant, "once")
	first := publishEvent(t, b, e)
	again := *e
	second := publishEvent(t, b, &again)
	if first.Duplicate || !second.Duplicate || second.Sequence != first.Sequence {
		t.Fatalf("results %+v then %+v; want the second a duplicate with the original sequence", first, second)
	}
	// The same id in another tenant is another event: one tenant can never suppress another's.
	foreign := *e
	foreign.TenantID = other
	if r := publishEvent(t, b, &foreign); r.Duplicate {
		t.Fatalf("the same id in another tenant was taken as a duplicate")
	}
	expectNext(t, s, "once")
	publishEvent(t, b, ev(tenant, "sentinel"))
	expectNext(t, s, "sentinel")
}

func stream(tenant uuid.UUID, wf, task string, seq int32, typ StreamEventType, payload string) *StreamEvent {
	return &StreamEvent{TenantID: tenant, WorkflowExecutionID: wf, TaskExecutionID: task, Sequence: seq, Type: typ,
		Payload: payload, TimestampMs: time.Now().UnixMilli()}
}

func subscribeStream(t testing.TB, b Bus, tenant uuid.UUID, key string, from Start) Subscription[StreamEvent] {
	t.Helper()
	s, err := b.SubscribeStream(t.Context(), tenant, key, from)
	if err != nil {
		t.Fatalf("SubscribeStream(%s): %v", key, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func publishStream(t testing.TB, b Bus, s *StreamEvent) {
	t.Helper()
	if _, err := b.PublishStream(t.Context(), s); err != nil {
		t.Fatalf("PublishStream: %v", err)
	}
}

func testStreams(t *testing.T, c contract) {
	b := newTestBus(t, c)
	tenant := uuid.New()
	wf, task := uuid.NewString(), uuid.NewString()
	early := stream(tenant, wf, task, 1, StreamToken, "Hel")
	var s Subscription[StreamEvent]
	if c.noHistory {
		s = subscribeStream(t, b, tenant, wf, StartEarliest())
	}
	publishStream(t, b, early)
	if !c.noHistory {
		s = subscribeStream(t, b, tenant, wf, StartEarliest())
	}
	if got := next(t, s).Value; got.Payload != "Hel" {
		t.Fatalf("late subscriber got %+v; want the earlier token", got)
	}
	for i, p := range []string{"lo", "0.5", "line1\nline2"} {
		publishStream(t, b, stream(tenant, wf, task, int32(i+2), StreamToken, p))
	}
	for _, want := range []string{"lo", "0.5", "line1\nline2"} {
		if got := next(t, s).Value; got.Payload != want {
			t.Fatalf("got payload %q; want %q", got.Payload, want)
		}
	}
	// A standalone task's stream is keyed by the task id, never by an empty workflow id.
	standalone := uuid.NewString()
	ts := subscribeStream(t, b, tenant, standalone, StartLive())
	publishStream(t, b, stream(tenant, "", standalone, 1, StreamProgress, "0.25"))
	if got := next(t, ts).Value; got.Payload != "0.25" || got.Key() != standalone {
		t.Fatalf("standalone task stream got %+v", got)
	}
	if _, err := b.PublishStream(t.Context(), stream(tenant, "", "", 1, StreamData, "x")); !errors.Is(err, ErrInvalidEvent) {
		t.Fatalf("PublishStream without ids = %v; want ErrInvalidEvent", err)
	}
	for _, bad := range []string{"", "a.b", "*", ">", "a b"} {
		if _, err := b.SubscribeStream(t.Context(), tenant, bad, StartLive()); !errors.Is(err, ErrInvalidEvent) {
			t.Errorf("SubscribeStream(%q) = %v; want ErrInvalidEvent", bad, err)
		}
	}
}

func testStreamIsolation(t *testing.T, c contract) {
	b := newTestBus(t, c)
	a, other := uuid.New(), uuid.New()
	wf := uuid.NewString()
	s := subscribeStream(t, b, a, wf, StartEarliest())
	publishStream(t, b, stream(other, wf, "", 1, StreamToken, "secret")) // another tenant guessed the workflow id
	publishStream(t, b, stream(a, wf, "", 2, StreamToken, "mine"))
	if got := next(t, s).Value; got.Payload != "mine" {
		t.Fatalf("got %q; want only tenant A's stream events", got.Payload)
	}
}

// goroutines polls until the number of goroutines is at most want, and returns the last count.
//
// With want 0 it waits until the count is steady for a while (background work of an earlier step has ended) and
// returns it.
// testTenantKey: a bus opened with events.tenant_key delivers each lifecycle event with its tenant, and the frame it
// encodes once for every SSE subscriber (Delivery.Wire; every backend of this package encodes) writes the tenant under
// that key, tenant_id or org_id. A NATS-fed bus reads back its own messages, written with that key.
func testTenantKey(t *testing.T, c contract) {
	for _, key := range []TenantKey{TenantKeyTenantID, TenantKeyOrgID} {
		t.Run(string(key), func(t *testing.T) {
			b := newConfiguredBus(t, c, func(cfg *Config) { cfg.Events.TenantKey = key })
			tenant := uuid.New()
			s := subscribe(t, b, AllEvents(tenant), StartLive())
			e := ev(tenant, "workflow.completed").WithWorkflow(uuid.New())
			publishEvent(t, b, e)
			d := next(t, s)
			if d.Gap != nil || d.Value.ID != e.ID || d.Value.TenantID != tenant {
				t.Fatalf("delivered %+v; want the event of tenant %s", d, tenant)
			}
			if want := appendLifecycleFrame(nil, e, key); string(d.Wire) != string(want) {
				t.Fatalf("Wire = %q; want %q", d.Wire, want)
			}
		})
	}
}

func goroutines(want int) int {
	deadline := time.Now().Add(waitFor)
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

func testCloseFrees(t *testing.T, c contract) {
	b := newTestBus(t, c)
	tenant := uuid.New()
	// Warm up: what a backend creates once, on first use (a reply subscription, say), is not a leak.
	warm := subscribe(t, b, AllEvents(tenant), StartLive())
	publishEvent(t, b, ev(tenant, "warm").WithWorkflow(uuid.New()))
	expectNext(t, warm, "warm")
	warm.Close()
	base := goroutines(0)
	var subs []Subscription[FlovynEvent]
	for i := range 200 {
		p := ForWorkflow(tenant, uuid.New())
		if i%2 == 0 {
			p = AllEvents(tenant)
		}
		s, err := b.SubscribeEvents(t.Context(), p, StartLive())
		if err != nil {
			t.Fatal(err)
		}
		subs = append(subs, s)
	}
	publishEvent(t, b, ev(tenant, "pending")) // something left unread in half of them
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
	if n := goroutines(base); n > base {
		buf := make([]byte, 1<<20)
		t.Fatalf("%d goroutines after closing every subscription; %d before:\n%s", n, base, buf[:runtime.Stack(buf, true)])
	}
}

func testContextCancel(t *testing.T, c contract) {
	b := newTestBus(t, c)
	ctx, cancel := context.WithCancel(t.Context())
	s, err := b.SubscribeEvents(ctx, AllEvents(uuid.New()), StartLive())
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case <-s.Done():
	case <-time.After(waitFor):
		t.Fatal("cancelling the subscribe context did not end the subscription")
	}
}

func testBusClose(t *testing.T, c contract) {
	b := c.newBus(t)
	s, err := b.SubscribeEvents(t.Context(), AllEvents(uuid.New()), StartLive())
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case <-s.Done():
	case <-time.After(waitFor):
		t.Fatal("closing the bus did not end its subscriptions")
	}
	if _, err := b.PublishEvent(t.Context(), ev(uuid.New(), "late")); !errors.Is(err, ErrClosed) {
		t.Fatalf("PublishEvent after Close = %v; want ErrClosed", err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}
