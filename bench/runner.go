package bench

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// runner holds what a run uses: the sidecar, the bench's own servers and the NATS connection.
type runner struct {
	o   Options
	rep *Report

	sidecar  *httpTarget
	noop     *localServer // the no-op handler
	baseline *localServer // the minimal SSE broadcaster
	nc       *nats.Conn
	js       jetstream.JetStream
	subs0    float64 // the daemon's SSE subscribers when the run began
}

// open checks that the sidecar answers, starts the bench's servers on the same kind of transport and connects to NATS.
// A run of the production scenario alone needs none of them: it starts what it measures.
func (r *runner) open(ctx context.Context) error {
	o := &r.o
	if !slices.ContainsFunc(o.Scenarios, func(s string) bool { return s != ScenarioProduction }) {
		r.rep.Setup = Setup{Sidecar: startedByProduction, NoOp: startedByProduction, NATS: startedByProduction,
			Tenant: o.Tenant, Scenarios: o.Scenarios, Quick: o.Quick, Sizes: r.sizes()}
		return nil
	}
	var err error
	if r.sidecar, err = targetFromOptions(&r.o); err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := r.sidecar.get(rctx, "/readyz"); err != nil {
		return fmt.Errorf("the sidecar is not ready at %s (start it with: eventhook serve): %w", r.sidecar.describe(), err)
	}
	m, err := r.sidecar.scrape(rctx, metricSubscribers, metricRSS, metricCPU)
	if err != nil {
		return err
	}
	r.subs0 = m[metricSubscribers]
	if r.noop, err = startLocal(r.sidecar.network, "", http.HandlerFunc(noopHandler)); err != nil {
		return fmt.Errorf("no-op handler: %w", err)
	}
	if r.baseline, err = startLocal(r.sidecar.network, "", newBroadcaster()); err != nil {
		return fmt.Errorf("baseline broadcaster: %w", err)
	}
	r.baseline.target.name = "baseline broadcaster"
	if r.nc, err = nats.Connect(r.o.NATS, nats.Name("eventhook-bench"), nats.Timeout(5*time.Second)); err != nil {
		return fmt.Errorf("NATS at %s (the direct comparison; the development config exposes the embedded server on "+
			"127.0.0.1:4222, set -nats otherwise): %w", r.o.NATS, err)
	}
	if r.js, err = jetstream.New(r.nc); err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	r.rep.Setup = Setup{
		Sidecar: r.sidecar.describe(), NoOp: r.noop.target.describe(), NATS: o.NATS, Tenant: o.Tenant,
		Scenarios: o.Scenarios, Quick: o.Quick, Sizes: r.sizes(),
	}
	return nil
}

// sizes lists the sizes and durations of the run, for the report.
func (r *runner) sizes() map[string]string {
	o := &r.o
	return map[string]string{
		"duration": o.Duration.String(), "warmup": o.Warmup.String(), "rounds": strconv.Itoa(o.Rounds), "concurrency": joinInts(o.Concurrency),
		"batch_concurrency": strconv.Itoa(o.BatchConcurrency), "rate": strconv.Itoa(o.Rate),
		"rate_duration": o.RateDuration.String(), "reps": strconv.Itoa(o.Reps),
		"subscribers": strconv.Itoa(o.Subscribers), "fanout_events": strconv.Itoa(o.FanoutEvents),
		"idle": strconv.Itoa(o.Idle), "idle_tenants": strconv.Itoa(o.IdleTenants),
		"cpu_subscribers": strconv.Itoa(o.CPUSubscribers), "cpu_window": o.CPUWindow.String(),
	}
}

// startedByProduction stands for what the production scenario starts, until it has.
const startedByProduction = "started by the production scenario"

// close releases what open made.
func (r *runner) close() {
	if r.nc != nil {
		r.nc.Close()
	}
	if r.noop != nil {
		r.noop.close()
	}
	if r.baseline != nil {
		r.baseline.close()
	}
	if r.sidecar != nil {
		r.sidecar.close()
	}
}

// progress writes one line of progress.
func (r *runner) progress(format string, args ...any) {
	fmt.Fprintf(r.o.Progress, "bench: "+format+"\n", args...)
}

// note adds a note to the report, once.
func (r *runner) note(text string) {
	for _, n := range r.rep.Notes {
		if n == text {
			return
		}
	}
	r.rep.Notes = append(r.rep.Notes, text)
}

// publishHTTP publishes one event to target's POST /v1/events.
func publishHTTP(ctx context.Context, t *httpTarget, spec eventSpec, seq int64) error {
	b, _ := spec.appendEvent(make([]byte, 0, 512), seq, time.Now())
	return t.post(ctx, "/v1/events", "application/json", b, http.StatusAccepted)
}

// publishDirect publishes one event straight to JetStream, as the sidecar would (same subject, same Nats-Msg-Id), and
// waits for its ack.
func (r *runner) publishDirect(ctx context.Context, spec eventSpec, seq int64) error {
	b, idAt := spec.appendEvent(make([]byte, 0, 512), seq, time.Now())
	if _, err := r.js.Publish(ctx, spec.subject(), b, jetstream.WithMsgID(spec.msgID(b, idAt))); err != nil {
		return fmt.Errorf("direct publish to %s: %w", spec.subject(), err)
	}
	return nil
}

// batchSize is the number of events per batch request (the sidecar's maximum).
const batchSize = 1000

// publishBatchHTTP publishes n events numbered from seq0 as one NDJSON batch to target's POST /v1/events/batch.
func publishBatchHTTP(ctx context.Context, t *httpTarget, spec eventSpec, seq0 int64, n int) error {
	body := spec.appendBatch(make([]byte, 0, n*400), seq0, n)
	return t.post(ctx, "/v1/events/batch", "application/x-ndjson", body, http.StatusAccepted)
}

// publishBatchDirect publishes n events asynchronously straight to JetStream, then waits for every ack.
func (r *runner) publishBatchDirect(ctx context.Context, spec eventSpec, seq0 int64, n int) error {
	subj := spec.subject()
	futures := make([]jetstream.PubAckFuture, n)
	now := time.Now()
	for i := range n {
		b, idAt := spec.appendEvent(make([]byte, 0, 512), seq0+int64(i), now)
		f, err := r.js.PublishAsync(subj, b, jetstream.WithMsgID(spec.msgID(b, idAt)))
		if err != nil {
			return fmt.Errorf("direct async publish: %w", err)
		}
		futures[i] = f
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("direct async publish: %w", err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// waitSubscribers waits until the daemon's SSE subscriber gauge equals the count at the start of the run plus extra.
func (r *runner) waitSubscribers(ctx context.Context, extra int) (map[string]float64, error) {
	want := r.subs0 + float64(extra)
	return r.sidecar.waitGauge(ctx, metricSubscribers, r.o.Timeout, func(v float64) bool { return v == want })
}

// waitIndexer waits, at most timeout, until the daemon's per-workflow indexer (a durable consumer on the events
// stream) has caught up, so that its work on earlier scenarios does not count in a CPU figure. It is best effort:
// without the consumer (another stream name, an older daemon) it returns at once.
func (r *runner) waitIndexer(ctx context.Context, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cons, err := r.js.Consumer(ctx, "FLOVYN_EVENTS", "eventhook-indexer-2")
	if err != nil {
		return
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		info, err := cons.Info(ctx)
		if err != nil || (info.NumPending == 0 && info.NumAckPending == 0) {
			return
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		}
	}
}

// sleep waits for d, or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func joinInts(ns []int) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}
