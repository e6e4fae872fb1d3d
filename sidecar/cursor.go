package sidecar

import (
	"log/slog"
	"net/http"
	"strconv"
	"strings"
)

// Cursor is the position of an SSE client in the feeds of its stream: the lifecycle event feed and, for a workflow or
// task stream, the generic stream feed. Its string form is opaque to clients; it is what the `id:` lines carry and what
// Last-Event-ID sends back: "<events>.<streams>", each part a Position ("<epoch>-<seq>") or empty when the client has
// had nothing from that feed yet.
type Cursor struct {
	// Events is the position in the lifecycle feed; valid when HasEvents.
	Events Position
	// Streams is the position in the generic stream feed; valid when HasStreams.
	Streams Position
	// HasEvents and HasStreams say which parts are set.
	HasEvents, HasStreams bool
}

// maxCursorBytes bounds a cursor: two positions of at most 34 bytes each and the dot.
const maxCursorBytes = 2*34 + 1

// CursorEarliest is the cursor value that replays everything the backend still holds.
const CursorEarliest = "earliest"

// String encodes c.
func (c Cursor) String() string { return string(c.AppendTo(nil)) }

// AppendTo appends the form String gives to dst.
func (c Cursor) AppendTo(dst []byte) []byte {
	if c.HasEvents {
		dst = c.Events.AppendTo(dst)
	}
	dst = append(dst, '.')
	if c.HasStreams {
		dst = c.Streams.AppendTo(dst)
	}
	return dst
}

// ParseCursor decodes the form String gives. It returns a *ValidationError on the field "cursor" when s is malformed
// (a client must send back a cursor it was given, or "earliest"). A string longer than any cursor is refused before it
// is read, and its error does not quote it.
func ParseCursor(s string) (Cursor, error) {
	if len(s) > maxCursorBytes {
		return Cursor{}, fieldError("cursor", "a value of %d bytes is not a cursor this server issued (at most %d bytes; "+
			"send back an id: value, or %q)", len(s), maxCursorBytes, CursorEarliest)
	}
	ev, st, ok := strings.Cut(s, ".")
	if !ok {
		return Cursor{}, fieldError("cursor", "%q is not a cursor this server issued (send back an id: value, or %q)",
			s, CursorEarliest)
	}
	var c Cursor
	var err error
	if ev != "" {
		if c.Events, err = ParsePosition(ev); err != nil {
			return Cursor{}, err
		}
		c.HasEvents = true
	}
	if st != "" {
		if c.Streams, err = ParsePosition(st); err != nil {
			return Cursor{}, err
		}
		c.HasStreams = true
	}
	return c, nil
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
