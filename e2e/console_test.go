package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/flovyn/eventhook/sidecar/console"
)

// consoleDaemon is an eventhook daemon serving HTTP on a fixed 127.0.0.1 port (so that a page can reconnect to it
// after a restart), with the embedded NATS server storing under dir.
type consoleDaemon struct {
	t    *testing.T
	bin  string
	dir  string
	yaml string
	base string // http://127.0.0.1:port
	proc *sidecarProc
}

func startConsoleDaemon(t *testing.T, extraYAML string) *consoleDaemon {
	t.Helper()
	bin, _ := binaries(t)
	dir := shortDir(t)
	port := freePort(t)
	d := &consoleDaemon{t: t, bin: bin, dir: dir, base: fmt.Sprintf("http://127.0.0.1:%d", port)}
	d.yaml = fmt.Sprintf(`
backend: jetstream
http: {listen: "127.0.0.1:%d", unix_socket: %q}
nats: {embedded: true, embedded_listen: "", store_dir: %q}
%s
`, port, dir+"/eh.sock", dir+"/data", extraYAML)
	d.start()
	return d
}

func (d *consoleDaemon) start() {
	d.t.Helper()
	d.proc = startSidecar(d.t, d.bin, d.dir, d.yaml)
}

// post sends body to the daemon's TCP listener, as curl would, and fails the test unless it is a 202.
func (d *consoleDaemon) post(path, contentType, body string, header ...string) {
	d.t.Helper()
	req, err := http.NewRequestWithContext(d.t.Context(), http.MethodPost, d.base+path, strings.NewReader(body))
	if err != nil {
		d.t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		d.t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusAccepted {
		d.t.Fatalf("POST %s: %d %s", path, resp.StatusCode, b)
	}
}

func (d *consoleDaemon) event(tenant, workflow uuid.UUID, task *uuid.UUID, eventType string, header ...string) uuid.UUID {
	d.t.Helper()
	id := uuid.New()
	e := map[string]any{"id": id, "tenant_id": tenant, "workflow_execution_id": workflow, "event_type": eventType,
		"source": "worker:console-test", "data": map[string]any{"step": eventType}}
	if task != nil {
		e["task_execution_id"] = *task
	}
	b, _ := json.Marshal(e)
	d.post("/v1/events", "application/json", string(b), header...)
	return id
}

func (d *consoleDaemon) stream(tenant, workflow uuid.UUID, task *uuid.UUID, typ string, payloads ...string) {
	d.t.Helper()
	var body bytes.Buffer
	for _, p := range payloads {
		e := map[string]any{"workflowExecutionId": workflow, "type": typ, "payload": p}
		if task != nil {
			e["taskExecutionId"] = *task
		}
		b, _ := json.Marshal(e)
		body.Write(append(b, '\n'))
	}
	d.post("/v1/streams", "application/x-ndjson", body.String(), "Flovyn-Tenant-Id", tenant.String())
}

// consoleStats is window.eventhookConsole.stats of the page.
type consoleStats struct {
	State         string   `json:"state"`
	Lifecycle     int      `json:"lifecycle"`
	Rows          int      `json:"rows"`
	Trimmed       int      `json:"trimmed"`
	Earlier       int      `json:"earlier"`
	Duplicates    int      `json:"duplicates"`
	Tokens        int      `json:"tokens"`
	Gaps          int      `json:"gaps"`
	Errors        int      `json:"errors"`
	Resumes       int      `json:"resumes"`
	LongTasks     int      `json:"longTasks"`
	LongestTaskMs int      `json:"longestTaskMs"`
	Cursor        string   `json:"cursor"`
	Problem       *problem `json:"problem"`
}

type problem struct {
	Status int    `json:"status"`
	Detail string `json:"detail"`
}

func stats(pg *page) consoleStats {
	var s consoleStats
	pg.evalInto("window.eventhookConsole.stats", &s)
	return s
}

// lifecycleTypes is the event type of every lifecycle row on the page, top to bottom.
const lifecycleTypes = `[...document.querySelectorAll('#rows .row.lifecycle .type')].map(e => e.textContent)`

// TestConsole opens the console on a workflow in headless Chromium, publishes lifecycle events, tokens, progress and a
// stream error over HTTP, and checks what the page shows; then kills the daemon (SIGKILL) and starts it again, and
// checks that the page resumed by itself with no duplicate row. It saves a screenshot of the page (to the path in
// EVENTHOOK_CONSOLE_SCREENSHOT when set: docs/console.png is made with
// `EVENTHOOK_CONSOLE_SCREENSHOT=../docs/console.png go test -run 'TestConsole$' ./e2e/`).
func TestConsole(t *testing.T) {
	b := startBrowser(t)
	d := startConsoleDaemon(t, "")
	pg := b.page(t)
	tenant, wf, taskA, taskB := uuid.New(), uuid.New(), uuid.New(), uuid.New()

	// An event before the page opens: the workflow stream replays it.
	d.event(tenant, wf, nil, "workflow.started")
	pg.open(fmt.Sprintf("%s/#view=workflow&tenant=%s&workflow=%s", d.base, tenant, wf))
	pg.wait(`window.eventhookConsole.stats.state === 'live' && document.querySelectorAll('#rows .row.lifecycle').length === 1`, 10*time.Second)
	if got := pg.evalString(`document.getElementById('workflow').value`); got != wf.String() {
		t.Errorf("the form's workflow is %q; want the URL's %s", got, wf)
	}

	d.event(tenant, wf, &taskA, "task.started")
	d.event(tenant, wf, &taskB, "task.started")
	d.stream(tenant, wf, &taskA, "TOKEN", "Hello", ", ", "world")
	d.stream(tenant, wf, &taskA, "PROGRESS", "0.25", "0.5")
	d.stream(tenant, wf, &taskB, "PROGRESS", `{"type":"progress","progress":0.75,"details":"step 3 of 4"}`)
	d.stream(tenant, wf, &taskB, "TOKEN", `{"type":"token","text":"Bonjour"}`)
	d.stream(tenant, wf, &taskB, "ERROR", "model quota exceeded")
	d.event(tenant, wf, &taskA, "task.completed")

	paneA, paneB := fmt.Sprintf(`[data-key="task:%s"]`, taskA), fmt.Sprintf(`[data-key="task:%s"]`, taskB)
	pg.wait(`document.querySelectorAll('#rows .row.lifecycle').length === 4`, 10*time.Second)
	var types []string
	pg.evalInto(lifecycleTypes, &types)
	if want := []string{"workflow.started", "task.started", "task.started", "task.completed"}; fmt.Sprint(types) != fmt.Sprint(want) {
		t.Errorf("rows %q; want %q, newest at the bottom", types, want)
	}
	// The workflow's stream, every task's tokens together; each task's own pane, from its task stream.
	pg.wait(`document.querySelector('[data-key="main"] .text').textContent.includes('Hello, world')`, 10*time.Second)
	pg.wait(fmt.Sprintf(`document.querySelector('%s .text').textContent === 'Hello, world'`, paneA), 10*time.Second)
	pg.wait(fmt.Sprintf(`document.querySelector('%s .text').textContent === 'Bonjour'`, paneB), 10*time.Second)
	pg.wait(fmt.Sprintf(`document.querySelector('%s progress').value === 0.5`, paneA), 10*time.Second)
	pg.wait(fmt.Sprintf(`document.querySelector('%s progress').value === 0.75`, paneB), 10*time.Second)
	if got := pg.evalString(fmt.Sprintf(`document.querySelector('%s .pinfo').textContent`, paneB)); got != "75% · step 3 of 4" {
		t.Errorf("task B's progress says %q; want 75%% · step 3 of 4", got)
	}
	// The stream error, highlighted in place.
	pg.wait(`[...document.querySelectorAll('#rows .row.error')].some(r => r.textContent.includes('model quota exceeded'))`, 10*time.Second)

	// A click shows the event's JSON.
	pg.click("#rows .row.lifecycle")
	var shown map[string]any
	if err := json.Unmarshal([]byte(pg.evalString(`document.getElementById('json').textContent`)), &shown); err != nil ||
		shown["event_type"] != "workflow.started" || shown["workflow_execution_id"] != wf.String() {
		t.Errorf("the JSON of the first row: %v %v", shown, err)
	}
	// Copy as curl: the stream on screen.
	pg.click("#curl")
	curl := pg.evalString(`document.getElementById('json').textContent`)
	if want := fmt.Sprintf("curl -N '%s/workflow-executions/%s/stream?tenant_id=%s&format=eventhook'", d.base, wf, tenant); !strings.HasPrefix(curl, want) {
		t.Errorf("copy as curl: %q; want %q", curl, want)
	}
	before := stats(pg)
	if before.Tokens != 4 || before.Errors != 1 || before.Duplicates != 0 {
		t.Errorf("stats %+v; want 4 tokens, 1 error, no duplicate", before)
	}

	// The daemon dies; the page says so, and resumes by itself once it is back.
	d.proc.signal(syscall.SIGKILL)
	d.proc.wait(t, 10*time.Second)
	pg.wait(`window.eventhookConsole.stats.state === 'reconnecting'`, 10*time.Second)
	if got := pg.evalString(`document.getElementById('state').textContent`); !strings.HasPrefix(got, "reconnecting") {
		t.Errorf("while the daemon is down the page says %q; want reconnecting…", got)
	}
	// EventSource tries again every 2 s (the retry: the daemon sends); let it fail once against the closed port.
	pg.wait(`window.eventhookConsole.stats.attempts >= 2`, 15*time.Second)
	d.start()
	pg.wait(`window.eventhookConsole.stats.state === 'live' && window.eventhookConsole.stats.resumes >= 1`, 20*time.Second)
	if got := pg.evalString(`document.getElementById('state').textContent`); !strings.HasPrefix(got, "live · resumed after ") {
		t.Errorf("after the restart the page says %q; want live · resumed after …", got)
	}
	d.event(tenant, wf, &taskB, "task.completed")
	d.event(tenant, wf, nil, "workflow.completed")
	d.stream(tenant, wf, nil, "TOKEN", " — done")
	pg.wait(`document.querySelectorAll('#rows .row.lifecycle').length >= 6`, 10*time.Second)
	pg.wait(`document.querySelector('[data-key="main"] .text').textContent.endsWith(' — done')`, 10*time.Second)
	pg.evalInto(lifecycleTypes, &types)
	if want := []string{"workflow.started", "task.started", "task.started", "task.completed", "task.completed", "workflow.completed"}; fmt.Sprint(types) != fmt.Sprint(want) {
		t.Errorf("rows after the restart %q; want %q: each event once", types, want)
	}
	// The stream events were held in the memory of the killed daemon's NATS server: the page says where they went.
	var gaps []string
	pg.evalInto(`[...document.querySelectorAll('#rows .row.gap')].map(e => e.textContent)`, &gaps)
	if len(gaps) != 1 || !strings.Contains(gaps[0], "gap (reset)") {
		t.Errorf("gap rows %q; want one reset gap (the stream events were in memory)", gaps)
	}
	after := stats(pg)
	if after.Duplicates != 0 || after.Lifecycle != 6 {
		t.Errorf("after the restart: %d lifecycle frames, %d duplicates; want 6 and none", after.Lifecycle, after.Duplicates)
	}
	t.Logf("after the restart: %+v", after)

	shot := filepath.Join(t.TempDir(), "console.png")
	if p := os.Getenv("EVENTHOOK_CONSOLE_SCREENSHOT"); p != "" {
		shot, _ = filepath.Abs(p)
	}
	pg.click("#rows .row.completed") // the picture shows a row's JSON
	pg.screenshot(shot)
	if png, err := os.ReadFile(shot); err != nil || !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Errorf("screenshot %s: %v", shot, err)
	}
	checkPageLogs(t, pg)
}

// checkPageLogs fails the test on a script error or a refusal of the Content-Security-Policy in the page.
func checkPageLogs(t *testing.T, pg *page) {
	t.Helper()
	for _, l := range pg.logs() {
		if l.Type == "pageerror" || strings.Contains(l.Text, "Content Security Policy") || strings.Contains(l.Text, "Refused to") {
			t.Errorf("the page logged %s: %s", l.Type, l.Text)
		}
	}
}

// TestConsoleAuth: with tokens configured, the console shows a 401 and a 403 as such (with the API's detail), not
// as a lost connection, and streams once given a right token, which never reaches the page's URL.
func TestConsoleAuth(t *testing.T) {
	b := startBrowser(t)
	tenant, other, wf := uuid.New(), uuid.New(), uuid.New()
	hash := func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }
	d := startConsoleDaemon(t, fmt.Sprintf(`auth:
  tokens:
    - {name: ui, sha256: %q, tenants: [%q], allow: [subscribe]}
    - {name: elsewhere, sha256: %q, tenants: [%q], allow: [subscribe]}
    - {name: worker, sha256: %q, tenants: "*", allow: [publish]}`, hash("ui-secret"), tenant, hash("other-secret"), other, hash("worker-secret")))
	pg := b.page(t)
	pg.open(fmt.Sprintf("%s/#view=workflow&tenant=%s&workflow=%s", d.base, tenant, wf))
	pg.wait(`window.eventhookConsole.stats.state === 'failed'`, 10*time.Second)
	s := stats(pg)
	if s.Problem == nil || s.Problem.Status != 401 || !strings.Contains(s.Problem.Detail, "token") {
		t.Errorf("without a token the page's problem is %+v; want 401 with the API's detail", s.Problem)
	}
	if got := pg.evalString(`document.getElementById('problem').textContent`); !strings.HasPrefix(got, "401 unauthorized: a token is required") {
		t.Errorf("the page says %q; want 401 unauthorized: a token is required…", got)
	}
	if hidden := pg.eval(`document.getElementById('l-token').hidden`); string(hidden) != "false" {
		t.Error("the token field is hidden after a 401")
	}

	pg.typeText("#token", "other-secret")
	pg.click("#open")
	pg.wait(`window.eventhookConsole.stats.state === 'failed' && window.eventhookConsole.stats.problem.status === 403`, 10*time.Second)
	if got := pg.evalString(`document.getElementById('problem').textContent`); !strings.Contains(got, "403 forbidden") || !strings.Contains(got, tenant.String()) {
		t.Errorf("with another tenant's token the page says %q; want 403 forbidden naming the tenant", got)
	}

	pg.typeText("#token", "ui-secret")
	pg.click("#open")
	pg.wait(`window.eventhookConsole.stats.state === 'live'`, 10*time.Second)
	d.event(tenant, wf, nil, "workflow.started", "Authorization", "Bearer worker-secret")
	pg.wait(`document.querySelectorAll('#rows .row.lifecycle').length === 1`, 10*time.Second)
	if href := pg.evalString(`location.href`); strings.Contains(href, "secret") {
		t.Errorf("the token is in the page's URL: %s", href)
	}
	if got := pg.evalString(`sessionStorage.getItem('eventhook.console.token')`); got != "ui-secret" {
		t.Errorf("sessionStorage holds %q; want the token typed", got)
	}
	checkPageLogs(t, pg)
}

// consoleVolume is what TestConsoleVolume measures in the page.
type consoleVolume struct {
	consoleStats
	FirstFrameMs float64 `json:"firstFrameMs"`
	LastFrameMs  float64 `json:"lastFrameMs"`
	DrawnMs      float64 `json:"drawnMs"`
}

// TestConsoleVolume: 10,000 lifecycle events and 100,000 tokens reach an open console without freezing it: rows are
// drawn in batches per animation frame and at most 2000 stay on the page, the running text keeps its last 100,000
// characters, "show earlier" brings back the 1000 rows before the oldest on screen from the stream's replay, and a
// reload replays the whole workflow. The figures (time to draw, long tasks) are logged.
func TestConsoleVolume(t *testing.T) {
	const events, tokens, batch = 10_000, 100_000, 1000
	b := startBrowser(t)
	d := startConsoleDaemon(t, "")
	pg := b.page(t)
	tenant, wf := uuid.New(), uuid.New()
	url := fmt.Sprintf("%s/#view=workflow&tenant=%s&workflow=%s", d.base, tenant, wf)
	pg.open(url)
	pg.wait(`window.eventhookConsole.stats.state === 'live'`, 10*time.Second)

	start := time.Now()
	var body strings.Builder
	for i := range events {
		fmt.Fprintf(&body, `{"tenant_id":%q,"workflow_execution_id":%q,"event_type":"load.e%d","data":{"i":%d}}`+"\n", tenant, wf, i, i)
		if (i+1)%batch == 0 {
			d.post("/v1/events/batch", "application/x-ndjson", body.String())
			body.Reset()
		}
	}
	for i := range tokens {
		fmt.Fprintf(&body, `{"workflowExecutionId":%q,"type":"TOKEN","payload":"t%d "}`+"\n", wf, i)
		if (i+1)%batch == 0 {
			d.post("/v1/streams", "application/x-ndjson", body.String(), "Flovyn-Tenant-Id", tenant.String())
			body.Reset()
		}
	}
	published := time.Since(start)
	done := fmt.Sprintf(`(s => s.lifecycle === %d && s.tokens === %d && s.drawnMs > s.lastFrameMs)(window.eventhookConsole.stats)`, events, tokens)
	pg.wait(done, 60*time.Second)
	shown := time.Since(start)
	var live consoleVolume
	pg.evalInto("window.eventhookConsole.stats", &live)
	t.Logf("live: %d events and %d tokens published in %v, all on the page %v after the first publish; "+
		"in the page: %.0f ms from the first frame to the last drawn, %d long tasks, the longest %d ms",
		events, tokens, published.Round(time.Millisecond), shown.Round(time.Millisecond),
		live.DrawnMs-live.FirstFrameMs, live.LongTasks, live.LongestTaskMs)
	checkVolume(t, pg, events, tokens)
	if live.LongestTaskMs > 2000 {
		t.Errorf("the longest task took %d ms: the tab froze", live.LongestTaskMs)
	}

	// Show earlier: the 1000 rows before the oldest on screen, from the stream's replay.
	pg.click("#earlier")
	pg.wait(fmt.Sprintf(`document.querySelector('#rows .row.lifecycle .type').textContent === 'load.e%d'`, events-3000), 20*time.Second)
	if n := pg.evalInt(`document.querySelectorAll('#rows .row.lifecycle').length`); n != 3000 {
		t.Errorf("%d rows after show earlier; want 3000", n)
	}

	// A reload replays the workflow: every event and token again, from JetStream.
	pg.open("about:blank")
	reload := time.Now()
	pg.open(url)
	pg.wait(done, 60*time.Second)
	var replay consoleVolume
	pg.evalInto("window.eventhookConsole.stats", &replay)
	t.Logf("replay: all on the page %v after the reload; in the page: %.0f ms from the first frame to the last drawn, "+
		"%d long tasks, the longest %d ms", time.Since(reload).Round(time.Millisecond), replay.DrawnMs-replay.FirstFrameMs,
		replay.LongTasks, replay.LongestTaskMs)
	checkVolume(t, pg, events, tokens)
	checkPageLogs(t, pg)
}

func checkVolume(t *testing.T, pg *page, events, tokens int) {
	t.Helper()
	if n := pg.evalInt(`document.querySelectorAll('#rows .row').length`); n != 2000 {
		t.Errorf("%d rows on the page; want the newest 2000", n)
	}
	if got := pg.evalString(`[...document.querySelectorAll('#rows .row.lifecycle .type')].pop().textContent`); got != fmt.Sprintf("load.e%d", events-1) {
		t.Errorf("the newest row is %q; want load.e%d", got, events-1)
	}
	text := pg.evalString(`document.querySelector('[data-key="main"] .text').textContent`)
	if len(text) > 100_000 || !strings.HasSuffix(text, fmt.Sprintf("t%d ", tokens-1)) {
		t.Errorf("the running text has %d characters, ending %q; want at most 100000 ending with the last token", len(text), text[max(0, len(text)-20):])
	}
	if s := stats(pg); s.Duplicates != 0 {
		t.Errorf("%d duplicates", s.Duplicates)
	}
}

// TestConsoleViews: the tenant view with types, a click on a workflow id that opens that workflow's view (and says so
// in the page's URL), and the task view, whose tokens are the task's own.
func TestConsoleViews(t *testing.T) {
	b := startBrowser(t)
	d := startConsoleDaemon(t, "")
	pg := b.page(t)
	tenant, wf, task := uuid.New(), uuid.New(), uuid.New()
	pg.open(fmt.Sprintf("%s/#view=tenant&org=%s&types=task", d.base, tenant))
	pg.wait(`window.eventhookConsole.stats.state === 'live'`, 10*time.Second)
	d.event(tenant, wf, nil, "workflow.started")
	d.event(tenant, wf, &task, "task.started")
	d.stream(tenant, wf, &task, "TOKEN", "only ", "mine")
	d.stream(tenant, wf, nil, "TOKEN", "not the task's")
	d.event(tenant, wf, &task, "task.completed")
	pg.wait(`document.querySelectorAll('#rows .row.lifecycle').length === 2`, 10*time.Second)
	var types []string
	pg.evalInto(lifecycleTypes, &types)
	if fmt.Sprint(types) != "[task.started task.completed]" {
		t.Errorf("the tenant view with types=task shows %q; want the two task events", types)
	}
	if got := pg.evalString(`window.eventhookConsole.curl()`); !strings.Contains(got, "/events/stream?tenant_id="+tenant.String()+"&types=task'") {
		t.Errorf("copy as curl of the tenant view: %q", got)
	}

	pg.click("#rows .row.lifecycle .wf")
	// The workflow's view, with the same types: its task events (replayed), and its stream's pane.
	pg.wait(`window.eventhookConsole.stats.state === 'live' && document.querySelector('[data-key="main"]') && document.querySelectorAll('#rows .row.lifecycle').length === 2`, 10*time.Second)
	if got, want := pg.evalString(`location.hash`), fmt.Sprintf("#view=workflow&tenant=%s&workflow=%s&types=task", tenant, wf); got != want {
		t.Errorf("after a click on the workflow the page's URL says %q; want %q", got, want)
	}

	pg.eval(fmt.Sprintf(`location.hash = '#view=task&tenant=%s&task=%s&workflow=%s'`, tenant, task, wf))
	pane := fmt.Sprintf(`[data-key="task:%s"] .text`, task)
	pg.wait(fmt.Sprintf(`document.querySelector('%s') && document.querySelector('%s').textContent === 'only mine'`, pane, pane), 10*time.Second)
	pg.wait(`document.querySelectorAll('#rows .row.lifecycle').length === 2`, 10*time.Second)
	checkPageLogs(t, pg)
}

// TestConsoleStreamErrorNames: stream errors framed `event: error` (the name EventSource also gives its connection
// errors) and `event: stream-error` are both shown as stream errors, and neither is taken for a lost connection. The
// stream is a stand-in for the daemon, on the console's own handler.
func TestConsoleStreamErrorNames(t *testing.T) {
	b := startBrowser(t)
	wf := uuid.New()
	api := http.NewServeMux()
	api.HandleFunc("GET /workflow-executions/{id}/stream", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprintf(w, "retry: 60000\n\nid: a-1.\nevent: lifecycle\ndata: {\"id\":%q,\"event_type\":\"workflow.started\",\"workflow_execution_id\":%q,\"source\":\"system\",\"timestamp_ms\":1}\n\n"+
			"id: a-1.b-1\nevent: error\ndata: the old name\n\nid: a-1.b-2\nevent: stream-error\ndata: the new name\n\n", uuid.New(), wf)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	srv := httptest.NewServer(console.Handler(api))
	t.Cleanup(srv.Close)
	pg := b.page(t)
	pg.open(fmt.Sprintf("%s/#view=workflow&workflow=%s", srv.URL, wf))
	pg.wait(`document.querySelectorAll('#rows .row.error').length === 2`, 10*time.Second)
	var errs []string
	pg.evalInto(`[...document.querySelectorAll('#rows .row.error .type')].map(e => e.textContent)`, &errs)
	if fmt.Sprint(errs) != "[stream error: the old name stream error: the new name]" {
		t.Errorf("error rows %q", errs)
	}
	if s := stats(pg); s.State != "live" || s.Errors != 2 {
		t.Errorf("state %q with %d stream errors; want live and 2", s.State, s.Errors)
	}
	srv.CloseClientConnections() // before Close, which waits for the open stream
}
