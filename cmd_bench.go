package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/flovyn/eventhook/bench"
)

const benchUsage = `Usage: eventhook bench [flags]

Benchmarks a running sidecar (its Unix socket, default ./eventhook.sock, or -url) and, in
the same run, the same NATS server used directly with nats.go (-nats) and a no-op HTTP
handler the bench serves itself on the same kind of transport (the HTTP ceiling). It
prints a table of figures with their comparisons, ratios and targets, or JSON with -json.
See BENCHMARKS.md.

Scenarios (-scenarios, comma list; default all):
  single    one event per request at -concurrency 1,16,64: sidecar vs no-op vs nats.go
  batch     NDJSON batches of 1000 vs nats.go async publish of 1000 and their acks
  latency   fixed -rate with one SSE subscriber: publish→SSE and publish latency,
            -reps interleaved repetitions, medians
  fanout    -subscribers SSE clients of one tenant receive -fanout-events events: sidecar
            vs a minimal Go SSE broadcaster, then again with one stalled subscriber
  idle      -idle idle SSE subscribers: daemon RSS per subscriber, publish slowdown,
            daemon CPU with -cpu-subscribers of them
  streams   one token per POST /v1/streams at -concurrency 1,16,64: sidecar vs no-op vs nats.go

Run only when named (it needs no running sidecar):
  production  the production shape: starts a nats-server (-nats-server, or built from the
            Go module), a daemon on it and one on its embedded server (-daemon, default this
            binary), and a no-op handler that parses the same JSON, each a process of its own;
            CPU per event from /proc at -rate, publish and publish→SSE latency, closed-loop
            throughput of 16 clients, for lifecycle events and single tokens

Start the daemon first, e.g. go run . serve -config bench/config.bench.yaml. A missed
target is reported, not an error. Exit status: 0 done, 1 a step failed, 2 bad command line.

Flags:
`

// runBench runs "eventhook bench" with args, the arguments after the word bench, and returns the exit code.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	flags := cliFlags("eventhook bench", benchUsage, stdout, stderr)
	var conn cliConn
	conn.register(flags)
	var o bench.Options
	var scenarios, concurrency string
	var asJSON, quiet bool
	var jsonOut string
	flags.StringVar(&o.NATS, "nats", "nats://127.0.0.1:4222", "`URL` of the sidecar's NATS server, for the direct nats.go comparison")
	flags.StringVar(&scenarios, "scenarios", "", "comma `list` of scenarios: single,batch,latency,fanout,idle (default all)")
	flags.BoolVar(&o.Quick, "quick", false, "short runs with small sizes (smoke test); explicit flags still win")
	flags.BoolVar(&asJSON, "json", false, "print the report as JSON")
	flags.StringVar(&jsonOut, "o", "", "also write the JSON report to this `file`")
	flags.BoolVar(&quiet, "quiet", false, "do not print progress to stderr")
	flags.DurationVar(&o.Duration, "duration", 0, "length of each single and batch measurement, all rounds together (default 3s; -quick 300ms)")
	flags.DurationVar(&o.Warmup, "warmup", 0, "unmeasured warm-up before each measurement (default 500ms; -quick 100ms)")
	flags.IntVar(&o.Rounds, "rounds", 0, "rounds each single and batch measurement is split into, interleaving sidecar, no-op and direct (default 3; -quick 1)")
	flags.StringVar(&concurrency, "concurrency", "", "comma `list` of single-publish concurrencies (default 1,16,64)")
	flags.IntVar(&o.BatchConcurrency, "batch-concurrency", 0, "concurrent batch publishers (default 1)")
	flags.IntVar(&o.Rate, "rate", 0, "fixed publish rate of the latency scenario, events/s (default 1000; -quick 200)")
	flags.DurationVar(&o.RateDuration, "rate-duration", 0, "length of each fixed-rate run (default 3s; -quick 300ms)")
	flags.IntVar(&o.Reps, "reps", 0, "interleaved repetitions of the latency scenario (default 5; -quick 3)")
	flags.IntVar(&o.Subscribers, "subscribers", 0, "fan-out subscribers N (default 1000; -quick 20)")
	flags.IntVar(&o.FanoutEvents, "fanout-events", 0, "fan-out events M, published in batches of 1000 (default 2000; -quick 300)")
	flags.IntVar(&o.Idle, "idle", 0, "idle subscribers K (default 10000; -quick 60)")
	flags.IntVar(&o.IdleTenants, "idle-tenants", 0, "tenants the idle subscribers are spread over (default max(10, K/1000))")
	flags.IntVar(&o.CPUSubscribers, "cpu-subscribers", 0, "idle subscribers kept open for the CPU figure (default min(1000, K); -quick 20)")
	flags.DurationVar(&o.CPUWindow, "cpu-window", 0, "how long the daemon's CPU is measured (default 10s; -quick 500ms)")
	flags.DurationVar(&o.Timeout, "timeout", 0, "bound of each wait for deliveries and gauges (default 1m; -quick 20s)")
	flags.StringVar(&o.Daemon, "daemon", "", "eventhook `binary` the production scenario starts (default: this one)")
	flags.StringVar(&o.NATSServer, "nats-server", "", "nats-server `binary` the production scenario starts (default: go build it from the module)")
	flags.IntVar(&o.DaemonGOMAXPROCS, "daemon-gomaxprocs", 0, "GOMAXPROCS of the production scenario's daemons and no-op handler (default: Go's; 1 is what a container limited to one core or less gets)")
	flags.StringVar(&o.DaemonPprof, "daemon-pprof", "", "EVENTHOOK_PPROF `address` of the production scenario's daemon on the external server, to profile it")
	var serveNoop, noopNATS string
	flags.StringVar(&noopNATS, "noop-nats", "", "with -serve-noop: also publish each parsed request to JetStream at this `URL` and wait for the PubAck (the bare prototype)")
	flags.StringVar(&serveNoop, "serve-noop", "", "serve the production scenario's parsing no-op handler on the Unix socket `path` until SIGTERM (the scenario runs this itself)")
	if code, ok := parseCLIFlags(flags, args); !ok {
		return code
	}
	if serveNoop != "" {
		if err := bench.ServeNoop(ctx, serveNoop, noopNATS); err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", flags.Name(), err)
			return exitError
		}
		return exitOK
	}
	if o.Daemon == "" {
		o.Daemon, _ = os.Executable()
	}
	o.Socket, o.URL, o.Token, o.Tenant = conn.socket, conn.url, conn.token, conn.tenant
	if o.Token == "" {
		o.Token = os.Getenv("EVENTHOOK_TOKEN")
	}
	if scenarios != "" {
		o.Scenarios = splitList(scenarios)
	}
	if concurrency != "" {
		for _, s := range splitList(concurrency) {
			n, err := strconv.Atoi(s)
			if err != nil {
				return cliUsageError(flags, "-concurrency %q: want a comma list of numbers such as 1,16,64", concurrency)
			}
			o.Concurrency = append(o.Concurrency, n)
		}
	}
	if err := o.Check(); err != nil {
		return cliUsageError(flags, "%v", err)
	}
	if !quiet {
		o.Progress = stderr
	}
	start := time.Now()
	rep, err := bench.Run(ctx, o)
	if rep != nil && len(rep.Results) > 0 {
		if err != nil {
			rep.Notes = append(rep.Notes, "the run failed part way: "+err.Error())
			rep.Elapsed = bench.Seconds(time.Since(start))
		}
		if jsonOut != "" {
			if err2 := writeBenchJSON(jsonOut, rep); err == nil {
				err = err2
			}
		}
		if asJSON {
			err2 := rep.WriteJSON(stdout)
			if err == nil {
				err = err2
			}
		} else {
			err2 := rep.WriteTable(stdout)
			if err == nil {
				err = err2
			}
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", flags.Name(), err)
		return exitError
	}
	return exitOK
}

// writeBenchJSON writes the JSON report to path.
func writeBenchJSON(path string, rep *bench.Report) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := rep.WriteJSON(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// splitList splits a comma list, trimming items and dropping empty ones.
func splitList(s string) []string {
	var out []string
	for item := range strings.SplitSeq(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}
