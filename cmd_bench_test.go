package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flovyn/eventhook/bench"
	"github.com/flovyn/eventhook/sidecar"
	"github.com/flovyn/eventhook/sidecar/config"
	"github.com/google/uuid"
)

// benchTestDaemon is a real sidecar, in this process: the jetstream backend on an embedded NATS server that listens on
// a free loopback port (for the bench's direct nats.go comparison), serving a Unix socket and loopback TCP.
type benchTestDaemon struct {
	socket string // the Unix socket
	url    string // the TCP base URL
	nats   string // the embedded NATS server's URL
}

func newBenchTestDaemon(t *testing.T) *benchTestDaemon {
	t.Helper()
	dir, err := os.MkdirTemp("", "ehbt") // short: Unix socket paths are limited to about 100 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	port := benchTestFreePort(t)
	cfg := config.Default()
	cfg.Backend = "jetstream"
	cfg.NATS.StoreDir = filepath.Join(dir, "data")
	cfg.NATS.EmbeddedListen = "127.0.0.1:" + port
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.HTTP.UnixSocket = filepath.Join(dir, "eh.sock")
	cfg.SSE.WriteTimeout = config.Duration(2 * time.Second) // the stalled subscriber is dropped sooner
	cfg.Log.Level = "error"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	log := config.NewLogger(cfg.Log, io.Discard)
	bus, err := config.OpenBus(t.Context(), cfg, sidecar.FrameEncoders(cfg.Events.TenantKey), log)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := sidecar.NewServer(sidecar.Options{Config: cfg, Bus: bus, Logger: log})
	if err != nil {
		bus.Close()
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		bus.Close()
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-served
		bus.Close()
	})
	return &benchTestDaemon{socket: cfg.HTTP.UnixSocket, url: "http://" + srv.Addr().String(), nats: "nats://127.0.0.1:" + port}
}

// benchTestFreePort returns a loopback TCP port that was free a moment ago.
func benchTestFreePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

// benchTestRun runs eventhook bench with args and returns its exit code, stdout and stderr.
func benchTestRun(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var stdout, stderr strings.Builder
	code := run(ctx, append([]string{"bench"}, args...), nil, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// benchTestKeys are the figures each scenario must report.
var benchTestKeys = map[string][]string{
	bench.ScenarioSingle: {
		"single.c1.sidecar.events_per_s", "single.c1.sidecar.vs_direct", "single.c1.noop.events_per_s",
		"single.c1.direct.events_per_s", "single.c1.sidecar.p50_ms", "single.c1.sidecar.p99_ms", "single.c1.noop.p50_ms",
		"single.c1.noop.p99_ms", "single.c1.direct.p50_ms", "single.c1.direct.p99_ms",
		"single.c16.sidecar.events_per_s", "single.c16.noop.events_per_s", "single.c16.direct.events_per_s",
		"single.c16.sidecar.p99_ms",
	},
	bench.ScenarioStreams: {
		"streams.c1.sidecar.events_per_s", "streams.c1.sidecar.vs_direct", "streams.c1.noop.events_per_s",
		"streams.c1.direct.events_per_s", "streams.c1.sidecar.p50_ms", "streams.c1.sidecar.p99_ms",
		"streams.c16.sidecar.events_per_s", "streams.c16.noop.p99_ms", "streams.c16.direct.p99_ms",
	},
	bench.ScenarioBatch: {
		"batch.sidecar.events_per_s", "batch.direct.events_per_s", "batch.sidecar.p50_ms", "batch.sidecar.p99_ms",
		"batch.direct.p50_ms", "batch.direct.p99_ms",
	},
	bench.ScenarioLatency: {
		"latency.sidecar.publish_p50_ms", "latency.sidecar.publish_p99_ms", "latency.noop.publish_p50_ms",
		"latency.noop.publish_p99_ms", "latency.direct.publish_p50_ms", "latency.direct.publish_p99_ms",
		"latency.sidecar.sse_p50_ms", "latency.sidecar.sse_p99_ms", "latency.sidecar.sse_missing",
	},
	bench.ScenarioFanout: {
		"fanout.sidecar.deliveries_per_s", "fanout.sidecar.p50_ms", "fanout.sidecar.p99_ms", "fanout.sidecar.missing",
		"fanout.baseline.deliveries_per_s", "fanout.baseline.p50_ms", "fanout.baseline.p99_ms", "fanout.baseline.missing",
		"fanout.stalled.others_deliveries_per_s", "fanout.stalled.others_p99_ms", "fanout.stalled.others_missing",
		"fanout.stalled.outcome",
	},
	bench.ScenarioIdle: {
		"idle.rss_per_subscriber_kib", "idle.rss_before_mib", "idle.rss_after_mib", "idle.publish_with.events_per_s",
		"idle.publish_none.events_per_s", "idle.publish_before.events_per_s", "idle.publish_with.p99_ms", "idle.cpu_percent", "idle.cpu_none_percent",
	},
}

// benchTestCorrectness are the figures that check correctness, not speed: they must pass on any machine.
var benchTestCorrectness = []string{"latency.sidecar.sse_missing", "fanout.sidecar.missing", "fanout.stalled.others_missing",
	"fanout.stalled.outcome"}

// benchTestSmall are the sizes of the test runs: smaller still than -quick.
var benchTestSmall = []string{"-quick", "-quiet", "-concurrency", "1,16", "-duration", "150ms", "-warmup", "50ms",
	"-rate-duration", "200ms", "-reps", "2", "-subscribers", "5", "-fanout-events", "1200", "-idle", "40",
	"-cpu-subscribers", "10", "-cpu-window", "200ms"}

// TestBenchScenarios runs every scenario, one at a time, against a real sidecar over its Unix socket, and checks that
// the JSON report has every figure with a comparison where one is due, and that the correctness checks pass.
func TestBenchScenarios(t *testing.T) {
	d := newBenchTestDaemon(t)
	for _, scenario := range bench.AllScenarios {
		t.Run(scenario, func(t *testing.T) {
			args := append([]string{"-socket", d.socket, "-nats", d.nats, "-json", "-scenarios", scenario}, benchTestSmall...)
			code, stdout, stderr := benchTestRun(t, args...)
			if code != 0 {
				t.Fatalf("exit %d\nstderr: %s\nstdout: %s", code, stderr, stdout)
			}
			var rep bench.Report
			if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
				t.Fatalf("JSON report: %v\n%s", err, stdout)
			}
			byKey := map[string]bench.Result{}
			for _, r := range rep.Results {
				if _, dup := byKey[r.Key]; dup {
					t.Errorf("figure %s reported twice", r.Key)
				}
				byKey[r.Key] = r
				if r.Scenario == "" || r.Figure == "" || r.Unit == "" {
					t.Errorf("figure %s lacks its scenario, name or unit: %+v", r.Key, r)
				}
				if r.Comparison != "" && (r.Baseline == nil || (*r.Baseline != 0 && r.Ratio == nil)) {
					t.Errorf("figure %s is compared with %q but has no baseline or ratio", r.Key, r.Comparison)
				}
				if r.Target != "" && r.Pass == nil {
					t.Errorf("figure %s has a target and no verdict", r.Key)
				}
			}
			for _, k := range benchTestKeys[scenario] {
				if _, ok := byKey[k]; !ok {
					t.Errorf("figure %s missing from the report", k)
				}
			}
			for _, k := range benchTestCorrectness {
				if r, ok := byKey[k]; ok && (r.Pass == nil || !*r.Pass) {
					t.Errorf("correctness check %s failed: %+v (notes: %q)", k, r, rep.Notes)
				}
			}
			if rep.Machine.CPUs < 1 || rep.Machine.GoVersion == "" || rep.Machine.CPUModel == "" {
				t.Errorf("machine not described: %+v", rep.Machine)
			}
			for k, want := range map[string]float64{"fanout.sidecar.missing": 0, "latency.sidecar.sse_missing": 0} {
				if r, ok := byKey[k]; ok && r.Value != want {
					t.Errorf("%s = %v, want %v", k, r.Value, want)
				}
			}
			if r, ok := byKey["single.c16.sidecar.events_per_s"]; ok && (r.Value <= 0 || r.Ratio == nil) {
				t.Errorf("single c=16: %+v", r)
			}
		})
	}
}

// TestBenchTableOverTCP benchmarks the sidecar's TCP listener (-url; the no-op handler then listens on loopback TCP)
// and checks the readable table: the header names the machine, every row has its unit and the verdict of its target.
func TestBenchTableOverTCP(t *testing.T) {
	d := newBenchTestDaemon(t)
	jsonFile := filepath.Join(t.TempDir(), "report.json")
	args := append([]string{"-url", d.url, "-nats", d.nats, "-scenarios", "single,fanout", "-o", jsonFile}, benchTestSmall...)
	code, stdout, stderr := benchTestRun(t, args...)
	if code != 0 {
		t.Fatalf("exit %d\nstderr: %s\nstdout: %s", code, stderr, stdout)
	}
	b, err := os.ReadFile(jsonFile)
	if err != nil {
		t.Fatal(err)
	}
	var rep bench.Report
	if err := json.Unmarshal(b, &rep); err != nil || len(rep.Results) == 0 || rep.Setup.Sidecar != d.url {
		t.Errorf("-o wrote %d results for %q, %v:\n%s", len(rep.Results), rep.Setup.Sidecar, err, b)
	}
	for _, want := range []string{"nproc ", "GOMAXPROCS", "go1.", "sidecar: " + d.url, "no-op handler and baseline broadcaster: http://127.0.0.1:",
		"SCENARIO", "FIGURE", "VALUE", "UNIT", "COMPARED WITH", "RATIO", "TARGET", "RESULT",
		"single c=16", "sidecar throughput", "events/s", "no-op handler", "direct nats.go", "ratio ≥ 0.75",
		"fanout N=5 M=1200", "baseline broadcaster", "deliveries/s", "+1 stalled", "targets met:", "note: "} {
		if !strings.Contains(stdout, want) {
			t.Errorf("the table lacks %q:\n%s", want, stdout)
		}
	}
	for _, line := range strings.Split(stdout, "\n") {
		if strings.HasPrefix(line, "fanout") && strings.Contains(line, "deliveries missing") && !strings.Contains(line, "baseline") &&
			!strings.HasSuffix(strings.TrimSpace(line), "pass") {
			t.Errorf("a fan-out lost deliveries: %s", line)
		}
	}
}

// TestBenchUsage checks the command line: bad flags are usage errors (exit 2), a missing sidecar is an error (exit 1)
// that says what to do, and -h prints the usage.
func TestBenchUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"-scenarios", "single,nope"}, 2, `unknown scenario "nope"`},
		{[]string{"-concurrency", "1,x"}, 2, "-concurrency"},
		{[]string{"-concurrency", "0"}, 2, "concurrency 0"},
		{[]string{"-tenant", "acme"}, 2, "not a UUID"},
		{[]string{"-subscribers", "1"}, 2, "at least 2"},
		{[]string{"-rounds", "-1"}, 2, "rounds"},
		{[]string{"extra"}, 2, "unexpected argument"},
		{[]string{"-socket", filepath.Join(t.TempDir(), "none.sock"), "-quiet"}, 1, "start it with: eventhook serve"},
		{[]string{"-h"}, 0, "Scenarios (-scenarios"}, // on stdout
		{[]string{"-scenarios", "production", "-nats-server", filepath.Join(t.TempDir(), "none"), "-quiet"}, 1, "start nats-server"},
	} {
		code, stdout, stderr := benchTestRun(t, tc.args...)
		out := stderr
		if tc.code == 0 {
			out = stdout
		}
		if code != tc.code || !strings.Contains(out, tc.want) {
			t.Errorf("bench %v: exit %d, stderr %q, stdout %q; want exit %d and %q", tc.args, code, stderr, stdout, tc.code, tc.want)
		}
	}
}

// TestBenchServeNoop runs eventhook bench -serve-noop, the no-op handler the production scenario starts as a process
// of its own: it serves its socket until the context ends, then exits 0.
func TestBenchServeNoop(t *testing.T) {
	dir, err := os.MkdirTemp("", "ehbn")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "noop.sock")
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"bench", "-serve-noop", sock}, nil, io.Discard, io.Discard) }()
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	defer c.CloseIdleConnections()
	body := `{"id":"` + uuid.NewString() + `","tenant_id":"` + uuid.NewString() + `","event_type":"x.y","data":{}}`
	var status int
	for deadline := time.Now().Add(5 * time.Second); status == 0 && time.Now().Before(deadline); {
		resp, err := c.Post("http://noop/v1/events", "application/json", strings.NewReader(body))
		if err != nil {
			time.Sleep(10 * time.Millisecond) // not listening yet
			continue
		}
		resp.Body.Close()
		status = resp.StatusCode
	}
	if status != http.StatusAccepted {
		t.Errorf("POST /v1/events to the no-op handler: %d, want 202", status)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("bench -serve-noop exited %d", code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("bench -serve-noop still running after its context ended")
	}
}
