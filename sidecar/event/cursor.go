package event

import (
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
		return Cursor{}, Invalid("cursor", "a value of %d bytes is not a cursor this server issued (at most %d bytes; "+
			"send back an id: value, or %q)", len(s), maxCursorBytes, CursorEarliest)
	}
	ev, st, ok := strings.Cut(s, ".")
	if !ok {
		return Cursor{}, Invalid("cursor", "%q is not a cursor this server issued (send back an id: value, or %q)",
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

// GapReason says why a subscriber missed events.
type GapReason string

// The reasons of a gap notice, the reason field of an SSE gap event.
const (
	// GapLagged means the subscriber was too slow and was overtaken.
	GapLagged GapReason = "lagged"
	// GapExpired means the cursor is older than what the backend still holds.
	GapExpired GapReason = "expired"
	// GapReset means the cursor comes from an earlier process of a backend that keeps nothing across restarts.
	GapReset GapReason = "reset"
)

// Gap tells a subscriber it missed events. Delivery goes on from the oldest event still held.
type Gap struct {
	// Reason says why.
	Reason GapReason `json:"reason"`
	// Missed is the number of positions skipped, or -1 when unknown (JSON null).
	Missed int64 `json:"-"`
}

// AppendJSON appends {"reason":…,"missed":N|null} to dst.
func (g *Gap) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"reason":"`...)
	dst = append(dst, g.Reason...)
	dst = append(dst, `","missed":`...)
	if g.Missed < 0 {
		dst = append(dst, "null"...)
	} else {
		dst = strconv.AppendInt(dst, g.Missed, 10)
	}
	return append(dst, '}')
}

// Position is a place in one feed: the feed's sequence, and the epoch it belongs to. The memory backend's epoch is its
// boot epoch, so a position of an earlier process is recognised; a durable backend uses a fixed epoch.
type Position struct {
	// Epoch identifies the run of the feed's numbering.
	Epoch uint64
	// Seq is the sequence of an event within the feed; 0 is before the first event.
	Seq uint64
}

// String encodes p as "<epoch base 36>-<seq>".
func (p Position) String() string { return string(p.AppendTo(nil)) }

// AppendTo appends the form String gives to dst.
func (p Position) AppendTo(dst []byte) []byte {
	dst = strconv.AppendUint(dst, p.Epoch, 36)
	dst = append(dst, '-')
	return strconv.AppendUint(dst, p.Seq, 10)
}

// ParsePosition decodes the form String gives. It returns an error wrapping ErrInvalidEvent when s is malformed.
func ParsePosition(s string) (Position, error) {
	e, q, ok := strings.Cut(s, "-")
	epoch, err1 := strconv.ParseUint(e, 36, 64)
	seq, err2 := strconv.ParseUint(q, 10, 64)
	if !ok || err1 != nil || err2 != nil || e == "" || q == "" || e[0] == '+' || q[0] == '+' {
		return Position{}, Invalid("cursor", "%q is not a cursor this server issued", s)
	}
	return Position{Epoch: epoch, Seq: seq}, nil
}
