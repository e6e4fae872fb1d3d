package sidecar

import (
	"net/url"

	"github.com/flovyn/eventhook/sidecar/config"
	"github.com/flovyn/eventhook/sidecar/event"
)

// Framings of lifecycle events on a workflow or task stream: the query parameter format, whose default is sse.format.
//
// Under eventhook (the default) a lifecycle event is `event: lifecycle` with the FlovynEvent JSON. Under flovyn a
// lifecycle event whose type has a legacy name is framed as Flovyn's own server frames it, so that a page written for
// that server works unchanged: `event: data` with the StateEventPayload JSON
// ({"type":"Event","event":"TASK_COMPLETED","data":…,"timestampMs":…}). Every other frame — a lifecycle event without a
// legacy name, tokens, progress, data, errors, gaps — and every cursor are the same under both. The names are
// config.FormatEventhook and config.FormatFlovyn.

// streamFormat reads the format query parameter of a stream request, falling back to def (sse.format): it reports
// whether the stream uses Flovyn's framing. The tenant stream (tenantStream true) is always framed as eventhook: a
// StateEventPayload names no workflow or task, so a tenant's events in that framing could not be told apart, and
// sse.format does not apply to it; an explicit format=flovyn there is a 400. Any other value is a 400 naming the
// parameter and the valid values.
func streamFormat(q url.Values, def string, tenantStream bool) (flovyn bool, err error) {
	f := q.Get("format")
	switch {
	case f == "" && tenantStream:
		return false, nil
	case f == "":
		f = def
	case !config.ValidFormat(f):
		return false, event.Invalid("format", "%q is not a format; use %s", f, config.FormatValues)
	}
	if f == config.FormatFlovyn && tenantStream {
		return false, event.Invalid("format", "flovyn frames workflow and task streams only (a StateEventPayload names no "+
			"workflow or task); the tenant stream is always framed as %s: leave format out", config.FormatEventhook)
	}
	return f == config.FormatFlovyn, nil
}

// appendLifecycle appends the frame of the lifecycle event e after its id line, in the stream's framing. wire is the
// hub's shared encoding of the eventhook frame, or nil.
//
// The default framing copies wire. Flovyn's framing is encoded here, for each subscriber, straight into the
// connection's write buffer: no allocation, and about the work of copying wire (the event's data is copied either
// way). It is not cached beside wire: that would cost every event a second encoding and its bytes in the rings
// whether or not any subscriber asks for this framing.
func (c *sseConn) appendLifecycle(dst []byte, e *event.FlovynEvent, wire []byte) []byte {
	if c.spec.flovyn {
		if p, ok := event.LegacyPayload(e); ok {
			return appendStateEventFrame(dst, &p)
		}
	}
	if wire != nil {
		return append(dst, wire...)
	}
	return appendLifecycleFrame(dst, e, c.s.cfg.Events.TenantKey)
}

// appendStateEventFrame appends Flovyn's SSE frame of a lifecycle event after its id line: `event: data` and the
// StateEventPayload JSON on one data line.
func appendStateEventFrame(dst []byte, p *event.StateEventPayload) []byte {
	dst = append(dst, "event: data\ndata: "...)
	dst = p.AppendJSON(dst)
	return append(dst, "\n\n"...)
}
