package bench

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// productionConcurrency is the number of clients of the production scenario's closed-loop runs.
const productionConcurrency = 16

// prodEnv is what the production scenario runs: a nats-server, a daemon on it (the production shape), a daemon on its
// embedded server, the parsing no-op handler and the bare prototype, each a process of its own; and a nats.go connection to the
// nats-server for the direct comparison.
type prodEnv struct {
	dir               string
	nats              *child
	natsURL           string
	ext, emb, noop    *child
	extT, embT, noopT *httpTarget
	proto             *child // the bare prototype: parse, publish, wait for the PubAck, answer
	protoT            *httpTarget
	nc                *nats.Conn
	js                jetstream.JetStream
	events, directEv  eventSpec
	tokens, directTok tokenSpec
	evSeq, tokSeq     atomic.Int64
}

// startProduction starts the processes of the production scenario.
func (r *runner) startProduction(ctx context.Context) (_ *prodEnv, err error) {
	o := &r.o
	if o.Daemon == "" {
		return nil, fmt.Errorf("the production scenario starts eventhook daemons: Options.Daemon must name the eventhook binary")
	}
	p := &prodEnv{}
	if p.dir, err = os.MkdirTemp("", "ehprod"); err != nil { // short: Unix socket paths are limited to about 100 bytes
		return nil, err
	}
	defer func() {
		if err != nil {
			p.close()
		}
	}()
	bin := o.NATSServer
	if bin == "" {
		r.progress("production: building nats-server from the Go module")
		if bin, err = buildNATSServer(ctx, p.dir); err != nil {
			return nil, err
		}
	}
	if p.nats, p.natsURL, err = startNATSServer(ctx, bin, filepath.Join(p.dir, "nats")); err != nil {
		return nil, err
	}
	var common []string
	if o.DaemonGOMAXPROCS > 0 {
		common = append(common, "GOMAXPROCS="+strconv.Itoa(o.DaemonGOMAXPROCS))
	}
	env := common
	if o.DaemonPprof != "" {
		env = append(slices.Clip(common), "EVENTHOOK_PPROF="+o.DaemonPprof)
	}
	r.progress("production: starting the daemons and the no-op handler")
	if p.ext, p.extT, err = startDaemon(ctx, "sidecar (external NATS)", o.Daemon, filepath.Join(p.dir, "ext"), p.natsURL, env); err != nil {
		return nil, err
	}
	if p.emb, p.embT, err = startDaemon(ctx, "sidecar (embedded NATS)", o.Daemon, filepath.Join(p.dir, "emb"), "", common); err != nil {
		return nil, err
	}
	// The no-op handler and the prototype are served by this binary (eventhook bench -serve-noop), whatever the daemon.
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	sock := filepath.Join(p.dir, "noop.sock")
	if p.noop, err = startChild("no-op handler", self, common, "bench", "-serve-noop", sock); err != nil {
		return nil, err
	}
	p.noopT = newHTTPTarget("no-op handler", "unix", sock, "", "")
	if err = waitReady(ctx, p.noop, p.noopT); err != nil {
		return nil, err
	}
	sock = filepath.Join(p.dir, "proto.sock")
	if p.proto, err = startChild("bare prototype", self, common, "bench", "-serve-noop", sock, "-noop-nats", p.natsURL); err != nil {
		return nil, err
	}
	p.protoT = newHTTPTarget("bare prototype", "unix", sock, "", "")
	if err = waitReady(ctx, p.proto, p.protoT); err != nil {
		return nil, err
	}
	if p.nc, err = nats.Connect(p.natsURL, nats.Name("eventhook-bench")); err != nil {
		return nil, err
	}
	if p.js, err = jetstream.New(p.nc); err != nil {
		return nil, err
	}
	workflows := make([]string, 100)
	for i := range workflows {
		workflows[i] = newUUID()
	}
	p.events = eventSpec{tenant: o.Tenant, eventType: "task.completed", workflows: workflows}
	p.directEv = eventSpec{tenant: newUUID(), eventType: "task.completed", workflows: workflows}
	p.tokens = tokenSpec{tenant: o.Tenant, workflow: newUUID(), task: newUUID()}
	p.directTok = tokenSpec{tenant: newUUID(), workflow: newUUID(), task: newUUID()}
	return p, nil
}

// close stops every process (the daemons before their NATS server) and removes the scenario's directory.
func (p *prodEnv) close() {
	if p.nc != nil {
		p.nc.Close()
	}
	for _, t := range []*httpTarget{p.extT, p.embT, p.noopT, p.protoT} {
		if t != nil {
			t.close()
		}
	}
	for _, c := range []*child{p.proto, p.noop, p.emb, p.ext, p.nats} {
		if c != nil {
			c.stop()
		}
	}
	if p.dir != "" {
		os.RemoveAll(p.dir)
	}
}

// postEvent publishes lifecycle event seq to t's /v1/events.
func (p *prodEnv) postEvent(ctx context.Context, t *httpTarget, seq int64) error {
	b, _ := p.events.appendEvent(make([]byte, 0, 512), seq, time.Now())
	return t.post(ctx, "/v1/events", "application/json", b, http.StatusAccepted)
}

// postToken publishes token seq to t's /v1/streams, one token per request.
func (p *prodEnv) postToken(ctx context.Context, t *httpTarget, seq int64) error {
	b := p.tokens.appendToken(make([]byte, 0, 256), seq, time.Now())
	return t.postHeader(ctx, "/v1/streams", "application/json", "Flovyn-Tenant-Id", p.tokens.tenant, b, http.StatusAccepted)
}

// directEvent publishes lifecycle event seq straight to JetStream and waits for its ack.
func (p *prodEnv) directEvent(ctx context.Context, seq int64) error {
	b, idAt := p.directEv.appendEvent(make([]byte, 0, 512), seq, time.Now())
	_, err := p.js.Publish(ctx, p.directEv.subject(), b, jetstream.WithMsgID(p.directEv.msgID(b, idAt)))
	return err
}

// directToken publishes token seq straight to JetStream, with its tenant header, and waits for its ack.
func (p *prodEnv) directToken(ctx context.Context, seq int64) error {
	m := &nats.Msg{Subject: p.directTok.subject(), Header: nats.Header{"Flovyn-Tenant-Id": {p.directTok.tenant}},
		Data: p.directTok.appendToken(make([]byte, 0, 256), seq, time.Now())}
	_, err := p.js.PublishMsg(ctx, m)
	return err
}

// rateRun is one fixed-rate run: the latencies, how many were sent, and the CPU per event of the processes watched.
type rateRun struct {
	lat  summary
	sent int
	cpu  []float64 // µs of CPU per event, one per process watched, in order
}

// atRate runs op at the scenario's rate and reads the CPU the processes used meanwhile, from /proc (a nil process is
// the bench itself).
func (r *runner) atRate(ctx context.Context, d time.Duration, op func(ctx context.Context, i int) error, procs ...*child) (rateRun, error) {
	pid := func(c *child) int {
		if c == nil {
			return os.Getpid()
		}
		return c.pid()
	}
	before := make([]time.Duration, len(procs))
	for i, c := range procs {
		t, err := cpuTime(pid(c))
		if err != nil {
			return rateRun{}, err
		}
		before[i] = t
	}
	lat, sent, err := fixedRate(ctx, r.o.Rate, d, op)
	if err != nil {
		return rateRun{}, err
	}
	run := rateRun{lat: lat, sent: sent, cpu: make([]float64, len(procs))}
	for i, c := range procs {
		t, err := cpuTime(pid(c))
		if err != nil {
			return rateRun{}, err
		}
		run.cpu[i] = float64(t-before[i]) / float64(time.Microsecond) / float64(max(sent, 1))
	}
	return run, nil
}

// production measures the production shape: a sidecar on an external nats-server, over its Unix socket, against a
// no-op handler that parses the same JSON, each a process of its own whose CPU is read from /proc; and the nats-server's
// CPU per event against a direct nats.go publisher's. Lifecycle events (with a workflow and a task id, so that the
// per-workflow index has entries to write) and single tokens on /v1/streams, each at the fixed rate (CPU per event,
// publish latency; for events also publish→SSE latency with one subscriber) and in a closed loop of 16 clients (also
// against a sidecar on its embedded server).
func (r *runner) production(ctx context.Context) error {
	o := &r.o
	p, err := r.startProduction(ctx)
	if err != nil {
		return err
	}
	defer p.close()
	su := &r.rep.Setup
	if su.Sidecar == startedByProduction { // the production scenario alone: name what it started
		su.Sidecar = p.extT.describe() + " (on " + p.natsURL + ") and " + p.embT.describe() + " (embedded NATS)"
		su.NATS, su.NoOp = p.natsURL, p.noopT.describe()
	}
	r.rep.Setup.Production = &ProductionSetup{NATS: p.natsURL, Daemon: o.Daemon, NATSServerPID: p.nats.pid(),
		ExternalPID: p.ext.pid(), EmbeddedPID: p.emb.pid(), NoOpPID: p.noop.pid()}

	evExt := func(ctx context.Context, i int) error { return p.postEvent(ctx, p.extT, int64(i)) }
	evNoop := func(ctx context.Context, i int) error { return p.postEvent(ctx, p.noopT, int64(i)) }
	evDirect := func(ctx context.Context, i int) error { return p.directEvent(ctx, int64(i)) }
	tokExt := func(ctx context.Context, i int) error { return p.postToken(ctx, p.extT, int64(i)) }
	tokNoop := func(ctx context.Context, i int) error { return p.postToken(ctx, p.noopT, int64(i)) }
	tokDirect := func(ctx context.Context, i int) error { return p.directToken(ctx, int64(i)) }
	evProto := func(ctx context.Context, i int) error { return p.postEvent(ctx, p.protoT, int64(i)) }
	tokProto := func(ctx context.Context, i int) error { return p.postToken(ctx, p.protoT, int64(i)) }
	warm := min(o.RateDuration, max(o.Warmup, 100*time.Millisecond))
	for _, op := range []func(context.Context, int) error{evExt, evNoop, evDirect, evProto, tokExt, tokNoop, tokDirect, tokProto} {
		if _, _, err := fixedRate(ctx, o.Rate, warm, op); err != nil {
			return err
		}
	}
	for _, op := range []func(context.Context, int) error{
		func(ctx context.Context, _ int) error { return p.postEvent(ctx, p.embT, 0) },
		func(ctx context.Context, _ int) error { return p.postToken(ctx, p.embT, 0) },
	} {
		if _, _, err := fixedRate(ctx, o.Rate, warm, op); err != nil {
			return err
		}
	}

	type rep struct {
		ext, noop, direct, proto, tokExt, tokNoop, tokDirect, tokProto, withSSE rateRun
		sse                                                                     summary
		missing                                                                 int
	}
	var reps []rep
	for i := range o.Reps {
		r.progress("production: %d/s, repetition %d of %d", o.Rate, i+1, o.Reps)
		var rp rep
		steps := []struct {
			out   *rateRun
			op    func(context.Context, int) error
			procs []*child
		}{
			{&rp.ext, evExt, []*child{p.ext, p.nats}}, {&rp.noop, evNoop, []*child{p.noop}},
			{&rp.direct, evDirect, []*child{p.nats, nil, p.ext}}, {&rp.proto, evProto, []*child{p.proto, p.nats}},
			{&rp.tokExt, tokExt, []*child{p.ext, p.nats}}, {&rp.tokNoop, tokNoop, []*child{p.noop}},
			{&rp.tokDirect, tokDirect, []*child{p.nats, nil}}, {&rp.tokProto, tokProto, []*child{p.proto, p.nats}},
		}
		for _, s := range steps {
			if *s.out, err = r.atRate(ctx, o.RateDuration, s.op, s.procs...); err != nil {
				return err
			}
		}
		n := max(1, int(float64(o.Rate)*o.RateDuration.Seconds()))
		sub, err := p.extT.subscribe(ctx, "/events/stream?tenant_id="+p.events.tenant, n)
		if err != nil {
			return err
		}
		rp.withSSE, err = r.atRate(ctx, o.RateDuration, evExt, p.ext)
		if err != nil {
			sub.close()
			return err
		}
		waitAll(ctx, []*subscriber{sub}, o.Timeout)
		sub.close()
		rp.sse, rp.missing = summarize(sub.lat), rp.withSSE.sent-sub.distinct
		reps = append(reps, rp)
	}
	med := func(f func(rp rep) float64) float64 {
		vs := make([]float64, len(reps))
		for i, rp := range reps {
			vs[i] = f(rp)
		}
		return median(vs)
	}
	for _, kind := range []string{"events", "tokens"} {
		pick := func(rp rep) (ext, noop, direct rateRun) {
			if kind == "tokens" {
				return rp.tokExt, rp.tokNoop, rp.tokDirect
			}
			return rp.ext, rp.noop, rp.direct
		}
		proto := func(rp rep) rateRun {
			if kind == "tokens" {
				return rp.tokProto
			}
			return rp.proto
		}
		scenario := fmt.Sprintf("production %s %d/s", kind, o.Rate)
		key := "production." + kind + "."
		extCPU := med(func(rp rep) float64 { e, _, _ := pick(rp); return e.cpu[0] })
		noopCPU := med(func(rp rep) float64 { _, n, _ := pick(rp); return n.cpu[0] })
		natsSide := med(func(rp rep) float64 { e, _, _ := pick(rp); return e.cpu[1] })
		natsDirect := med(func(rp rep) float64 { _, _, d := pick(rp); return d.cpu[0] })
		res := r.add(key+"sidecar.cpu_us", scenario, "sidecar CPU per event (external NATS)", extCPU, unitMicros).
			vs("no-op handler (parses the JSON)", noopCPU)
		res.target("ratio ≤ 1.5", res.Ratio != nil && *res.Ratio <= 1.5)
		protoCPU := med(func(rp rep) float64 { return proto(rp).cpu[0] })
		r.add(key+"sidecar.vs_prototype", scenario, "sidecar CPU per event (external NATS)", extCPU, unitMicros).
			vs("bare prototype", protoCPU)
		r.add(key+"noop.cpu_us", scenario, "no-op handler CPU per event", noopCPU, unitMicros)
		r.add(key+"prototype.cpu_us", scenario, "bare prototype CPU per event (parse, publish, PubAck)", protoCPU, unitMicros).
			vs("no-op handler (parses the JSON)", noopCPU)
		r.add(key+"nats.cpu_us", scenario, "nats-server CPU per event, the sidecar publishing", natsSide, unitMicros).
			vs("direct nats.go publishing", natsDirect)
		r.add(key+"nats_direct.cpu_us", scenario, "nats-server CPU per event, direct nats.go publishing", natsDirect, unitMicros)
		r.add(key+"direct.cpu_us", scenario, "bench CPU per event, direct nats.go publishing (publisher and load generator)",
			med(func(rp rep) float64 { _, _, d := pick(rp); return d.cpu[1] }), unitMicros)
		if kind == "events" {
			r.add(key+"indexer.cpu_us", scenario, "sidecar CPU per event published by another producer (its indexer)",
				med(func(rp rep) float64 { return rp.direct.cpu[2] }), unitMicros).vs("sidecar CPU per event", extCPU)
		}
		p50 := med(func(rp rep) float64 { e, _, _ := pick(rp); return ms(e.lat.p50) })
		p99 := med(func(rp rep) float64 { e, _, _ := pick(rp); return ms(e.lat.p99) })
		noopP50 := med(func(rp rep) float64 { _, n, _ := pick(rp); return ms(n.lat.p50) })
		noopP99 := med(func(rp rep) float64 { _, n, _ := pick(rp); return ms(n.lat.p99) })
		r.add(key+"sidecar.p50_ms", scenario, "sidecar publish p50", p50, unitMs).vs("no-op handler", noopP50)
		r.add(key+"sidecar.p99_ms", scenario, "sidecar publish p99", p99, unitMs).vs("no-op p99 + 0.5 ms", noopP99+0.5).
			target("≤ no-op p99 + 0.5 ms", p99 <= noopP99+0.5)
		r.add(key+"noop.p50_ms", scenario, "no-op publish p50", noopP50, unitMs)
		r.add(key+"noop.p99_ms", scenario, "no-op publish p99", noopP99, unitMs)
		r.add(key+"prototype.p99_ms", scenario, "bare prototype publish p99", med(func(rp rep) float64 { return ms(proto(rp).lat.p99) }), unitMs)
		r.add(key+"direct.p50_ms", scenario, "direct nats.go publish p50", med(func(rp rep) float64 { _, _, d := pick(rp); return ms(d.lat.p50) }), unitMs)
		r.add(key+"direct.p99_ms", scenario, "direct nats.go publish p99", med(func(rp rep) float64 { _, _, d := pick(rp); return ms(d.lat.p99) }), unitMs)
		if kind == "events" {
			missing := 0
			for _, rp := range reps {
				missing += rp.missing
			}
			r.add(key+"sse.p50_ms", scenario, "publish→SSE latency p50", med(func(rp rep) float64 { return ms(rp.sse.p50) }), unitMs)
			r.add(key+"sse.p99_ms", scenario, "publish→SSE latency p99", med(func(rp rep) float64 { return ms(rp.sse.p99) }), unitMs)
			r.add(key+"sse.publish_p99_ms", scenario, "sidecar publish p99 with one SSE subscriber",
				med(func(rp rep) float64 { return ms(rp.withSSE.lat.p99) }), unitMs).vs("no-op p99 + 0.5 ms", noopP99+0.5)
			r.add(key+"sse.cpu_us", scenario, "sidecar CPU per event with one SSE subscriber",
				med(func(rp rep) float64 { return rp.withSSE.cpu[0] }), unitMicros).vs("no-op handler (parses the JSON)", noopCPU)
			r.add(key+"sse.missing", scenario, "events the SSE subscriber missed", float64(missing), unitCount).target("0", missing == 0)
		}
	}

	// The closed loop: 16 clients, interleaved rounds.
	names := []string{"events, external", "events, embedded", "events, no-op", "events, prototype", "tokens, external",
		"tokens, embedded", "tokens, no-op", "tokens, prototype"}
	ev := func(t *httpTarget) func(ctx context.Context, _ int) (int, error) {
		return func(ctx context.Context, _ int) (int, error) { return 1, p.postEvent(ctx, t, p.evSeq.Add(1)) }
	}
	tok := func(t *httpTarget) func(ctx context.Context, _ int) (int, error) {
		return func(ctx context.Context, _ int) (int, error) { return 1, p.postToken(ctx, t, p.tokSeq.Add(1)) }
	}
	// The cores each process uses during each op's rounds: what fills the machine.
	watched := []*child{p.ext, p.nats, nil}
	cores := newCoreMeter(len(names), watched)
	results, err := interleaved(ctx, o.Rounds, productionConcurrency, o.Warmup, o.Duration, func(op, round int) {
		cores.switchTo(op)
		r.progress("production c=%d: %s (round %d of %d)", productionConcurrency, names[op], round+1, o.Rounds)
	}, ev(p.extT), ev(p.embT), ev(p.noopT), ev(p.protoT), tok(p.extT), tok(p.embT), tok(p.noopT), tok(p.protoT))
	cores.switchTo(-1)
	if err != nil {
		return err
	}
	for i, kind := range []string{"events", "tokens"} {
		side, emb, noop, proto := results[4*i], results[4*i+1], results[4*i+2], results[4*i+3]
		scenario := fmt.Sprintf("production %s c=%d", kind, productionConcurrency)
		key := "production." + kind + ".c16."
		res := r.add(key+"external.events_per_s", scenario, "sidecar throughput, external NATS", side.perSec, unitEventsPerSec).
			vs("no-op handler (parses the JSON)", noop.perSec)
		res.target("ratio ≥ 0.6", res.Ratio != nil && *res.Ratio >= 0.6)
		res = r.add(key+"embedded.events_per_s", scenario, "sidecar throughput, embedded NATS", emb.perSec, unitEventsPerSec).
			vs("no-op handler (parses the JSON)", noop.perSec)
		res.target("ratio ≥ 0.75", res.Ratio != nil && *res.Ratio >= 0.75)
		r.add(key+"noop.events_per_s", scenario, "no-op handler throughput", noop.perSec, unitEventsPerSec)
		r.add(key+"prototype.events_per_s", scenario, "bare prototype throughput, external NATS", proto.perSec, unitEventsPerSec).
			vs("no-op handler (parses the JSON)", noop.perSec)
		r.add(key+"external.p99_ms", scenario, "sidecar latency p99, external NATS", ms(side.lat.p99), unitMs).vs("no-op handler", ms(noop.lat.p99))
		r.add(key+"embedded.p99_ms", scenario, "sidecar latency p99, embedded NATS", ms(emb.lat.p99), unitMs).vs("no-op handler", ms(noop.lat.p99))
		r.add(key+"noop.p99_ms", scenario, "no-op latency p99", ms(noop.lat.p99), unitMs)
		ext := 4 * i
		r.add(key+"external.daemon_cores", scenario, "cores used meanwhile by the daemon", cores.of(ext, 0), unitCores)
		r.add(key+"external.nats_cores", scenario, "cores used meanwhile by the nats-server", cores.of(ext, 1), unitCores)
		r.add(key+"external.bench_cores", scenario, "cores used meanwhile by the bench (its clients)", cores.of(ext, 2), unitCores)
	}
	r.note(fmt.Sprintf("production: the bench started a nats-server (%s), a daemon on it over its Unix socket (the "+
		"production shape), a daemon on its embedded server, a no-op handler that parses the same JSON with "+
		"encoding/json (eventhook bench -serve-noop), and a bare prototype that also publishes what it parsed with "+
		"nats.go and answers after the PubAck (-noop-nats), each a process of its own; CPU per event is the process's "+
		"utime+stime from /proc over the run ÷ the events sent (10 ms ticks). Lifecycle events carry a workflow and a "+
		"task id (two index entries each); tokens are one per /v1/streams request. Fixed-rate figures are medians of %d "+
		"interleaved repetitions of %v; closed-loop figures are %d interleaved rounds of %d clients",
		p.natsURL, o.Reps, o.RateDuration, o.Rounds, productionConcurrency))
	return nil
}

// coreMeter adds up, per op, the CPU time each watched process (nil: the bench) used and the wall time that passed,
// between the calls that switch from one op to the next.
type coreMeter struct {
	procs []*child
	op    int
	at    time.Time
	last  []time.Duration
	cpu   [][]time.Duration // by op, by process
	wall  []time.Duration   // by op
}

func newCoreMeter(ops int, procs []*child) *coreMeter {
	m := &coreMeter{procs: procs, op: -1, cpu: make([][]time.Duration, ops), wall: make([]time.Duration, ops)}
	for i := range m.cpu {
		m.cpu[i] = make([]time.Duration, len(procs))
	}
	return m
}

// switchTo charges what was used since the last call to the op then running, and starts counting for op (-1: none).
func (m *coreMeter) switchTo(op int) {
	now := time.Now()
	cur := make([]time.Duration, len(m.procs))
	for i, c := range m.procs {
		pid := os.Getpid()
		if c != nil {
			pid = c.pid()
		}
		cur[i], _ = cpuTime(pid)
	}
	if m.op >= 0 {
		m.wall[m.op] += now.Sub(m.at)
		for i := range cur {
			m.cpu[m.op][i] += cur[i] - m.last[i]
		}
	}
	m.op, m.at, m.last = op, now, cur
}

// of returns the cores process i used during op's rounds.
func (m *coreMeter) of(op, i int) float64 {
	if m.wall[op] <= 0 {
		return 0
	}
	return float64(m.cpu[op][i]) / float64(m.wall[op])
}
