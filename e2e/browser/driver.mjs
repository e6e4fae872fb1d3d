// A page driver for the Go browser tests (e2e/browser_test.go): it connects to the Chromium that the Go test started
// (BROWSER_WS, a DevTools WebSocket URL), opens one page, and runs the commands it reads from stdin, one JSON object a
// line, answering each with one JSON line on stdout: {"id", "ok": true, "value"} or {"id", "ok": false, "error"}.
//
//   {"op": "goto", "url": "http://127.0.0.1:8787/#…"}
//   {"op": "eval", "expr": "document.title"}                 the value of a JavaScript expression in the page
//   {"op": "wait", "expr": "…", "timeout_ms": 10000}          polls the expression until it is truthy; its value
//   {"op": "click", "selector": "#open"}
//   {"op": "type", "selector": "#tenant", "text": "…"}        replaces the field's value
//   {"op": "screenshot", "path": "/tmp/x.png"}
//   {"op": "logs"}                                            console messages and page errors seen so far
//
// Expressions are evaluated through DevTools, not by the page, so a page's strict CSP (no eval) does not stop them.
// The driver exits when stdin closes; it never closes the browser, which belongs to the Go test.
import puppeteer from 'puppeteer-core';
import readline from 'node:readline';

const browser = await puppeteer.connect({ browserWSEndpoint: process.env.BROWSER_WS, protocolTimeout: 30000 });
const context = await browser.createBrowserContext(); // fresh storage for every driver
const page = await context.newPage();
await page.setViewport({
  width: Number(process.env.VIEWPORT_WIDTH || 1120),
  height: Number(process.env.VIEWPORT_HEIGHT || 560),
  deviceScaleFactor: 1,
});
const logs = [];
page.on('console', (m) => logs.push({ type: m.type(), text: m.text() }));
page.on('pageerror', (e) => logs.push({ type: 'pageerror', text: String(e && e.message || e) }));
page.on('requestfailed', (r) => {
  const why = r.failure() ? r.failure().errorText : '';
  if (why !== 'net::ERR_ABORTED') logs.push({ type: 'requestfailed', text: r.url() + ' ' + why });
});

const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function evaluate(expr) {
  return page.evaluate(`(() => { const v = (${expr}); return v === undefined ? null : v; })()`);
}

async function wait(expr, timeoutMs) {
  const deadline = Date.now() + (timeoutMs || 10000);
  let last;
  for (;;) {
    try {
      last = await evaluate(expr);
      if (last) return last;
    } catch (e) {
      last = 'error: ' + e.message;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${expr} (last: ${JSON.stringify(last)})`);
    await pause(25); // the poll interval
  }
}

const ops = {
  goto: (c) => page.goto(c.url, { waitUntil: 'load', timeout: 15000 }).then((r) => r && r.status()),
  eval: (c) => evaluate(c.expr),
  wait: (c) => wait(c.expr, c.timeout_ms),
  click: (c) => page.click(c.selector),
  type: async (c) => {
    await page.$eval(c.selector, (el) => { el.value = ''; });
    await page.type(c.selector, c.text);
  },
  screenshot: (c) => page.screenshot({ path: c.path, type: 'png' }).then(() => c.path),
  logs: () => logs,
};

const rl = readline.createInterface({ input: process.stdin });
for await (const line of rl) {
  if (!line.trim()) continue;
  let c = {};
  try {
    c = JSON.parse(line);
    const op = ops[c.op];
    if (!op) throw new Error('unknown op ' + c.op);
    const value = await op(c);
    process.stdout.write(JSON.stringify({ id: c.id, ok: true, value: value === undefined ? null : value }) + '\n');
  } catch (e) {
    process.stdout.write(JSON.stringify({ id: c.id, ok: false, error: String(e && e.message || e) }) + '\n');
  }
}
await context.close().catch(() => {});
await browser.disconnect();
