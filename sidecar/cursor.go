package sidecar

import "strings"

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
// (a client must send back a cursor it was given, or "earliest").
func ParseCursor(s string) (Cursor, error) {
	ev, st, ok := strings.Cut(s, ".")
	if !ok || len(s) > maxCursorBytes {
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
