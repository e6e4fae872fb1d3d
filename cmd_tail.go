package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/flovyn/eventhook/sidecar/client"
	"github.com/flovyn/eventhook/sidecar/event"
)

const tailUsage = `Usage: eventhook tail (-workflow ID | -task ID [-workflow ID] | -events) [flags]

Follows an SSE stream of the sidecar and prints one line per event, or one JSON object
per line with -json, whose data is the frame's data as the sidecar sent it (a lifecycle
event names its tenant tenant_id, or org_id when the sidecar runs with
events.tenant_key: org_id). It reconnects by itself when the stream ends or fails, resuming
after the last event received (Last-Event-ID): nothing is missed or printed twice.
Missed events the sidecar reports are shown as "-- gap: … --" lines. A line starts with a
time: a lifecycle event's own timestamp_ms; for tokens, progress, data and errors, whose SSE
frames carry no time, the moment tail received the frame (so replayed frames show now).

Streams:
  -workflow ID            a workflow's lifecycle events and its generic stream (tokens,
                          progress, data, errors)
  -task ID [-workflow WF] a task's lifecycle events and its stream; name the workflow
                          for a task inside a workflow
  -events                 all lifecycle events of the tenant; -workflow, -task and -source
                          filter them

The tenant is -tenant, or -org (another name of it), sent as the Flovyn-Tenant-Id header.

Exit status: 0 at the end (-n reached, interrupted), 1 when the sidecar refuses the stream
(bad filter, auth), 2 bad command line.

Examples:
  eventhook tail -tenant $TENANT -workflow 9b2d7c4e-1f3a-4e5b-8c6d-7e8f9a0b1c2d
  eventhook tail -tenant $TENANT -events -types workflow.*,task.failed -from earliest
  eventhook tail -url http://127.0.0.1:8787 -tenant $TENANT -workflow $WF -types tokens -json -n 100

Flags:
`

// Reconnection delays of tail.
const (
	tailInitialBackoff = 250 * time.Millisecond
	tailMaxBackoff     = 5 * time.Second
	tailMaxRetryAfter  = time.Minute
)

// tailOptions are the flags of eventhook tail.
type tailOptions struct {
	workflow, task string
	events         bool
	types, source  string
	from           string
	json           bool
	n              int
	idleTimeout    time.Duration
}

// runTail runs "eventhook tail" with args, the arguments after the word tail, and returns the exit code: 0 when -n events
// were printed or ctx was cancelled, 1 when the sidecar refused the stream, 2 for a bad command line. Failures the stream
// may recover from (network errors, the end of the stream, 429 and 5xx) are retried with backoff.
func runTail(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	flags := cliFlags("eventhook tail", tailUsage, stdout, stderr)
	var conn cliConn
	conn.register(flags)
	var o tailOptions
	flags.StringVar(&o.workflow, "workflow", "", "follow the workflow execution `id` (with -task or -events: filter by it)")
	flags.StringVar(&o.task, "task", "", "follow the task execution `id` (with -events: filter by it)")
	flags.BoolVar(&o.events, "events", false, "follow all lifecycle events of the tenant")
	flags.StringVar(&o.types, "types", "", "comma `list` of kinds (events, tokens, progress, data, errors) and lifecycle types (task.completed, workflow, workflow.*)")
	flags.StringVar(&o.source, "source", "", "only lifecycle events of this `source` (with -events)")
	flags.StringVar(&o.from, "from", "", "start after this `cursor` (an event id printed by -json), or \"earliest\" for everything held")
	flags.BoolVar(&o.json, "json", false, `print one JSON object per event: {"id":…,"event":…,"data":…}`)
	flags.IntVar(&o.n, "n", 0, "exit after `N` events, gap notices included (0: follow until interrupted)")
	flags.DurationVar(&o.idleTimeout, "idle-timeout", time.Minute, "reconnect when nothing, not even a keep-alive, arrived during a period this `long` (0: never)")
	if code, ok := parseCLIFlags(flags, args); !ok {
		return code
	}
	if err := conn.resolveTenant(); err != nil {
		return cliUsageError(flags, "%v", err)
	}
	path, query, err := o.request()
	if err != nil {
		return cliUsageError(flags, "%v", err)
	}
	if o.n < 0 || o.idleTimeout < 0 {
		return cliUsageError(flags, "-n and -idle-timeout must not be negative")
	}
	client, err := conn.client()
	if err != nil {
		return cliUsageError(flags, "%v", err)
	}
	defer client.Close()
	t := &tailer{client: client, conn: &conn, opts: &o, path: path, query: query, stderr: stderr, name: flags.Name(),
		out: tailPrinter{w: stdout, json: o.json, now: time.Now}}
	return t.run(ctx)
}

// request returns the path (escaped) and query of the stream the options name, or a usage error.
func (o *tailOptions) request() (path string, query url.Values, err error) {
	query = url.Values{}
	if o.types != "" {
		query.Set("types", o.types)
	}
	switch {
	case o.events:
		if o.workflow != "" {
			query.Set("workflow_execution_id", o.workflow)
		}
		if o.task != "" {
			query.Set("task_execution_id", o.task)
		}
		if o.source != "" {
			query.Set("source", o.source)
		}
		return "/events/stream", query, nil
	case o.source != "":
		return "", nil, errors.New("-source filters the tenant stream: use it with -events")
	case o.task != "":
		if o.workflow != "" {
			query.Set("workflow_execution_id", o.workflow)
		}
		query.Set("format", "eventhook") // the framing tail reads, whatever the daemon's sse.format
		return "/task-executions/" + url.PathEscape(o.task) + "/stream", query, nil
	case o.workflow != "":
		query.Set("format", "eventhook")
		return "/workflow-executions/" + url.PathEscape(o.workflow) + "/stream", query, nil
	}
	return "", nil, errors.New("name a stream: -workflow ID, -task ID or -events")
}

// tailer follows one stream across reconnections.
type tailer struct {
	client *client.Sidecar
	conn   *cliConn
	opts   *tailOptions
	path   string
	query  url.Values
	stderr io.Writer
	name   string
	out    tailPrinter

	lastID  string        // sent as Last-Event-ID on the next connection
	retry   time.Duration // the server's last retry: hint
	printed int
}

// errTailDone ends a connection once -n events were printed.
var errTailDone = errors.New("tail: done")

func (t *tailer) run(ctx context.Context) int {
	t.lastID = t.opts.from
	backoff := time.Duration(0)
	for {
		got, err := t.follow(ctx)
		if errors.Is(err, errTailDone) || ctx.Err() != nil {
			return exitOK
		}
		var prob *event.Problem
		isProblem := errors.As(err, &prob)
		switch {
		case isProblem && prob.Status == http.StatusNoContent:
			fmt.Fprintf(t.stderr, "%s: the sidecar closed the stream for good (204 No Content)\n", t.name)
			return exitOK
		case isProblem && !prob.Temporary(),
			errors.Is(err, client.ErrNotEventStream), errors.Is(err, client.ErrSSETooLong):
			printCLIError(t.stderr, t.name, t.conn, err, nil)
			return exitError
		}
		base := tailInitialBackoff
		if t.retry > 0 {
			base = t.retry
		}
		if got > 0 || backoff == 0 {
			backoff = base
		} else {
			backoff = min(2*backoff, max(tailMaxBackoff, base))
		}
		wait := backoff
		if isProblem && prob.RetryAfter > wait {
			wait = min(prob.RetryAfter, tailMaxRetryAfter)
		}
		reason := "the stream ended"
		if err != nil && !errors.Is(err, io.EOF) {
			reason = err.Error()
		}
		fmt.Fprintf(t.stderr, "%s: %s; reconnecting in %v\n", t.name, reason, wait)
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return exitOK
		case <-timer.C:
		}
	}
}

// follow opens the stream once and prints its events until it ends; it returns the number of events received and why
// the stream ended (io.EOF for a clean end).
func (t *tailer) follow(ctx context.Context) (got int, err error) {
	connCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	target := t.path
	if q := t.query.Encode(); q != "" {
		target += "?" + q
	}
	req, err := http.NewRequestWithContext(connCtx, http.MethodGet, target, nil)
	if err != nil {
		return 0, err
	}
	if t.conn.tenant != "" {
		req.Header.Set("Flovyn-Tenant-Id", t.conn.tenant)
	}
	if t.lastID != "" {
		req.Header.Set("Last-Event-ID", t.lastID)
	}
	sr, body, err := t.client.OpenStream(req)
	if err != nil {
		return 0, err
	}
	defer body.Close()

	// The watchdog ends a connection on which nothing, not even a keep-alive comment, arrived for a whole idle period:
	// a half-open TCP connection (a vanished port-forward) would otherwise hang for ever. It ends when follow returns.
	var events atomic.Int64
	if idle := t.opts.idleTimeout; idle > 0 {
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(idle)
			defer tick.Stop()
			var seen int64
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					now := events.Load() + int64(sr.Comments())
					if now == seen {
						cancel()
						return
					}
					seen = now
				}
			}
		}()
		defer func() {
			close(stop)
			wg.Wait()
		}()
	}

	defer func() {
		if id := sr.LastEventID(); id != "" {
			t.lastID = id
		}
		if r := sr.Retry(); r > 0 {
			t.retry = r
		}
	}()
	for {
		ev, err := sr.Next()
		if err != nil {
			if ctx.Err() == nil && connCtx.Err() != nil {
				err = fmt.Errorf("no data for %v", t.opts.idleTimeout)
			}
			return got, err
		}
		events.Add(1)
		got++
		if ev.ID != "" {
			t.lastID = ev.ID
		}
		if err := t.out.print(ev); err != nil {
			return got, errTailDone // stdout is gone: nothing more to do
		}
		t.printed++
		if t.opts.n > 0 && t.printed >= t.opts.n {
			return got, errTailDone
		}
	}
}

// tailPrinter formats events for tail.
type tailPrinter struct {
	w    io.Writer
	json bool
	now  func() time.Time
	buf  []byte
}

// tailSummary is the length, in characters, a payload is cut to in readable output.
const tailSummary = 80

// tailLifecycle is the part of a FlovynEvent the readable output shows.
type tailLifecycle struct {
	WorkflowExecutionID *string         `json:"workflow_execution_id"`
	TaskExecutionID     *string         `json:"task_execution_id"`
	EventType           string          `json:"event_type"`
	Source              string          `json:"source"`
	Data                json.RawMessage `json:"data"`
	TimestampMs         int64           `json:"timestamp_ms"`
}

// tailGap is the data of an "event: gap" frame.
type tailGap struct {
	Reason string `json:"reason"`
	Missed *int64 `json:"missed"`
}

// tailJSONLine is one line of -json output.
type tailJSONLine struct {
	ID    string `json:"id"`
	Event string `json:"event"`
	Data  any    `json:"data"` // json.RawMessage when the data is JSON, else the string
}

// print writes one event; the error is the writer's.
func (p *tailPrinter) print(ev client.SSEEvent) error {
	if p.json {
		return p.printJSON(ev)
	}
	b := p.buf[:0]
	at := p.now()
	switch ev.Event {
	case "lifecycle":
		var e tailLifecycle
		if err := json.Unmarshal([]byte(ev.Data), &e); err != nil || e.EventType == "" {
			b = appendTailHead(b, at, ev.Event)
			b = appendSummary(b, ev.Data)
			break
		}
		if e.TimestampMs > 0 {
			at = time.UnixMilli(e.TimestampMs)
		}
		b = appendTailHead(b, at, ev.Event)
		b = append(b, e.EventType...)
		if e.WorkflowExecutionID != nil {
			b = append(b, " wf="...)
			b = append(b, shortID(*e.WorkflowExecutionID)...)
		}
		if e.TaskExecutionID != nil {
			b = append(b, " task="...)
			b = append(b, shortID(*e.TaskExecutionID)...)
		}
		if e.Source != "" {
			b = append(b, " source="...)
			b = appendSummary(b, e.Source)
		}
		if len(e.Data) > 0 && string(e.Data) != "null" {
			b = append(b, " data="...)
			b = appendSummary(b, compactJSONString(e.Data))
		}
	case "gap":
		b = appendTimeOnly(b, at)
		b = append(b, "-- gap: "...)
		var g tailGap
		if err := json.Unmarshal([]byte(ev.Data), &g); err != nil || g.Reason == "" {
			b = appendSummary(b, ev.Data)
		} else {
			b = append(b, g.Reason...)
			switch {
			case g.Missed == nil:
				b = append(b, ", an unknown number of events missed"...)
			case *g.Missed == 1:
				b = append(b, ", 1 event missed"...)
			default:
				b = append(b, ", "...)
				b = strconv.AppendInt(b, *g.Missed, 10)
				b = append(b, " events missed"...)
			}
		}
		b = append(b, " --"...)
	case "token":
		b = appendTailHead(b, at, ev.Event)
		b = strconv.AppendQuote(b, truncateRunes(ev.Data, tailSummary))
	default: // progress, data, error, and any event this version does not know
		b = appendTailHead(b, at, ev.Event)
		b = appendSummary(b, ev.Data)
	}
	b = append(b, '\n')
	p.buf = b
	_, err := p.w.Write(b)
	return err
}

func (p *tailPrinter) printJSON(ev client.SSEEvent) error {
	line := tailJSONLine{ID: ev.ID, Event: ev.Event}
	if json.Valid([]byte(ev.Data)) {
		line.Data = json.RawMessage(ev.Data)
	} else {
		line.Data = ev.Data
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b) // compacts Data onto the line, and keeps <, > and & as they are
	enc.SetEscapeHTML(false)
	if err := enc.Encode(line); err != nil {
		return nil // cannot happen: Data is valid JSON
	}
	_, err := p.w.Write(b.Bytes())
	return err
}

func appendTimeOnly(b []byte, at time.Time) []byte {
	b = at.AppendFormat(b, "15:04:05.000")
	return append(b, ' ')
}

// appendTailHead appends the time and the event name, padded so that the rest of the lines align.
func appendTailHead(b []byte, at time.Time, event string) []byte {
	b = appendTimeOnly(b, at)
	b = append(b, event...)
	for n := utf8.RuneCountInString(event); n < len("lifecycle"); n++ {
		b = append(b, ' ')
	}
	return append(b, ' ')
}

// appendSummary appends s on one line (control characters escaped), cut to tailSummary characters.
func appendSummary(b []byte, s string) []byte {
	s = truncateRunes(s, tailSummary)
	for _, r := range s {
		switch {
		case r == '\n':
			b = append(b, `\n`...)
		case r == '\r':
			b = append(b, `\r`...)
		case r == '\t':
			b = append(b, `\t`...)
		case r < 0x20 || r == 0x7f:
			b = fmt.Appendf(b, `\x%02x`, r)
		default:
			b = utf8.AppendRune(b, r)
		}
	}
	return b
}

// truncateRunes cuts s to n characters, marking a cut with "…".
func truncateRunes(s string, n int) string {
	if len(s) <= n || utf8.RuneCountInString(s) <= n {
		return s
	}
	i := 0
	for pos := range s {
		if i == n-1 {
			return s[:pos] + "…"
		}
		i++
	}
	return s
}

// shortID returns the first 8 characters of an id, enough to tell ids apart in a terminal.
func shortID(id string) string {
	if len(id) <= 8 {
		return id
	}
	return id[:8]
}

// compactJSONString returns raw JSON without insignificant whitespace, as a string.
func compactJSONString(raw []byte) string {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return string(raw)
	}
	return b.String()
}
