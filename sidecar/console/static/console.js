// eventhook console: shows one SSE stream of the sidecar live. Plain JavaScript, no dependency, no build step; it uses
// only the public stream endpoints of its own origin, as any client does.
'use strict';
(() => {

// The SSE event name of stream ERROR events. Such frames were named `error`, which is also the name of EventSource's
// own connection-error event; the daemon renames the frame (one constant to adjust). Both names are handled.
const STREAM_ERROR_EVENT = 'stream-error';
const MAX_ROWS = 2000;        // rows kept on screen; "show earlier" brings older ones back from the stream's replay
const ROWS_PER_FRAME = 400;   // rows added to the page per animation frame, at most
const MAX_TEXT = 100000;      // characters of running text kept per pane (the oldest are cut)
const MAX_PANES = 24;         // task panes of a workflow view
const MAX_TASK_FEEDS = 3;     // task streams followed at once: a browser opens 6 HTTP/1.1 connections per origin
const TOKEN_KEY = 'eventhook.console.token';
const TERMINAL = /\.(completed|failed|cancelled)$/;

const $ = (id) => document.getElementById(id);
const rowsEl = $('rows'), earlierBtn = $('earlier'), panesEl = $('panes'), jsonEl = $('json');
const rowTpl = $('row-tpl').content.firstElementChild, paneTpl = $('pane-tpl').content.firstElementChild;

// What the page did, for people (the counters) and for tests (window.eventhookConsole).
const stats = {
  state: 'idle', frames: 0, lifecycle: 0, rows: 0, trimmed: 0, earlier: 0, duplicates: 0, tokens: 0, gaps: 0, errors: 0,
  resumes: 0, attempts: 0, lastResume: null, firstFrameMs: 0, lastFrameMs: 0, drawnMs: 0, longTasks: 0, longestTaskMs: 0, cursor: '', problem: null,
};
window.eventhookConsole = { stats, panes: () => paneStats(), curl: () => curlCommand(view) };
try {
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      stats.longTasks++;
      stats.longestTaskMs = Math.max(stats.longestTaskMs, Math.round(e.duration));
    }
  }).observe({ type: 'longtask', buffered: true });
} catch (_) { /* not every browser reports long tasks */ }

// ---- the view: what the page URL's hash holds (never the token) ----

const FIELDS = ['view', 'tenant', 'workflow', 'task', 'types', 'source'];

function readHash() {
  const q = new URLSearchParams(location.hash.slice(1));
  const v = {};
  for (const k of FIELDS) v[k] = (q.get(k) || '').trim();
  if (!v.tenant) v.tenant = (q.get('org') || q.get('tenant_id') || q.get('org_id') || '').trim();
  if (!['workflow', 'task', 'tenant'].includes(v.view)) v.view = v.task ? 'task' : v.workflow ? 'workflow' : 'tenant';
  return v;
}

function hashOf(v) {
  const q = new URLSearchParams();
  for (const k of FIELDS) if (v[k] && (k !== 'source' || v.view === 'tenant')) q.set(k, v[k]);
  return '#' + q.toString();
}

function readForm() {
  const v = {};
  for (const k of FIELDS) v[k] = $(k).value.trim();
  return v;
}

function fillForm(v) {
  for (const k of FIELDS) $(k).value = v[k] || '';
  layoutForm();
}

function layoutForm() {
  const kind = $('view').value;
  $('l-source').hidden = kind !== 'tenant';
  $('workflow').placeholder = kind === 'workflow' ? 'workflow execution id' : kind === 'task' ? 'its workflow (for its tokens)' : 'filter: workflow id';
  $('task').placeholder = kind === 'task' ? 'task execution id' : 'filter: task id';
  $('l-task').hidden = kind === 'workflow';
}

function token() {
  try { return sessionStorage.getItem(TOKEN_KEY) || ''; } catch (_) { return ''; }
}

// streamURL is the path and query of the view's stream; extra parameters (types, access_token, last_event_id) are
// added or replaced.
function streamURL(v, extra) {
  const q = new URLSearchParams();
  let path;
  if (v.tenant) q.set('tenant_id', v.tenant);
  if (v.view === 'workflow') {
    path = '/workflow-executions/' + encodeURIComponent(v.workflow) + '/stream';
  } else if (v.view === 'task') {
    path = '/task-executions/' + encodeURIComponent(v.task) + '/stream';
    if (v.workflow) q.set('workflow_execution_id', v.workflow);
  } else {
    path = '/events/stream';
    if (v.workflow) q.set('workflow_execution_id', v.workflow);
    if (v.task) q.set('task_execution_id', v.task);
    if (v.source) q.set('source', v.source);
  }
  if (v.types) q.set('types', v.types);
  if (v.view !== 'tenant') q.set('format', 'eventhook'); // lifecycle frames whatever sse.format says
  for (const [k, val] of Object.entries(extra || {})) {
    if (val === null) q.delete(k); else q.set(k, val);
  }
  return path + '?' + q.toString();
}

function curlCommand(v) {
  if (!v || !valid(v)) return '';
  const auth = token() ? ' -H "Authorization: Bearer $EVENTHOOK_TOKEN"' : '';
  return 'curl -N' + auth + " '" + location.origin + streamURL(v) + "'";
}

function valid(v) {
  return v.view === 'tenant' || (v.view === 'workflow' && v.workflow) || (v.view === 'task' && v.task);
}

// ---- one EventSource, with resume and the reasons it fails ----

// Feed follows one stream. EventSource reconnects by itself after a network error, sending Last-Event-ID; when it
// gives up (a non-200 answer) the feed asks the same URL with fetch() why, shows a 401/403/400 as such, and otherwise
// opens a new EventSource that resumes with last_event_id= (the header wins once the browser sends it).
class Feed {
  constructor(url, on) {
    this.url = url;
    this.on = on; // {frame(kind, data), state(name, info)}
    this.cursor = '';
    this.es = null;
    this.closed = false;
    this.downSince = 0;
    this.attempts = 0;
    this.timer = 0;
    this.everOpen = false;
  }

  start(cursor) {
    if (cursor) this.cursor = cursor;
    this.on.state('connecting', {});
    this.connect();
  }

  connect() {
    if (this.closed) return;
    const extra = {};
    const tok = token();
    if (tok) extra.access_token = tok;
    if (this.cursor) extra.last_event_id = this.cursor;
    const es = new EventSource(withParams(this.url, extra));
    this.es = es;
    const frame = (kind) => (e) => {
      if (e.lastEventId) this.cursor = e.lastEventId;
      this.on.frame(kind, e.data, e.lastEventId);
    };
    es.addEventListener('lifecycle', frame('lifecycle'));
    es.addEventListener('token', frame('token'));
    es.addEventListener('progress', frame('progress'));
    es.addEventListener('data', frame('data'));
    es.addEventListener('gap', frame('gap'));
    es.addEventListener(STREAM_ERROR_EVENT, frame('error'));
    const streamError = frame('error');
    es.addEventListener('error', (e) => {
      if (typeof e.data === 'string') { streamError(e); return; } // a frame named error, not the connection
      this.connectionError(es);
    });
    es.addEventListener('open', () => {
      let resumed = null;
      if (this.downSince) {
        resumed = { seconds: (performance.now() - this.downSince) / 1000, attempts: this.attempts, cursor: this.cursor };
      }
      this.downSince = 0;
      this.attempts = 0;
      this.everOpen = true;
      this.on.state('live', { resumed });
    });
  }

  connectionError(es) {
    if (this.closed || es !== this.es) return;
    if (!this.downSince) this.downSince = performance.now();
    if (es.readyState === EventSource.CONNECTING) { // the browser tries again by itself, with Last-Event-ID
      this.attempts++;
      this.on.state('reconnecting', { attempts: this.attempts });
      return;
    }
    es.close(); // the browser gave up: ask why
    this.es = null;
    this.probe();
  }

  async probe() {
    this.attempts++;
    let status = 0, detail = '';
    const ctl = new AbortController();
    const headers = {};
    const tok = token();
    if (tok) headers.Authorization = 'Bearer ' + tok;
    try {
      const res = await fetch(this.url, { headers, signal: ctl.signal, cache: 'no-store' });
      status = res.status;
      if (!res.ok) detail = await problemDetail(res);
    } catch (_) {
      status = 0; // unreachable
    }
    ctl.abort();
    if (this.closed) return;
    if ([400, 401, 403, 404, 405, 415].includes(status)) { // a person must change something: no retry
      this.closed = true;
      this.on.state('failed', { status, detail });
      return;
    }
    const delay = Math.min(8000, 250 * 2 ** Math.min(this.attempts, 5));
    this.on.state('reconnecting', { attempts: this.attempts, status, detail });
    this.timer = setTimeout(() => this.connect(), delay);
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
    if (this.es) this.es.close();
    this.es = null;
  }
}

function withParams(url, extra) {
  const [path, query] = url.split('?');
  const q = new URLSearchParams(query);
  for (const [k, v] of Object.entries(extra)) q.set(k, v);
  return path + '?' + q.toString();
}

async function problemDetail(res) {
  const text = await res.text().catch(() => '');
  try {
    const p = JSON.parse(text);
    return p.detail || p.title || text;
  } catch (_) {
    return text.slice(0, 300) || res.statusText;
  }
}

// ---- payloads ----

function tokenText(p) {
  if (p.charCodeAt(0) === 123) { // {"type":"token","text":…} as the SDKs send
    try {
      const j = JSON.parse(p);
      if (j && j.type === 'token' && typeof j.text === 'string') return j.text;
    } catch (_) { /* plain text */ }
  }
  return p;
}

function progressOf(p) {
  let v = Number(p), details = '';
  if (p.trim() === '' || !Number.isFinite(v)) {
    v = NaN;
    try {
      const j = JSON.parse(p);
      if (j && typeof j === 'object') {
        v = Number(j.progress ?? j.value ?? j.percent);
        const d = j.details ?? j.message ?? '';
        details = typeof d === 'string' ? d : JSON.stringify(d);
      }
    } catch (_) { /* not progress we can draw */ }
  }
  if (!Number.isFinite(v)) return null;
  if (v > 1) v /= 100; // a percentage
  return { value: Math.min(1, Math.max(0, v)), details };
}

const pad = (n, w) => String(n).padStart(w, '0');
function clock(ms) {
  const d = new Date(ms);
  return pad(d.getHours(), 2) + ':' + pad(d.getMinutes(), 2) + ':' + pad(d.getSeconds(), 2) + '.' + pad(d.getMilliseconds(), 3);
}
const short = (id) => (id ? String(id).slice(0, 8) : '');

// ---- the page's state for the open view ----

let view = null;          // the view on screen
let feed = null;          // its stream
let taskFeeds = new Map(); // task id -> Feed of that task's tokens and progress (workflow view)
let pending = [];         // rows received, not yet on the page
let shown = [];           // rows on the page, oldest first: {el, key, id}
let rowData = new Map();  // row key -> JSON text shown on a click
let seen = new Set();     // lifecycle event ids received
let panes = new Map();    // pane key -> pane
let dirty = new Set();    // panes with text or progress to draw
let rowKey = 0;
let stick = true;         // the rows follow the newest (the user has not scrolled up)
let scheduled = false;
let earlierOpen = null;   // the replay feeding "show earlier"

function schedule() {
  if (!scheduled) {
    scheduled = true;
    requestAnimationFrame(draw);
  }
}

function lifecycleRow(data) {
  let e;
  try { e = JSON.parse(data); } catch (_) { return { cls: 'error', type: 'unreadable lifecycle frame', json: data }; }
  const type = String(e.event_type || '');
  let cls = 'lifecycle';
  if (/\.failed$/.test(type)) cls += ' failed';
  else if (/\.completed$/.test(type)) cls += ' completed';
  return {
    cls, id: e.id, time: clock(e.timestamp_ms || Date.now()), type, wf: e.workflow_execution_id || '',
    task: e.task_execution_id || '', src: e.source || '', json: data, event: e,
  };
}

function gapRow(data) {
  let g = {};
  try { g = JSON.parse(data); } catch (_) { /* shown as sent */ }
  const missed = g.missed == null ? 'an unknown number of events' : g.missed + ' event' + (g.missed === 1 ? '' : 's');
  return { cls: 'gap', text: '⚠ gap (' + (g.reason || '?') + '): ' + missed + ' missed here', json: data };
}

function streamRow(kind, data) {
  const v = view || {};
  const base = { time: clock(Date.now()), wf: v.workflow || '', task: v.view === 'task' ? v.task : '', src: 'stream' };
  if (kind === 'error') return { ...base, cls: 'error', type: 'stream error: ' + data, json: data };
  return { ...base, cls: 'data', type: 'data: ' + data, json: data };
}

function prettyJSON(s) {
  try { return JSON.stringify(JSON.parse(s), null, 2); } catch (_) { return s; }
}

function onFrame(kind, data) {
  stats.frames++;
  stats.lastFrameMs = performance.now();
  if (!stats.firstFrameMs) stats.firstFrameMs = stats.lastFrameMs;
  switch (kind) {
    case 'lifecycle': {
      const r = lifecycleRow(data);
      stats.lifecycle++;
      if (r.id) {
        if (seen.has(r.id)) { stats.duplicates++; r.cls += ' dup'; } else seen.add(r.id);
        if (seen.size > 200000) seen = new Set([...seen].slice(-100000)); // a day-long stream: keep the newest ids
      }
      pending.push(r);
      if (r.event) taskSeen(r.event);
      break;
    }
    case 'token':
      stats.tokens++;
      appendText(mainPane(), tokenText(data));
      break;
    case 'progress':
      setProgress(mainPane(), data);
      break;
    case 'error':
      stats.errors++;
      mainPane().el.classList.add('err');
      pending.push(streamRow('error', data));
      break;
    case 'data':
      pending.push(streamRow('data', data));
      break;
    case 'gap':
      stats.gaps++;
      pending.push(gapRow(data));
      break;
  }
  schedule();
}

function onState(name, info) {
  stats.state = name;
  const el = $('state');
  el.className = 'state ' + name;
  let text = name;
  if (name === 'live' && info.resumed) {
    stats.resumes++;
    stats.lastResume = info.resumed;
    const r = info.resumed;
    text = 'live · resumed after ' + r.seconds.toFixed(1) + ' s (' + r.attempts + ' attempt' + (r.attempts === 1 ? '' : 's') + ')';
    pending.push({ cls: 'notice', text: '↻ reconnected after ' + r.seconds.toFixed(1) + ' s: resumed after ' + (r.cursor || 'the start') });
    schedule();
  } else if (name === 'reconnecting') {
    stats.attempts = info.attempts;
    text = 'reconnecting… (attempt ' + info.attempts + (info.status ? ', ' + info.status : '') + ')';
  } else if (name === 'failed') {
    const what = info.status === 401 ? 'unauthorized' : info.status === 403 ? 'forbidden' : 'refused';
    text = info.status + ' ' + what;
    stats.problem = { status: info.status, detail: info.detail };
    showProblem(info.status + ' ' + what + ': ' + info.detail);
    if (info.status === 401 || info.status === 403) {
      $('l-token').hidden = false;
      $('token').focus();
    }
  } else if (name === 'connecting') {
    text = 'connecting…';
  }
  if (name === 'live') showProblem('');
  el.textContent = text;
  el.title = stats.cursor ? 'cursor ' + stats.cursor : '';
}

function showProblem(text) {
  const p = $('problem');
  p.textContent = text;
  p.hidden = !text;
}

// ---- panes: running text and progress per stream ----

function mainPane() {
  const v = view;
  if (v.view === 'task') return pane('task:' + v.task, 'task ' + short(v.task), v.task);
  return pane('main', v.view === 'workflow' ? 'workflow ' + short(v.workflow) : 'stream',
    v.view === 'workflow' ? 'every task (a token frame names no task)' : '');
}

function pane(key, name, info) {
  let p = panes.get(key);
  if (p) return p;
  const el = paneTpl.cloneNode(true);
  el.querySelector('.name').textContent = name;
  el.dataset.key = key;
  p = { key, el, chunks: [], buf: [], bufLen: 0, len: 0, cut: 0, progress: null, bar: el.querySelector('.bar'),
    pinfo: el.querySelector('.pinfo'), pre: el.querySelector('.text'), follow: el.querySelector('.follow'), info: info || '',
    stick: true };
  const pre = p.pre;
  pre.addEventListener('scroll', () => { p.stick = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4; });
  paneInfo(p);
  panes.set(key, p);
  panesEl.appendChild(el);
  return p;
}

function appendText(p, s) {
  p.buf.push(s);
  p.bufLen += s.length;
  if (p.bufLen > 4 * MAX_TEXT) { // the page is not drawing (a hidden tab): keep the tail only
    const all = p.buf.join('');
    p.cut += all.length - MAX_TEXT;
    p.buf = [all.slice(-MAX_TEXT)];
    p.bufLen = MAX_TEXT;
    p.reset = true;
  }
  dirty.add(p);
}

function setProgress(p, data) {
  const pr = progressOf(data);
  if (!pr) return;
  p.progress = pr;
  dirty.add(p);
}

// The running text is kept in blocks of about CHUNK characters, so that appending lays out only the last block (one
// text of 100,000 characters would be laid out again at every frame) and the oldest text goes a block at a time. A
// block is closed at its last space or newline, where a line may break anyway.
const CHUNK = 4096;

function drawPane(p) {
  if (p.bufLen) {
    const s = p.buf.join('');
    p.buf = [];
    p.bufLen = 0;
    if (p.reset) {
      p.pre.textContent = '';
      p.chunks = [];
      p.len = 0;
      p.reset = false;
    }
    let i = 0;
    while (i < s.length) {
      let last = p.chunks[p.chunks.length - 1];
      let carry = '';
      if (!last || last.node.length >= CHUNK) {
        if (last) { // close it: the word it ends with, when short, starts the next block
          const d = last.node.data;
          const cut = Math.max(d.lastIndexOf(' '), d.lastIndexOf('\n')) + 1;
          if (cut > 0 && d.length - cut < 200) {
            carry = d.slice(cut);
            last.node.deleteData(cut, carry.length);
          }
        }
        const span = document.createElement('span');
        span.className = 'chunk';
        last = { span, node: document.createTextNode(carry) };
        span.appendChild(last.node);
        p.pre.appendChild(span);
        p.chunks.push(last);
      }
      const piece = s.slice(i, i + CHUNK - last.node.length);
      last.node.appendData(piece);
      p.len += piece.length;
      i += piece.length;
    }
    while (p.len > MAX_TEXT && p.chunks.length > 1) {
      const first = p.chunks.shift();
      p.len -= first.node.length;
      p.cut += first.node.length;
      first.span.remove();
    }
    paneInfo(p);
    if (p.stick) p.pre.scrollTop = p.pre.scrollHeight;
  }
  if (p.progress) {
    p.bar.hidden = false;
    p.bar.value = p.progress.value;
    p.pinfo.textContent = Math.round(p.progress.value * 100) + '%' + (p.progress.details ? ' · ' + p.progress.details : '');
  }
}

function paneInfo(p) {
  p.el.querySelector('.info').textContent = (p.cut ? '… ' + p.cut + ' earlier characters cut · ' : '') + p.info;
}

function paneStats() {
  const out = {};
  for (const [k, p] of panes) {
    out[k] = { chars: p.len + p.bufLen, cut: p.cut, progress: p.progress ? p.progress.value : null, text: p.chunks.length ? p.chunks[p.chunks.length - 1].node.data.slice(-200) : '',
      followed: p.feed ? !p.feed.closed : false };
  }
  return out;
}

// A task named by a lifecycle event of a workflow view gets a pane fed by its own task stream: the workflow stream's
// token frames do not say which task they belong to.
function taskSeen(e) {
  const id = e.task_execution_id;
  if (!view || view.view !== 'workflow' || !id || !taskTypes(view)) return;
  let p = panes.get('task:' + id);
  if (!p) {
    if (panes.size > MAX_PANES) return;
    p = pane('task:' + id, 'task ' + short(id), e.event_type);
    p.taskId = id;
    p.follow.addEventListener('click', () => followTask(p));
    if (liveTaskFeeds() < MAX_TASK_FEEDS) followTask(p); else p.follow.hidden = false;
  }
  p.info = e.event_type;
  paneInfo(p);
  if (TERMINAL.test(e.event_type)) p.done = true;
}

// taskTypes is the types of a task pane's stream: the tokens and progress that the view's types ask for ('' if none).
function taskTypes(v) {
  const items = v.types.split(',').map((s) => s.trim().toLowerCase()).filter(Boolean);
  if (!items.length) return 'tokens,progress';
  return ['tokens', 'progress'].filter((k) => items.includes(k) || items.includes(k.replace(/s$/, ''))).join(',');
}

function liveTaskFeeds() {
  let n = 0;
  for (const f of taskFeeds.values()) if (!f.closed) n++;
  return n;
}

function followTask(p) {
  if (liveTaskFeeds() >= MAX_TASK_FEEDS) { // make room: stop following the oldest task that ended, else the oldest
    const followed = [...taskFeeds.keys()].filter((id) => !taskFeeds.get(id).closed).map((id) => panes.get('task:' + id));
    const victim = followed.find((vp) => vp.done) || followed[0];
    victim.feed.close();
    victim.follow.hidden = false;
    victim.el.classList.add('off');
  }
  const v = { view: 'task', tenant: view.tenant, task: p.taskId, workflow: view.workflow, types: taskTypes(view) };
  const f = new Feed(streamURL(v), {
    frame(kind, data) {
      if (kind === 'token') appendText(p, tokenText(data));
      else if (kind === 'progress') setProgress(p, data);
      schedule();
    },
    state(name) { p.el.classList.toggle('wait', name !== 'live'); },
  });
  if (p.feed) f.cursor = p.feed.cursor; // following again: resume where it stopped
  p.feed = f;
  taskFeeds.set(p.taskId, f);
  p.follow.hidden = true;
  p.el.classList.remove('off');
  f.start(f.cursor);
}

// ---- rows ----

function makeRow(r) {
  let el;
  if (r.text !== undefined) {
    el = document.createElement('div');
    el.className = 'row ' + r.cls;
    el.textContent = r.text;
  } else {
    el = rowTpl.cloneNode(true);
    el.className = 'row ' + r.cls;
    const c = el.children;
    c[0].textContent = r.time;
    c[1].textContent = r.type;
    c[2].textContent = short(r.wf);
    c[3].textContent = short(r.task);
    c[4].textContent = r.src;
    if (r.wf) c[2].title = r.wf;
    if (r.task) c[3].title = r.task;
  }
  const key = ++rowKey;
  el.dataset.k = key;
  if (r.json) rowData.set(key, r.json);
  return { el, key, id: r.id || null };
}

function draw() {
  scheduled = false;
  if (pending.length > MAX_ROWS) { // more arrived than the page keeps: skip straight to the newest
    const skip = pending.length - MAX_ROWS;
    pending = pending.slice(skip);
    stats.trimmed += skip;
    stats.earlier += skip;
  }
  if (pending.length) {
    const batch = pending.length > ROWS_PER_FRAME ? pending.splice(0, ROWS_PER_FRAME) : pending.splice(0);
    const frag = document.createDocumentFragment();
    for (const r of batch) {
      const row = makeRow(r);
      shown.push(row);
      frag.appendChild(row.el);
    }
    rowsEl.appendChild(frag);
    stats.rows += batch.length;
    const limit = stick ? MAX_ROWS : 2 * MAX_ROWS; // reading earlier rows: keep them a while longer
    if (shown.length > limit) {
      const gone = shown.splice(0, shown.length - MAX_ROWS);
      for (const g of gone) { g.el.remove(); rowData.delete(g.key); }
      stats.trimmed += gone.length;
      stats.earlier += gone.length;
    }
    if (stick) rowsEl.scrollTop = rowsEl.scrollHeight;
  }
  for (const p of dirty) drawPane(p);
  dirty.clear();
  earlierBtn.hidden = stats.earlier === 0 || rowTypes(view) === null;
  if (!earlierBtn.hidden && !earlierOpen) earlierBtn.textContent = 'show earlier (' + stats.earlier + ' not on screen)';
  stats.cursor = feed ? feed.cursor : '';
  $('counts').textContent = stats.lifecycle + ' events · ' + stats.tokens + ' tokens · ' + shown.length + ' rows' +
    count(stats.gaps, 'gap') + count(stats.errors, 'error') + count(stats.duplicates, 'duplicate');
  if (pending.length || dirty.size) schedule(); else stats.drawnMs = performance.now();
}

function count(n, what) {
  return n ? ' · ' + n + ' ' + what + (n === 1 ? '' : 's') : '';
}

rowsEl.addEventListener('scroll', () => {
  stick = rowsEl.scrollTop + rowsEl.clientHeight >= rowsEl.scrollHeight - 8;
});

rowsEl.addEventListener('click', (e) => {
  const row = e.target.closest('.row');
  if (!row || !row.dataset.k) return;
  if (e.target.classList.contains('wf') && row.children[2].title && view.view !== 'workflow') {
    const v = { ...view, view: 'workflow', workflow: row.children[2].title, task: '', source: '' };
    openView(v, true);
    return;
  }
  const json = rowData.get(Number(row.dataset.k));
  if (json === undefined) return;
  for (const s of rowsEl.querySelectorAll('.row.sel')) s.classList.remove('sel');
  row.classList.add('sel');
  $('detail-title').textContent = 'JSON of the row';
  jsonEl.textContent = prettyJSON(json);
});

// rowTypes is the types parameter of a replay that gives the rows of view (no tokens, no progress), or null when
// the view shows no rows.
function rowTypes(v) {
  if (!v) return null;
  const items = v.types.split(',').map((s) => s.trim()).filter(Boolean);
  if (!items.length) return v.view === 'tenant' ? '' : 'events,data,errors';
  const keep = items.filter((s) => !/^(tokens?|progress)$/i.test(s));
  return keep.length ? keep.join(',') : null;
}

// showEarlier replays the stream from its start (its first events for the tenant stream) up to the oldest event on
// screen, and puts the up to MAX_ROWS / 2 rows before it back at the top.
function showEarlier() {
  const first = shown.find((r) => r.id);
  const types = rowTypes(view);
  if (!first || types === null || earlierOpen) return;
  const ring = [];
  let reached = false, extra = 0;
  const cap = MAX_ROWS / 2;
  earlierBtn.disabled = true;
  earlierBtn.textContent = 'loading earlier events…';
  let quiet = 0, done = false;
  const finish = () => {
    if (done) return;
    done = true;
    clearTimeout(quiet);
    f.close();
    earlierOpen = null;
    earlierBtn.disabled = false;
    const rows = ring.slice(-cap);
    extra += ring.length - rows.length;
    const frag = document.createDocumentFragment();
    const made = rows.map((r) => makeRow(r));
    for (const m of made) frag.appendChild(m.el);
    if (shown.length) rowsEl.insertBefore(frag, shown[0].el); else earlierBtn.after(frag);
    shown = made.concat(shown);
    if (reached) stats.earlier = extra; // else: the oldest event on screen is no longer held, nothing more to get
    else stats.earlier = 0;
    stick = false;
    rowsEl.scrollTop = 0;
    schedule();
  };
  const f = new Feed(streamURL(view, { types: types || null }), {
    frame(kind, data) {
      clearTimeout(quiet);
      quiet = setTimeout(finish, 3000); // the replay went live without reaching it (the event expired)
      let r;
      if (kind === 'lifecycle') {
        r = lifecycleRow(data);
        if (r.id === first.id) { reached = true; finish(); return; }
      } else if (kind === 'gap') r = gapRow(data);
      else if (kind === 'error' || kind === 'data') r = streamRow(kind, data);
      else return;
      ring.push(r);
      if (ring.length > 2 * cap) { extra += ring.length - cap; ring.splice(0, ring.length - cap); }
    },
    state(name) { if (name === 'failed') finish(); },
  });
  earlierOpen = f;
  quiet = setTimeout(finish, 5000);
  f.start('earliest');
}

earlierBtn.addEventListener('click', showEarlier);

// ---- opening and closing views ----

function closeAll() {
  if (feed) feed.close();
  for (const f of taskFeeds.values()) f.close();
  if (earlierOpen) earlierOpen.close();
  feed = null;
  earlierOpen = null;
  taskFeeds = new Map();
}

function reset() {
  closeAll();
  pending = [];
  shown = [];
  rowData = new Map();
  seen = new Set();
  panes = new Map();
  dirty = new Set();
  panesEl.textContent = '';
  for (const r of rowsEl.querySelectorAll('.row')) r.remove();
  for (const k of ['frames', 'lifecycle', 'rows', 'trimmed', 'earlier', 'duplicates', 'tokens', 'gaps', 'errors', 'resumes', 'attempts',
    'firstFrameMs', 'lastFrameMs', 'drawnMs']) stats[k] = 0;
  stats.lastResume = null;
  stats.problem = null;
  stick = true;
  showProblem('');
}

function openView(v, updateHash) {
  if (!valid(v)) {
    showProblem(v.view === 'task' ? 'Give the task execution id.' : 'Give the workflow execution id.');
    return;
  }
  reset();
  view = v;
  fillForm(v);
  if (updateHash && location.hash !== hashOf(v)) history.replaceState(null, '', hashOf(v));
  if (v.view !== 'tenant') mainPane();
  feed = new Feed(streamURL(v), { frame: onFrame, state: onState });
  feed.start('');
  $('detail-title').textContent = 'stream';
  jsonEl.textContent = curlCommand(v);
  schedule();
}

$('form').addEventListener('submit', (e) => {
  e.preventDefault();
  openView(readForm(), true);
});
$('view').addEventListener('change', layoutForm);
$('close').addEventListener('click', () => {
  closeAll();
  onState('idle', {});
  $('state').textContent = 'closed';
});
$('token').addEventListener('input', () => {
  try {
    const t = $('token').value;
    if (t) sessionStorage.setItem(TOKEN_KEY, t); else sessionStorage.removeItem(TOKEN_KEY);
  } catch (_) { /* storage disabled: the token lives in the field only */ }
});
$('curl').addEventListener('click', async () => {
  const v = view || readForm();
  const cmd = curlCommand(v);
  if (!cmd) { showProblem('Nothing to copy: fill in the form first.'); return; }
  $('detail-title').textContent = 'curl';
  jsonEl.textContent = cmd + (token() ? '\n\n# EVENTHOOK_TOKEN: the token you typed (not copied)' : '');
  try {
    await navigator.clipboard.writeText(cmd);
    $('detail-title').textContent = 'curl (copied)';
  } catch (_) { // no clipboard (not a secure context, or denied): select it for a manual copy
    getSelection().selectAllChildren(jsonEl);
  }
});
window.addEventListener('hashchange', () => {
  const v = readHash();
  if (!view || hashOf(v) !== hashOf(view)) openView(v, false);
});

// Start: the token of this tab, whether the sidecar wants one (any API route answers 401 without it), the view of the URL.
$('token').value = token();
if (token()) $('l-token').hidden = false;
fetch('/v1/events', { cache: 'no-store' }).then((res) => {
  if (res.status === 401) $('l-token').hidden = false;
}).catch(() => {});
const initial = readHash();
fillForm(initial);
if (location.hash.length > 1 && valid(initial)) openView(initial, false);
})();
