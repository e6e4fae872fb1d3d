// Package bench measures a live eventhook sidecar side by side with what it is built from, in one run: the same NATS
// server used directly with nats.go ("direct"), and an HTTP handler that does nothing, served by the bench itself on the
// same kind of transport as the sidecar ("no-op", the HTTP ceiling of the machine). For the SSE fan-out, the bench also
// serves a minimal Go SSE broadcaster ("baseline"). Every figure is reported with its comparison, their ratio and, where
// the project sets one, the target the project set for it. A missed target is a result, not an error.
//
// The scenarios:
//
//   - single: one event per request (POST /v1/events) at several concurrencies, against the sidecar, the no-op handler
//     and nats.go's synchronous JetStream publish: events/s and latency percentiles.
//   - batch: NDJSON batches of 1000 events (POST /v1/events/batch) against nats.go's asynchronous publish of 1000
//     messages followed by a wait for every ack.
//   - latency: publishes at a fixed rate, with one SSE subscriber of the tenant; publish→SSE latency and publish
//     latency against the no-op handler and nats.go, in interleaved repetitions (medians reported).
//   - fanout: N SSE subscribers of one tenant receive M events; deliveries/s and delivery latency against the baseline
//     broadcaster, then again with one stalled subscriber among them.
//   - idle: K idle SSE subscribers: the daemon's resident memory per subscriber (from its /metrics), publish
//     throughput with and without them, and the daemon's CPU with some of them open.
//   - streams: one token per request (POST /v1/streams) at several concurrencies, against the sidecar, the no-op
//     handler and nats.go's synchronous JetStream publish of the same stream event.
//   - production: not in the default set, and independent of the running sidecar: the bench starts a nats-server,
//     a daemon on it (the production shape), a daemon on its embedded server and a no-op handler that parses the same
//     JSON, each a process of its own, and measures the CPU per event of each from /proc (the nats-server's against a
//     direct nats.go publisher's), publish latency at a fixed rate, and closed-loop throughput, for lifecycle events and
//     for single tokens.
package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Scenario names, in the order a full run executes them.
const (
	ScenarioSingle  = "single"
	ScenarioBatch   = "batch"
	ScenarioLatency = "latency"
	ScenarioFanout  = "fanout"
	ScenarioIdle    = "idle"
	ScenarioStreams = "streams"
	// ScenarioProduction starts its own nats-server, daemons and no-op handler; it runs only when asked for.
	ScenarioProduction = "production"
)

// AllScenarios lists every scenario of a default run, in the order it executes them.
var AllScenarios = []string{ScenarioSingle, ScenarioStreams, ScenarioBatch, ScenarioLatency, ScenarioFanout, ScenarioIdle}

// KnownScenarios lists every scenario: those of a default run, and those that run only when asked for.
var KnownScenarios = append(append([]string(nil), AllScenarios...), ScenarioProduction)

// Options configures a run. Zero values take defaults: those that eventhook bench -h lists for a full run, or smaller
// ones when Quick is set.
type Options struct {
	// Socket is the path of the sidecar's Unix socket; used when URL is empty.
	Socket string
	// URL is the sidecar's base URL (http://host:port); it wins over Socket.
	URL string
	// Token is the bearer token sent to the sidecar, if any.
	Token string
	// NATS is the URL of the NATS server the sidecar uses, for the direct nats.go comparisons.
	NATS string
	// Tenant is the tenant of the published events (a UUID); random when empty. Scenarios that need several tenants
	// derive the others at random.
	Tenant string
	// Scenarios lists the scenarios to run (see AllScenarios); empty means all of them.
	Scenarios []string
	// Quick selects short runs with small sizes, for tests and smoke checks.
	Quick bool

	// Duration is how long each single or batch measurement lasts (after Warmup).
	Duration time.Duration
	// Warmup is run, unmeasured, before each single or batch measurement.
	Warmup time.Duration
	// Rounds is the number of rounds the single and batch measurements are split into, interleaving the sidecar and
	// what it is compared with (sidecar, no-op, direct, sidecar, …), so that noise falls on all of them alike.
	Rounds int
	// Concurrency lists the numbers of concurrent publishers of the single scenario.
	Concurrency []int
	// BatchConcurrency is the number of concurrent batch publishers (default 1).
	BatchConcurrency int
	// Rate is the fixed publish rate of the latency scenario, in events per second.
	Rate int
	// RateDuration is how long each fixed-rate run of the latency scenario lasts.
	RateDuration time.Duration
	// Reps is the number of interleaved repetitions of the latency scenario.
	Reps int
	// Subscribers is N, the number of SSE subscribers of the fan-out scenario.
	Subscribers int
	// FanoutEvents is M, the number of events published to the fan-out subscribers (in batches of 1000).
	FanoutEvents int
	// Idle is K, the number of idle SSE subscribers of the idle scenario.
	Idle int
	// IdleTenants is the number of tenants the idle subscribers are spread over (default: at least 10, and enough to
	// stay within the default per-tenant limit of 1000).
	IdleTenants int
	// CPUSubscribers is the number of idle subscribers kept open while the daemon's CPU is measured.
	CPUSubscribers int
	// CPUWindow is how long the daemon's CPU use is measured.
	CPUWindow time.Duration
	// Timeout bounds each wait for deliveries and for the daemon's gauges.
	Timeout time.Duration

	// Daemon is the eventhook binary of the daemons the production scenario starts; required by that scenario only.
	// Its no-op handler and bare prototype are served by the running binary (eventhook bench -serve-noop), which must
	// be eventhook.
	Daemon string
	// NATSServer is the nats-server binary the production scenario starts; empty builds one from the Go module the
	// project requires (go build, in the eventhook module).
	NATSServer string
	// DaemonGOMAXPROCS, when positive, is the GOMAXPROCS of the processes the production scenario serves from (its
	// daemons and its no-op handler alike): 1 is what Go gives a process whose container is limited to one core or
	// less, as deploy/k8s limits the sidecar (500m). 0 leaves the Go default (the machine's CPUs).
	DaemonGOMAXPROCS int
	// DaemonPprof, when set, is the EVENTHOOK_PPROF address of the production scenario's daemon on the external
	// server, to profile it while the scenario runs.
	DaemonPprof string

	// Progress receives one line per step, for a person watching a long run; nil discards them.
	Progress io.Writer
}

// withDefaults returns o with every zero field set to its default.
func (o Options) withDefaults() Options {
	def := func(d *time.Duration, full, quick time.Duration) {
		if *d == 0 {
			*d = full
			if o.Quick {
				*d = quick
			}
		}
	}
	defInt := func(n *int, full, quick int) {
		if *n == 0 {
			*n = full
			if o.Quick {
				*n = quick
			}
		}
	}
	if o.Socket == "" && o.URL == "" {
		o.Socket = "./eventhook.sock"
	}
	if o.NATS == "" {
		o.NATS = "nats://127.0.0.1:4222"
	}
	if len(o.Scenarios) == 0 {
		o.Scenarios = AllScenarios
	}
	if len(o.Concurrency) == 0 {
		o.Concurrency = []int{1, 16, 64}
	}
	def(&o.Duration, 3*time.Second, 300*time.Millisecond)
	def(&o.Warmup, 500*time.Millisecond, 100*time.Millisecond)
	defInt(&o.Rounds, 3, 1)
	defInt(&o.BatchConcurrency, 1, 1)
	defInt(&o.Rate, 1000, 200)
	def(&o.RateDuration, 3*time.Second, 300*time.Millisecond)
	defInt(&o.Reps, 5, 3)
	defInt(&o.Subscribers, 1000, 20)
	defInt(&o.FanoutEvents, 2000, 300)
	defInt(&o.Idle, 10000, 60)
	defInt(&o.CPUSubscribers, min(1000, o.Idle), min(20, o.Idle))
	def(&o.CPUWindow, 10*time.Second, 500*time.Millisecond)
	def(&o.Timeout, time.Minute, 20*time.Second)
	if o.IdleTenants == 0 {
		o.IdleTenants = max(10, (o.Idle+999)/1000)
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	return o
}

// validate reports the first option that cannot work.
func (o *Options) validate() error {
	for _, s := range o.Scenarios {
		if !slices.Contains(KnownScenarios, s) {
			return fmt.Errorf("unknown scenario %q: want some of %s", s, strings.Join(KnownScenarios, ","))
		}
	}
	for _, c := range o.Concurrency {
		if c < 1 || c > 4096 {
			return fmt.Errorf("concurrency %d: want 1 to 4096", c)
		}
	}
	switch {
	case o.Tenant != "" && !isUUID(o.Tenant):
		return fmt.Errorf("tenant %q is not a UUID", o.Tenant)
	case o.Duration < 0 || o.Warmup < 0 || o.RateDuration < 0 || o.CPUWindow < 0 || o.Timeout < 0:
		return errors.New("durations must not be negative")
	case o.Rounds < 1:
		return errors.New("rounds must be at least 1")
	case o.BatchConcurrency < 1:
		return errors.New("batch concurrency must be at least 1")
	case o.Rate < 1 || o.Rate > 100_000:
		return fmt.Errorf("rate %d: want 1 to 100000 events/s", o.Rate)
	case o.Reps < 1:
		return errors.New("repetitions must be at least 1")
	case o.Subscribers < 2:
		return fmt.Errorf("fan-out subscribers %d: want at least 2 (one of them is stalled in the second run)", o.Subscribers)
	case o.FanoutEvents < 1:
		return errors.New("fan-out events must be at least 1")
	case o.Idle < 1 || o.CPUSubscribers < 0 || o.CPUSubscribers > o.Idle:
		return fmt.Errorf("idle subscribers %d and CPU subscribers %d: want idle ≥ 1 and 0 ≤ CPU subscribers ≤ idle", o.Idle, o.CPUSubscribers)
	case o.IdleTenants < 1:
		return errors.New("idle tenants must be at least 1")
	}
	return nil
}

// Machine describes where a run happened.
type Machine struct {
	// CPUs is the number of CPUs the process may use (what nproc prints).
	CPUs int `json:"cpus"`
	// GOMAXPROCS is the bench's GOMAXPROCS.
	GOMAXPROCS int `json:"gomaxprocs"`
	// CPUModel is the model name from /proc/cpuinfo, when there is one.
	CPUModel string `json:"cpu_model"`
	// GoVersion is the Go version the bench was built with.
	GoVersion string `json:"go_version"`
	// OS and Arch are the bench's platform.
	OS   string `json:"os"`
	Arch string `json:"arch"`
}

// Setup records what was measured and how.
type Setup struct {
	// Sidecar is the sidecar's address: "unix:<path>" or its URL.
	Sidecar string `json:"sidecar"`
	// NoOp is where the bench served its no-op handler and its baseline broadcaster.
	NoOp string `json:"noop"`
	// NATS is the NATS server of the direct comparisons.
	NATS string `json:"nats"`
	// Tenant is the tenant of the published events.
	Tenant string `json:"tenant"`
	// Scenarios are the scenarios run.
	Scenarios []string `json:"scenarios"`
	// Quick is true for a quick run.
	Quick bool `json:"quick"`
	// Sizes holds the sizes and durations used.
	Sizes map[string]string `json:"sizes"`
	// Production describes the processes of the production scenario, when it ran.
	Production *ProductionSetup `json:"production,omitempty"`
}

// ProductionSetup describes the processes the production scenario started.
type ProductionSetup struct {
	// NATS is the URL of the nats-server it started.
	NATS string `json:"nats"`
	// Daemon is the eventhook binary of its daemons and no-op handler.
	Daemon string `json:"daemon"`
	// The process ids: the nats-server, the daemon on it, the daemon on its embedded server, the no-op handler.
	NATSServerPID int `json:"nats_server_pid"`
	ExternalPID   int `json:"external_pid"`
	EmbeddedPID   int `json:"embedded_pid"`
	NoOpPID       int `json:"noop_pid"`
}

// Report is the outcome of a run.
type Report struct {
	// Started is when the run began.
	Started time.Time `json:"started"`
	// Elapsed is how long it took.
	Elapsed Seconds `json:"elapsed_s"`
	// Machine is where it ran.
	Machine Machine `json:"machine"`
	// Setup is what it measured.
	Setup Setup `json:"setup"`
	// Results are the figures, in the order they were measured.
	Results []Result `json:"results"`
	// Notes explain figures that need it.
	Notes []string `json:"notes,omitempty"`
}

// Seconds is a duration that encodes to JSON as a number of seconds.
type Seconds time.Duration

// MarshalJSON encodes the duration as seconds with millisecond precision.
func (s Seconds) MarshalJSON() ([]byte, error) {
	return fmt.Appendf(nil, "%.3f", time.Duration(s).Seconds()), nil
}

// UnmarshalJSON decodes a number of seconds.
func (s *Seconds) UnmarshalJSON(b []byte) error {
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return fmt.Errorf("seconds: %w", err)
	}
	*s = Seconds(f * float64(time.Second))
	return nil
}

// Result is one figure of a run.
type Result struct {
	// Key names the figure for machines, such as "single.c16.sidecar.events_per_s"; stable across runs.
	Key string `json:"key"`
	// Scenario is the scenario and its variant, such as "single c=16".
	Scenario string `json:"scenario"`
	// Figure says what was measured, such as "sidecar throughput".
	Figure string `json:"figure"`
	// Value is the figure (NaN never: a figure that could not be measured is not reported).
	Value float64 `json:"value"`
	// Text is the figure when it is not a number (the outcome of the stalled subscriber), else empty.
	Text string `json:"text,omitempty"`
	// Unit is the unit of Value.
	Unit string `json:"unit"`
	// Comparison names what the figure is compared with, such as "no-op handler", and Baseline is that figure.
	Comparison string   `json:"comparison,omitempty"`
	Baseline   *float64 `json:"baseline,omitempty"`
	// Ratio is Value / Baseline.
	Ratio *float64 `json:"ratio,omitempty"`
	// Target is the project's target for this figure, in words, such as "ratio ≥ 0.75".
	Target string `json:"target,omitempty"`
	// Pass says whether the target is met; nil when the figure has no target.
	Pass *bool `json:"pass,omitempty"`
}

// Check reports whether o is usable: the error names the first option that is not. Run checks too; Check lets a
// command line tell a usage error from a failed run.
func (o Options) Check() error {
	o = o.withDefaults()
	return o.validate()
}

// Run measures the sidecar that o names and returns the report. It returns an error when something fails (the
// sidecar, the NATS server or the transport), together with the figures measured until then; a missed target is not
// an error.
func Run(ctx context.Context, o Options) (*Report, error) {
	o = o.withDefaults()
	if err := o.validate(); err != nil {
		return nil, err
	}
	if o.Tenant == "" {
		o.Tenant = newUUID()
	} else {
		o.Tenant = strings.ToLower(o.Tenant)
	}
	r := &runner{o: o, rep: &Report{Started: time.Now(), Machine: machine()}}
	defer r.close()
	if err := r.open(ctx); err != nil {
		return nil, err
	}
	for _, s := range o.Scenarios {
		r.progress("scenario %s", s)
		var err error
		switch s {
		case ScenarioSingle:
			err = r.single(ctx)
		case ScenarioBatch:
			err = r.batch(ctx)
		case ScenarioLatency:
			err = r.latency(ctx)
		case ScenarioFanout:
			err = r.fanout(ctx)
		case ScenarioIdle:
			err = r.idle(ctx)
		case ScenarioStreams:
			err = r.streams(ctx)
		case ScenarioProduction:
			err = r.production(ctx)
		}
		if err != nil {
			return r.rep, fmt.Errorf("scenario %s: %w", s, err)
		}
	}
	r.rep.Elapsed = Seconds(time.Since(r.rep.Started))
	return r.rep, nil
}

// machine describes this machine.
func machine() Machine {
	return Machine{CPUs: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), CPUModel: cpuModel(),
		GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH}
}

// cpuModel returns the first "model name" of /proc/cpuinfo, or "unknown".
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}
