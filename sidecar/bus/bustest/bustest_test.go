package bustest_test

import (
	"context"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/flovyn/eventhook/sidecar/bus"
	"github.com/flovyn/eventhook/sidecar/bus/bustest"
	"github.com/flovyn/eventhook/sidecar/event"
)

// TestWakeUpCatchesAWrapperThatDropsIt: a bus whose subscriptions wrap the memory backend's without passing SetNotify
// on fails bustest.WakeUp (its readers would wait for the next heartbeat), and the memory backend itself passes.
func TestWakeUpCatchesAWrapperThatDropsIt(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name     string
		wrap     bool
		wantFail bool
	}{{"memory", false, false}, {"wrapper without SetNotify", true, true}} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var b bus.Bus = bus.NewMemory(bus.MemoryOptions{})
			defer b.Close()
			if c.wrap {
				b = deafBus{b}
			}
			r := &recorder{TB: t}
			done := make(chan struct{})
			go func() { // ends when WakeUp returns or fails
				defer close(done)
				bustest.WakeUp(r, b)
			}()
			<-done
			if got := r.failed.Load(); got != c.wantFail {
				t.Fatalf("WakeUp failed = %v; want %v", got, c.wantFail)
			}
		})
	}
}

// deafBus wraps the subscriptions of a bus in deafSub.
type deafBus struct{ bus.Bus }

func (b deafBus) SubscribeEvents(ctx context.Context, p event.EventPattern, from bus.Start) (bus.Subscription[event.FlovynEvent], error) {
	s, err := b.Bus.SubscribeEvents(ctx, p, from)
	return deafSub[event.FlovynEvent]{s}, err
}

// deafSub is a wrapping Subscription that forgets to pass SetNotify on.
type deafSub[T any] struct{ bus.Subscription[T] }

func (deafSub[T]) SetNotify(func()) {}

// recorder is a testing.TB that records a failure instead of failing the test; Fatal ends the calling goroutine.
type recorder struct {
	testing.TB
	failed atomic.Bool
}

func (r *recorder) Fail()                 { r.failed.Store(true) }
func (r *recorder) FailNow()              { r.failed.Store(true); runtime.Goexit() }
func (r *recorder) Failed() bool          { return r.failed.Load() }
func (r *recorder) Error(args ...any)     { r.Fail() }
func (r *recorder) Errorf(string, ...any) { r.Fail() }
func (r *recorder) Fatal(args ...any)     { r.FailNow() }
func (r *recorder) Fatalf(string, ...any) { r.FailNow() }
