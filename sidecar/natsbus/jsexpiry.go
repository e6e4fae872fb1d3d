package natsbus

import (
	"errors"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// cursorExpired reports whether events after a resume cursor (the stream sequence after) may have been removed from the
// store, so that the subscriber gets an expired gap before what is still held. It costs one round trip.
//
// Within one subject, JetStream removes the oldest messages first: by max age, by a limit, and by a purge (Flovyn's
// server purges a workflow's subject about 30 s after the workflow ends). So on a replay of one subject — a generic
// stream — nothing after the cursor was removed exactly when the cursor's own message is still stored: the check
// asks for the subject's first message at or after the cursor's sequence, and the cursor has expired unless that is
// the cursor's message itself. A purge of one subject leaves the stream's first sequence where it was, so the
// stream-wide check below cannot see it. When the cursor's message is gone, JetStream cannot tell whether a later one
// went too (it keeps no record of what it removed), so the gap is reported: at worst a gap notice for nothing missed
// (when the removal stopped exactly at the cursor's message), never a silent hole.
//
// Other replays (a tenant's lifecycle events, across many subjects) compare the cursor with the stream's first
// sequence: a message after the cursor was removed when the stream now starts beyond the cursor's next sequence.
func (s *jsSub[T]) cursorExpired(after uint64) (bool, error) {
	if after > 0 && s.index == "" && !strings.ContainsAny(s.scan, "*>") {
		m, err := s.kind.stream.GetMsg(s.ctx, after, jetstream.WithGetMsgSubject(s.scan))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return true, nil // nothing of the subject is stored from the cursor on
		}
		if err != nil {
			return false, err
		}
		return m.Sequence != after, nil
	}
	info, err := s.kind.stream.Info(s.ctx)
	if err != nil {
		return false, err
	}
	first := info.State.FirstSeq
	return first > 1 && after+1 < first, nil
}
