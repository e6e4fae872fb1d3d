package natsbus

import (
	"context"
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
// The index is written off the publish path, by the indexer: a durable consumer (eventhook-indexer) on the events stream,
// shared by every sidecar of the cluster (each message goes to one of them), which writes the entries and acks the event
// once they are stored. So a publish costs one round trip, events that other producers publish straight onto NATS are
// indexed too, and the index survives restarts. The indexer's ack floor says how far the index is complete: a replay
// reads the index up to the floor and scans the tenant's subjects only after it — the few events the indexer has not
// reached yet.

// IndexerName is the durable consumer that writes the per-workflow index.
const IndexerName = "eventhook-indexer"

// indexSubject is the index subject of a workflow ("w") or task ("t").
func indexSubject(tenant, kind, id string) string {
	return IndexPrefix + tenant + "." + kind + "." + id
}

// startIndexer creates (or joins) the indexer consumer and runs it until the bus closes.
func (b *JetStream) startIndexer(ctx context.Context) error {
	cfg := jetstream.ConsumerConfig{
		Durable:       IndexerName,
		Description:   "eventhook: writes the per-workflow index " + b.index.CachedInfo().Config.Name,
		FilterSubject: subjects.AllEvents,
		AckPolicy:     jetstream.AckAllPolicy, // one ack per burst covers every event before it
		AckWait:       30 * time.Second,
		MaxAckPending: 20_000,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
	cons, err := b.js.CreateOrUpdateConsumer(ctx, b.events.name, cfg)
	if err != nil {
		// A consumer made with other settings that cannot be updated (an earlier version's): make it again. It then
		// indexes the stream from the start; entries written twice are deduplicated, or skipped by readers.
		b.log.Warn("recreating the indexer consumer", slog.Any("err", err))
		_ = b.js.DeleteConsumer(ctx, b.events.name, IndexerName)
		if cons, err = b.js.CreateOrUpdateConsumer(ctx, b.events.name, cfg); err != nil {
			return err
		}
	}
	b.indexer = cons
	pending := make(chan indexing, 4096)
	cc, err := cons.Consume(func(msg jetstream.Msg) { b.indexOne(msg, pending) },
		jetstream.PullMaxMessages(1000), jetstream.PullExpiry(5*time.Second), jetstream.PullHeartbeat(time.Second),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			b.log.LogAttrs(b.ctx, slog.LevelDebug, "indexer", slog.Any("err", err))
		}))
	if err != nil {
		return err
	}
	b.indexerStop = cc
	b.wg.Add(1)
	go b.ackIndexed(pending) // ends when Close cancels b.ctx
	return nil
}

// indexing is an event whose index entries are being written.
type indexing struct {
	msg     jetstream.Msg
	seq     uint64
	futures []jetstream.PubAckFuture
	failed  bool
}

// indexOne publishes the index entries of one event, asynchronously, and queues the event, in stream order, for
// ackIndexed, which acks it once its entries (and those of every event before it) are stored.
func (b *JetStream) indexOne(msg jetstream.Msg, pending chan<- indexing) {
	md, err := msg.Metadata()
	if err != nil {
		return
	}
	p := indexing{msg: msg, seq: md.Sequence.Stream}
	tenant, _, err := subjects.ParseEvent(msg.Subject())
	e, derr := event.DecodeEvent(msg.Data())
	if err == nil && derr == nil { // not an event: nothing to index
		for _, m := range indexMsgs(tenant, e, p.seq) {
			f, err := b.js.PublishMsgAsync(m)
			if err != nil {
				p.failed = true
				break
			}
			p.futures = append(p.futures, f)
		}
	}
	select {
	case pending <- p:
	case <-b.ctx.Done():
	}
}

// ackIndexed acks indexed events, once per burst (the consumer acks every event up to the one acked). After a failed
// write it acks nothing until the failed event, redelivered, is indexed: an ack must never cover a missing entry.
func (b *JetStream) ackIndexed(pending <-chan indexing) {
	defer b.wg.Done()
	var last jetstream.Msg // indexed, with every event before it, and not acked yet
	n := 0
	var blockedAt uint64 // the failed event we wait for; 0 when none
	for {
		var p indexing
		select {
		case p = <-pending:
		case <-b.ctx.Done():
			return
		}
		ok := !p.failed
		for _, f := range p.futures {
			select {
			case <-f.Ok():
			case <-f.Err():
				ok = false
			case <-b.ctx.Done():
				return
			}
		}
		switch {
		case !ok:
			_ = p.msg.Nak() // redelivered, and written again
			if blockedAt == 0 {
				blockedAt = p.seq
				last, n = nil, 0
			}
			continue
		case blockedAt != 0 && p.seq != blockedAt:
			continue // not acked: redelivered after AckWait, once the failed one is through
		}
		blockedAt = 0
		last = p.msg
		if n++; n >= 256 || len(pending) == 0 {
			_ = last.Ack()
			last, n = nil, 0
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
