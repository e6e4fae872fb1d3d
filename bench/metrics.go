package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Metrics of the daemon that the bench reads from its /metrics.
const (
	metricRSS         = "process_resident_memory_bytes"
	metricCPU         = "process_cpu_seconds_total"
	metricSubscribers = "eventhook_sse_subscribers"
)

// parseMetrics returns the samples without labels of a Prometheus text exposition.
func parseMetrics(text []byte) map[string]float64 {
	out := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 || strings.ContainsRune(f[0], '{') {
			continue
		}
		if v, err := strconv.ParseFloat(f[1], 64); err == nil {
			out[f[0]] = v
		}
	}
	return out
}

// scrape reads the daemon's /metrics and returns the named samples; an error when one is absent.
func (t *httpTarget) scrape(ctx context.Context, names ...string) (map[string]float64, error) {
	body, err := t.get(ctx, "/metrics")
	if err != nil {
		return nil, err
	}
	m := parseMetrics(body)
	for _, n := range names {
		if _, ok := m[n]; !ok {
			return nil, fmt.Errorf("%s: /metrics has no %s (is this an eventhook daemon serving the process collector?)", t.name, n)
		}
	}
	return m, nil
}

// waitGauge polls the daemon's metric name until ok accepts its value, or timeout passes; it returns the metrics read
// last.
func (t *httpTarget) waitGauge(ctx context.Context, name string, timeout time.Duration, ok func(float64) bool) (map[string]float64, error) {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		m, err := t.scrape(ctx, name, metricRSS, metricCPU)
		if err != nil {
			return nil, err
		}
		if ok(m[name]) {
			return m, nil
		}
		if time.Now().After(deadline) {
			return m, fmt.Errorf("%s: %s is still %v after %v", t.name, name, m[name], timeout)
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
