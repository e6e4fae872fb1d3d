package bench

import (
	"context"
	"encoding/binary"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flovyn/eventhook/sidecar/event"
	"github.com/google/uuid"
)

// newUUID returns a random (version 4) UUID in its canonical lower-case form.
func newUUID() string { return string(appendUUID(nil)) }

// appendUUID appends a random (version 4) UUID in its canonical lower-case form.
func appendUUID(dst []byte) []byte {
	var b uuid.UUID
	binary.LittleEndian.PutUint64(b[:8], rand.Uint64())
	binary.LittleEndian.PutUint64(b[8:], rand.Uint64())
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return event.AppendUUID(dst, b)
}

// isUUID reports whether s has the canonical form of a UUID (any case).
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if c != '-' {
				return false
			}
		case '0' <= c && c <= '9', 'a' <= c && c <= 'f', 'A' <= c && c <= 'F':
		default:
			return false
		}
	}
	return true
}

// eventSpec says what events a publisher builds: their tenant and type, and so their NATS subject.
type eventSpec struct {
	tenant    string
	eventType string
	// workflows, when set, gives the events workflow ids (event n the n-th modulo their number) and a fresh task id
	// each, as Flovyn's task events have: the per-workflow index then has entries to write. Without them both ids are
	// null.
	workflows []string
}

// subject is the NATS subject of the events (flovyn.events.<tenant>.<type>).
func (s eventSpec) subject() string { return "flovyn.events." + s.tenant + "." + s.eventType }

// appendEvent appends one small, valid FlovynEvent with every field present and a fresh id, carrying seq and the send
// time (Unix nanoseconds) in its data, and returns the buffer and the id's offset in it (36 bytes).
func (s eventSpec) appendEvent(dst []byte, seq int64, sent time.Time) (out []byte, idAt int) {
	dst = append(dst, `{"id":"`...)
	idAt = len(dst)
	dst = appendUUID(dst)
	dst = append(dst, `","tenant_id":"`...)
	dst = append(dst, s.tenant...)
	if len(s.workflows) == 0 {
		dst = append(dst, `","workflow_execution_id":null,"task_execution_id":null,"event_type":"`...)
	} else {
		dst = append(dst, `","workflow_execution_id":"`...)
		dst = append(dst, s.workflows[uint64(seq)%uint64(len(s.workflows))]...)
		dst = append(dst, `","task_execution_id":"`...)
		dst = appendUUID(dst)
		dst = append(dst, `","event_type":"`...)
	}
	dst = append(dst, s.eventType...)
	dst = append(dst, `","source":"bench","data":{"seq":`...)
	dst = strconv.AppendInt(dst, seq, 10)
	dst = append(dst, `,"sent_ns":`...)
	dst = strconv.AppendInt(dst, sent.UnixNano(), 10)
	dst = append(dst, `},"timestamp_ms":`...)
	dst = strconv.AppendInt(dst, sent.UnixMilli(), 10)
	dst = append(dst, `,"correlation_id":null}`...)
	return dst, idAt
}

// msgID is the Nats-Msg-Id the sidecar would give the event whose id starts at idAt in ev: <tenant>:<id>.
func (s eventSpec) msgID(ev []byte, idAt int) string {
	return s.tenant + ":" + string(ev[idAt:idAt+36])
}

// appendBatch appends n events as NDJSON, numbered from seq0, all sent now.
func (s eventSpec) appendBatch(dst []byte, seq0 int64, n int) []byte {
	now := time.Now()
	for i := range n {
		dst, _ = s.appendEvent(dst, seq0+int64(i), now)
		dst = append(dst, '\n')
	}
	return dst
}

// eventMarks reads the seq and sent_ns the bench put in an event's data; ok is false when data has neither.
func eventMarks(data string) (seq, sentNs int64, ok bool) {
	seq, ok1 := intAfter(data, `"seq":`)
	sentNs, ok2 := intAfter(data, `"sent_ns":`)
	return seq, sentNs, ok1 && ok2
}

// intAfter parses the integer that follows key in b (spaces allowed in between).
func intAfter(s, key string) (int64, bool) {
	i := strings.Index(s, key)
	if i < 0 {
		return 0, false
	}
	s = strings.TrimLeft(s[i+len(key):], " ")
	var n int64
	digits := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + int64(c-'0')
		digits++
	}
	return n, digits > 0
}

// summary holds the percentiles of a set of latencies.
type summary struct {
	n             int
	p50, p99, max time.Duration
}

// summarize sorts lat in place and returns its percentiles (nearest rank).
func summarize(lat []time.Duration) summary {
	if len(lat) == 0 {
		return summary{}
	}
	slices.Sort(lat)
	return summary{n: len(lat), p50: percentile(lat, 0.50), p99: percentile(lat, 0.99), max: lat[len(lat)-1]}
}

// percentile returns the p-quantile of sorted latencies (nearest rank).
func percentile(sorted []time.Duration, p float64) time.Duration {
	i := int(p*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// median returns the median of vs (the lower middle for an even count).
func median(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	return s[(len(s)-1)/2]
}

// loopResult is the outcome of a closed-loop run, or of several merged.
type loopResult struct {
	units   int             // units (events) of the operations measured
	elapsed time.Duration   // from the start of the measured period to the end of its last operation
	lats    []time.Duration // latencies of the operations measured
	perSec  float64         // units per second (set by finish)
	lat     summary         // latency percentiles (set by finish)
}

// merge adds the operations of o to res.
func (res *loopResult) merge(o loopResult) {
	res.units += o.units
	res.elapsed += o.elapsed
	res.lats = append(res.lats, o.lats...)
}

// finish computes the throughput and the percentiles.
func (res *loopResult) finish() {
	if res.elapsed > 0 {
		res.perSec = float64(res.units) / res.elapsed.Seconds()
	}
	res.lat = summarize(res.lats)
}

// interleaved measures each of ops with closedLoop in turn (the first, the second, …, the first again, …) over rounds
// rounds that share dur, after one warmup of each in the first round, and returns their merged results: noise on a
// shared machine then falls on every op alike.
func interleaved(ctx context.Context, rounds, conc int, warmup, dur time.Duration, progress func(op, round int),
	ops ...func(ctx context.Context, worker int) (int, error)) ([]loopResult, error) {
	out := make([]loopResult, len(ops))
	for round := range rounds {
		for i, op := range ops {
			if progress != nil {
				progress(i, round)
			}
			w := time.Duration(0)
			if round == 0 {
				w = warmup
			}
			res, err := closedLoop(ctx, conc, w, dur/time.Duration(rounds), op)
			if err != nil {
				return nil, err
			}
			out[i].merge(res)
		}
	}
	for i := range out {
		out[i].finish()
	}
	return out, nil
}

// closedLoop runs op in conc workers, each calling it again as soon as it returns: unmeasured for warmup, then for
// dur. op returns how many units (events) it completed. The operations started within the measured period count: the
// result is their units per second, from the period's start to the end of the last of them, and their latencies. When
// none has finished by the end of the period, the workers go on until one has. The first error stops the run.
func closedLoop(parent context.Context, conc int, warmup, dur time.Duration, op func(ctx context.Context, worker int) (int, error)) (loopResult, error) {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	start := time.Now()
	from, stop := start.Add(warmup), start.Add(warmup+dur)
	lats := make([][]time.Duration, conc)
	units := make([]int, conc)
	ends := make([]time.Time, conc)
	errs := make([]error, conc)
	var counted atomic.Int64
	var wg sync.WaitGroup
	for w := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				t0 := time.Now()
				if (!t0.Before(stop) && counted.Load() > 0) || ctx.Err() != nil {
					return
				}
				n, err := op(ctx, w)
				t1 := time.Now()
				if err != nil {
					if ctx.Err() == nil {
						errs[w] = err
					}
					cancel()
					return
				}
				if !t0.Before(from) {
					lats[w] = append(lats[w], t1.Sub(t0))
					units[w] += n
					ends[w] = t1
					counted.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return loopResult{}, err
		}
	}
	if err := parent.Err(); err != nil {
		return loopResult{}, err
	}
	var res loopResult
	last := from
	for w := range conc {
		res.units += units[w]
		res.lats = append(res.lats, lats[w]...)
		if ends[w].After(last) {
			last = ends[w]
		}
	}
	res.elapsed = last.Sub(from)
	res.finish()
	return res, nil
}

// fixedRate calls op rate times a second for dur, each call in a goroutine of its own so that a slow call does not
// delay the next ones (an open loop), and returns the latencies of the calls. i numbers the calls from 0. The first
// error ends the run.
func fixedRate(ctx context.Context, rate int, dur time.Duration, op func(ctx context.Context, i int) error) (summary, int, error) {
	n := max(1, int(float64(rate)*dur.Seconds()))
	interval := time.Second / time.Duration(rate)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	lat := make([]time.Duration, n)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	start := time.Now()
	sent := 0
	for i := range n {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-ctx.Done():
			}
		}
		if ctx.Err() != nil {
			break
		}
		sent++
		wg.Add(1)
		go func() {
			defer wg.Done()
			t0 := time.Now()
			err := op(ctx, i)
			lat[i] = time.Since(t0)
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
				cancel()
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return summary{}, sent, firstErr
	}
	if err := ctx.Err(); err != nil {
		return summary{}, sent, err
	}
	return summarize(lat[:sent]), sent, nil
}

// tokenSpec says what generic stream events a publisher builds: LLM tokens of one workflow of a tenant, one per
// request, as an LLM streams them today.
type tokenSpec struct {
	tenant   string
	workflow string
	task     string
}

// subject is the NATS subject of the tokens (flovyn.streams.workflow.<workflow>).
func (s tokenSpec) subject() string { return "flovyn.streams.workflow." + s.workflow }

// appendToken appends one token StreamEvent numbered seq, sent at sent, in Flovyn's camelCase wire format.
func (s tokenSpec) appendToken(dst []byte, seq int64, sent time.Time) []byte {
	dst = append(dst, `{"workflowExecutionId":"`...)
	dst = append(dst, s.workflow...)
	dst = append(dst, `","taskExecutionId":"`...)
	dst = append(dst, s.task...)
	dst = append(dst, `","sequence":`...)
	dst = strconv.AppendInt(dst, seq%(1<<31), 10)
	dst = append(dst, `,"type":"TOKEN","payload":" hello","timestampMs":`...)
	dst = strconv.AppendInt(dst, sent.UnixMilli(), 10)
	return append(dst, '}')
}
