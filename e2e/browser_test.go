package e2e

// Browser tests: a real headless Chromium (Debian's chromium package) driven from Node with npm's puppeteer-core, the
// scripts and their lockfile in e2e/browser (`npm ci` there installs them; .ci/run does it, and installs chromium).
//
// The plumbing, for any test that needs a browser:
//
//	b := startBrowser(t)         // Chromium with a fresh profile; skips the test when it or Node cannot be had
//	pg := b.page(t)              // one page driven command by command (e2e/browser/driver.mjs):
//	pg.open(url); pg.click("#open"); pg.typeText("#tenant", id)
//	n := pg.evalInt("document.querySelectorAll('.row').length")
//	pg.wait("window.done === true", 10*time.Second)       // polls the expression until it is truthy
//	out := runBrowser(t, "smoke.mjs", map[string]string{"PAGE_URL": u}) // a one-shot script of e2e/browser: its JSON
//	origin := staticServer(t, map[string]string{"/index.html": html, "/page.js": js}) // pages on another origin
//
// The Go test owns every process: Chromium (and its renderers, in its own process group) and each Node process are
// killed in t.Cleanup, even when the test fails; the profile directory is removed. Expressions given to eval and wait
// run through DevTools, so a page's strict Content-Security-Policy (no eval) does not stop them. A test skips, saying
// what is missing, only where Chromium, Node or e2e/browser/node_modules cannot be had, unless
// EVENTHOOK_BROWSER_REQUIRED=1 (set by .ci/run once it has installed them): then a missing piece fails the test.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// browserDir is the folder of the Node scripts, next to this file.
func browserDir(t testing.TB) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "browser")
}

// browserPrereqs returns the Chromium binary and node, or skips (or fails, when EVENTHOOK_BROWSER_REQUIRED=1) the test
// saying what is missing.
func browserPrereqs(t testing.TB) (chromium, node string) {
	t.Helper()
	missing := func(what string) {
		msg := "browser test: " + what + " (install with: apt-get install -y chromium; cd e2e/browser && npm ci)"
		if os.Getenv("EVENTHOOK_BROWSER_REQUIRED") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	chromium = os.Getenv("EVENTHOOK_CHROMIUM")
	if chromium == "" {
		for _, c := range []string{"/usr/bin/chromium", "chromium", "chromium-browser"} {
			if p, err := exec.LookPath(c); err == nil {
				chromium = p
				break
			}
		}
	}
	if chromium == "" {
		missing("no Chromium (set EVENTHOOK_CHROMIUM, or install Debian's chromium)")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		missing("no node in PATH")
	}
	if _, err := os.Stat(filepath.Join(browserDir(t), "node_modules", "puppeteer-core", "package.json")); err != nil {
		missing("puppeteer-core is not installed in e2e/browser")
	}
	return chromium, node
}

// browser is a headless Chromium that the test started and owns.
type browser struct {
	ws   string // the DevTools WebSocket URL
	node string
	cmd  *exec.Cmd
	mu   sync.Mutex
	log  strings.Builder
}

// startBrowser starts headless Chromium with a fresh profile, DevTools on a free 127.0.0.1 port, and none of its
// background connections (this machine's network is closed). It is killed with its whole process group in t.Cleanup.
func startBrowser(t testing.TB) *browser {
	t.Helper()
	chromium, node := browserPrereqs(t)
	profile, err := os.MkdirTemp("", "eh-chromium")
	if err != nil {
		t.Fatal(err)
	}
	b := &browser{node: node}
	b.cmd = exec.Command(chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-extensions",
		"--disable-default-apps", "--no-default-browser-check", "--disable-dev-shm-usage", "--mute-audio",
		"--disable-breakpad", "--disable-crash-reporter",
		"--user-data-dir="+profile, "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", "about:blank")
	b.cmd.SysProcAttr = browserProcAttr()
	// Everything Chromium writes (its crash handler's database too) goes under the profile, not the home directory.
	b.cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+profile, "XDG_CACHE_HOME="+profile)
	stderr, err := b.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	b.cmd.Stdout = io.Discard
	if err := b.cmd.Start(); err != nil {
		os.RemoveAll(profile)
		t.Fatalf("start %s: %v", chromium, err)
	}
	exited := make(chan struct{})
	wsc := make(chan string, 1)
	go func() { // ends when Chromium closes its stderr (it exits)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			b.mu.Lock()
			b.log.WriteString(line + "\n")
			b.mu.Unlock()
			if u, ok := strings.CutPrefix(line, "DevTools listening on "); ok {
				select {
				case wsc <- strings.TrimSpace(u):
				default:
				}
			}
		}
		_ = b.cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
		<-exited
		os.RemoveAll(profile)
		if t.Failed() {
			t.Logf("chromium's output:\n%s", b.output())
		}
	})
	select {
	case b.ws = <-wsc:
	case <-exited:
		t.Fatalf("chromium exited before DevTools listened:\n%s", b.output())
	case <-time.After(20 * time.Second):
		t.Fatalf("chromium: no DevTools URL after 20 s:\n%s", b.output())
	}
	return b
}

func (b *browser) output() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.log.String()
}

// nodeCmd is node running script (a file of e2e/browser) against b, with env added; in its own process group.
func (b *browser) nodeCmd(t testing.TB, script string, env map[string]string) *exec.Cmd {
	cmd := exec.Command(b.node, script)
	cmd.Dir = browserDir(t)
	cmd.Env = append(os.Environ(), "BROWSER_WS="+b.ws)
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.SysProcAttr = browserProcAttr()
	return cmd
}

// runBrowser runs the one-shot Node script (a file of e2e/browser, see lib.mjs) in a browser of its own, with env
// added to its environment (BROWSER_WS is set), and returns the JSON the script printed last. The test fails when the
// script exits non-zero or runs longer than a minute.
func runBrowser(t testing.TB, script string, env map[string]string) json.RawMessage {
	t.Helper()
	b := startBrowser(t)
	cmd := b.nodeCmd(t, script, env)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("node %s: %v", script, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }() // ends when node exits (killed at the latest by the timeout below)
	var err error
	select {
	case err = <-done:
	case <-time.After(time.Minute):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		t.Fatalf("node %s still running after a minute; output:\n%s\n%s", script, stdout.String(), stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	last := json.RawMessage(lines[len(lines)-1])
	if err != nil || !json.Valid(last) {
		t.Fatalf("node %s: %v; output:\n%s\n%s", script, err, stdout.String(), stderr.String())
	}
	return last
}

// page is one browser page driven by e2e/browser/driver.mjs, command by command.
type page struct {
	t       testing.TB
	cmd     *exec.Cmd
	in      io.WriteCloser
	answers chan driverAnswer
	stderr  *strings.Builder
	n       int
}

type driverAnswer struct {
	ID    int             `json:"id"`
	OK    bool            `json:"ok"`
	Value json.RawMessage `json:"value"`
	Error string          `json:"error"`
}

// page opens a page in b (a fresh browser context: its own storage), driven by a Node process killed in t.Cleanup.
func (b *browser) page(t testing.TB) *page {
	t.Helper()
	cmd := b.nodeCmd(t, "driver.mjs", nil)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &page{t: t, cmd: cmd, in: in, answers: make(chan driverAnswer, 1), stderr: &strings.Builder{}}
	cmd.Stderr = &lockedWriter{w: p.stderr}
	if err := cmd.Start(); err != nil {
		t.Fatalf("node driver.mjs: %v", err)
	}
	exited := make(chan struct{})
	go func() { // ends when the driver closes its stdout (it exits)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		for sc.Scan() {
			var a driverAnswer
			if json.Unmarshal(sc.Bytes(), &a) == nil {
				p.answers <- a
			}
		}
		_ = cmd.Wait()
		close(exited)
		close(p.answers)
	}()
	t.Cleanup(func() {
		in.Close()
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	})
	return p
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// call sends one command to the driver and returns its answer's value, or its error.
func (p *page) call(timeout time.Duration, op string, args map[string]any) (json.RawMessage, error) {
	p.t.Helper()
	p.n++
	cmd := map[string]any{"id": p.n, "op": op}
	for k, v := range args {
		cmd[k] = v
	}
	line, _ := json.Marshal(cmd)
	if _, err := p.in.Write(append(line, '\n')); err != nil {
		return nil, fmt.Errorf("driver: %v; its output: %s", err, p.stderr.String())
	}
	select {
	case a, ok := <-p.answers:
		if !ok {
			return nil, fmt.Errorf("the driver exited; its output: %s", p.stderr.String())
		}
		if !a.OK {
			return nil, fmt.Errorf("%s: %s", op, a.Error)
		}
		return a.Value, nil
	case <-time.After(timeout + 10*time.Second):
		return nil, fmt.Errorf("%s: no answer from the driver after %v", op, timeout+10*time.Second)
	}
}

func (p *page) must(timeout time.Duration, op string, args map[string]any) json.RawMessage {
	p.t.Helper()
	v, err := p.call(timeout, op, args)
	if err != nil {
		p.t.Fatal(err)
	}
	return v
}

func (p *page) open(url string) {
	p.t.Helper()
	p.must(15*time.Second, "goto", map[string]any{"url": url})
}
func (p *page) click(selector string) {
	p.t.Helper()
	p.must(5*time.Second, "click", map[string]any{"selector": selector})
}
func (p *page) typeText(selector, text string) {
	p.t.Helper()
	p.must(5*time.Second, "type", map[string]any{"selector": selector, "text": text})
}
func (p *page) screenshot(path string) {
	p.t.Helper()
	p.must(15*time.Second, "screenshot", map[string]any{"path": path})
}

// eval returns the JSON value of a JavaScript expression in the page.
func (p *page) eval(expr string) json.RawMessage {
	p.t.Helper()
	return p.must(5*time.Second, "eval", map[string]any{"expr": expr})
}

// evalInto decodes the value of expr into v.
func (p *page) evalInto(expr string, v any) {
	p.t.Helper()
	if err := json.Unmarshal(p.eval(expr), v); err != nil {
		p.t.Fatalf("eval %s: %v", expr, err)
	}
}

func (p *page) evalInt(expr string) int {
	p.t.Helper()
	var n int
	p.evalInto(expr, &n)
	return n
}

func (p *page) evalString(expr string) string {
	p.t.Helper()
	var s string
	p.evalInto(expr, &s)
	return s
}

// wait polls expr in the page until it is truthy, and returns its value; the test fails after d.
func (p *page) wait(expr string, d time.Duration) json.RawMessage {
	p.t.Helper()
	return p.must(d, "wait", map[string]any{"expr": expr, "timeout_ms": d.Milliseconds()})
}

// browserLog is one console message or error the driver saw.
type browserLog struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

func (p *page) logs() []browserLog {
	p.t.Helper()
	var l []browserLog
	if err := json.Unmarshal(p.must(5*time.Second, "logs", nil), &l); err != nil {
		p.t.Fatal(err)
	}
	return l
}

// staticServer serves files (path → content; the type follows the extension) on a free 127.0.0.1 port: a page of
// another origin than the daemon's. "/" serves "/index.html". It returns the origin, e.g. http://127.0.0.1:41234.
func staticServer(t testing.TB, files map[string]string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		if p == "/" {
			p = "/index.html"
		}
		body, ok := files[p]
		if !ok {
			http.NotFound(w, r)
			return
		}
		types := map[string]string{".html": "text/html; charset=utf-8", ".js": "text/javascript", ".css": "text/css", ".json": "application/json"}
		if ct := types[path.Ext(p)]; ct != "" {
			w.Header().Set("Content-Type", ct)
		}
		io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestBrowserPlumbing runs the plumbing once: a page of the static server, opened by a one-shot script, runs its own
// script and reports through the page.
func TestBrowserPlumbing(t *testing.T) {
	origin := staticServer(t, map[string]string{
		"/index.html":  `<!doctype html><title>waiting</title><script src="/page.js"></script><body></body>`,
		"/page.js":     `fetch("/answer.json").then(r => r.json()).then(j => { document.body.textContent = j.answer; document.title = "done"; });`,
		"/answer.json": `{"answer": "42"}`,
	})
	var out struct{ Title, Body, Error string }
	if err := json.Unmarshal(runBrowser(t, "smoke.mjs", map[string]string{"PAGE_URL": origin + "/"}), &out); err != nil {
		t.Fatal(err)
	}
	if out.Title != "done" || out.Body != "42" {
		t.Fatalf("the page says title %q, body %q (%s); want done, 42", out.Title, out.Body, out.Error)
	}
}
