package bus

import (
	"time"

	"github.com/google/uuid"
)

// DedupTable remembers the event ids of a topic for the dedup window, oldest first in order[head:]. The zero value is
// empty and ready; it is not safe for concurrent use (the hub uses it under the topic's lock).
type DedupTable struct {
	ids   map[uuid.UUID]uint64
	order []dedupRec
	head  int
}

type dedupRec struct {
	id  uuid.UUID
	seq uint64
	at  time.Time
}

// Seen forgets what is older than the window and returns the sequence of id when it is still remembered.
func (d *DedupTable) Seen(id uuid.UUID, now time.Time, window time.Duration) (uint64, bool) {
	for d.head < len(d.order) && now.Sub(d.order[d.head].at) >= window {
		d.forgetOldest()
	}
	seq, ok := d.ids[id]
	return seq, ok
}

func (d *DedupTable) forgetOldest() {
	delete(d.ids, d.order[d.head].id)
	d.order[d.head] = dedupRec{}
	d.head++
	if d.head == len(d.order) {
		d.order, d.head = d.order[:0], 0
	} else if d.head >= 1024 && d.head > len(d.order)/2 {
		n := copy(d.order, d.order[d.head:])
		d.order, d.head = d.order[:n], 0
	}
}

// Forget forgets id at once (a publish that failed: its retry must go through).
func (d *DedupTable) Forget(id uuid.UUID) { delete(d.ids, id) }

// Add remembers id, forgetting the oldest ids beyond limit.
func (d *DedupTable) Add(id uuid.UUID, seq uint64, now time.Time, limit int) {
	if d.ids == nil {
		d.ids = make(map[uuid.UUID]uint64)
	}
	if limit > 0 && len(d.order)-d.head >= limit {
		d.forgetOldest()
	}
	d.ids[id] = seq
	d.order = append(d.order, dedupRec{id: id, seq: seq, at: now})
}
