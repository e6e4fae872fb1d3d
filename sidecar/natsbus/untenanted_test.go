package natsbus

import (
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/flovyn/eventhook/sidecar/bus"
	"github.com/flovyn/eventhook/sidecar/bus/bustest"
	"github.com/flovyn/eventhook/sidecar/event"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
)

// The tests of stream events that arrive on NATS without a tenant, as Flovyn's server publishes them: they go to the
// tenant whose lifecycle events named their workflow first, to no one else, and not lost when they come first.

// natsBackends are the NATS-fed buses, which receive what others publish on NATS.
var natsBackends = []struct {
	name string
	open func(t testing.TB, cfg *Options) bus.Bus
}{
	{"jetstream", func(t testing.TB, cfg *Options) bus.Bus { return newJetStreamTestBus(t, cfg) }},
	{"nats", func(t testing.TB, cfg *Options) bus.Bus {
		cfg.Linger = time.Minute
		b, err := NewCore(t.Context(), *cfg, testLogger(nil, slog.LevelError))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}},
}

func connOf(b bus.Bus) *nats.Conn {
	switch b := b.(type) {
	case *JetStream:
		return b.conn.nc
	case *Core:
		return b.conn.nc
	}
	panic("not a NATS bus")
}

// rawStream publishes a stream event straight onto NATS, with no tenant header, as Flovyn's server does.
func rawStream(t testing.TB, b bus.Bus, wf, typ, payload string) {
	t.Helper()
	body := fmt.Sprintf(`{"workflowExecutionId":%q,"taskExecutionId":"","sequence":0,"type":%q,"payload":%q,"timestampMs":%d}`,
		wf, typ, payload, time.Now().UnixMilli())
	nc := connOf(b)
	if err := nc.Publish("flovyn.streams.workflow."+wf, []byte(body)); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

// rawEvent publishes a lifecycle event of tenant naming workflow wf straight onto NATS.
func rawEvent(t testing.TB, b bus.Bus, tenant uuid.UUID, eventType, wf string) {
	t.Helper()
	body := fmt.Sprintf(`{"id":%q,"workflow_execution_id":%q,"event_type":%q,"data":null}`, uuid.NewString(), wf, eventType)
	nc := connOf(b)
	if err := nc.Publish("flovyn.events."+tenant.String()+"."+eventType, []byte(body)); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

// nextPayload waits for the next stream event of s and returns its payload.
func nextPayload(t testing.TB, s bus.Subscription[event.StreamEvent]) string {
	t.Helper()
	d := bustest.Next(t, s)
	if d.Gap != nil {
		t.Fatalf("got gap %+v; want a stream event", *d.Gap)
	}
	return d.Value.Payload
}

// expectPayloads requires the next stream events of s to be want, in order.
func expectPayloads(t testing.TB, s bus.Subscription[event.StreamEvent], want ...string) {
	t.Helper()
	for _, w := range want {
		if got := nextPayload(t, s); got != w {
			t.Fatalf("payload %q; want %q", got, w)
		}
	}
}

// sentinel publishes a stream event for tenant (with its header) and requires it to be the next thing s gets: what
// came before it and was not delivered never will be.
func sentinel(t testing.TB, b bus.Bus, s bus.Subscription[event.StreamEvent], tenant uuid.UUID, wf string) {
	t.Helper()
	bustest.PublishStream(t, b, bustest.Stream(tenant, wf, "", 1, event.StreamToken, "sentinel"))
	if got := nextPayload(t, s); got != "sentinel" {
		t.Fatalf("tenant %s got %q; want nothing before its own sentinel", tenant, got)
	}
}

// TestUntenantedStreamsGoToTheOwner: a lifecycle event of A names the workflow, then Flovyn's server streams tokens
// without a tenant: A's subscribers get them, live and replayed; B's, which guess the workflow id, get nothing, even after
// B names the workflow in its own lifecycle event.
func TestUntenantedStreamsGoToTheOwner(t *testing.T) {
	for _, be := range natsBackends {
		t.Run(be.name, func(t *testing.T) {
			b := be.open(t, testOptions(t))
			t.Cleanup(func() { b.Close() })
			a, intruder, wf := uuid.New(), uuid.New(), uuid.NewString()
			owner := bustest.SubscribeStream(t, b, a, wf, bus.StartEarliest())
			guess := bustest.SubscribeStream(t, b, intruder, wf, bus.StartEarliest())
			rawEvent(t, b, a, "workflow.started", wf)
			waitOwner(t, b, wf, a)
			rawStream(t, b, wf, "TOKEN", "Hel")
			rawStream(t, b, wf, "TOKEN", "lo")
			expectPayloads(t, owner, "Hel", "lo")
			// The intruder names the workflow too: the first tenant to name it keeps it.
			rawEvent(t, b, intruder, "workflow.started", wf)
			bustest.PublishEvent(t, b, bustest.Event(intruder, "workflow.suspended").WithWorkflow(uuid.MustParse(wf)))
			rawStream(t, b, wf, "TOKEN", "!")
			expectPayloads(t, owner, "!")
			sentinel(t, b, guess, intruder, wf)
			// Replayed (from the store with jetstream, from the live ring with nats): only the owner's.
			late := bustest.SubscribeStream(t, b, a, wf, bus.StartEarliest())
			expectPayloads(t, late, "Hel", "lo", "!")
			lateGuess := bustest.SubscribeStream(t, b, intruder, wf, bus.StartEarliest())
			expectPayloads(t, lateGuess, "sentinel")
		})
	}
}

// waitOwner waits until b knows tenant as the owner of key (with jetstream, once the indexer has written the entry).
func waitOwner(t testing.TB, b bus.Bus, key string, tenant uuid.UUID) {
	t.Helper()
	deadline := time.Now().Add(bustest.WaitFor)
	for time.Now().Before(deadline) {
		var got uuid.UUID
		var ok bool
		switch b := b.(type) {
		case *JetStream:
			got, ok, _ = b.lookupOwner(t.Context(), key)
		case *Core:
			got, ok = b.owners.get(key)
		}
		if ok {
			if got != tenant {
				t.Fatalf("owner of %s is %s; want %s", key, got, tenant)
			}
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("the owner of %s was not known within %v", key, bustest.WaitFor)
}

// TestUntenantedStreamsBeforeTheirOwner: tokens without a tenant arrive before any lifecycle event names their
// workflow. They are not lost: the owner's subscriber gets them, in their order, once a lifecycle event names the
// workflow, and then the ones after; another tenant's subscriber gets none.
func TestUntenantedStreamsBeforeTheirOwner(t *testing.T) {
	for _, be := range natsBackends {
		t.Run(be.name, func(t *testing.T) {
			b := be.open(t, testOptions(t))
			t.Cleanup(func() { b.Close() })
			a, intruder, wf := uuid.New(), uuid.New(), uuid.NewString()
			owner := bustest.SubscribeStream(t, b, a, wf, bus.StartEarliest())
			guess := bustest.SubscribeStream(t, b, intruder, wf, bus.StartEarliest())
			bustest.PublishStream(t, b, bustest.Stream(a, wf, "", 1, event.StreamToken, "mine")) // a tenanted event first: delivered at once
			expectPayloads(t, owner, "mine")
			rawStream(t, b, wf, "TOKEN", "t1")
			rawStream(t, b, wf, "TOKEN", "t2")
			if d, ok := owner.Next(); ok {
				t.Fatalf("got %+v before any lifecycle event named the workflow", d)
			}
			waitUntenanted(t, b, 2)
			rawEvent(t, b, a, "workflow.started", wf) // as Flovyn's server publishes it
			expectPayloads(t, owner, "t1", "t2")
			rawStream(t, b, wf, "TOKEN", "t3")
			expectPayloads(t, owner, "t3")
			sentinel(t, b, guess, intruder, wf)
		})
	}
}

// waitUntenanted waits until the bus has counted n stream events without a known tenant.
func waitUntenanted(t testing.TB, b bus.Bus, n uint64) {
	t.Helper()
	deadline := time.Now().Add(bustest.WaitFor)
	for time.Now().Before(deadline) {
		if _, u := b.(bus.DropCounter).Dropped(); u >= n {
			if nb, ok := b.(*Core); ok { // the lifecycle events must be watched from now on
				nb.mu.Lock()
				watching := nb.claims != nil
				nb.mu.Unlock()
				if !watching {
					continue
				}
				if err := nb.conn.nc.Flush(); err != nil {
					t.Fatal(err)
				}
			}
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("fewer than %d untenanted stream events counted within %v", n, bustest.WaitFor)
}

// TestUntenantedOwnerSurvivesRestart: with jetstream the owner is read from the index in the store, so a sidecar
// started after the lifecycle events knows it without seeing them.
func TestUntenantedOwnerSurvivesRestart(t *testing.T) {
	cfg := testOptions(t)
	b := newJetStreamTestBus(t, cfg)
	a, wf := uuid.New(), uuid.NewString()
	bustest.PublishEvent(t, b, bustest.Event(a, "workflow.started").WithWorkflow(uuid.MustParse(wf)))
	waitOwner(t, b, wf, a)
	b.Close()

	b2 := newJetStreamTestBus(t, cfg)
	t.Cleanup(func() { b2.Close() })
	s := bustest.SubscribeStream(t, b2, a, wf, bus.StartEarliest())
	rawStream(t, b2, wf, "TOKEN", "after restart")
	expectPayloads(t, s, "after restart")
	if _, u := b2.Dropped(); u != 0 {
		t.Fatalf("%d untenanted counted; want 0 (the owner was known at once)", u)
	}
}

// TestUntenantedFallbacks: without a known owner, streams.untenanted_tenant_id takes the event; a known owner still
// comes first.
func TestUntenantedFallbacks(t *testing.T) {
	for _, be := range natsBackends {
		t.Run(be.name, func(t *testing.T) {
			cfg := testOptions(t)
			single := uuid.New()
			cfg.UntenantedTenant = single
			b := be.open(t, cfg)
			t.Cleanup(func() { b.Close() })
			a, wf, owned := uuid.New(), uuid.NewString(), uuid.NewString()
			s := bustest.SubscribeStream(t, b, single, wf, bus.StartEarliest())
			rawStream(t, b, wf, "PROGRESS", "0.5")
			expectPayloads(t, s, "0.5")

			rawEvent(t, b, a, "workflow.started", owned)
			waitOwner(t, b, owned, a)
			mine := bustest.SubscribeStream(t, b, a, owned, bus.StartEarliest())
			theirs := bustest.SubscribeStream(t, b, single, owned, bus.StartEarliest())
			rawStream(t, b, owned, "TOKEN", "owned")
			expectPayloads(t, mine, "owned")
			sentinel(t, b, theirs, single, owned)
		})
	}
}
