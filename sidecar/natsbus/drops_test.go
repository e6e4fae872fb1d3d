package natsbus

import (
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/flovyn/eventhook/sidecar/bus"
	"github.com/flovyn/eventhook/sidecar/bus/bustest"
	"github.com/flovyn/eventhook/sidecar/event"
)

// TestDropsAreLoggedOncePerMinute: a message dropped on NATS ingress is logged at warn with its subject and reason,
// at most one line per reason per minute, which counts the messages dropped since the line before.
func TestDropsAreLoggedOncePerMinute(t *testing.T) {
	var lines logRecorder
	clock := time.Unix(1_800_000_000, 0)
	s := &busStats{log: slog.New(slog.NewJSONHandler(&lines, nil)), now: func() time.Time { return clock }}
	for range 5 {
		s.dropInvalid("flovyn.events.t.x", dropNotEvent)
	}
	s.dropUntenanted("flovyn.streams.workflow.w", dropHeldNoTenant)
	clock = clock.Add(30 * time.Second)
	s.dropInvalid("flovyn.events.t.y", dropNotEvent)
	clock = clock.Add(31 * time.Second)
	s.dropInvalid("flovyn.events.t.z", dropNotEvent)
	type line struct {
		subject, reason string
		count           float64
	}
	var got []line
	for _, r := range lines.records(t, "message from NATS not delivered") {
		if r["level"] != "WARN" {
			t.Errorf("logged at %v; want WARN", r["level"])
		}
		got = append(got, line{r["subject"].(string), r["reason"].(string), r["count"].(float64)})
	}
	want := []line{{"flovyn.events.t.x", dropNotEvent, 1}, {"flovyn.streams.workflow.w", dropHeldNoTenant, 1},
		{"flovyn.events.t.z", dropNotEvent, 6}}
	if len(got) != len(want) {
		t.Fatalf("lines %+v; want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("line %d = %+v; want %+v", i, got[i], want[i])
		}
	}
	if s.invalid.Load() != 7 || s.untenanted.Load() != 1 {
		t.Errorf("counted %d invalid, %d untenanted; want 7, 1", s.invalid.Load(), s.untenanted.Load())
	}
}

// TestDropsOnTheWire: what another producer publishes wrongly onto NATS (not JSON, not UTF-8, another tenant's body) is
// not delivered, and is logged with its subject and why.
func TestDropsOnTheWire(t *testing.T) {
	var lines logRecorder
	b, err := NewJetStream(t.Context(), *testOptions(t), slog.New(slog.NewJSONHandler(&lines, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	tenant := uuid.New()
	s := bustest.Subscribe(t, b, event.AllEvents(tenant), bus.StartLive())
	base := "flovyn.events." + tenant.String() + "."
	for _, m := range []struct{ subject, body string }{
		{base + "garbage", "not json"},
		{base + "latin1", "{\"event_type\":\"latin1\",\"source\":\"caf\xe9\"}"}, // not UTF-8
		{base + "mismatch", `{"tenant_id":"` + uuid.NewString() + `","event_type":"mismatch"}`},
		{base + "sentinel", `{"event_type":"sentinel"}`},
	} {
		if err := b.Conn().Publish(m.subject, []byte(m.body)); err != nil {
			t.Fatal(err)
		}
	}
	bustest.ExpectNext(t, s, "sentinel")
	reasons := map[string]string{}
	for _, r := range lines.records(t, "message from NATS not delivered") {
		reasons[r["subject"].(string)] = r["reason"].(string)
	}
	if reasons[base+"garbage"] != dropNotEvent || reasons[base+"mismatch"] != dropOtherTenant || reasons[base+"latin1"] != dropNotUTF8 {
		t.Fatalf("logged %v; want the garbage as %q and the mismatch as %q", reasons, dropNotEvent, dropOtherTenant)
	}
}
