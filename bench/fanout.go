package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/flovyn/eventhook/sidecar/client"
)

// fanoutRun is the outcome of one fan-out run.
type fanoutRun struct {
	perSec    float64 // distinct deliveries per second, from the first publish to the last delivery
	lat       summary // delivery latencies (arrival − send)
	delivered int
	missing   int
	gaps      int
}

// fanoutOpenParallel is how many streams are opened at a time.
const fanoutOpenParallel = 64

// fanoutPath is the tenant stream of tenant.
func fanoutPath(tenant string) func(int) string {
	return func(int) string { return "/events/stream?tenant_id=" + tenant }
}

// fanoutOnce opens n subscribers of the tenant stream on t, publishes m events to t in batches, waits for every
// delivery (or the timeout) and measures.
func (r *runner) fanoutOnce(ctx context.Context, t *httpTarget, tenant string, n, m int) (fanoutRun, error) {
	subs, err := t.subscribeMany(ctx, n, fanoutOpenParallel, fanoutPath(tenant), m)
	if err != nil {
		return fanoutRun{}, err
	}
	spec := eventSpec{tenant: tenant, eventType: "bench.fanout"}
	start := time.Now()
	for seq := 0; seq < m; seq += batchSize {
		if err := publishBatchHTTP(ctx, t, spec, int64(seq), min(batchSize, m-seq)); err != nil {
			closeAll(subs)
			return fanoutRun{}, err
		}
	}
	waitAll(ctx, subs, r.o.Timeout)
	closeAll(subs)
	return measureFanout(subs, start), ctx.Err()
}

// measureFanout sums up the deliveries of closed subscribers.
func measureFanout(subs []*subscriber, start time.Time) fanoutRun {
	var run fanoutRun
	var last time.Time
	total := 0
	for _, s := range subs {
		total += len(s.lat)
	}
	lat := make([]time.Duration, 0, total)
	for _, s := range subs {
		run.delivered += s.distinct
		run.missing += s.missing()
		run.gaps += len(s.gaps)
		lat = append(lat, s.lat...)
		if s.last.After(last) {
			last = s.last
		}
	}
	if el := last.Sub(start); el > 0 {
		run.perSec = float64(run.delivered) / el.Seconds()
	}
	run.lat = summarize(lat)
	return run
}

// fanout measures the delivery of M events to N subscribers of one tenant, against the baseline broadcaster, then
// again with one of the N stalled (a connection that never reads) and checks what the stalled one sees once released.
func (r *runner) fanout(ctx context.Context) error {
	o := &r.o
	n, m := o.Subscribers, o.FanoutEvents
	// Client and server ends of every stream of the baseline live in this process.
	if err := raiseNoFile(uint64(2*n + 256)); err != nil {
		return err
	}
	scenario := fmt.Sprintf("fanout N=%d M=%d", n, m)
	// An unmeasured round on each side first: connections, goroutine stacks and buffers of N streams are made once.
	warm := min(m, 500)
	for _, t := range []*httpTarget{r.sidecar, r.baseline.target} {
		r.progress("%s: warming up %s (%d events)", scenario, t.name, warm)
		if _, err := r.fanoutOnce(ctx, t, newUUID(), n, warm); err != nil {
			return err
		}
	}
	if _, err := r.waitSubscribers(ctx, 0); err != nil {
		return err
	}
	r.progress("%s: sidecar", scenario)
	side, err := r.fanoutOnce(ctx, r.sidecar, newUUID(), n, m)
	if err != nil {
		return err
	}
	if _, err := r.waitSubscribers(ctx, 0); err != nil {
		return err
	}
	r.progress("%s: baseline broadcaster", scenario)
	base, err := r.fanoutOnce(ctx, r.baseline.target, newUUID(), n, m)
	if err != nil {
		return err
	}
	r.progress("%s: sidecar with one stalled subscriber", scenario)
	stall, outcome, err := r.fanoutStalled(ctx, n, m)
	if err != nil {
		return err
	}
	if _, err := r.waitSubscribers(ctx, 0); err != nil {
		return err
	}

	res := r.add("fanout.sidecar.deliveries_per_s", scenario, "sidecar deliveries", side.perSec, unitDeliveriesPerSec).
		vs("baseline broadcaster", base.perSec)
	res.target("ratio ≥ 0.9", res.Ratio != nil && *res.Ratio >= 0.9)
	r.add("fanout.sidecar.p50_ms", scenario, "sidecar delivery latency p50", ms(side.lat.p50), unitMs).vs("baseline", ms(base.lat.p50))
	r.add("fanout.sidecar.p99_ms", scenario, "sidecar delivery latency p99", ms(side.lat.p99), unitMs).vs("baseline", ms(base.lat.p99))
	r.add("fanout.sidecar.missing", scenario, "sidecar deliveries missing", float64(side.missing), unitCount).
		target("0 (all N×M delivered)", side.missing == 0)
	r.add("fanout.baseline.deliveries_per_s", scenario, "baseline deliveries", base.perSec, unitDeliveriesPerSec)
	r.add("fanout.baseline.p50_ms", scenario, "baseline delivery latency p50", ms(base.lat.p50), unitMs)
	r.add("fanout.baseline.p99_ms", scenario, "baseline delivery latency p99", ms(base.lat.p99), unitMs)
	r.add("fanout.baseline.missing", scenario, "baseline deliveries missing", float64(base.missing), unitCount)
	scenario += " +1 stalled"
	res = r.add("fanout.stalled.others_deliveries_per_s", scenario, "others' deliveries", stall.perSec, unitDeliveriesPerSec).
		vs("sidecar without a stalled one", side.perSec)
	res.target("ratio ≥ 0.9 (drop < 10 %)", res.Ratio != nil && *res.Ratio >= 0.9)
	r.add("fanout.stalled.others_p99_ms", scenario, "others' delivery latency p99", ms(stall.lat.p99), unitMs).
		vs("without", ms(side.lat.p99))
	r.add("fanout.stalled.others_missing", scenario, "others' deliveries missing", float64(stall.missing), unitCount).
		target("0", stall.missing == 0)
	res = r.add("fanout.stalled.outcome", scenario, "stalled subscriber once released", float64(outcome.received), unitOutcome)
	res.Text = outcome.kind
	res.target("gap or disconnect, no silent hole", outcome.ok)
	r.note("fanout: the stalled subscriber, once released: " + outcome.text)
	if side.gaps+stall.gaps > 0 {
		r.note(fmt.Sprintf("fanout: the sidecar's subscribers received %d gap notices (%d with the stalled one)", side.gaps+stall.gaps, stall.gaps))
	}
	r.note(fmt.Sprintf("fanout: N subscribers of one tenant's /events/stream receive M events published in batches of %d; "+
		"deliveries/s counts distinct events from the first publish to the last arrival. The baseline is a minimal net/http "+
		"SSE broadcaster served by the bench (a channel of %d events per client, a blocking hand-off, batched writes) on the "+
		"same transport, with the same client. In the stalled run, N-1 subscribers read and one never reads until the others "+
		"have everything; each side had an unmeasured warm-up run of %d events first", batchSize, broadcasterQueue, warm))
	return nil
}

// stallOutcome is what the stalled subscriber saw once released.
type stallOutcome struct {
	received int    // events received
	repeats  int    // events received again
	kind     string // what happened in a word or two: gap, disconnected, complete, silent hole, stuck
	text     string // what happened, for the report
	ok       bool   // a gap notice, a disconnect, or every event in order: never a silent hole
}

// fanoutStalled runs the sidecar fan-out with n−1 reading subscribers and one that never reads, then releases the
// stalled one and reports what it sees.
func (r *runner) fanoutStalled(ctx context.Context, n, m int) (fanoutRun, stallOutcome, error) {
	tenant := newUUID()
	stalled, err := r.sidecar.openRaw(ctx, fanoutPath(tenant)(0), 4096)
	if err != nil {
		return fanoutRun{}, stallOutcome{}, err
	}
	defer stalled.close()
	run, err := r.fanoutOnce(ctx, r.sidecar, tenant, n-1, m)
	if err != nil {
		return fanoutRun{}, stallOutcome{}, err
	}
	// The daemon disconnects a reader that takes no data for sse.write_timeout (10 s by default): wait a little more.
	return run, readStalled(stalled, m, min(r.o.Timeout, 15*time.Second)), nil
}

// readStalled reads the released stream until it has m events, a gap notice, an end, or timeout passes, and
// classifies what it saw.
func readStalled(s *rawStream, m int, timeout time.Duration) stallOutcome {
	t0 := time.Now()
	// The stalled connection was opened with a small receive buffer; a reader that small would trickle.
	if rb, ok := s.conn.(interface{ SetReadBuffer(int) error }); ok {
		_ = rb.SetReadBuffer(4 << 20)
	}
	_ = s.conn.SetReadDeadline(time.Now().Add(timeout))
	rd := client.NewSSEReader(s.body)
	var out stallOutcome
	next := int64(0)
	for {
		ev, err := rd.Next()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				out.kind = "stuck"
				out.text = fmt.Sprintf("stuck: %d of %d events within %v, no gap notice, still connected", out.received, m, timeout)
				return out
			}
			out.kind = "disconnected"
			out.text = fmt.Sprintf("disconnected after %d of %d events (%s), %v after its release", out.received, m, shortErr(err),
				time.Since(t0).Round(time.Millisecond))
			out.ok = true
			return out
		}
		switch ev.Event {
		case "gap":
			out.kind = "gap"
			out.text = fmt.Sprintf("event: gap %s after %d of %d events, %v after its release", ev.Data, out.received, m,
				time.Since(t0).Round(time.Millisecond))
			out.ok = true
			return out
		case "lifecycle":
			seq, _, ok := eventMarks(ev.Data)
			if !ok {
				continue
			}
			if seq < next {
				out.repeats++
				continue
			}
			if seq != next {
				out.kind = "silent hole"
				out.text = fmt.Sprintf("silent hole: event %d arrived after event %d, without a gap notice", seq, next-1)
				return out
			}
			next++
			out.received++
			if out.received == m {
				out.kind = "complete, no gap"
				out.text = fmt.Sprintf("all %d events in order, no gap (re-fed from the store), %v after its release", m,
					time.Since(t0).Round(time.Millisecond))
				if out.repeats > 0 {
					out.text += fmt.Sprintf(" (%d repeated)", out.repeats)
				}
				out.ok = true
				return out
			}
		}
	}
}

// shortErr names an error in a few words.
func shortErr(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 {
		s = s[i+2:]
	}
	return s
}
