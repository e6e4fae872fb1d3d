package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

// corsPage is a page of another origin that uses the sidecar at window.SIDECAR as a browser app would: fetch() with a
// wrong token and to a path that does not exist (it must read both answers, not meet a network error), then an
// EventSource with the token in access_token, and a token and a stream ERROR published with fetch() once it is open.
// It reports in window.result.
const corsPage = `
const base = new URL(location.href).searchParams.get("sidecar");
const tenant = new URL(location.href).searchParams.get("tenant");
const wf = new URL(location.href).searchParams.get("wf");
const out = { errors: 0, frames: [] };
async function read(url, init) {
  try {
    const r = await fetch(url, init);
    return { status: r.status, type: r.headers.get("Content-Type"), body: await r.json() };
  } catch (e) {
    return { failed: String(e) };
  }
}
async function main() {
  out.wrongToken = await read(base + "/v1/events", { method: "POST", headers: { "Authorization": "Bearer nope",
    "Content-Type": "application/json" }, body: JSON.stringify({ tenant_id: tenant, event_type: "x.y" }) });
  out.noRoute = await read(base + "/nope", { headers: { "Authorization": "Bearer good" } });
  const es = new EventSource(base + "/workflow-executions/" + wf + "/stream?tenant_id=" + tenant + "&access_token=good");
  es.onerror = () => { out.errors++; };
  es.addEventListener("token", e => { out.frames.push("token:" + e.data); });
  es.addEventListener("stream-error", e => {
    out.frames.push("stream-error:" + e.data);
    setTimeout(() => { es.close(); window.result = out; }, 300); // a late onerror would count
  });
  es.onopen = async () => {
    const headers = { "Authorization": "Bearer good", "Content-Type": "application/x-ndjson", "Flovyn-Tenant-Id": tenant };
    const body = JSON.stringify({ workflowExecutionId: wf, type: "TOKEN", payload: "Hello" }) + "\n" +
      JSON.stringify({ workflowExecutionId: wf, type: "ERROR", payload: "rate limited" });
    out.publish = await read(base + "/v1/streams", { method: "POST", headers, body });
  };
}
main();
`

// TestBrowserCORS drives the sidecar from a page of another origin in a real Chromium: a wrong token is readable by
// the page as a 401 problem+json, so is a 404, and an EventSource gets a stream's token and its stream error without
// its onerror firing (a stream ERROR is framed stream-error: onerror is for a lost connection).
func TestBrowserCORS(t *testing.T) {
	b := startBrowser(t)
	eh, _ := binaries(t)
	origin := staticServer(t, map[string]string{
		"/index.html": `<!doctype html><title>cors</title><script src="/page.js"></script>`,
		"/page.js":    corsPage,
	})
	sum := sha256.Sum256([]byte("good"))
	tenant, wf := uuid.New(), uuid.New()
	dir := shortDir(t)
	port := freePort(t)
	startSidecar(t, eh, dir, fmt.Sprintf(`
backend: jetstream
http: {listen: "127.0.0.1:%d", unix_socket: %q, cors_origins: [%q]}
nats: {embedded: true, embedded_listen: "", store_dir: %q}
auth:
  tokens:
    - {name: page, sha256: %q, tenants: [%q], allow: [publish, subscribe]}
`, port, filepath.Join(dir, "eh.sock"), origin, filepath.Join(dir, "data"), hex.EncodeToString(sum[:]), tenant))

	pg := b.page(t)
	pg.open(fmt.Sprintf("%s/?sidecar=http://127.0.0.1:%d&tenant=%s&wf=%s", origin, port, tenant, wf))
	pg.wait("window.result !== undefined", 20*time.Second)
	var res struct {
		Errors            int
		Frames            []string
		WrongToken        browserAnswer
		NoRoute           browserAnswer
		Publish           browserAnswer
		Error, FailedLoad string
	}
	pg.evalInto("window.result", &res)
	for name, a := range map[string]struct {
		got    browserAnswer
		status int
	}{"wrong token": {res.WrongToken, 401}, "no route": {res.NoRoute, 404}, "publish": {res.Publish, 202}} {
		if a.got.Failed != "" || a.got.Status != a.status {
			t.Errorf("%s: the page saw %+v; want a readable %d", name, a.got, a.status)
		}
		if a.status >= 400 && (!strings.HasPrefix(a.got.Type, "application/problem+json") || a.got.Body["status"] != float64(a.status)) {
			t.Errorf("%s: the page read %+v; want a problem+json body with status %d", name, a.got, a.status)
		}
	}
	if strings.Join(res.Frames, " ") != "token:Hello stream-error:rate limited" || res.Errors != 0 {
		t.Errorf("the EventSource got frames %q and %d onerror calls; want the token, then the stream error, and no onerror",
			res.Frames, res.Errors)
	}
	for _, l := range pg.logs() {
		if l.Type == "error" && !strings.HasPrefix(l.Text, "Failed to load resource") { // the browser logs every 4xx
			t.Errorf("page console error: %s", l.Text)
		}
	}
}

// browserAnswer is what corsPage reports of one fetch().
type browserAnswer struct {
	Status int
	Type   string
	Body   map[string]any
	Failed string
}
