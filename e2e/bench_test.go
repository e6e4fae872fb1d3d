package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// TestBenchProduction runs eventhook bench -scenarios production at small sizes with the binaries the tests build: it
// starts a nats-server, a daemon on it, a daemon on its embedded server, the no-op handler and the bare prototype,
// publishes through each, and reports every figure with its comparison; the SSE subscriber misses nothing and no
// process is left behind.
func TestBenchProduction(t *testing.T) {
	eh, ns := binaries(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, eh, "bench", "-scenarios", "production", "-quick", "-quiet", "-json", "-nats-server", ns,
		"-rate", "300", "-rate-duration", "300ms", "-reps", "2", "-duration", "200ms", "-warmup", "50ms")
	dieWithTest(cmd)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("eventhook bench: %v\nstderr: %s\nstdout: %s", err, stderr.String(), stdout.String())
	}
	var rep struct {
		Setup struct {
			Production *struct {
				NATSServerPID int `json:"nats_server_pid"`
				ExternalPID   int `json:"external_pid"`
				EmbeddedPID   int `json:"embedded_pid"`
				NoOpPID       int `json:"noop_pid"`
			} `json:"production"`
		} `json:"setup"`
		Results []struct {
			Key      string   `json:"key"`
			Value    float64  `json:"value"`
			Baseline *float64 `json:"baseline"`
			Pass     *bool    `json:"pass"`
			Target   string   `json:"target"`
		} `json:"results"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("JSON report: %v\n%s", err, stdout.String())
	}
	got := map[string]float64{}
	for _, r := range rep.Results {
		got[r.Key] = r.Value
		if r.Target != "" && r.Pass == nil {
			t.Errorf("%s has a target and no verdict", r.Key)
		}
	}
	for _, k := range []string{
		"production.events.sidecar.cpu_us", "production.events.noop.cpu_us", "production.events.prototype.cpu_us",
		"production.events.nats.cpu_us", "production.events.nats_direct.cpu_us", "production.events.sidecar.p99_ms",
		"production.events.noop.p99_ms", "production.events.sse.p99_ms", "production.events.sse.missing",
		"production.tokens.sidecar.cpu_us", "production.tokens.noop.cpu_us", "production.tokens.sidecar.p99_ms",
		"production.events.c16.external.events_per_s", "production.events.c16.embedded.events_per_s",
		"production.events.c16.noop.events_per_s", "production.events.c16.prototype.events_per_s",
		"production.tokens.c16.external.events_per_s", "production.tokens.c16.embedded.events_per_s",
	} {
		if _, ok := got[k]; !ok {
			t.Errorf("figure %s missing from the report", k)
		}
	}
	if got["production.events.sse.missing"] != 0 {
		t.Errorf("the SSE subscriber missed %v events", got["production.events.sse.missing"])
	}
	for _, k := range []string{"production.events.sidecar.cpu_us", "production.events.c16.external.events_per_s",
		"production.tokens.c16.embedded.events_per_s", "production.events.c16.noop.events_per_s"} {
		if got[k] <= 0 {
			t.Errorf("%s = %v, want a positive figure", k, got[k])
		}
	}
	p := rep.Setup.Production
	if p == nil || p.NATSServerPID == 0 || p.ExternalPID == 0 || p.EmbeddedPID == 0 || p.NoOpPID == 0 {
		t.Fatalf("the report names no processes: %+v", p)
	}
	for _, pid := range []int{p.NATSServerPID, p.ExternalPID, p.EmbeddedPID, p.NoOpPID} {
		if processAlive(pid) {
			t.Errorf("process %d outlived the bench", pid)
		}
	}
}

// processAlive reports whether a process of that id exists (and is not a zombie of ours).
func processAlive(pid int) bool {
	return syscall.Kill(pid, 0) == nil
}
