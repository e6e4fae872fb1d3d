package natsbus

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// dropLogEvery is how often a reason to drop a message received from NATS is logged at most.
const dropLogEvery = time.Minute

// busStats counts what a NATS-fed bus drops on ingress, for the metrics, and logs it: at warn, with the subject and the
// reason, at most one line per reason per dropLogEvery, each saying how many messages were dropped for that reason
// since the line before. A producer publishing straight onto NATS sees why its messages never arrive.
type busStats struct {
	invalid    atomic.Uint64 // messages on our subjects that are not valid events
	untenanted atomic.Uint64 // stream events without a tenant whose workflow's tenant is not known
	resent     atomic.Uint64 // publish requests whose unacked lifecycle events were sent again

	log   *slog.Logger
	now   func() time.Time // nil: time.Now (tests set a clock)
	mu    sync.Mutex
	lines map[string]*dropLine // by reason
}

// dropLine is the log state of one reason.
type dropLine struct {
	at    time.Time // of the last line
	since uint64    // dropped since then, not logged
}

// Reasons a message received from NATS is not delivered.
const (
	dropNotEvent     = "not a valid event"
	dropNotUTF8      = "not valid UTF-8"
	dropOtherTenant  = "its body names another tenant or type than its subject"
	dropBadHeader    = "its tenant header is not a tenant id"
	dropBadLegacy    = "a legacy lifecycle payload that is not a valid lifecycle event"
	dropWrongKey     = "its body names another stream than its subject"
	dropNoTenant     = "a stream event without a tenant, and no lifecycle event names its workflow yet"
	dropHeldNoTenant = dropNoTenant + ": held until one does"
)

// dropInvalid counts and logs a message dropped as invalid.
func (s *busStats) dropInvalid(subject, reason string) {
	s.invalid.Add(1)
	s.report(subject, reason)
}

// dropUntenanted counts and logs a stream event without a known tenant (dropped, or held back for its owner).
func (s *busStats) dropUntenanted(subject, reason string) {
	s.untenanted.Add(1)
	s.report(subject, reason)
}

// report logs reason for subject unless a line for reason was written less than dropLogEvery ago.
func (s *busStats) report(subject, reason string) {
	if s.log == nil {
		return
	}
	now := time.Now()
	if s.now != nil {
		now = s.now()
	}
	s.mu.Lock()
	if s.lines == nil {
		s.lines = map[string]*dropLine{}
	}
	l := s.lines[reason]
	if l == nil {
		l = &dropLine{}
		s.lines[reason] = l
	}
	l.since++
	if !l.at.IsZero() && now.Sub(l.at) < dropLogEvery {
		s.mu.Unlock()
		return
	}
	n := l.since
	l.at, l.since = now, 0
	s.mu.Unlock()
	s.log.LogAttrs(context.Background(), slog.LevelWarn, "message from NATS not delivered", slog.String("subject", subject),
		slog.String("reason", reason), slog.Uint64("count", n))
}
