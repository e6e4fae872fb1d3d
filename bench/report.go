package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Units of the figures.
const (
	unitEventsPerSec     = "events/s"
	unitDeliveriesPerSec = "deliveries/s"
	unitMs               = "ms"
	unitMicros           = "µs"
	unitCores            = "cores"
	unitKiB              = "KiB"
	unitMiB              = "MiB"
	unitPercentCore      = "% of a core"
	unitCount            = "count"
	unitOutcome          = "outcome"
)

// add appends a figure without comparison and returns it for further decoration.
func (r *runner) add(key, scenario, figure string, value float64, unit string) *Result {
	r.rep.Results = append(r.rep.Results, Result{Key: key, Scenario: scenario, Figure: figure, Value: value, Unit: unit})
	return &r.rep.Results[len(r.rep.Results)-1]
}

// vs sets the comparison of res: what it is compared with, its figure and the ratio.
func (res *Result) vs(comparison string, baseline float64) *Result {
	res.Comparison = comparison
	res.Baseline = &baseline
	if baseline != 0 && !math.IsNaN(baseline) {
		ratio := res.Value / baseline
		res.Ratio = &ratio
	}
	return res
}

// target sets the target of res and whether it is met.
func (res *Result) target(target string, pass bool) *Result {
	res.Target = target
	res.Pass = &pass
	return res
}

// ms converts a duration to milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// WriteJSON writes the report as indented JSON.
func (rep *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(rep)
}

// WriteTable writes the report for a person: a header naming the machine and the setup, then one line per figure
// (scenario, figure, value and unit, comparison, ratio, target, result), then the notes and a count of the targets met.
func (rep *Report) WriteTable(w io.Writer) error {
	m := rep.Machine
	s := rep.Setup
	var b strings.Builder
	fmt.Fprintf(&b, "eventhook bench, %s (%.1f s)\n", rep.Started.Format(time.RFC3339), time.Duration(rep.Elapsed).Seconds())
	fmt.Fprintf(&b, "machine: nproc %d, GOMAXPROCS %d, CPU %q, %s %s/%s\n", m.CPUs, m.GOMAXPROCS, m.CPUModel, m.GoVersion, m.OS, m.Arch)
	fmt.Fprintf(&b, "sidecar: %s; NATS (direct): %s; no-op handler and baseline broadcaster: %s\n", s.Sidecar, s.NATS, s.NoOp)
	fmt.Fprintf(&b, "tenant: %s; scenarios: %s", s.Tenant, strings.Join(s.Scenarios, ","))
	if s.Quick {
		b.WriteString(" (quick)")
	}
	b.WriteString("\n")
	if len(s.Sizes) > 0 {
		b.WriteString("sizes: " + formatSizes(s.Sizes) + "\n")
	}
	b.WriteString("\n")
	if _, err := io.WriteString(w, b.String()); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tFIGURE\tVALUE\tUNIT\tCOMPARED WITH\tRATIO\tTARGET\tRESULT")
	passed, targets := 0, 0
	for _, res := range rep.Results {
		value := formatValue(res.Value, res.Unit)
		if res.Text != "" {
			value = res.Text
		}
		comparison := ""
		if res.Comparison != "" {
			comparison = res.Comparison
			if res.Baseline != nil {
				comparison += " " + formatValue(*res.Baseline, res.Unit)
			}
		}
		ratio := ""
		if res.Ratio != nil {
			ratio = strconv.FormatFloat(*res.Ratio, 'f', 3, 64)
		}
		verdict := ""
		if res.Pass != nil {
			targets++
			verdict = "FAIL"
			if *res.Pass {
				passed++
				verdict = "pass"
			}
		}
		unit := res.Unit
		if unit == unitOutcome {
			unit = ""
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", res.Scenario, res.Figure, value, unit, comparison, ratio, res.Target, verdict)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	b.Reset()
	if targets > 0 {
		fmt.Fprintf(&b, "\ntargets met: %d of %d\n", passed, targets)
	}
	for _, n := range rep.Notes {
		b.WriteString(wrap("note: "+n, "      ", 116))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// formatValue prints a figure with the precision its unit deserves.
func formatValue(v float64, unit string) string {
	switch unit {
	case unitEventsPerSec, unitDeliveriesPerSec, unitCount:
		return groupThousands(int64(math.Round(v)))
	case unitMs:
		return strconv.FormatFloat(v, 'f', 3, 64)
	case unitMiB, unitMicros:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case unitKiB, unitPercentCore, unitCores:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
	return strconv.FormatFloat(v, 'g', 6, 64)
}

// groupThousands prints n with a comma every three digits.
func groupThousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// formatSizes prints the sizes of a run in a stable order.
func formatSizes(sizes map[string]string) string {
	order := []string{"duration", "warmup", "rounds", "concurrency", "batch_concurrency", "rate", "rate_duration", "reps",
		"subscribers", "fanout_events", "idle", "idle_tenants", "cpu_subscribers", "cpu_window"}
	var parts []string
	for _, k := range order {
		if v, ok := sizes[k]; ok {
			parts = append(parts, k+"="+v)
		}
	}
	return strings.Join(parts, " ")
}

// wrap breaks text into lines of at most width bytes at spaces, indenting every line after the first, and ends it
// with a newline.
func wrap(text, indent string, width int) string {
	var b strings.Builder
	line := 0
	for i, word := range strings.Fields(text) {
		switch {
		case i == 0:
		case line+1+len(word) > width:
			b.WriteString("\n" + indent)
			line = len(indent)
		default:
			b.WriteByte(' ')
			line++
		}
		b.WriteString(word)
		line += len(word)
	}
	b.WriteByte('\n')
	return b.String()
}
