package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flovyn/eventhook/sidecar/event"
)

// TestEventsAreValid checks that the events the bench publishes are valid FlovynEvents with every field, that the
// direct path uses the sidecar's subject and message id for them, and that the marks the bench reads back are found.
func TestEventsAreValid(t *testing.T) {
	spec := eventSpec{tenant: newUUID(), eventType: "bench.single"}
	sent := time.Unix(1_700_000_000, 123456789)
	b, idAt := spec.appendEvent(nil, 42, sent)
	e, err := event.DecodeEvent(b)
	if err != nil {
		t.Fatalf("DecodeEvent(%s): %v", b, err)
	}
	if err := e.Validate(); err != nil {
		t.Fatalf("Validate(%s): %v", b, err)
	}
	subj, err := e.Subject()
	if err != nil || subj != spec.subject() {
		t.Errorf("subject %q, %v; the direct path publishes to %q", subj, err, spec.subject())
	}
	if got, want := spec.msgID(b, idAt), e.TenantID.String()+":"+e.ID.String(); got != want {
		t.Errorf("msgID = %q, want the sidecar's %q", got, want)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"id", "tenant_id", "workflow_execution_id", "task_execution_id", "event_type", "source", "data",
		"timestamp_ms", "correlation_id"} {
		if _, ok := fields[f]; !ok {
			t.Errorf("field %s missing from %s", f, b)
		}
	}
	seq, ns, ok := eventMarks(string(e.AppendJSON(nil)))
	if !ok || seq != 42 || ns != sent.UnixNano() {
		t.Errorf("eventMarks = %d, %d, %v; want 42, %d, true", seq, ns, ok, sent.UnixNano())
	}
	batch := spec.appendBatch(nil, 10, 3)
	if lines := bytes.Split(bytes.TrimSuffix(batch, []byte("\n")), []byte("\n")); len(lines) != 3 {
		t.Fatalf("appendBatch made %d lines: %s", len(lines), batch)
	}
	if _, _, ok := eventMarks(`{"data":null}`); ok {
		t.Error("eventMarks found marks in an event without them")
	}
}

func TestUUID(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		u := newUUID()
		if !isUUID(u) || u[14] != '4' || !strings.ContainsRune("89ab", rune(u[19])) || strings.ToLower(u) != u {
			t.Fatalf("newUUID() = %q: not a lower-case version 4 UUID", u)
		}
		if seen[u] {
			t.Fatalf("newUUID() repeated %q", u)
		}
		seen[u] = true
	}
	for _, bad := range []string{"", "acme", "3f0c2b1e-8a4d-4c61-9f0e-2d7b5a9c00e", "3f0c2b1e+8a4d-4c61-9f0e-2d7b5a9c00e1", "3f0c2b1e-8a4d-4c61-9f0e-2d7b5a9c00eg"} {
		if isUUID(bad) {
			t.Errorf("isUUID(%q) = true", bad)
		}
	}
	if !isUUID("3F0C2B1E-8A4D-4C61-9F0E-2D7B5A9C00E1") {
		t.Error("isUUID refuses upper case")
	}
}

func TestSummaries(t *testing.T) {
	var lat []time.Duration
	for i := 100; i >= 1; i-- {
		lat = append(lat, time.Duration(i)*time.Millisecond)
	}
	s := summarize(lat)
	if s.n != 100 || s.p50 != 50*time.Millisecond || s.p99 != 99*time.Millisecond || s.max != 100*time.Millisecond {
		t.Errorf("summarize = %+v", s)
	}
	if s := summarize(nil); s.n != 0 || s.p99 != 0 {
		t.Errorf("summarize(nil) = %+v", s)
	}
	if got := summarize([]time.Duration{7}); got.p50 != 7 || got.p99 != 7 {
		t.Errorf("summarize of one = %+v", got)
	}
	if m := median([]float64{5, 1, 3, 2, 4}); m != 3 {
		t.Errorf("median = %v", m)
	}
	if m := median([]float64{4, 1}); m != 1 {
		t.Errorf("median of two = %v, want the lower", m)
	}
}

func TestParseMetrics(t *testing.T) {
	m := parseMetrics([]byte(`# HELP process_resident_memory_bytes Resident memory size in bytes.
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 7.4129792e+07
process_cpu_seconds_total 1.25
eventhook_sse_subscribers 3
eventhook_published_total{kind="event"} 12
broken
`))
	want := map[string]float64{metricRSS: 74129792, metricCPU: 1.25, metricSubscribers: 3}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %v, want %v", k, m[k], v)
		}
	}
	if len(m) != len(want) {
		t.Errorf("parseMetrics kept %v; labelled and broken lines must be skipped", m)
	}
}

func TestFormatting(t *testing.T) {
	for _, tc := range []struct {
		v    float64
		unit string
		want string
	}{
		{1234567.4, unitEventsPerSec, "1,234,567"}, {999, unitDeliveriesPerSec, "999"}, {-1234, unitCount, "-1,234"},
		{0.12345, unitMs, "0.123"}, {15.678, unitKiB, "15.68"}, {72.84, unitMiB, "72.8"}, {0.5, unitPercentCore, "0.50"},
	} {
		if got := formatValue(tc.v, tc.unit); got != tc.want {
			t.Errorf("formatValue(%v, %s) = %q, want %q", tc.v, tc.unit, got, tc.want)
		}
	}
	w := wrap("note: "+strings.Repeat("word ", 40), "  ", 30)
	for _, line := range strings.Split(strings.TrimSuffix(w, "\n"), "\n") {
		if len(line) > 30 {
			t.Errorf("wrap left a line of %d bytes: %q", len(line), line)
		}
	}
}

func TestReportTableAndJSON(t *testing.T) {
	r := &runner{rep: &Report{Started: time.Now(), Machine: machine()}}
	r.add("a.x", "single c=16", "sidecar throughput", 900, unitEventsPerSec).vs("no-op handler", 1000).target("ratio ≥ 0.75", true)
	r.add("a.y", "single c=16", "no-op throughput", 1000, unitEventsPerSec)
	res := r.add("a.z", "fanout", "stalled", 3, unitOutcome)
	res.Text = "gap"
	res.target("gap or disconnect", false)
	r.note("a note")
	r.note("a note")
	var table bytes.Buffer
	if err := r.rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	out := table.String()
	for _, want := range []string{"nproc", "single c=16", "900", "no-op handler 1,000", "0.900", "ratio ≥ 0.75", "pass", "FAIL",
		"gap", "targets met: 1 of 2", "note: a note"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if strings.Count(out, "a note") != 1 {
		t.Errorf("a note added twice is printed twice:\n%s", out)
	}
	var js bytes.Buffer
	if err := r.rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatalf("the JSON report does not read back: %v\n%s", err, js.String())
	}
	if len(back.Results) != 3 || back.Results[0].Ratio == nil || math.Abs(*back.Results[0].Ratio-0.9) > 1e-9 || back.Results[2].Text != "gap" {
		t.Errorf("read back %+v", back.Results)
	}
}

func TestOptions(t *testing.T) {
	full := Options{}.withDefaults()
	quick := Options{Quick: true}.withDefaults()
	if full.Subscribers != 1000 || full.Idle != 10000 || full.Rate != 1000 || full.Reps != 5 || full.IdleTenants != 10 ||
		full.CPUSubscribers != 1000 || full.Socket != "./eventhook.sock" || len(full.Scenarios) != len(AllScenarios) {
		t.Errorf("full defaults: %+v", full)
	}
	if quick.Duration >= full.Duration || quick.Subscribers >= full.Subscribers || quick.Idle >= full.Idle {
		t.Errorf("quick defaults are not smaller: %+v", quick)
	}
	if o := (Options{Idle: 25000}).withDefaults(); o.IdleTenants != 25 {
		t.Errorf("25000 idle subscribers spread over %d tenants, want 25", o.IdleTenants)
	}
	if o := (Options{Quick: true, Subscribers: 7}).withDefaults(); o.Subscribers != 7 {
		t.Errorf("an explicit size lost to -quick: %d", o.Subscribers)
	}
	for _, bad := range []Options{
		{Scenarios: []string{"single", "x"}}, {Concurrency: []int{0}}, {Tenant: "acme"}, {Rate: -1}, {Subscribers: 1},
		{Idle: 10, CPUSubscribers: 11}, {Duration: -time.Second},
	} {
		if err := bad.Check(); err == nil {
			t.Errorf("Check(%+v) = nil, want an error", bad)
		}
	}
	if err := (Options{}).Check(); err != nil {
		t.Errorf("Check of the defaults: %v", err)
	}
}

func TestClosedLoop(t *testing.T) {
	var calls atomic.Int64
	res, err := closedLoop(t.Context(), 4, 10*time.Millisecond, 50*time.Millisecond, func(ctx context.Context, _ int) (int, error) {
		calls.Add(1)
		time.Sleep(time.Millisecond) // the operation being measured
		return 2, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.perSec <= 0 || res.lat.n == 0 || res.lat.p50 < time.Millisecond {
		t.Errorf("closedLoop = %+v after %d calls", res, calls.Load())
	}
	// An operation longer than the whole period still yields a figure.
	res, err = closedLoop(t.Context(), 1, 0, time.Millisecond, func(ctx context.Context, _ int) (int, error) {
		time.Sleep(5 * time.Millisecond)
		return 1000, nil
	})
	if err != nil || res.perSec <= 0 {
		t.Errorf("slow operation: %+v, %v", res, err)
	}
	boom := errors.New("boom")
	if _, err := closedLoop(t.Context(), 3, 0, time.Second, func(ctx context.Context, w int) (int, error) {
		return 0, boom
	}); !errors.Is(err, boom) {
		t.Errorf("closedLoop error = %v, want boom", err)
	}
}

func TestFixedRate(t *testing.T) {
	var calls atomic.Int64
	s, sent, err := fixedRate(t.Context(), 1000, 50*time.Millisecond, func(ctx context.Context, i int) error {
		calls.Add(1)
		return nil
	})
	if err != nil || sent != 50 || calls.Load() != 50 || s.n != 50 {
		t.Errorf("fixedRate: %+v, sent %d, calls %d, %v", s, sent, calls.Load(), err)
	}
	boom := errors.New("boom")
	if _, _, err := fixedRate(t.Context(), 1000, time.Second, func(ctx context.Context, i int) error {
		if i == 3 {
			return boom
		}
		return nil
	}); !errors.Is(err, boom) {
		t.Errorf("fixedRate error = %v, want boom", err)
	}
}

// TestBroadcaster checks the fan-out baseline on its own: every client gets every event of a batch, in order.
func TestBroadcaster(t *testing.T) {
	for _, network := range []string{"unix", "tcp"} {
		t.Run(network, func(t *testing.T) {
			srv, err := startLocal(network, "", newBroadcaster())
			if err != nil {
				t.Fatal(err)
			}
			defer srv.close()
			const n, m = 3, 1500
			subs, err := srv.target.subscribeMany(t.Context(), n, 2, func(int) string { return "/events/stream" }, m)
			if err != nil {
				t.Fatal(err)
			}
			spec := eventSpec{tenant: newUUID(), eventType: "bench.fanout"}
			for seq := 0; seq < m; seq += batchSize {
				if err := publishBatchHTTP(t.Context(), srv.target, spec, int64(seq), min(batchSize, m-seq)); err != nil {
					t.Fatal(err)
				}
			}
			if !waitAll(t.Context(), subs, 10*time.Second) {
				t.Error("not every event arrived")
			}
			closeAll(subs)
			run := measureFanout(subs, time.Now().Add(-time.Second))
			if run.delivered != n*m || run.missing != 0 || run.perSec <= 0 {
				t.Errorf("fan-out %+v", run)
			}
			// The no-op handler answers what the sidecar would.
			if err := publishHTTP(t.Context(), srv.target, spec, 0); err != nil {
				t.Errorf("no-op publish: %v", err)
			}
		})
	}
}

// TestStatusErrors checks that an unexpected status names the target, the request, the status and the body.
func TestStatusErrors(t *testing.T) {
	srv, err := startLocal("tcp", "", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusTooManyRequests)
		w.Write([]byte(`{"detail":"the sidecar serves its maximum of 10 streams (sse.max_subscribers)"}`))
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.close()
	_, err = srv.target.openRaw(t.Context(), "/events/stream", 0)
	if err == nil || !strings.Contains(err.Error(), "429") || !strings.Contains(err.Error(), "sse.max_subscribers") {
		t.Errorf("openRaw error = %v", err)
	}
	err = publishHTTP(t.Context(), srv.target, eventSpec{tenant: newUUID(), eventType: "x"}, 0)
	if err == nil || !strings.Contains(err.Error(), "POST /v1/events: HTTP 429") {
		t.Errorf("post error = %v", err)
	}
}
