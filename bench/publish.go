package bench

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

// single measures one event per request at each concurrency, against the sidecar, the no-op handler and nats.go's
// synchronous publish, interleaved per concurrency.
func (r *runner) single(ctx context.Context) error {
	o := &r.o
	spec := eventSpec{tenant: o.Tenant, eventType: "bench.single"}
	// The direct publishes go to a tenant of their own: the daemon has no feed for it, as it has none for spec.tenant.
	direct := eventSpec{tenant: newUUID(), eventType: "bench.single"}
	for _, c := range o.Concurrency {
		scenario := fmt.Sprintf("single c=%d", c)
		key := "single.c" + strconv.Itoa(c) + "."
		names := []string{"sidecar", "no-op handler", "direct nats.go"}
		results, err := interleaved(ctx, o.Rounds, c, o.Warmup, o.Duration, func(op, round int) {
			r.progress("%s: %s (round %d of %d)", scenario, names[op], round+1, o.Rounds)
		}, func(ctx context.Context, _ int) (int, error) {
			return 1, publishHTTP(ctx, r.sidecar, spec, 0)
		}, func(ctx context.Context, _ int) (int, error) {
			return 1, publishHTTP(ctx, r.noop.target, spec, 0)
		}, func(ctx context.Context, _ int) (int, error) {
			return 1, r.publishDirect(ctx, direct, 0)
		})
		if err != nil {
			return err
		}
		r.addThreeWay(key, scenario, "", c, results)
	}
	return nil
}

// batch measures NDJSON batches of 1000 events against nats.go's asynchronous publish of 1000 events and a wait for
// their acks.
func (r *runner) batch(ctx context.Context) error {
	o := &r.o
	spec := eventSpec{tenant: o.Tenant, eventType: "bench.batch"}
	direct := eventSpec{tenant: newUUID(), eventType: "bench.batch"}
	scenario := fmt.Sprintf("batch %d/request", batchSize)
	if o.BatchConcurrency > 1 {
		scenario += fmt.Sprintf(" c=%d", o.BatchConcurrency)
	}
	names := []string{"sidecar", "direct nats.go"}
	results, err := interleaved(ctx, o.Rounds, o.BatchConcurrency, o.Warmup, o.Duration, func(op, round int) {
		r.progress("%s: %s (round %d of %d)", scenario, names[op], round+1, o.Rounds)
	}, func(ctx context.Context, _ int) (int, error) {
		return batchSize, publishBatchHTTP(ctx, r.sidecar, spec, 0, batchSize)
	}, func(ctx context.Context, _ int) (int, error) {
		return batchSize, r.publishBatchDirect(ctx, direct, 0, batchSize)
	})
	if err != nil {
		return err
	}
	side, dir := results[0], results[1]
	res := r.add("batch.sidecar.events_per_s", scenario, "sidecar throughput", side.perSec, unitEventsPerSec).
		vs("direct nats.go async", dir.perSec)
	res.target("ratio ≥ 0.7", res.Ratio != nil && *res.Ratio >= 0.7)
	r.add("batch.direct.events_per_s", scenario, "direct nats.go async throughput", dir.perSec, unitEventsPerSec)
	r.add("batch.sidecar.p50_ms", scenario, "sidecar batch latency p50", ms(side.lat.p50), unitMs).vs("direct", ms(dir.lat.p50))
	r.add("batch.sidecar.p99_ms", scenario, "sidecar batch latency p99", ms(side.lat.p99), unitMs).vs("direct", ms(dir.lat.p99))
	r.add("batch.direct.p50_ms", scenario, "direct batch latency p50", ms(dir.lat.p50), unitMs)
	r.add("batch.direct.p99_ms", scenario, "direct batch latency p99", ms(dir.lat.p99), unitMs)
	return nil
}

// latencyRep is the outcome of one repetition of the latency scenario.
type latencyRep struct {
	sidecar, noop, direct, sse summary
	missing                    int
	gaps                       int
}

// latency publishes at a fixed rate with one SSE subscriber of the tenant, and measures publish→SSE latency and
// publish latency against the no-op handler and nats.go's synchronous publish, in interleaved repetitions (sidecar,
// no-op, direct, sidecar, …). Each figure is the median of the repetitions.
func (r *runner) latency(ctx context.Context) error {
	o := &r.o
	spec := eventSpec{tenant: o.Tenant, eventType: "bench.latency"}
	direct := eventSpec{tenant: newUUID(), eventType: "bench.latency"}
	scenario := fmt.Sprintf("latency %d/s", o.Rate)
	postSidecar := func(ctx context.Context, i int) error { return publishHTTP(ctx, r.sidecar, spec, int64(i)) }
	postNoop := func(ctx context.Context, i int) error { return publishHTTP(ctx, r.noop.target, spec, int64(i)) }
	postDirect := func(ctx context.Context, i int) error { return r.publishDirect(ctx, direct, int64(i)) }

	// Warm every path up (connections, JIT of the caches), unmeasured.
	warm := min(o.RateDuration, max(o.Warmup, 100*time.Millisecond))
	for _, op := range []func(context.Context, int) error{postSidecar, postNoop, postDirect} {
		if _, _, err := fixedRate(ctx, o.Rate, warm, op); err != nil {
			return err
		}
	}
	var reps []latencyRep
	for rep := range o.Reps {
		var l latencyRep
		r.progress("%s: repetition %d of %d", scenario, rep+1, o.Reps)
		n := max(1, int(float64(o.Rate)*o.RateDuration.Seconds()))
		sub, err := r.sidecar.subscribe(ctx, "/events/stream?tenant_id="+spec.tenant, n)
		if err != nil {
			return err
		}
		var sent int
		l.sidecar, sent, err = fixedRate(ctx, o.Rate, o.RateDuration, postSidecar)
		if err != nil {
			sub.close()
			return err
		}
		waitAll(ctx, []*subscriber{sub}, o.Timeout)
		sub.close()
		l.sse = summarize(sub.lat)
		l.missing = sent - sub.distinct
		l.gaps = len(sub.gaps)
		if l.noop, _, err = fixedRate(ctx, o.Rate, o.RateDuration, postNoop); err != nil {
			return err
		}
		if l.direct, _, err = fixedRate(ctx, o.Rate, o.RateDuration, postDirect); err != nil {
			return err
		}
		reps = append(reps, l)
	}
	med := func(f func(l latencyRep) time.Duration) float64 {
		vs := make([]float64, len(reps))
		for i, l := range reps {
			vs[i] = ms(f(l))
		}
		return median(vs)
	}
	sideP50, sideP99 := med(func(l latencyRep) time.Duration { return l.sidecar.p50 }), med(func(l latencyRep) time.Duration { return l.sidecar.p99 })
	noopP50, noopP99 := med(func(l latencyRep) time.Duration { return l.noop.p50 }), med(func(l latencyRep) time.Duration { return l.noop.p99 })
	dirP50, dirP99 := med(func(l latencyRep) time.Duration { return l.direct.p50 }), med(func(l latencyRep) time.Duration { return l.direct.p99 })
	missing, gaps := 0, 0
	for _, l := range reps {
		missing += l.missing
		gaps += l.gaps
	}
	bound := noopP99 + dirP99 + 0.3
	r.add("latency.sidecar.publish_p50_ms", scenario, "sidecar publish p50", sideP50, unitMs).vs("no-op handler", noopP50)
	r.add("latency.sidecar.publish_p99_ms", scenario, "sidecar publish p99", sideP99, unitMs).
		vs("no-op p99 + direct p99 + 0.3 ms", bound).target("≤ no-op p99 + direct p99 + 0.3 ms", sideP99 <= bound)
	r.add("latency.noop.publish_p50_ms", scenario, "no-op publish p50", noopP50, unitMs)
	r.add("latency.noop.publish_p99_ms", scenario, "no-op publish p99", noopP99, unitMs)
	r.add("latency.direct.publish_p50_ms", scenario, "direct nats.go publish p50", dirP50, unitMs)
	r.add("latency.direct.publish_p99_ms", scenario, "direct nats.go publish p99", dirP99, unitMs)
	r.add("latency.sidecar.sse_p50_ms", scenario, "publish→SSE latency p50", med(func(l latencyRep) time.Duration { return l.sse.p50 }), unitMs)
	r.add("latency.sidecar.sse_p99_ms", scenario, "publish→SSE latency p99", med(func(l latencyRep) time.Duration { return l.sse.p99 }), unitMs)
	r.add("latency.sidecar.sse_missing", scenario, "events the SSE subscriber missed", float64(missing), unitCount).
		target("0", missing == 0)
	if gaps > 0 {
		r.note(fmt.Sprintf("latency: the SSE subscriber received %d gap notices", gaps))
	}
	r.note(fmt.Sprintf("latency: medians of %d interleaved repetitions (sidecar, no-op, direct, …) of %v at %d events/s each; "+
		"publish→SSE latency is the SSE arrival time minus the send time carried in the event", o.Reps, o.RateDuration, o.Rate))
	return nil
}

// streams measures one token per request (POST /v1/streams, as an LLM streams them) at each concurrency, against the
// sidecar, the no-op handler and nats.go's synchronous publish of the same stream event with its tenant header,
// interleaved per concurrency.
func (r *runner) streams(ctx context.Context) error {
	o := &r.o
	spec := tokenSpec{tenant: o.Tenant, workflow: newUUID(), task: newUUID()}
	direct := tokenSpec{tenant: newUUID(), workflow: newUUID(), task: newUUID()}
	for _, c := range o.Concurrency {
		scenario := fmt.Sprintf("streams c=%d", c)
		key := "streams.c" + strconv.Itoa(c) + "."
		names := []string{"sidecar", "no-op handler", "direct nats.go"}
		var seq atomic.Int64
		post := func(t *httpTarget) func(ctx context.Context, _ int) (int, error) {
			return func(ctx context.Context, _ int) (int, error) {
				b := spec.appendToken(make([]byte, 0, 256), seq.Add(1), time.Now())
				return 1, t.postHeader(ctx, "/v1/streams", "application/json", "Flovyn-Tenant-Id", spec.tenant, b, http.StatusAccepted)
			}
		}
		results, err := interleaved(ctx, o.Rounds, c, o.Warmup, o.Duration, func(op, round int) {
			r.progress("%s: %s (round %d of %d)", scenario, names[op], round+1, o.Rounds)
		}, post(r.sidecar), post(r.noop.target), func(ctx context.Context, _ int) (int, error) {
			m := &nats.Msg{Subject: direct.subject(), Header: nats.Header{"Flovyn-Tenant-Id": {direct.tenant}},
				Data: direct.appendToken(make([]byte, 0, 256), seq.Add(1), time.Now())}
			if _, err := r.js.PublishMsg(ctx, m); err != nil {
				return 0, fmt.Errorf("direct publish to %s: %w", m.Subject, err)
			}
			return 1, nil
		})
		if err != nil {
			return err
		}
		r.addThreeWay(key, scenario, "token ", c, results)
	}
	return nil
}

// addThreeWay reports a run of the sidecar, the no-op handler and direct nats.go (results in that order): throughput
// against the no-op (the target at concurrency c=16) and against nats.go, and each one's latency. what names the load in the
// throughput lines ("token " for stream events, "" for lifecycle events).
func (r *runner) addThreeWay(key, scenario, what string, c int, results []loopResult) {
	side, noop, dir := results[0], results[1], results[2]
	res := r.add(key+"sidecar.events_per_s", scenario, "sidecar "+what+"throughput", side.perSec, unitEventsPerSec).
		vs("no-op handler", noop.perSec)
	if c == 16 {
		res.target("ratio ≥ 0.75", res.Ratio != nil && *res.Ratio >= 0.75)
	}
	r.add(key+"sidecar.vs_direct", scenario, "sidecar "+what+"throughput", side.perSec, unitEventsPerSec).
		vs("direct nats.go", dir.perSec)
	r.add(key+"noop.events_per_s", scenario, "no-op handler throughput", noop.perSec, unitEventsPerSec)
	r.add(key+"direct.events_per_s", scenario, "direct nats.go throughput", dir.perSec, unitEventsPerSec)
	r.add(key+"sidecar.p50_ms", scenario, "sidecar latency p50", ms(side.lat.p50), unitMs).vs("no-op handler", ms(noop.lat.p50))
	r.add(key+"sidecar.p99_ms", scenario, "sidecar latency p99", ms(side.lat.p99), unitMs).vs("no-op handler", ms(noop.lat.p99))
	r.add(key+"noop.p50_ms", scenario, "no-op latency p50", ms(noop.lat.p50), unitMs)
	r.add(key+"noop.p99_ms", scenario, "no-op latency p99", ms(noop.lat.p99), unitMs)
	r.add(key+"direct.p50_ms", scenario, "direct latency p50", ms(dir.lat.p50), unitMs)
	r.add(key+"direct.p99_ms", scenario, "direct latency p99", ms(dir.lat.p99), unitMs)
}
