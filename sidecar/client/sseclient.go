package client

import (
	"bytes"
	"errors"
	"io"
	"strconv"
	"sync/atomic"
	"time"
)

// MaxSSELineBytes is the default bound of an SSEReader: the longest line it accepts, and the most data one event may
// accumulate. A stream that exceeds it fails with ErrSSETooLong instead of growing the reader's memory without bound.
const MaxSSELineBytes = 16 << 20

// ErrSSETooLong is returned by SSEReader.Next when a line, or the data of one event, exceeds the reader's bound. The
// reader cannot resynchronise after it: every later call returns it again.
var ErrSSETooLong = errors.New("sidecar: SSE line or event too long")

// SSEEvent is one event dispatched by an SSEReader.
type SSEEvent struct {
	// ID is the last event ID at dispatch: the value of the most recent id field, which persists across events until the
	// server sends another one.
	ID string
	// Event is the event type, "message" when the event named none.
	Event string
	// Data is the event's data: its data lines joined with "\n". A lifecycle frame's data is a FlovynEvent, which
	// DecodeEvent reads whichever name of the tenant the sidecar writes (tenant_id, or org_id with
	// events.tenant_key: org_id).
	Data string
}

// SSEReader parses a text/event-stream following the WHATWG HTML "server-sent events" parsing rules: a leading UTF-8 BOM
// is skipped; lines end with CRLF, LF or CR; a line starting with ':' is a comment; "field:value" loses one space after
// the colon; a line without a colon is a field with an empty value; a blank line dispatches the event, unless its data is
// empty; an id containing NUL is ignored; retry accepts ASCII digits only; unknown fields are ignored. An event not
// finished by a blank line when the stream ends is discarded.
//
// Only Comments may be called concurrently with Next; the other methods belong to the goroutine that calls Next.
type SSEReader struct {
	r   io.Reader
	max int // the longest line, and the most data of one event

	buf        []byte // buffered input is buf[start:end]
	start, end int
	scan       int  // buf[start:scan] is known to hold no line terminator
	skipLF     bool // the last line ended with CR: a following LF belongs to it
	first      bool // the next line is the first of the stream (BOM check)
	empties    int  // consecutive empty reads
	readErr    error
	fatal      error

	data      []byte // the data buffer
	eventType []byte // the event type buffer
	idBuf     string // the last event ID buffer
	lastID    string // the last event ID string, set at dispatch
	lastType  string // the previous dispatched type, reused to avoid an allocation per event
	retry     time.Duration
	comments  atomic.Int64
}

// NewSSEReader returns a reader of the event stream r, bounded by MaxSSELineBytes.
func NewSSEReader(r io.Reader) *SSEReader { return NewSSEReaderSize(r, MaxSSELineBytes) }

// NewSSEReaderSize returns a reader of the event stream r that fails with ErrSSETooLong on a line, or an event's data,
// longer than max bytes. A max below 1 means MaxSSELineBytes.
func NewSSEReaderSize(r io.Reader, max int) *SSEReader {
	if max < 1 {
		max = MaxSSELineBytes
	}
	return &SSEReader{r: r, max: max, buf: make([]byte, min(4096, max+1)), first: true, lastType: "message"}
}

// Next blocks until the next event is dispatched and returns it. At the end of the stream it returns io.EOF (any
// unfinished event is discarded); it returns the underlying reader's error when reading fails, and ErrSSETooLong when the
// stream exceeds the reader's bound.
func (r *SSEReader) Next() (SSEEvent, error) {
	for {
		line, err := r.readLine()
		if err != nil {
			r.data, r.eventType = r.data[:0], r.eventType[:0]
			return SSEEvent{}, err
		}
		if len(line) == 0 {
			if ev, ok := r.dispatch(); ok {
				return ev, nil
			}
			continue
		}
		if err := r.processLine(line); err != nil {
			r.fatal = err
			return SSEEvent{}, err
		}
	}
}

// LastEventID returns the last event ID string: the id in force at the most recent blank line, even one that dispatched
// no event. A client resuming the stream sends it as the Last-Event-ID header.
func (r *SSEReader) LastEventID() string { return r.lastID }

// Retry returns the reconnection time of the most recent valid retry field, or 0 when the server sent none.
func (r *SSEReader) Retry() time.Duration { return r.retry }

// Comments returns the number of comment lines (such as ": keep-alive") read so far. It is safe to call concurrently
// with Next.
func (r *SSEReader) Comments() int { return int(r.comments.Load()) }

// dispatch ends the current event: it commits the last event ID and returns the event unless its data buffer is empty.
func (r *SSEReader) dispatch() (SSEEvent, bool) {
	r.lastID = r.idBuf
	if len(r.data) == 0 {
		r.eventType = r.eventType[:0]
		return SSEEvent{}, false
	}
	ev := SSEEvent{ID: r.lastID, Data: string(r.data[:len(r.data)-1])}
	switch {
	case len(r.eventType) == 0:
		ev.Event = "message"
	case string(r.eventType) == r.lastType:
		ev.Event = r.lastType
	default:
		r.lastType = string(r.eventType)
		ev.Event = r.lastType
	}
	r.data, r.eventType = r.data[:0], r.eventType[:0]
	return ev, true
}

// processLine interprets one non-empty line.
func (r *SSEReader) processLine(line []byte) error {
	if line[0] == ':' {
		r.comments.Add(1)
		return nil
	}
	field, value := line, []byte(nil)
	if i := bytes.IndexByte(line, ':'); i >= 0 {
		field, value = line[:i], line[i+1:]
		if len(value) > 0 && value[0] == ' ' {
			value = value[1:]
		}
	}
	switch string(field) {
	case "event":
		r.eventType = append(r.eventType[:0], value...)
	case "data":
		if len(r.data)+len(value)+1 > r.max {
			return ErrSSETooLong
		}
		r.data = append(r.data, value...)
		r.data = append(r.data, '\n')
	case "id":
		if bytes.IndexByte(value, 0) < 0 && string(value) != r.idBuf {
			r.idBuf = string(value)
		}
	case "retry":
		if len(value) > 0 && allDigits(value) {
			if ms, err := strconv.ParseInt(string(value), 10, 64); err == nil && ms <= int64(time.Duration(1<<63-1)/time.Millisecond) {
				r.retry = time.Duration(ms) * time.Millisecond
			}
		}
	}
	return nil
}

func allDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// readLine returns the next line without its terminator. The slice is valid until the next call. At the end of the
// input an unterminated last line is discarded and the read error (io.EOF) returned.
func (r *SSEReader) readLine() ([]byte, error) {
	if r.fatal != nil {
		return nil, r.fatal
	}
	for {
		if r.skipLF && r.start < r.end {
			if r.buf[r.start] == '\n' {
				r.start++
			}
			r.skipLF = false
			r.scan = r.start
		}
		if !r.skipLF {
			if line, ok := r.cutLine(); ok {
				if r.first {
					r.first = false
					line = bytes.TrimPrefix(line, []byte("\xEF\xBB\xBF"))
				}
				return line, nil
			}
			if r.fatal != nil {
				return nil, r.fatal
			}
		}
		if r.end-r.start > r.max {
			r.fatal = ErrSSETooLong
			return nil, r.fatal
		}
		if r.readErr != nil {
			return nil, r.readErr
		}
		r.fill()
	}
}

// cutLine takes a complete line off the buffer, if there is one.
func (r *SSEReader) cutLine() ([]byte, bool) {
	seg := r.buf[r.scan:r.end]
	i := bytes.IndexByte(seg, '\n')
	head := seg
	if i >= 0 {
		head = seg[:i]
	}
	if j := bytes.IndexByte(head, '\r'); j >= 0 {
		i = j
	}
	if i < 0 {
		r.scan = r.end
		return nil, false
	}
	stop := r.scan + i
	if stop-r.start > r.max {
		r.fatal = ErrSSETooLong
		return nil, false
	}
	line := r.buf[r.start:stop]
	r.skipLF = r.buf[stop] == '\r'
	r.start = stop + 1
	r.scan = r.start
	return line, true
}

// fill reads more input into the buffer, moving or growing it first when it is full.
func (r *SSEReader) fill() {
	if r.start > 0 {
		n := copy(r.buf, r.buf[r.start:r.end])
		r.scan -= r.start
		r.start, r.end = 0, n
	}
	if r.end == len(r.buf) {
		size := min(2*len(r.buf), r.max+1)
		if size <= len(r.buf) {
			size = len(r.buf) + 1 // cannot happen: a full buffer of max+1 bytes already failed the length check
		}
		grown := make([]byte, size)
		copy(grown, r.buf[:r.end])
		r.buf = grown
	}
	n, err := r.r.Read(r.buf[r.end:])
	r.end += n
	switch {
	case err != nil:
		r.readErr = err
	case n == 0:
		if r.empties++; r.empties >= 100 {
			r.readErr = io.ErrNoProgress
		}
	default:
		r.empties = 0
	}
}
