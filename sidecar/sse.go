package sidecar

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flovyn/eventhook/sidecar/bus"
	"github.com/flovyn/eventhook/sidecar/event"
	"github.com/google/uuid"
)

// streamSpec is what one SSE request asks for.
type streamSpec struct {
	tenant    uuid.UUID
	events    *event.EventPattern // nil: no lifecycle feed
	streamKey string              // "": no generic stream feed
	taskOnly  string              // when set, keep only the stream events of this task
	types     event.TypeFilter
	replay    bool // without a cursor, start with what the backend holds (workflow and task streams)
	cursor    *event.Cursor
	earliest  bool
	flovyn    bool // lifecycle events with a legacy name in Flovyn's framing (format=flovyn)
	// unreadable: the client sent a cursor this sidecar cannot read; it gets a reset gap, then the stream as without a
	// cursor
	unreadable bool
}

// sseRetry is the reconnection delay suggested to EventSource clients.
const sseRetry = 2 * time.Second

// maxFrameBatch is how many bytes of frames are gathered before a write.
const maxFrameBatch = 32 << 10

func (s *Server) handleWorkflowStream(w http.ResponseWriter, r *http.Request) {
	spec, err := s.streamRequest(r, false)
	if err == nil {
		var id string
		if id, err = event.ParseID("id", r.PathValue("id")); err == nil {
			if u, perr := uuid.Parse(id); perr == nil && spec.types.Lifecycle() {
				p := event.ForWorkflow(spec.tenant, u)
				p.EventTypePrefix = spec.types.Prefix()
				spec.events = &p
			}
			if spec.types.Streams() || spec.types.Lifecycle() { // lifecycle: Flovyn's server sends it on the stream too
				spec.streamKey = id
			}
			spec.replay = true
		}
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.serveSSE(w, r, spec)
}

func (s *Server) handleTaskStream(w http.ResponseWriter, r *http.Request) {
	spec, err := s.streamRequest(r, false)
	var id, wf string
	if err == nil {
		id, err = event.ParseID("id", r.PathValue("id"))
	}
	if err == nil {
		if q := r.URL.Query().Get("workflow_execution_id"); q != "" {
			wf, err = event.ParseID("workflow_execution_id", q)
		}
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if u, perr := uuid.Parse(id); perr == nil && spec.types.Lifecycle() {
		p := event.ForTask(spec.tenant, u)
		p.EventTypePrefix = spec.types.Prefix()
		spec.events = &p
	}
	if spec.types.Streams() || spec.types.Lifecycle() { // lifecycle: Flovyn's server sends it on the stream too
		spec.streamKey = id // a standalone task's stream is keyed by the task
		if wf != "" {
			spec.streamKey, spec.taskOnly = wf, id // a task inside a workflow: its events of the workflow's stream
		}
	}
	spec.replay = true
	s.serveSSE(w, r, spec)
}

func (s *Server) handleTenantStream(w http.ResponseWriter, r *http.Request) {
	spec, err := s.streamRequest(r, true)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	q := r.URL.Query()
	p := event.AllEvents(spec.tenant)
	p.EventTypePrefix = spec.types.Prefix()
	p.Source = q.Get("source")
	for _, f := range []struct {
		name string
		dst  **uuid.UUID
	}{{"workflow_execution_id", &p.WorkflowExecutionID}, {"task_execution_id", &p.TaskExecutionID}} {
		if v := q.Get(f.name); v != "" {
			u, err := uuid.Parse(v)
			if err != nil || len(v) != 36 {
				s.writeError(w, r, event.Invalid(f.name, "%q is not a UUID", v))
				return
			}
			*f.dst = &u
		}
	}
	spec.events = &p
	s.serveSSE(w, r, spec)
}

// streamRequest reads what every stream endpoint shares: the tenant, the types and the cursor.
func (s *Server) streamRequest(r *http.Request, lifecycleOnly bool) (streamSpec, error) {
	var spec streamSpec
	q := r.URL.Query()
	param, field, err := tenantOf(q, tenantParams)
	if err != nil {
		return spec, err
	}
	tenant, err := s.tenantFor(r, param, field)
	if err != nil {
		return spec, err
	}
	if tenant == uuid.Nil {
		return spec, event.Invalid("tenant_id", "is required: pass ?tenant_id=<uuid> (or ?org_id=) or the %s header (or %s), "+
			"or set events.default_tenant_id", event.TenantHeader, event.OrgHeader)
	}
	if err := allow(r, tenant, rightSubscribe); err != nil {
		return spec, err
	}
	spec.tenant = tenant
	if spec.types, err = event.ParseTypes(q.Get("types"), lifecycleOnly); err != nil {
		return spec, err
	}
	if spec.flovyn, err = streamFormat(q, s.cfg.SSE.Format, lifecycleOnly); err != nil {
		return spec, err
	}
	from, last := "Last-Event-ID", r.Header.Get("Last-Event-ID") // the header wins: EventSource re-sends the original URL
	if last == "" {
		from, last = "last_event_id", q.Get("last_event_id")
	}
	switch last {
	case "":
	case event.CursorEarliest:
		spec.earliest = true
	default:
		// Never a 400: an EventSource gives up on a non-200, and another server's id (Flovyn numbers its frames) or a
		// truncated cursor must not end a page's stream for good.
		if c, err := event.ParseCursor(last); err == nil {
			spec.cursor = &c
		} else {
			spec.unreadable = true
			s.unreadableCursor(r, from, last)
		}
	}
	return spec, nil
}

// start returns where a feed begins: after the cursor's position for it, else from the earliest held event when asked
// or when the client has had nothing from this feed yet, else live.
func (spec *streamSpec) start(has bool, p event.Position) bus.Start {
	switch {
	case spec.cursor != nil && has:
		return bus.StartAfter(p)
	case spec.earliest || spec.replay || spec.cursor != nil:
		return bus.StartEarliest()
	}
	return bus.StartLive()
}

// sseConn is one SSE client: its feeds, its cursor, its write buffer and its connection.
//
// Once its response head is written, the connection is hijacked from net/http and served by one small goroutine that
// waits in a read on the connection, with a deadline at the next keep-alive. A delivery (or the end of a feed, or the
// server's shutdown) wakes it by moving that deadline to the past. So an idle client costs one parked goroutine, its
// subscription and a few hundred bytes — no net/http buffers, no second goroutine, no timer — and a client that goes
// away is noticed at once (the read returns EOF) and freed.
type sseConn struct {
	s       *Server
	spec    *streamSpec
	conn    net.Conn
	cursor  event.Cursor
	buf     []byte
	woken   atomic.Bool
	creds   credentials // what the stream was opened with, checked again after ReloadAuth
	auth    uint64      // the Server.authGen it was last checked at
	wake    func()      // interrupts the wait of run
	unwatch func() bool // stops the wake-up at the next ReloadAuth

	ev     bus.Subscription[event.FlovynEvent]
	st     bus.Subscription[event.StreamEvent]
	nextEv *bus.Delivery[event.FlovynEvent]
	nextSt *bus.Delivery[event.StreamEvent]
	evD    bus.Delivery[event.FlovynEvent]
	stD    bus.Delivery[event.StreamEvent]
}

// aLongTimeAgo is a deadline in the past: it makes a blocked read return at once.
var aLongTimeAgo = time.Unix(1, 0)

// serveSSE subscribes to the feeds of spec, writes the response head, and hands the connection to a goroutine that
// writes frames until the client goes away, the server shuts down or the bus closes.
func (s *Server) serveSSE(w http.ResponseWriter, r *http.Request, spec streamSpec) {
	if err := s.subs.acquire(spec.tenant); err != nil {
		s.writeError(w, r, err)
		return
	}
	// The subscriptions outlive this handler: not r.Context(), which ends when ServeHTTP returns.
	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	c := &sseConn{s: s, spec: &spec}
	if cl, ok := r.Context().Value(ctxCaller).(*caller); ok {
		c.creds = cl.creds
	}
	if spec.cursor != nil {
		c.cursor = *spec.cursor
	}
	fail := func(err error) {
		cancel()
		s.subs.release(spec.tenant)
		s.writeError(w, r, err)
	}
	var err error
	if spec.events != nil {
		if c.ev, err = s.bus.SubscribeEvents(ctx, *spec.events, spec.start(c.cursor.HasEvents, c.cursor.Events)); err != nil {
			fail(err)
			return
		}
	}
	if spec.streamKey != "" {
		if c.st, err = s.bus.SubscribeStream(ctx, spec.tenant, spec.streamKey, spec.start(c.cursor.HasStreams, c.cursor.Streams)); err != nil {
			fail(err)
			return
		}
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Connection", "close") // the stream ends with the connection
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		fail(fmt.Errorf("sse: hijack: %w", err))
		return
	}
	c.conn = conn
	c.buf = append(c.buf, "HTTP/1.1 200 OK\r\n"...)
	c.buf = appendHeader(c.buf, h)
	c.buf = append(c.buf, "\r\nretry: "...)
	c.buf = strconv.AppendInt(c.buf, sseRetry.Milliseconds(), 10)
	c.buf = append(c.buf, "\n\n"...)
	if spec.unreadable {
		c.writeGap(&event.Gap{Reason: event.GapReset, Missed: -1}) // before anything the feeds give
		s.metrics.unreadableCursors.Inc()
	}
	s.metrics.subscribers.Inc()
	s.streams.Add(1)
	go c.run(cancel) // ends when the client goes away, the server shuts down or a feed ends; Shutdown waits for it
}

// appendHeader appends the header lines of h.
func appendHeader(dst []byte, h http.Header) []byte {
	for k, vs := range h {
		for _, v := range vs {
			dst = append(dst, k...)
			dst = append(dst, ": "...)
			dst = append(dst, v...)
			dst = append(dst, "\r\n"...)
		}
	}
	return dst
}

func (c *sseConn) run(cancel context.CancelFunc) {
	defer c.s.streams.Done()
	if c.s.streamEnding != nil {
		defer c.s.streamEnding()
	}
	defer func() {
		cancel() // ends the subscriptions
		c.conn.Close()
		c.s.subs.release(c.spec.tenant)
		c.s.metrics.subscribers.Dec()
	}()
	wake := func() {
		// The first wake-up since the last drain interrupts the read; later ones need not. The Load spares them the
		// Swap's write, which moves the cache line between cores: a burst wakes each connection many times.
		if !c.woken.Load() && !c.woken.Swap(true) {
			_ = c.conn.SetReadDeadline(aLongTimeAgo)
		}
	}
	if c.ev != nil {
		c.ev.SetNotify(wake)
	}
	if c.st != nil {
		c.st.SetNotify(wake)
	}
	stopShutdown := context.AfterFunc(c.s.streamsCtx, wake)
	defer stopShutdown()
	c.wake = wake
	c.watchReload()
	defer func() { c.unwatch() }()
	heartbeat := c.s.cfg.SSE.Heartbeat.D()
	next := time.Now().Add(heartbeat)
	var one [1]byte
	for {
		c.woken.Store(false)
		if c.s.streamsCtx.Err() != nil || ended(c.ev) || ended(c.st) || !c.stillAllowed() {
			return
		}
		if c.drain() != nil {
			return // a write failed or timed out: the client has a cut frame, and must resume from its last whole one
		}
		if now := time.Now(); !now.Before(next) {
			c.buf = append(c.buf, ": keep-alive\n\n"...)
			next = now.Add(heartbeat)
		}
		if len(c.buf) > 0 && c.flush() != nil {
			return
		}
		if c.buf != nil && len(c.buf) == 0 { // nothing was written: give the buffer back
			b := c.buf
			frameBuffers.Put(&b)
			c.buf = nil
		}
		_ = c.conn.SetReadDeadline(next)
		if c.woken.Load() {
			continue // woken between the drain and the deadline: that wake-up's deadline was overwritten
		}
		_, err := c.conn.Read(one[:])
		var ne net.Error
		if err != nil && !(errors.As(err, &ne) && ne.Timeout()) {
			return // the client went away
		}
	}
}

// stillAllowed checks the stream's credentials again when the tokens were reloaded since it last did: false when they
// may no longer subscribe to the stream's tenant.
func (c *sseConn) stillAllowed() bool {
	if c.s.authGen.Load() == c.auth {
		return true
	}
	c.watchReload()
	p, err := c.s.auth.Load().check(c.creds)
	if err == nil {
		err = p.allows(c.spec.tenant, rightSubscribe)
	}
	if err != nil {
		c.s.log.Info("SSE stream ended: its token no longer allows it", "tenant", c.spec.tenant, "reason", err)
		return false
	}
	return true
}

// watchReload arranges for the next ReloadAuth to wake the stream, and notes the reloads already seen. ReloadAuth
// counts before it replaces the signal: when the signal watched is still the current one after the count is read,
// any later reload cancels it.
func (c *sseConn) watchReload() {
	for {
		if c.unwatch != nil {
			c.unwatch()
		}
		sig := c.s.reloaded.Load()
		c.unwatch = context.AfterFunc(sig.ctx, c.wake)
		c.auth = c.s.authGen.Load()
		if c.s.reloaded.Load() == sig {
			return
		}
	}
}

// ended reports whether a subscription has ended (the bus closed it).
func ended[T any](s bus.Subscription[T]) bool {
	if s == nil {
		return false
	}
	select {
	case <-s.Done():
		return true
	default:
		return false
	}
}

// drain encodes every pending delivery of both feeds into the buffer, oldest arrival first, writing out when the buffer
// is large. It returns the error of a write that failed; the connection must then end (see flush).
func (c *sseConn) drain() error {
	c.grab()
	for {
		if c.nextEv == nil && c.ev != nil {
			if d, ok := c.ev.Next(); ok {
				c.evD, c.nextEv = d, &c.evD
			}
		}
		if c.nextSt == nil && c.st != nil {
			if d, ok := c.st.Next(); ok {
				c.stD, c.nextSt = d, &c.stD
			}
		}
		// While one feed is still replaying from the store, it may yet yield something older than the other's next
		// item: hold the other until it has an item or has joined the live feed (it wakes us either way).
		if (c.nextEv != nil && c.nextSt == nil && !settled(c.st)) || (c.nextSt != nil && c.nextEv == nil && !settled(c.ev)) {
			return nil
		}
		switch {
		case c.nextEv != nil && (c.nextSt == nil || c.nextEv.Arrival <= c.nextSt.Arrival):
			c.writeEvent(c.nextEv)
			c.nextEv = nil
		case c.nextSt != nil:
			c.writeStream(c.nextSt)
			c.nextSt = nil
		default:
			return nil
		}
		if len(c.buf) >= maxFrameBatch {
			if err := c.flush(); err != nil {
				return err
			}
			c.grab()
		}
	}
}

// settled reports whether s, when there is one, is settled (see Subscription.Settled).
func settled[T any](s bus.Subscription[T]) bool { return s == nil || s.Settled() }

func (c *sseConn) writeEvent(d *bus.Delivery[event.FlovynEvent]) {
	if d.Gap != nil {
		c.writeGap(d.Gap)
		return
	}
	c.cursor.Events, c.cursor.HasEvents = d.Pos, true
	if c.spec.types.MatchesType(d.Value.EventType) {
		c.writeLifecycle(d.Value, d.Wire)
	}
}

// writeLifecycle writes the frame of a lifecycle event at the current cursor; wire is its shared encoding, or nil.
func (c *sseConn) writeLifecycle(e *event.FlovynEvent, wire []byte) {
	c.buf = c.appendID(c.buf)
	c.buf = c.appendLifecycle(c.buf, e, wire)
	c.s.metrics.deliveredLifecycle.Inc()
}

func (c *sseConn) writeStream(d *bus.Delivery[event.StreamEvent]) {
	if d.Gap != nil {
		c.writeGap(d.Gap)
		return
	}
	c.cursor.Streams, c.cursor.HasStreams = d.Pos, true
	se := d.Value
	if c.spec.taskOnly != "" && se.TaskExecutionID != c.spec.taskOnly {
		return
	}
	if e := se.Lifecycle(); e != nil { // a legacy lifecycle payload from NATS: a lifecycle event in every respect
		if c.spec.types.MatchesType(e.EventType) {
			c.writeLifecycle(e, d.Wire)
		}
		return
	}
	if !c.spec.types.MatchesKind(se.Type) {
		return
	}
	c.buf = c.appendID(c.buf)
	switch {
	case c.spec.flovyn && se.Type == event.StreamError:
		c.buf = appendNamedFrame(c.buf, "error", se) // Flovyn's name, for pages written for its server
	case d.Wire != nil:
		c.buf = append(c.buf, d.Wire...)
	default:
		c.buf = appendStreamFrame(c.buf, se)
	}
	c.s.metrics.deliveredStream[event.StreamKindIndex(se.Type)].Inc()
}

func (c *sseConn) writeGap(g *event.Gap) {
	c.buf = append(c.buf, "event: gap\ndata: "...)
	c.buf = g.AppendJSON(c.buf)
	c.buf = append(c.buf, "\n\n"...)
	if g.Missed > 0 {
		c.s.metrics.dropped.WithLabelValues(string(g.Reason)).Add(float64(g.Missed))
	}
}

func (c *sseConn) appendID(dst []byte) []byte {
	dst = append(dst, "id: "...)
	dst = c.cursor.AppendTo(dst)
	return append(dst, '\n')
}

// appendLifecycleFrame appends the SSE frame of a lifecycle event after its id line, with the tenant under key.
func appendLifecycleFrame(dst []byte, e *event.FlovynEvent, key event.TenantKey) []byte {
	dst = append(dst, "event: lifecycle\ndata: "...)
	dst = e.AppendJSONAs(dst, key)
	return append(dst, "\n\n"...)
}

// streamErrorFrame is the SSE event name of a stream ERROR event in the default framing. It is not "error": an
// EventSource dispatches an event named error to its onerror handler, meant for a broken connection, so every page would
// take a stream error for a lost connection. Flovyn's framing (format=flovyn) keeps "error", as Flovyn's server sends it.
const streamErrorFrame = "stream-error"

// frameName is the SSE event name of a stream event of kind t: token, progress, data, or streamErrorFrame.
func frameName(t event.StreamEventType) string {
	if t == event.StreamError {
		return streamErrorFrame
	}
	return t.SSEName()
}

// appendStreamFrame appends the SSE frame of a generic stream event after its id line: its kind, and its payload
// verbatim as data lines.
func appendStreamFrame(dst []byte, s *event.StreamEvent) []byte {
	return appendNamedFrame(dst, frameName(s.Type), s)
}

// appendNamedFrame appends the frame of a generic stream event under the event name name.
func appendNamedFrame(dst []byte, name string, s *event.StreamEvent) []byte {
	dst = append(dst, "event: "...)
	dst = append(dst, name...)
	dst = append(dst, '\n')
	dst = appendData(dst, s.Payload)
	return append(dst, '\n')
}

// FrameEncoders returns the encoders a bus is given (FeedOptions.Encoders): the SSE frames of lifecycle and stream events
// after their id line, with the tenant of a lifecycle event under key (events.tenant_key). The bus encodes each item
// once with them, for every subscriber; the SSE writer sends what they return.
func FrameEncoders(key event.TenantKey) bus.Encoders {
	return bus.Encoders{Event: lifecycleWire(key), Stream: streamFrameWire(key)}
}

// lifecycleWire returns the hubs' shared encoding of lifecycle events, with the tenant under key (events.tenant_key);
// streamFrameWire is the one of stream events.
func lifecycleWire(key event.TenantKey) func(*event.FlovynEvent) []byte {
	return func(e *event.FlovynEvent) []byte {
		return appendLifecycleFrame(make([]byte, 0, 440+len(e.Data)+len(e.EventType)+len(e.Source)), e, key)
	}
}

func streamFrameWire(key event.TenantKey) func(*event.StreamEvent) []byte {
	lifecycle := lifecycleWire(key)
	return func(s *event.StreamEvent) []byte {
		if s.Lifecycle() != nil { // a legacy lifecycle payload from NATS: its lifecycle frame
			return lifecycle(s.Lifecycle())
		}
		return appendStreamFrame(make([]byte, 0, 32+len(s.Payload)), s)
	}
}

// appendData appends payload as data: lines, one per line of the payload (CRLF, LF or CR end a line), as the SSE
// standard requires; the client joins them back with LF.
func appendData(dst []byte, payload string) []byte {
	for {
		i := indexLineEnd(payload)
		dst = append(dst, "data: "...)
		if i < 0 {
			dst = append(dst, payload...)
			return append(dst, '\n')
		}
		dst = append(dst, payload[:i]...)
		dst = append(dst, '\n')
		if payload[i] == '\r' && i+1 < len(payload) && payload[i+1] == '\n' {
			i++
		}
		payload = payload[i+1:]
	}
}

func indexLineEnd(s string) int {
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' || s[i] == '\r' {
			return i
		}
	}
	return -1
}

// frameBuffers holds the write buffers of SSE connections between writes: an idle connection holds none, and a burst
// reuses one instead of growing a new one.
var frameBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 2*maxFrameBatch); return &b }}

// flush writes the buffer to the client within sse.write_timeout, and gives the buffer back to the pool. A client
// that cannot take it is dropped, so a stalled reader never holds more than its bounded queue.
//
// An error ends the connection, whatever it is. A write that times out may have sent part of the buffer, cutting a frame
// in the middle, and the cursor has already moved past every frame of the buffer: writing anything more on that
// connection would splice later frames onto the cut one and leave a hole that Last-Event-ID cannot mend. Closed, the
// client discards the unfinished frame (as the SSE standard says) and resumes after the last whole one it got.
func (c *sseConn) flush() error {
	_ = c.conn.SetWriteDeadline(time.Now().Add(c.s.cfg.SSE.WriteTimeout.D()))
	_, err := c.conn.Write(c.buf)
	if cap(c.buf) <= 4*maxFrameBatch {
		b := c.buf[:0]
		frameBuffers.Put(&b)
	}
	c.buf = nil
	return err
}

// grab takes a buffer from the pool when the connection has none.
func (c *sseConn) grab() {
	if c.buf == nil {
		c.buf = *frameBuffers.Get().(*[]byte)
	}
}

// logCursorBytes bounds how much of an unreadable cursor a debug log shows.
const logCursorBytes = 64

// unreadableCursor notes a cursor the sidecar cannot read (from names where it came from: the Last-Event-ID header or
// the last_event_id query parameter). The stream answers it with a reset gap; the value is only ever logged at debug
// level, escaped and cut to logCursorBytes, since it is whatever a client sent.
func (s *Server) unreadableCursor(r *http.Request, from, v string) {
	ctx := r.Context()
	if !s.log.Enabled(ctx, slog.LevelDebug) {
		return
	}
	s.log.LogAttrs(ctx, slog.LevelDebug, "unreadable cursor: a reset gap, then the stream as without a cursor",
		slog.String("from", from), slog.String("cursor", escapeForLog(v, logCursorBytes)), slog.Int("bytes", len(v)))
}

// escapeForLog returns at most the first limit bytes of v with every byte outside printable ASCII escaped as Go
// escapes it (\x01, \u00e9, \n), without quotes around it.
func escapeForLog(v string, limit int) string {
	if len(v) > limit {
		v = v[:limit]
	}
	q := strconv.QuoteToASCII(v)
	return q[1 : len(q)-1]
}
