package bus_test

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flovyn/eventhook/sidecar/bus"
	"github.com/flovyn/eventhook/sidecar/bus/bustest"
	"github.com/flovyn/eventhook/sidecar/event"
	"github.com/google/uuid"
)

func memoryContract() bustest.Contract {
	return bustest.Contract{
		NewBus: func(_ testing.TB, o bustest.Options) bus.Bus {
			return bus.NewMemory(bus.MemoryOptions{Feed: bus.FeedOptions{EventBuffer: 64, StreamBuffer: 32, Encoders: o.Encoders}})
		},
		EventBuffer: 64,
	}
}

func TestMemoryContract(t *testing.T) { bustest.Run(t, memoryContract()) }

// TestMemoryDefaultsContract runs the suite once with the default ring sizes (1024 events, 256 stream events).
func TestMemoryDefaultsContract(t *testing.T) {
	bustest.Run(t, bustest.Contract{NewBus: func(_ testing.TB, o bustest.Options) bus.Bus {
		return bus.NewMemory(bus.MemoryOptions{Feed: bus.FeedOptions{Encoders: o.Encoders}})
	}, EventBuffer: 1024})
}

// TestMemoryCleanup is the design's test_cleanup_event_channels: rings no one uses are removed, for both kinds, and a
// ring in use, or used within the idle TTL, is kept.
func TestMemoryCleanup(t *testing.T) {
	b := bus.NewMemory(bus.MemoryOptions{IdleTTL: time.Minute})
	defer b.Close()
	tenant, busy := uuid.New(), uuid.New()
	wf := uuid.NewString()
	bustest.PublishEvent(t, b, bustest.Event(tenant, "x"))
	bustest.PublishStream(t, b, bustest.Stream(tenant, wf, "", 1, event.StreamToken, "t"))
	s := bustest.Subscribe(t, b, event.AllEvents(busy), bus.StartLive())
	if ev, st := b.Channels(); ev != 2 || st != 1 {
		t.Fatalf("Channels() = %d, %d; want 2, 1", ev, st)
	}
	if n := b.Cleanup(time.Now()); n != 0 {
		t.Fatalf("cleanup within the idle TTL removed %d rings; want 0", n)
	}
	if n := b.Cleanup(time.Now().Add(2 * time.Minute)); n != 2 {
		t.Fatalf("cleanup after the idle TTL removed %d rings; want 2 (the tenant's and the stream's)", n)
	}
	if ev, st := b.Channels(); ev != 1 || st != 0 {
		t.Fatalf("Channels() = %d, %d; want only the ring with a subscriber", ev, st)
	}
	s.Close()
	if n := b.Cleanup(time.Now().Add(2 * time.Minute)); n != 1 {
		t.Fatalf("cleanup after the last subscriber left removed %d; want 1", n)
	}
	// A cleaned-up tenant works again from scratch.
	s2 := bustest.Subscribe(t, b, event.AllEvents(tenant), bus.StartEarliest())
	bustest.PublishEvent(t, b, bustest.Event(tenant, "again"))
	bustest.ExpectNext(t, s2, "again")
}

// TestMemoryDedupWindow checks that an id is forgotten once the window has passed.
func TestMemoryDedupWindow(t *testing.T) {
	h := bus.NewHub[event.FlovynEvent](bus.HubConfig[event.FlovynEvent]{Capacity: 8, IdleTTL: time.Minute, Dedup: time.Minute, DedupMax: 100}, 1, new(atomic.Uint64))
	e := bustest.Event(uuid.New(), "x")
	key := bus.TopicKey{Tenant: e.TenantID}
	now := time.Now()
	idx := []bus.IndexKey{{}}
	s1, _, _ := h.Publish(key, e, 0, 0, idx, e.ID, now)
	if s, dup, _ := h.Publish(key, e, 0, 0, idx, e.ID, now.Add(59*time.Second)); !dup || s != s1 {
		t.Fatalf("within the window: seq %d dup %v; want %d true", s, dup, s1)
	}
	if _, dup, _ := h.Publish(key, e, 0, 0, idx, e.ID, now.Add(61*time.Second)); dup {
		t.Fatal("after the window the id was still a duplicate")
	}
}

// TestMemoryMaxBytes checks that memory.max_bytes bounds what the rings hold: past it, the publishing ring gives up its
// oldest events, and a cursor before them gets a gap.
func TestMemoryMaxBytes(t *testing.T) {
	b := bus.NewMemory(bus.MemoryOptions{Feed: bus.FeedOptions{EventBuffer: 1024, MaxBytes: 2 * 64 << 10}})
	defer b.Close()
	tenant := uuid.New()
	first := bustest.PublishEvent(t, b, bustest.Event(tenant, "first"))
	big, _ := event.NewEvent(tenant, "big", "system", strings.Repeat("x", 4000))
	for range 100 { // 100 × ~4 KiB = ~400 KiB, past the 64 KiB the event rings may hold
		c := *big
		c.ID = uuid.New()
		bustest.PublishEvent(t, b, &c)
	}
	if held := b.EventBytes(); held > 64<<10 || held <= 0 {
		t.Fatalf("the event rings hold %d bytes; want at most %d", held, 64<<10)
	}
	s := bustest.Subscribe(t, b, event.AllEvents(tenant), bus.StartAfter(event.Position{Epoch: b.EventsEpoch(), Seq: first.Sequence}))
	if d := bustest.Next(t, s); d.Gap == nil || d.Gap.Reason != event.GapExpired {
		t.Fatalf("first delivery %+v; want an expired gap", d)
	}
	b.CleanupInactive()
}

// TestHubPendingBound checks how many items a subscriber may have pending: the ring's capacity by default, or
// hubConfig.pending (the JetStream hubs allow 4 × the ring). Beyond it the oldest are dropped and counted in a gap.
func TestHubPendingBound(t *testing.T) {
	for _, pending := range []int{0, 32} {
		t.Run(fmt.Sprint("pending=", pending), func(t *testing.T) {
			h := bus.NewHub[event.FlovynEvent](bus.HubConfig[event.FlovynEvent]{Capacity: 8, Pending: pending, IdleTTL: time.Minute}, 1, new(atomic.Uint64))
			defer h.Close()
			tenant := uuid.New()
			key := bus.TopicKey{Tenant: tenant}
			s, err := h.Subscribe(t.Context(), key, bus.IndexKey{}, nil, bus.StartLive())
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			for i := range 30 {
				h.Publish(key, bustest.Event(tenant, fmt.Sprintf("e.n%d", i)), 0, 0, []bus.IndexKey{{}}, uuid.Nil, time.Now())
			}
			want := 30 // all pending
			if pending == 0 {
				want = 8
			}
			first := 30 - want
			if want < 30 {
				if d, _ := s.Next(); d.Gap == nil || d.Gap.Reason != event.GapLagged || d.Gap.Missed != int64(first) {
					t.Fatalf("first delivery %+v; want a lagged gap of %d", d, first)
				}
			}
			for i := first; i < 30; i++ {
				if d, ok := s.Next(); !ok || d.Gap != nil || d.Value.EventType != fmt.Sprintf("e.n%d", i) {
					t.Fatalf("delivery %+v, %v; want e.n%d", d, ok, i)
				}
			}
		})
	}
}
