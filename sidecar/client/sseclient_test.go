package client

import (
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// sseReadAll reads every event of input, then the final error.
func sseReadAll(r *SSEReader) ([]SSEEvent, error) {
	var evs []SSEEvent
	for {
		ev, err := r.Next()
		if err != nil {
			return evs, err
		}
		evs = append(evs, ev)
	}
}

func TestSSEReaderParsing(t *testing.T) {
	tests := []struct {
		name     string
		input    string
		want     []SSEEvent
		lastID   string
		retry    time.Duration
		comments int
	}{
		{
			name:  "spec example: multi-line data",
			input: "data: YHOO\ndata: +2\ndata: 10\n\n",
			want:  []SSEEvent{{Event: "message", Data: "YHOO\n+2\n10"}},
		},
		{
			name: "spec example: comment, id persists, empty id resets",
			input: ": test stream\n\ndata: first event\nid: 1\n\n" +
				"data:second event\nid\n\ndata:  third event\n\n",
			want: []SSEEvent{
				{ID: "1", Event: "message", Data: "first event"},
				{ID: "", Event: "message", Data: "second event"},
				{ID: "", Event: "message", Data: " third event"},
			},
			comments: 1,
		},
		{
			name:  "spec example: data with no colon, trailing event not finished",
			input: "data\n\ndata\ndata\n\ndata:",
			want:  []SSEEvent{{Event: "message", Data: ""}, {Event: "message", Data: "\n"}},
		},
		{
			name:  "spec example: one optional space removed",
			input: "data:test\n\ndata: test\n\n",
			want:  []SSEEvent{{Event: "message", Data: "test"}, {Event: "message", Data: "test"}},
		},
		{
			name:   "CR line endings",
			input:  "event: token\rdata: a\rdata: b\rid: 7\r\r",
			want:   []SSEEvent{{ID: "7", Event: "token", Data: "a\nb"}},
			lastID: "7",
		},
		{
			name:  "CRLF line endings",
			input: "event: token\r\ndata: a\r\ndata: b\r\n\r\n",
			want:  []SSEEvent{{Event: "token", Data: "a\nb"}},
		},
		{
			name:  "mixed line endings",
			input: "data: a\r\ndata: b\rdata: c\n\r\ndata: d\r\r",
			want:  []SSEEvent{{Event: "message", Data: "a\nb\nc"}, {Event: "message", Data: "d"}},
		},
		{
			name:  "BOM at start skipped",
			input: "\xEF\xBB\xBFdata: x\n\n",
			want:  []SSEEvent{{Event: "message", Data: "x"}},
		},
		{
			name:  "BOM only at start: a second one is part of the field name",
			input: "\xEF\xBB\xBFdata: x\n\n\xEF\xBB\xBFdata: y\n\n",
			want:  []SSEEvent{{Event: "message", Data: "x"}},
		},
		{
			name:     "comments are counted, not dispatched",
			input:    ": keep-alive\n:\n: keep-alive\ndata: x\n\n: keep-alive\n",
			want:     []SSEEvent{{Event: "message", Data: "x"}},
			comments: 4,
		},
		{
			name:   "id with NUL ignored",
			input:  "id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n",
			want:   []SSEEvent{{ID: "1", Event: "message", Data: "a"}, {ID: "1", Event: "message", Data: "b"}},
			lastID: "1",
		},
		{
			name:   "id updated by an event without data",
			input:  "id: 1\ndata: a\n\nid: 5\n\n",
			want:   []SSEEvent{{ID: "1", Event: "message", Data: "a"}},
			lastID: "5",
		},
		{
			name:   "id not committed without a blank line",
			input:  "id: 1\ndata: a\n\nid: 5\n",
			want:   []SSEEvent{{ID: "1", Event: "message", Data: "a"}},
			lastID: "1",
		},
		{
			name:  "event type does not persist",
			input: "event: lifecycle\ndata: a\n\ndata: b\n\nevent: gap\n\ndata: c\n\n",
			want: []SSEEvent{
				{Event: "lifecycle", Data: "a"}, {Event: "message", Data: "b"}, {Event: "message", Data: "c"},
			},
		},
		{
			name:  "retry digits only",
			input: "retry: 1500\n\nretry: 2s\n\nretry: -1\n\nretry:\n\nretry: 1 0\n\ndata: x\n\n",
			want:  []SSEEvent{{Event: "message", Data: "x"}},
			retry: 1500 * time.Millisecond,
		},
		{
			name:  "retry overflow ignored",
			input: "retry: 250\nretry: 99999999999999999999999\n\n",
			retry: 250 * time.Millisecond,
		},
		{
			name:  "field names are case-sensitive",
			input: "Data: x\nEVENT: y\nID: 9\ndata: z\n\n",
			want:  []SSEEvent{{Event: "message", Data: "z"}},
		},
		{
			name:  "unknown fields ignored",
			input: "foo: bar\ndata: x\nfoo\n\n",
			want:  []SSEEvent{{Event: "message", Data: "x"}},
		},
		{
			name:  "data without trailing blank line at EOF not dispatched",
			input: "data: a\n\ndata: b\n",
			want:  []SSEEvent{{Event: "message", Data: "a"}},
		},
		{
			name:  "unterminated last line discarded",
			input: "data: a\n\ndata: b",
			want:  []SSEEvent{{Event: "message", Data: "a"}},
		},
		{
			name:  "value keeps colons and later spaces",
			input: "data:  {\"a\": \"b:c\"} \n\n",
			want:  []SSEEvent{{Event: "message", Data: ` {"a": "b:c"} `}},
		},
		{
			name:  "empty event name is message",
			input: "event:\ndata: x\n\n",
			want:  []SSEEvent{{Event: "message", Data: "x"}},
		},
		{
			name:   "gap frame",
			input:  "retry: 250\n\nid: 42\nevent: gap\ndata: {\"reason\":\"lagged\",\"missed\":12}\n\n",
			want:   []SSEEvent{{ID: "42", Event: "gap", Data: `{"reason":"lagged","missed":12}`}},
			lastID: "42",
			retry:  250 * time.Millisecond,
		},
		{name: "empty stream", input: ""},
	}
	for _, tt := range tests {
		// Each input is read whole, one byte at a time (every line split across reads, CR and LF in separate reads),
		// and in odd-sized pieces.
		readers := map[string]func(string) io.Reader{
			"whole":    func(s string) io.Reader { return strings.NewReader(s) },
			"onebyte":  func(s string) io.Reader { return iotest.OneByteReader(strings.NewReader(s)) },
			"halfread": func(s string) io.Reader { return iotest.HalfReader(strings.NewReader(s)) },
		}
		for rname, mk := range readers {
			t.Run(tt.name+"/"+rname, func(t *testing.T) {
				r := NewSSEReader(mk(tt.input))
				got, err := sseReadAll(r)
				if !errors.Is(err, io.EOF) {
					t.Fatalf("Next() error = %v; want io.EOF", err)
				}
				if !reflect.DeepEqual(got, tt.want) {
					t.Errorf("events = %q; want %q", got, tt.want)
				}
				if r.LastEventID() != tt.lastID {
					t.Errorf("LastEventID() = %q; want %q", r.LastEventID(), tt.lastID)
				}
				if r.Retry() != tt.retry {
					t.Errorf("Retry() = %v; want %v", r.Retry(), tt.retry)
				}
				if r.Comments() != tt.comments {
					t.Errorf("Comments() = %d; want %d", r.Comments(), tt.comments)
				}
				if _, err := r.Next(); !errors.Is(err, io.EOF) {
					t.Errorf("Next() after the end = %v; want io.EOF", err)
				}
			})
		}
	}
}

func TestSSEReaderLimits(t *testing.T) {
	tests := []struct {
		name    string
		input   string
		max     int
		want    []SSEEvent
		wantErr error
	}{
		{name: "line at the limit", input: "data: 12345\n\n", max: 11, want: []SSEEvent{{Event: "message", Data: "12345"}},
			wantErr: io.EOF},
		{name: "line over the limit", input: "data: 123456\n\n", max: 11, wantErr: ErrSSETooLong},
		{name: "unterminated line over the limit", input: "data: " + strings.Repeat("x", 100), max: 11,
			wantErr: ErrSSETooLong},
		{name: "comment over the limit", input: ":" + strings.Repeat("x", 50) + "\ndata: x\n\n", max: 11,
			wantErr: ErrSSETooLong},
		{name: "event data over the limit", input: "data: 1234\ndata: 1234\ndata: 1234\n\n", max: 11,
			wantErr: ErrSSETooLong},
		{name: "events under the limit, one after another", max: 11,
			input: "data: 1234\n\ndata: 1234\n\ndata: 1234\n\n", wantErr: io.EOF,
			want: []SSEEvent{{Event: "message", Data: "1234"}, {Event: "message", Data: "1234"}, {Event: "message", Data: "1234"}}},
		{name: "default limit, a 1 MiB line", input: "data: " + strings.Repeat("x", 1<<20) + "\n\n",
			want: []SSEEvent{{Event: "message", Data: strings.Repeat("x", 1<<20)}}, wantErr: io.EOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewSSEReaderSize(strings.NewReader(tt.input), tt.max)
			got, err := sseReadAll(r)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Next() error = %v; want %v", err, tt.wantErr)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("events = %.60q; want %.60q", got, tt.want)
			}
			if _, err := r.Next(); !errors.Is(err, tt.wantErr) {
				t.Errorf("Next() again = %v; want the same error %v", err, tt.wantErr)
			}
		})
	}
}

func TestSSEReaderReadError(t *testing.T) {
	boom := errors.New("connection reset")
	r := NewSSEReader(io.MultiReader(strings.NewReader("id: 3\ndata: a\n\ndata: b\n"), iotest.ErrReader(boom)))
	got, err := sseReadAll(r)
	if !errors.Is(err, boom) {
		t.Fatalf("Next() error = %v; want %v", err, boom)
	}
	if want := []SSEEvent{{ID: "3", Event: "message", Data: "a"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("events = %q; want %q", got, want)
	}
	if r.LastEventID() != "3" {
		t.Errorf("LastEventID() = %q; want %q", r.LastEventID(), "3")
	}
}

func TestSSEReaderNoProgress(t *testing.T) {
	r := NewSSEReader(sseEmptyReader{})
	if _, err := r.Next(); !errors.Is(err, io.ErrNoProgress) {
		t.Fatalf("Next() error = %v; want io.ErrNoProgress", err)
	}
}

type sseEmptyReader struct{}

func (sseEmptyReader) Read([]byte) (int, error) { return 0, nil }

// TestSSEReaderIncremental checks that Next returns an event as soon as its blank line arrives, without waiting for more
// input.
func TestSSEReaderIncremental(t *testing.T) {
	pr, pw := io.Pipe()
	defer pr.Close()
	r := NewSSEReader(pr)
	done := make(chan struct{})
	go func() { // ends when the test's writes are done
		defer close(done)
		for _, s := range []string{"data: a\n", "\n", ": keep-alive\r", "\ndata: b\r", "\r"} {
			if _, err := pw.Write([]byte(s)); err != nil {
				return
			}
		}
	}()
	for _, want := range []string{"a", "b"} {
		ev, err := r.Next()
		if err != nil || ev.Data != want {
			t.Fatalf("Next() = %q, %v; want %q", ev.Data, err, want)
		}
	}
	<-done
	if r.Comments() != 1 {
		t.Errorf("Comments() = %d; want 1", r.Comments())
	}
	pw.Close()
	if _, err := r.Next(); !errors.Is(err, io.EOF) {
		t.Errorf("Next() at the end = %v; want io.EOF", err)
	}
}

func TestSSEReaderAllocs(t *testing.T) {
	const frame = "id: 1-42\nevent: token\ndata: hello\n\n"
	input := strings.Repeat(frame, 1000)
	var sr strings.Reader
	allocs := testing.AllocsPerRun(20, func() {
		sr.Reset(input)
		r := NewSSEReader(&sr)
		for {
			if _, err := r.Next(); err != nil {
				break
			}
		}
	})
	// One string per event for its data; the id and the event type are shared while they do not change.
	if perEvent := allocs / 1000; perEvent > 1.1 {
		t.Errorf("allocations per event = %.2f; want at most 1.1", perEvent)
	}
}

func BenchmarkSSEReader(b *testing.B) {
	input := strings.Repeat("id: 1-42\nevent: lifecycle\ndata: {\"id\":\"3f0c2b1e-8a4d-4c61-9f0e-2d7b5a9c00e1\",\"event_type\":\"task.completed\"}\n\n", 1000)
	var sr strings.Reader
	b.SetBytes(int64(len(input)))
	b.ReportAllocs()
	for b.Loop() {
		sr.Reset(input)
		r := NewSSEReader(&sr)
		for {
			if _, err := r.Next(); err != nil {
				break
			}
		}
	}
}
