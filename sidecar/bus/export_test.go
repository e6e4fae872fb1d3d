package bus

import "time"

// Hooks into the internals for the external tests of this package (package bus_test), which run the contract suite of
// bustest and so cannot be internal: bustest imports bus.

// EventsEpoch returns the epoch of the bus' lifecycle feeds.
func (b *Memory) EventsEpoch() uint64 { return b.events.epoch }

// EventBytes returns the bytes the bus' lifecycle rings hold, as the hub counts them.
func (b *Memory) EventBytes() int64 { return b.events.bytes.Load() }

// Broadcast returns o with every subscriber of a tenant in one bucket, as the original design's per-tenant broadcast.
func Broadcast(o MemoryOptions) MemoryOptions {
	o.broadcast = true
	return o
}

// Cleanup removes the idle rings as of now, as the janitor does.
func (b *Memory) Cleanup(now time.Time) int { return b.cleanup(now) }
