package natsbus

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"time"

	"github.com/flovyn/eventhook/sidecar/event"
	"github.com/flovyn/eventhook/subjects"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The per-workflow index.
//
// A late subscriber to a workflow (or task) must get its earlier events without scanning the tenant's history. The
// index is a stream of its own, <events_stream>_INDEX on flovyn.index.>: for each stored event with a workflow or task
// id, a small message on flovyn.index.<tenant>.w.<workflow> (and .t.<task>) holding the event's stream sequence.
// JetStream keeps a per-subject index, so reading one workflow's entries does not scan anything else.
//
// The index is written off the publish path, by the indexer: a durable consumer (IndexerName) on the events stream,
// shared by every sidecar of the cluster (each message goes to one of them), which writes the entries and acks each
// event once its entries are stored. So a publish costs one round trip, events that other producers publish straight
// onto NATS are indexed too, and the index survives restarts. The indexer's ack floor says how far the index is
// complete: a replay reads the index up to the floor and scans the tenant's subjects only after it — the few events
// the indexer has not reached yet.
//
// The indexer works in bursts, not per event: it waits for an event with one long pull request, lets the events
// that follow gather for indexBatchDelay, then takes them all with one pull, writes their entries in one go (the
// writes are flushed together and their acks come back together) and acks each event. Per event that is one message
// received and its entries sent, with no wake-up of its own; taking events one by one as they came cost a delivery,
// the index writes and an ack, each a round of wake-ups on both sides, for every event (about 40 % of the daemon's
// CPU at 1000 events/s: see BENCHMARKS.md). The index lags by indexBatchDelay at most, plus a round trip, and a late
// subscriber scans what it has not reached yet.
//
// Acks are explicit, one per event: with several sidecars sharing the consumer, an ack that covered every event
// before it (AckAll) would also cover the events another sidecar still indexes, and the ack floor would claim entries
// that are not stored yet. An event whose entries could not be written is nak'ed: redelivered, and the floor stays
// below it until it is indexed.

// IndexerName is the durable consumer that writes the per-workflow index. Sidecars of earlier versions used the
// durable eventhook-indexer, which acked once per burst (AckAll); the new consumer starts where that one's ack floor
// was, and the old one is left alone for those sidecars (remove it once none runs: nats consumer rm).
const IndexerName = "eventhook-indexer-2"

// oldIndexerName is the indexer of earlier versions (see IndexerName).
const oldIndexerName = "eventhook-indexer"

// The indexer's bursts.
const (
	// indexBatchDelay is how long the indexer lets events gather after the first of a burst.
	indexBatchDelay = 20 * time.Millisecond
	// indexBatch is the most events one pull takes; a full pull is followed by another at once.
	indexBatch = 500
	// indexWait bounds the long pull that waits for the first event of a burst; indexHeartbeat is its heartbeat,
	// which tells a pull lost with its connection.
	indexWait      = 10 * time.Second
	indexHeartbeat = 2 * time.Second
)

// indexSubject is the index subject of a workflow ("w") or task ("t").
func indexSubject(tenant, kind, id string) string {
	return IndexPrefix + tenant + "." + kind + "." + id
}

// indexerConfig is the configuration of the indexer consumer, starting after seq (0: from the start of the stream).
func (b *JetStream) indexerConfig(after uint64) jetstream.ConsumerConfig {
	cfg := jetstream.ConsumerConfig{
		Durable:       IndexerName,
		Description:   "eventhook: writes the per-workflow index " + b.index.CachedInfo().Config.Name,
		FilterSubject: subjects.AllEvents,
		AckPolicy:     jetstream.AckExplicitPolicy, // see the comment at the top of this file
		AckWait:       30 * time.Second,
		MaxAckPending: 20_000,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
	if after > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, after+1
	}
	return cfg
}

// startIndexer creates (or joins) the indexer consumer and runs it until the bus closes.
func (b *JetStream) startIndexer(ctx context.Context) error {
	after := uint64(0)
	if cons, err := b.js.Consumer(ctx, b.events.name, IndexerName); err == nil {
		// Joining: keep where it was created to start (neither can be updated).
		if c := cons.CachedInfo().Config; c.DeliverPolicy == jetstream.DeliverByStartSequencePolicy && c.OptStartSeq > 0 {
			after = c.OptStartSeq - 1
		}
	} else if old, err := b.js.Consumer(ctx, b.events.name, oldIndexerName); err == nil {
		// The first start after an upgrade: the entries up to the old indexer's floor are written.
		if info, err := old.Info(ctx); err == nil {
			after = info.AckFloor.Stream
		}
	}
	cfg := b.indexerConfig(after)
	cons, err := b.js.CreateOrUpdateConsumer(ctx, b.events.name, cfg)
	if err != nil {
		// A consumer made with other settings that cannot be updated: make it again. It then indexes the stream from
		// the start; entries written twice are deduplicated, or skipped by readers.
		b.log.Warn("recreating the indexer consumer", slog.Any("err", err))
		_ = b.js.DeleteConsumer(ctx, b.events.name, IndexerName)
		if cons, err = b.js.CreateOrUpdateConsumer(ctx, b.events.name, b.indexerConfig(0)); err != nil {
			return err
		}
	}
	b.indexer = cons
	b.wg.Add(1)
	go b.runIndexer(cons) // ends when Close cancels b.ctx
	return nil
}

// runIndexer indexes the events the consumer delivers, a burst at a time (see the comment at the top of this file),
// until the bus closes.
func (b *JetStream) runIndexer(cons jetstream.Consumer) {
	defer b.wg.Done()
	var msgs []jetstream.Msg
	for attempt := 0; b.ctx.Err() == nil; {
		// Wait for the first event of a burst: one pull request while there is nothing to index.
		ctx, cancel := context.WithTimeout(b.ctx, indexWait)
		first, err := cons.Fetch(1, jetstream.FetchContext(ctx), jetstream.FetchHeartbeat(indexHeartbeat))
		if err == nil {
			msgs, err = appendBatch(msgs[:0], first)
		}
		cancel()
		if b.ctx.Err() != nil {
			return
		}
		if err != nil && len(msgs) == 0 {
			b.log.LogAttrs(b.ctx, slog.LevelDebug, "indexer", slog.Any("err", err))
			attempt++
			if sleepCtx(b.ctx, min(time.Duration(attempt)*250*time.Millisecond, 2*time.Second)) != nil {
				return
			}
			continue
		}
		attempt = 0
		if len(msgs) == 0 {
			continue // the long pull expired: nothing to index
		}
		// Let the burst gather, then take it whole; a full pull means more are waiting.
		if sleepCtx(b.ctx, indexBatchDelay) != nil {
			return
		}
		for {
			n := len(msgs)
			more, err := cons.FetchNoWait(indexBatch)
			if err == nil {
				msgs, err = appendBatch(msgs, more)
			}
			if err != nil {
				b.log.LogAttrs(b.ctx, slog.LevelDebug, "indexer", slog.Any("err", err))
			}
			b.indexBurst(msgs)
			if err != nil || len(msgs)-n < indexBatch || b.ctx.Err() != nil {
				break
			}
			msgs = msgs[:0]
		}
	}
}

// appendBatch appends the messages of a pull to msgs, and returns the pull's error unless it only says there were
// no (more) messages.
func appendBatch(msgs []jetstream.Msg, batch jetstream.MessageBatch) ([]jetstream.Msg, error) {
	for m := range batch.Messages() {
		msgs = append(msgs, m)
	}
	if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) &&
		!errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
		return msgs, err
	}
	return msgs, nil
}

// sleepCtx waits for d, or until ctx ends (its error then).
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// indexed is an event whose index entries are being written.
type indexed struct {
	msg     jetstream.Msg
	futures [3]jetstream.PubAckFuture
	n       int
	failed  bool
}

// indexBurst writes the index entries of a burst of events, all of them asynchronously, then acks each event whose
// entries are stored and naks the others (redelivered, and written again). It returns when every event is acked or
// nak'ed, or when the bus closes.
func (b *JetStream) indexBurst(msgs []jetstream.Msg) {
	burst := make([]indexed, len(msgs))
	for i, msg := range msgs {
		p := &burst[i]
		p.msg = msg
		md, err := msg.Metadata()
		if err != nil {
			continue
		}
		tenant, _, err := subjects.ParseEvent(msg.Subject())
		e, derr := event.DecodeEvent(msg.Data())
		if err != nil || derr != nil {
			continue // not an event: nothing to index
		}
		for _, m := range indexMsgs(tenant, e, md.Sequence.Stream) {
			f, err := b.acks.publish(m)
			if err != nil {
				p.failed = true
				break
			}
			p.futures[p.n] = f
			p.n++
		}
	}
	for i := range burst {
		p := &burst[i]
		ok := !p.failed
		for _, f := range p.futures[:p.n] {
			select {
			case <-f.Ok():
			case <-f.Err():
				ok = false
			case <-b.ctx.Done():
				return
			}
		}
		if ok {
			_ = p.msg.Ack()
		} else {
			_ = p.msg.Nak()
		}
	}
}

// indexMsgs returns the index messages of the event of tenant stored at seq. Nats-Msg-Id makes a rewrite (a redelivered
// event) a duplicate.
func indexMsgs(tenant string, e *event.FlovynEvent, seq uint64) []*nats.Msg {
	var out []*nats.Msg
	var buf [3]event.IndexID
	for _, id := range e.AppendIndexIDs(buf[:0]) {
		kind := indexKind(id.Field)
		if kind == "" {
			continue
		}
		m := &nats.Msg{Subject: indexSubject(tenant, kind, id.ID.String()), Header: nats.Header{},
			Data: strconv.AppendUint(nil, seq, 10)}
		m.Header.Set(jetstream.MsgIDHeader, strconv.FormatUint(seq, 10)+"."+kind)
		out = append(out, m)
	}
	return out
}

// indexKind is the token of an id field in the index subjects ("w" workflow, "t" task), or "" for none.
func indexKind(f event.IDField) string {
	switch f {
	case event.WorkflowID:
		return "w"
	case event.TaskID:
		return "t"
	}
	return ""
}

// indexFloor returns the sequence up to which the index is complete: the indexer's ack floor.
func (b *JetStream) indexFloor(ctx context.Context) (uint64, error) {
	if b.indexer == nil {
		return 0, nil
	}
	info, err := b.indexer.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.AckFloor.Stream, nil
}
