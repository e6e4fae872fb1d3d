package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// idle opens K idle SSE subscribers spread over several tenants, each filtered on a workflow that never has events
// (so that they match nothing), and measures the daemon's resident memory per subscriber, the publish throughput to
// those tenants with and without them, and the daemon's CPU with some of them open against none.
func (r *runner) idle(ctx context.Context) error {
	o := &r.o
	k, nt, c := o.Idle, o.IdleTenants, o.CPUSubscribers
	if err := raiseNoFile(uint64(k + 256)); err != nil {
		return err
	}
	scenario := fmt.Sprintf("idle K=%d/%d tenants", k, nt)
	tenants := make([]string, nt)
	for i := range tenants {
		tenants[i] = newUUID()
	}
	if _, err := r.waitSubscribers(ctx, 0); err != nil {
		return err
	}
	r.waitIndexer(ctx, o.Timeout)
	r.progress("%s: daemon CPU with no subscriber (%v)", scenario, o.CPUWindow)
	cpuNone, err := r.daemonCPU(ctx)
	if err != nil {
		return err
	}

	// Publishers round-robin over a set of tenants: those of the subscribers, or as many that have none.
	others := make([]string, nt)
	for i := range others {
		others[i] = newUUID()
	}
	publisher := func(tenants []string) func(ctx context.Context, _ int) (int, error) {
		var next atomic.Uint64
		return func(ctx context.Context, _ int) (int, error) {
			t := tenants[next.Add(1)%uint64(len(tenants))]
			return 1, publishHTTP(ctx, r.sidecar, eventSpec{tenant: t, eventType: "bench.idle"}, 0)
		}
	}
	const conc = 16
	r.progress("%s: publish before any subscriber", scenario)
	before, err := closedLoop(ctx, conc, o.Warmup, o.Duration, publisher(tenants))
	if err != nil {
		return err
	}
	r.waitIndexer(ctx, o.Timeout)

	m0, err := r.sidecar.scrape(ctx, metricRSS)
	if err != nil {
		return err
	}
	// First the subscribers of the CPU figure, measured as soon as they are open (before the others, whose opening
	// and closing would count), then the rest.
	paths := make([]string, k)
	for i := range paths {
		paths[i] = "/events/stream?tenant_id=" + tenants[i%nt] + "&workflow_execution_id=" + newUUID()
	}
	var streams []*rawStream
	defer func() { closeRaw(streams) }()
	cpuSome := 0.0
	if c > 0 {
		r.progress("%s: opening %d idle subscribers", scenario, c)
		if streams, err = r.openIdle(ctx, paths[:c]); err != nil {
			return err
		}
		if _, err := r.waitSubscribers(ctx, c); err != nil {
			return err
		}
		r.progress("%s: daemon CPU with %d idle subscribers (%v)", scenario, c, o.CPUWindow)
		if cpuSome, err = r.daemonCPU(ctx); err != nil {
			return err
		}
	}
	r.progress("%s: opening %d more idle subscribers", scenario, k-c)
	more, err := r.openIdle(ctx, paths[c:])
	streams = append(streams, more...)
	if err != nil {
		return err
	}
	m1, err := r.waitSubscribers(ctx, k)
	if err != nil {
		return err
	}
	growth := m1[metricRSS] - m0[metricRSS]
	perSub := growth / float64(k) / 1024

	// With the subscribers open: to their tenants, and to as many tenants without any, interleaved.
	names := []string{"their tenants", "tenants without subscribers"}
	results, err := interleaved(ctx, o.Rounds, conc, o.Warmup, o.Duration, func(op, round int) {
		r.progress("%s: publish with %d idle subscribers open, to %s (round %d of %d)", scenario, k, names[op], round+1, o.Rounds)
	}, publisher(tenants), publisher(others))
	if err != nil {
		return err
	}
	with, none := results[0], results[1]
	closeRaw(streams)
	streams = nil
	if _, err := r.waitSubscribers(ctx, 0); err != nil {
		return err
	}

	r.add("idle.rss_per_subscriber_kib", scenario, "daemon RSS growth per subscriber", perSub, unitKiB).
		target("≤ 16 KiB", perSub <= 16)
	r.add("idle.rss_before_mib", scenario, "daemon RSS before", m0[metricRSS]/(1<<20), unitMiB)
	r.add("idle.rss_after_mib", scenario, "daemon RSS with the subscribers", m1[metricRSS]/(1<<20), unitMiB)
	res := r.add("idle.publish_with.events_per_s", scenario, fmt.Sprintf("publish c=%d to the subscribers' tenants", conc), with.perSec, unitEventsPerSec).
		vs("tenants without subscribers", none.perSec)
	res.target("ratio ≥ 0.8 (≤ 1.25× slower)", res.Ratio != nil && *res.Ratio >= 0.8)
	r.add("idle.publish_none.events_per_s", scenario, fmt.Sprintf("publish c=%d to tenants without subscribers", conc), none.perSec, unitEventsPerSec)
	r.add("idle.publish_with.p99_ms", scenario, "publish p99 to the subscribers' tenants", ms(with.lat.p99), unitMs).
		vs("tenants without", ms(none.lat.p99))
	r.add("idle.publish_before.events_per_s", scenario, fmt.Sprintf("publish c=%d before any subscriber", conc), before.perSec, unitEventsPerSec)
	r.add("idle.cpu_percent", scenario, fmt.Sprintf("daemon CPU with %d idle subscribers", c), cpuSome, unitPercentCore).
		vs("no subscriber", cpuNone).target("< 1 % of a core", cpuSome < 1)
	r.add("idle.cpu_none_percent", scenario, "daemon CPU with no subscriber", cpuNone, unitPercentCore)
	r.note(fmt.Sprintf("idle: the subscribers read /events/stream of %d tenants, each filtered on a workflow id that "+
		"has no events, so no publish matches them. With them open, publishes to their tenants and to as many tenants "+
		"without subscribers alternate in rounds; the publishes before any subscriber was open are shown for "+
		"reference. Memory is the daemon's process_resident_memory_bytes (its embedded NATS server included) before "+
		"and after opening them, from its /metrics; CPU is process_cpu_seconds_total over %v, from the moment the %d "+
		"subscribers of that figure are open (before the others), so with the default 15 s heartbeat the window holds "+
		"at most one keep-alive per subscriber. Run this scenario against a freshly started daemon for the memory "+
		"figure: memory freed by earlier scenarios is reused and hides growth", nt, o.CPUWindow, c))
	return nil
}

// daemonCPU measures the daemon's CPU use over the CPU window, in percent of one core.
func (r *runner) daemonCPU(ctx context.Context) (float64, error) {
	m0, err := r.sidecar.scrape(ctx, metricCPU)
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	if err := sleep(ctx, r.o.CPUWindow); err != nil {
		return 0, err
	}
	m1, err := r.sidecar.scrape(ctx, metricCPU)
	if err != nil {
		return 0, err
	}
	return (m1[metricCPU] - m0[metricCPU]) / time.Since(t0).Seconds() * 100, nil
}

// openIdle opens an idle stream at each of paths.
func (r *runner) openIdle(ctx context.Context, paths []string) ([]*rawStream, error) {
	k := len(paths)
	streams := make([]*rawStream, k)
	errs := make([]error, k)
	sem := make(chan struct{}, fanoutOpenParallel)
	var wg sync.WaitGroup
	for i := range k {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			streams[i], errs[i] = r.sidecar.openRaw(ctx, paths[i], 0)
		}()
	}
	wg.Wait()
	if err := firstError(errs); err != nil {
		closeRaw(streams)
		return nil, fmt.Errorf("%w (for 10,000 subscribers, the daemon needs sse.max_subscribers above the default "+
			"10000 when anything else is subscribed, at most sse.max_subscribers_per_tenant per tenant, and an open "+
			"files limit above the count: see bench/config.bench.yaml)", err)
	}
	return streams, nil
}

// closeRaw closes every stream (nil entries skipped).
func closeRaw(streams []*rawStream) {
	for _, s := range streams {
		if s != nil {
			s.close()
		}
	}
}
