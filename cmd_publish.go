package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/flovyn/eventhook/sidecar/client"
	"github.com/flovyn/eventhook/sidecar/event"
)

// Exit codes of the client commands.
const (
	exitOK    = 0
	exitError = 1 // the request failed, or the sidecar refused it
	exitUsage = 2 // bad command line
)

const publishUsage = `Usage: eventhook publish [flags]

Publishes lifecycle events (FlovynEvent) or generic stream events (StreamEvent) to the
sidecar, over its Unix socket (default ./eventhook.sock) or an HTTP URL.

With -type, one event is built from the flags and published with POST /v1/events.
Without -type, NDJSON events are read from stdin (blank lines skipped) and published
with POST /v1/events/batch, in chunks of at most -batch events; with -stream, stdin holds
StreamEvents (camelCase) posted to POST /v1/streams. Events are sent as soon as they are
read, so a producer can pipe a live stream of tokens.

The tenant (-tenant, or -org: Flovyn's name of the tenant) is sent as the Flovyn-Tenant-Id
header and, with -type, as the event's tenant_id; NDJSON events may name theirs as
tenant_id or org_id.

One JSON line is printed per event: {"id":…,"sequence":…,"duplicate":…}, or
{"error":{"status":…,"detail":…}} for an entry the sidecar refused. Errors go to stderr.
Exit status: 0 all published, 1 a publish failed, 2 bad command line.

Examples:
  eventhook publish -tenant 3f0c2b1e-8a4d-4c61-9f0e-2d7b5a9c00e1 -type workflow.completed \
      -workflow 9b2d7c4e-1f3a-4e5b-8c6d-7e8f9a0b1c2d -data '{"result":"ok"}'
  eventhook publish -url http://127.0.0.1:8787 -tenant $TENANT < events.ndjson
  echo '{"workflowExecutionId":"wf-1","sequence":1,"type":"TOKEN","payload":"Hello"}' |
      eventhook publish -stream -tenant $TENANT

Flags:
`

// cliConn holds the connection flags shared by publish and tail.
type cliConn struct {
	socket string
	url    string
	token  string
	tenant string
	org    string // -org, another name of -tenant; folded into tenant by resolveTenant
}

func (c *cliConn) register(flags *flag.FlagSet) {
	flags.StringVar(&c.socket, "socket", "./eventhook.sock", "`path` of the sidecar's Unix socket")
	flags.StringVar(&c.url, "url", "", "base `URL` of the sidecar, such as http://127.0.0.1:8787 (overrides -socket)")
	flags.StringVar(&c.token, "token", "", "bearer `token` for the sidecar (default $EVENTHOOK_TOKEN)")
	flags.StringVar(&c.tenant, "tenant", "", "tenant `id`, sent as the Flovyn-Tenant-Id header")
	flags.StringVar(&c.org, "org", "", "another name of -tenant (Flovyn calls the tenant an org): the tenant `id`")
}

// resolveTenant folds -org into -tenant after parsing; an error when both are given and name different tenants.
func (c *cliConn) resolveTenant() error {
	switch {
	case c.org == "" || strings.EqualFold(c.org, c.tenant):
		return nil
	case c.tenant == "":
		c.tenant = c.org
		return nil
	}
	return fmt.Errorf("-tenant %s and -org %s name different tenants; -org is another name of -tenant: give one of them", c.tenant, c.org)
}

// client returns a client of the sidecar the flags name. The token comes from EVENTHOOK_TOKEN when -token is not given
// (never as a flag default, so that usage output does not print it).
func (c *cliConn) client() (*client.Sidecar, error) {
	token := c.token
	if token == "" {
		token = os.Getenv("EVENTHOOK_TOKEN")
	}
	target := c.socket
	if c.url != "" {
		target = c.url
	}
	return client.New(target, token)
}

// target names the sidecar for error messages.
func (c *cliConn) target() string {
	if c.url != "" {
		return c.url
	}
	return c.socket
}

// cliFlags returns the flag set of a command named name: -h or -help prints usage and then the flags on stdout; the
// errors of a bad command line go to stderr, one line each (see parseCLIFlags and cliUsageError).
func cliFlags(name, usage string, stdout, stderr io.Writer) *flag.FlagSet {
	flags := flag.NewFlagSet(name, flag.ContinueOnError)
	flags.SetOutput(stderr)
	flags.Usage = func() {
		fmt.Fprint(stdout, usage)
		flags.SetOutput(stdout)
		flags.PrintDefaults()
		flags.SetOutput(stderr)
	}
	return flags
}

// parseCLIFlags parses args and reports whether to go on; when not, code is the exit code: 0 after -h (the usage is
// printed on stdout), 2 for a bad command line (one line on stderr says what is wrong and how to get help).
func parseCLIFlags(flags *flag.FlagSet, args []string) (code int, ok bool) {
	out, usage := flags.Output(), flags.Usage
	flags.SetOutput(io.Discard) // the flag package would print the error and the whole usage
	flags.Usage = func() {}
	err := flags.Parse(args)
	flags.SetOutput(out)
	flags.Usage = usage
	switch {
	case errors.Is(err, flag.ErrHelp):
		flags.Usage()
		return exitOK, false
	case err != nil:
		return cliUsageError(flags, "%v", err), false
	case flags.NArg() > 0:
		return cliUsageError(flags, "unexpected argument %q", flags.Arg(0)), false
	}
	return 0, true
}

// cliUsageError prints a usage error, one line, and returns the exit code of one.
func cliUsageError(flags *flag.FlagSet, format string, args ...any) int {
	fmt.Fprintf(flags.Output(), "%s: %s (run '%s -h' for help)\n", flags.Name(), fmt.Sprintf(format, args...), flags.Name())
	return exitUsage
}

// publishOptions are the flags of eventhook publish.
type publishOptions struct {
	eventType, workflow, task, source, data, correlationID, id string
	batch                                                      int
	stream                                                     bool
}

// runPublish runs "eventhook publish" with args, the arguments after the word publish, and returns the exit code: 0 when
// every event was published, 1 when a publish failed (the problem is printed to stderr), 2 for a bad command line.
func runPublish(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	flags := cliFlags("eventhook publish", publishUsage, stdout, stderr)
	var conn cliConn
	conn.register(flags)
	var o publishOptions
	flags.StringVar(&o.eventType, "type", "", "event `type` such as task.completed: publish one event built from the flags")
	flags.StringVar(&o.workflow, "workflow", "", "workflow execution `id` of the event (with -type)")
	flags.StringVar(&o.task, "task", "", "task execution `id` of the event (with -type)")
	flags.StringVar(&o.source, "source", "", "`source` of the event, such as worker:worker-123 (with -type; default: the sidecar's)")
	flags.StringVar(&o.data, "data", "", "event data as a `JSON` value (with -type; default null)")
	flags.StringVar(&o.correlationID, "correlation-id", "", "correlation `id` of the event (with -type)")
	flags.StringVar(&o.id, "id", "", "event `id`, a UUID; publishing it again is deduplicated (with -type; default: generated)")
	flags.IntVar(&o.batch, "batch", 1000, "most events per request when reading stdin (1-1000)")
	flags.BoolVar(&o.stream, "stream", false, "stdin holds StreamEvents (camelCase), posted to /v1/streams")
	if code, ok := parseCLIFlags(flags, args); !ok {
		return code
	}
	if err := conn.resolveTenant(); err != nil {
		return cliUsageError(flags, "%v", err)
	}
	if o.batch < 1 || o.batch > 1000 {
		return cliUsageError(flags, "-batch %d: want 1 to 1000", o.batch)
	}
	if o.eventType == "" {
		var set []string
		flags.Visit(func(f *flag.Flag) {
			switch f.Name {
			case "workflow", "task", "source", "data", "correlation-id", "id":
				set = append(set, "-"+f.Name)
			}
		})
		if len(set) > 0 {
			return cliUsageError(flags, "%s: only with -type (without -type, events are read from stdin)", strings.Join(set, ", "))
		}
	} else if o.stream {
		return cliUsageError(flags, "-stream reads stream events from stdin and cannot be used with -type")
	}
	var event []byte
	if o.eventType != "" {
		var err error
		if event, err = o.buildEvent(conn.tenant); err != nil {
			return cliUsageError(flags, "%v", err)
		}
	}
	client, err := conn.client()
	if err != nil {
		return cliUsageError(flags, "%v", err)
	}
	defer client.Close()
	p := &publisher{client: client, conn: &conn, stdout: stdout, stderr: stderr, name: flags.Name()}
	if event != nil {
		return p.publishOne(ctx, event)
	}
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	if f, ok := stdin.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			fmt.Fprintf(stderr, "%s: reading NDJSON events from the terminal; end with Ctrl-D (use -type to publish one event)\n", flags.Name())
		}
	}
	return p.publishStdin(ctx, stdin, o.batch, o.stream)
}

// cliEvent is the FlovynEvent that publish builds from its flags; fields not given are left out, for the sidecar to fill.
type cliEvent struct {
	ID                  string          `json:"id,omitempty"`
	TenantID            string          `json:"tenant_id,omitempty"`
	WorkflowExecutionID string          `json:"workflow_execution_id,omitempty"`
	TaskExecutionID     string          `json:"task_execution_id,omitempty"`
	EventType           string          `json:"event_type"`
	Source              string          `json:"source,omitempty"`
	Data                json.RawMessage `json:"data"`
	CorrelationID       string          `json:"correlation_id,omitempty"`
}

// buildEvent returns the JSON of the event the flags describe; an error when -data is not JSON.
func (o *publishOptions) buildEvent(tenant string) ([]byte, error) {
	e := cliEvent{ID: o.id, TenantID: tenant, WorkflowExecutionID: o.workflow, TaskExecutionID: o.task,
		EventType: o.eventType, Source: o.source, CorrelationID: o.correlationID, Data: json.RawMessage("null")}
	if strings.TrimSpace(o.data) != "" {
		var b bytes.Buffer
		if err := json.Compact(&b, []byte(o.data)); err != nil {
			return nil, fmt.Errorf("-data is not a JSON value (%v); quote a string as '\"text\"'", err)
		}
		e.Data = b.Bytes()
	}
	return json.Marshal(e)
}

// publisher publishes and prints results.
type publisher struct {
	client *client.Sidecar
	conn   *cliConn
	stdout io.Writer
	stderr io.Writer
	name   string
}

// publishResultLine is the line printed for one event.
type publishResultLine struct {
	ID          string `json:"id,omitempty"`
	Sequence    uint64 `json:"sequence"`
	Duplicate   bool   `json:"duplicate"`
	ConvertedTo string `json:"converted_to,omitempty"` // a legacy lifecycle event sent as a stream event
}

// publishErrorLine is the line printed for an event the sidecar refused.
type publishErrorLine struct {
	Error publishErrorBody `json:"error"`
}

type publishErrorBody struct {
	Status int    `json:"status"`
	Detail string `json:"detail"`
}

// flagOfField names the flag that sets each field of an event built from flags, for error messages.
var flagOfField = map[string]string{
	"id": "-id", "tenant_id": "-tenant", "workflow_execution_id": "-workflow", "task_execution_id": "-task",
	"event_type": "-type", "source": "-source", "data": "-data", "correlation_id": "-correlation-id",
}

func (p *publisher) publishOne(ctx context.Context, event []byte) int {
	r, err := p.client.PublishEvent(ctx, event, p.conn.tenant)
	if err != nil {
		p.printError(err, func(field string) string {
			if f, ok := flagOfField[field]; ok {
				return field + " (" + f + ")"
			}
			return field
		})
		return exitError
	}
	p.printLine(publishResultLine{ID: r.ID, Sequence: r.Sequence, Duplicate: r.Duplicate})
	return exitOK
}

// publishLine is one non-blank line of stdin and its line number.
type publishLine struct {
	n    int
	text []byte
}

// publishLinger is how long a chunk waits for more lines once stdin stops delivering them at once: long enough to fill
// chunks from a file or a fast pipe, short enough not to delay a live producer noticeably.
const publishLinger = 5 * time.Millisecond

// maxPublishLine bounds one line of stdin.
const maxPublishLine = 16 << 20

func (p *publisher) publishStdin(ctx context.Context, stdin io.Reader, batch int, stream bool) int {
	lines := make(chan publishLine, batch)
	done := make(chan struct{})
	defer close(done)
	var readErr error
	// The reader ends at the end of stdin, on a read error, or when publishing stops (done); a read blocked on stdin
	// ends with the process.
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdin)
		sc.Buffer(make([]byte, 0, 64<<10), maxPublishLine)
		for n := 1; sc.Scan(); n++ {
			text := bytes.TrimSpace(sc.Bytes())
			if len(text) == 0 {
				continue
			}
			select {
			case lines <- publishLine{n: n, text: bytes.Clone(text)}:
			case <-done:
				return
			}
		}
		if err := sc.Err(); err != nil {
			if errors.Is(err, bufio.ErrTooLong) {
				err = fmt.Errorf("a line is longer than %d MiB", maxPublishLine>>20)
			}
			readErr = err // read after lines is closed
		}
	}()

	code, total := exitOK, 0
	chunk := make([]publishLine, 0, batch)
	var body bytes.Buffer
	for {
		chunk = chunk[:0]
		closed := false
		select {
		case l, ok := <-lines:
			if !ok {
				closed = true
				break
			}
			chunk = append(chunk, l)
			closed = fillChunk(&chunk, lines, batch)
		case <-ctx.Done():
			fmt.Fprintf(p.stderr, "%s: interrupted after %d events\n", p.name, total)
			return exitError
		}
		if len(chunk) > 0 {
			body.Reset()
			for _, l := range chunk {
				body.Write(l.text)
				body.WriteByte('\n')
			}
			var results []event.PublishReply
			var err error
			if stream {
				results, err = p.client.PublishStreams(ctx, body.Bytes(), "application/x-ndjson", p.conn.tenant)
			} else {
				results, err = p.client.PublishBatch(ctx, body.Bytes(), p.conn.tenant)
			}
			if p.printResults(chunk, results) {
				code = exitError
			}
			total += len(chunk)
			if err != nil {
				p.printError(err, chunkFields(chunk))
				return exitError
			}
		}
		if closed {
			break
		}
	}
	if readErr != nil {
		fmt.Fprintf(p.stderr, "%s: read stdin: %v\n", p.name, readErr)
		return exitError
	}
	return code
}

// fillChunk adds to chunk the lines that arrive without delay (waiting at most publishLinger for each), up to batch, and
// reports whether lines is closed.
func fillChunk(chunk *[]publishLine, lines <-chan publishLine, batch int) bool {
	var linger *time.Timer
	defer func() {
		if linger != nil {
			linger.Stop()
		}
	}()
	for len(*chunk) < batch {
		select {
		case l, ok := <-lines:
			if !ok {
				return true
			}
			*chunk = append(*chunk, l)
			continue
		default:
		}
		if linger == nil {
			linger = time.NewTimer(publishLinger)
		} else {
			linger.Reset(publishLinger)
		}
		select {
		case l, ok := <-lines:
			if !ok {
				return true
			}
			*chunk = append(*chunk, l)
		case <-linger.C:
			return false
		}
	}
	return false
}

// chunkFields rewrites the field of a batch error, "[i].field", as "line N: field".
func chunkFields(chunk []publishLine) func(string) string {
	return func(field string) string {
		rest, ok := strings.CutPrefix(field, "[")
		if !ok {
			return field
		}
		idx, rest, ok := strings.Cut(rest, "]")
		i, err := strconv.Atoi(idx)
		if !ok || err != nil || i < 0 || i >= len(chunk) {
			return field
		}
		line := "line " + strconv.Itoa(chunk[i].n)
		if rest = strings.TrimPrefix(rest, "."); rest != "" {
			line += ": " + rest
		}
		return line
	}
}

// printResults prints one line per reply and reports whether any entry was refused.
func (p *publisher) printResults(chunk []publishLine, results []event.PublishReply) (failed bool) {
	for i, r := range results {
		if r.Error == nil {
			p.printLine(publishResultLine{ID: r.ID, Sequence: r.Sequence, Duplicate: r.Duplicate, ConvertedTo: r.ConvertedTo})
			continue
		}
		failed = true
		p.printLine(publishErrorLine{Error: publishErrorBody{Status: r.Error.Status, Detail: r.Error.Detail}})
		idx := r.Index
		if idx < 0 || idx >= len(chunk) {
			idx = min(i, len(chunk)-1)
		}
		fmt.Fprintf(p.stderr, "%s: line %d: %s\n", p.name, chunk[idx].n, r.Error.Error())
	}
	return failed
}

func (p *publisher) printLine(v any) {
	b, _ := json.Marshal(v) // cannot fail: plain structs
	b = append(b, '\n')
	p.stdout.Write(b)
}

// printError prints a failed request: the problem's detail and each bad field (renamed by field), or the transport error
// with a hint when the sidecar is not there.
func (p *publisher) printError(err error, field func(string) string) {
	printCLIError(p.stderr, p.name, p.conn, err, field)
}

// printCLIError prints err for a person: a problem's status, detail and field errors, or the transport error with a hint
// when nothing answers at the target.
func printCLIError(w io.Writer, name string, conn *cliConn, err error, field func(string) string) {
	var prob *event.Problem
	if !errors.As(err, &prob) {
		fmt.Fprintf(w, "%s: %v\n", name, err)
		if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, fs.ErrNotExist) {
			fmt.Fprintf(w, "%s: is the sidecar running? Nothing answers at %s (set -socket or -url)\n", name, conn.target())
		}
		return
	}
	type line struct{ field, message string }
	lines := make([]line, len(prob.Errors))
	inDetail := len(prob.Errors) > 0 // the detail already lists every message
	for i, fe := range prob.Errors {
		lines[i] = line{fe.Field, fe.Message}
		if field != nil && fe.Field != "" {
			lines[i].field = field(fe.Field)
		}
		inDetail = inDetail && strings.Contains(prob.Detail, fe.Message)
	}
	status := fmt.Sprintf("(HTTP %d %s)", prob.Status, prob.Title)
	switch {
	case inDetail && len(lines) == 1:
		// One bad field, which the detail merely repeats: say it once, with the field renamed.
		if lines[0].field == "" {
			fmt.Fprintf(w, "%s: %s %s\n", name, lines[0].message, status)
		} else {
			fmt.Fprintf(w, "%s: %s: %s %s\n", name, lines[0].field, lines[0].message, status)
		}
		lines = nil
	case inDetail:
		fmt.Fprintf(w, "%s: %d errors %s\n", name, len(lines), status)
	default:
		fmt.Fprintf(w, "%s: %s %s\n", name, prob.Detail, status)
	}
	for _, l := range lines {
		if l.field == "" {
			fmt.Fprintf(w, "  %s\n", l.message)
		} else {
			fmt.Fprintf(w, "  %s: %s\n", l.field, l.message)
		}
	}
	if prob.RetryAfter > 0 {
		fmt.Fprintf(w, "%s: the sidecar asks to retry after %v\n", name, prob.RetryAfter)
	}
}
