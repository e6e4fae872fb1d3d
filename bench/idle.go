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

	var next atomic.Uint64
	publish := func(ctx context.Context, _ int) (int, error) {
		t := tenants[next.Add(1)%uint64(nt)]
		return 1, publishHTTP(ctx, r.sidecar, eventSpec{tenant: t, eventType: "bench.idle"}, 0)
	}
	const conc = 16
	r.progress("%s: publish without subscribers", scenario)
	without, err := closedLoop(ctx, conc, o.Warmup, o.Duration, publish)
	if err != nil {
		return err
	}
	r.waitIndexer(ctx, o.Timeout)

	m0, err := r.sidecar.scrape(ctx, metricRSS)
	if err != nil {
		return err
	}
	r.progress("%s: opening %d idle subscribers", scenario, k)
	streams, err := r.openIdle(ctx, k, tenants)
	if err != nil {
		return err
	}
	defer func() { closeRaw(streams) }()
	m1, err := r.waitSubscribers(ctx, k)
	if err != nil {
		return err
	}
	growth := m1[metricRSS] - m0[metricRSS]
	perSub := growth / float64(k) / 1024

	r.progress("%s: publish with %d idle subscribers", scenario, k)
	with, err := closedLoop(ctx, conc, o.Warmup, o.Duration, publish)
	if err != nil {
		return err
	}
	closeRaw(streams[c:])
	streams = streams[:c]
	if _, err := r.waitSubscribers(ctx, c); err != nil {
		return err
	}
	r.waitIndexer(ctx, o.Timeout)
	r.progress("%s: daemon CPU with %d idle subscribers (%v)", scenario, c, o.CPUWindow)
	cpuSome, err := r.daemonCPU(ctx)
	if err != nil {
		return err
	}
	closeRaw(streams)
	streams = nil
	if _, err := r.waitSubscribers(ctx, 0); err != nil {
		return err
	}

	r.add("idle.rss_per_subscriber_kib", scenario, "daemon RSS growth per subscriber", perSub, unitKiB).
		target("≤ 16 KiB", perSub <= 16)
	r.add("idle.rss_before_mib", scenario, "daemon RSS before", m0[metricRSS]/(1<<20), unitMiB)
	r.add("idle.rss_after_mib", scenario, "daemon RSS with the subscribers", m1[metricRSS]/(1<<20), unitMiB)
	res := r.add("idle.publish_with.events_per_s", scenario, fmt.Sprintf("publish c=%d with the idle subscribers", conc), with.perSec, unitEventsPerSec).
		vs("without", without.perSec)
	res.target("ratio ≥ 0.8 (≤ 1.25× slower)", res.Ratio != nil && *res.Ratio >= 0.8)
	r.add("idle.publish_without.events_per_s", scenario, fmt.Sprintf("publish c=%d without", conc), without.perSec, unitEventsPerSec)
	r.add("idle.publish_with.p99_ms", scenario, "publish p99 with the idle subscribers", ms(with.lat.p99), unitMs).
		vs("without", ms(without.lat.p99))
	r.add("idle.cpu_percent", scenario, fmt.Sprintf("daemon CPU with %d idle subscribers", c), cpuSome, unitPercentCore).
		vs("no subscriber", cpuNone).target("< 1 % of a core", cpuSome < 1)
	r.add("idle.cpu_none_percent", scenario, "daemon CPU with no subscriber", cpuNone, unitPercentCore)
	r.note(fmt.Sprintf("idle: the subscribers read /events/stream of %d tenants, each filtered on a workflow id that has no "+
		"events, so no publish matches them; memory is the daemon's process_resident_memory_bytes (its embedded NATS "+
		"server included) before and after opening them, from its /metrics; CPU is process_cpu_seconds_total over %v. "+
		"Run this scenario against a freshly started daemon for the memory figure: memory freed by earlier scenarios is "+
		"reused and hides growth", nt, o.CPUWindow))
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

// openIdle opens k idle streams spread over tenants, each filtered on a random workflow id.
func (r *runner) openIdle(ctx context.Context, k int, tenants []string) ([]*rawStream, error) {
	streams := make([]*rawStream, k)
	errs := make([]error, k)
	sem := make(chan struct{}, fanoutOpenParallel)
	var wg sync.WaitGroup
	for i := range k {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			path := "/events/stream?tenant_id=" + tenants[i%len(tenants)] + "&workflow_execution_id=" + newUUID()
			streams[i], errs[i] = r.sidecar.openRaw(ctx, path, 0)
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
