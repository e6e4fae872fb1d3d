package natsbus

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/flovyn/eventhook/sidecar/bus"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The owner of a stream key, with jetstream (see owners.go for the rules).
//
// The per-workflow index already holds what is needed: for every lifecycle event of tenant T that names workflow W, an
// entry on flovyn.index.T.w.W (a task: .t.<task>). So the owner of key K is the tenant token of the first index entry on
// flovyn.index.*.*.K: one direct get, the same answer on every sidecar of the cluster, across restarts, for as long as
// the index keeps the entry (the events stream's retention), and no write on the publish path. A KV bucket would have
// needed a second write per lifecycle event, and a writer that every producer (Flovyn's server included) goes through.
//
// A stream feed asks the index once, when it first meets an event without a tenant. While no entry names the key, such
// events wait in the stream: the feed watches the index for the first entry (an ordered consumer from the start of the
// index, filtered to the key), and when it comes, the owner's subscriptions of the key are fed again from the stream
// after their last delivery, so they get the waiting events in stream order.

// ownerFilter is the index subject filter of every entry that names key, as a workflow or as a task.
func ownerFilter(key string) string { return IndexPrefix + "*.*." + key }

// ownerOfIndexSubject returns the tenant of an index subject flovyn.index.<tenant>.<w|t>.<id>.
func ownerOfIndexSubject(subject string) (uuid.UUID, bool) {
	rest, ok := strings.CutPrefix(subject, IndexPrefix)
	if !ok {
		return uuid.Nil, false
	}
	tenant, _, _ := strings.Cut(rest, ".")
	t, err := uuid.Parse(tenant)
	return t, err == nil && t != uuid.Nil
}

// ownerLookupTimeout bounds the index lookup a feed makes for a key's owner.
const ownerLookupTimeout = 2 * time.Second

// lookupOwner returns the owner of key: remembered, or read from the index. ok is false when no index entry names the
// key yet.
func (b *JetStream) lookupOwner(ctx context.Context, key string) (owner uuid.UUID, ok bool, err error) {
	if t, ok := b.owners.get(key); ok {
		return t, true, nil
	}
	ctx, cancel := context.WithTimeout(ctx, ownerLookupTimeout)
	defer cancel()
	m, err := b.index.GetMsg(ctx, 1, jetstream.WithGetMsgSubject(ownerFilter(key)))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return uuid.Nil, false, nil
	}
	if err != nil {
		return uuid.Nil, false, err
	}
	t, ok := ownerOfIndexSubject(m.Subject)
	if !ok {
		return uuid.Nil, false, nil
	}
	return b.owners.claim(key, t), true, nil
}

// headerTenant reads the tenant header of a stream message (see tenantHeader): has is false when there is none, valid
// false when it is not a non-nil UUID.
func headerTenant(h nats.Header) (tenant uuid.UUID, has, valid bool) {
	v := strings.TrimSpace(tenantHeader(h))
	if v == "" {
		return uuid.Nil, false, false
	}
	t, err := uuid.Parse(v)
	return t, true, err == nil && t != uuid.Nil
}

// ownerLocked returns the owner of the feed's key, asking the index the first time; uuid.Nil while unknown. The caller
// holds f.mu.
func (f *jsFeed) ownerLocked() uuid.UUID {
	if f.owner != uuid.Nil || f.looked {
		return f.owner
	}
	f.looked = true
	t, ok, err := f.b.lookupOwner(f.ctx, f.key)
	if err != nil {
		f.b.log.LogAttrs(f.ctx, slog.LevelDebug, "owner lookup failed; watching the index", slog.String("key", f.key),
			slog.Any("err", err))
	}
	if ok {
		f.owner = t
	}
	return f.owner
}

// untenantedTenants appends the tenants a live stream event without a tenant goes to (the owner, else the configured
// fallbacks), and holds it back when there are none. The caller holds f.mu.
func (f *jsFeed) untenantedTenants(dst []uuid.UUID) []uuid.UUID {
	if owner := f.ownerLocked(); owner != uuid.Nil {
		return append(dst, owner)
	}
	switch {
	case f.b.untenanted != uuid.Nil:
		f.b.stats.untenanted.Add(1)
		return append(dst, f.b.untenanted)
	case f.b.o.AcceptUntenanted:
		f.b.stats.untenanted.Add(1)
		for t := range f.tenants {
			dst = append(dst, t)
		}
		return dst
	}
	f.b.stats.dropUntenanted(f.subject, dropHeldNoTenant)
	f.holdBack()
	return dst
}

// untenantedFor reports whether a stored stream event without a tenant goes to tenant (a replay), holding it back when
// its owner is not known yet.
func (f *jsFeed) untenantedFor(tenant uuid.UUID) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if owner := f.ownerLocked(); owner != uuid.Nil {
		return owner == tenant
	}
	switch {
	case f.b.untenanted != uuid.Nil:
		return f.b.untenanted == tenant
	case f.b.o.AcceptUntenanted:
		return true
	}
	f.holdBack()
	return false
}

// holdBack notes that an event without a tenant waits for the key's owner, and starts watching the index for it. The
// caller holds f.mu.
func (f *jsFeed) holdBack() {
	f.unresolved = true
	if f.watching || f.ctx.Err() != nil {
		return
	}
	f.watching = true
	f.b.wg.Add(1)
	go f.watchOwner() // ends when the owner is known, or when the feed stops
}

// watchOwner waits for the first index entry that names the feed's key, and makes its tenant the owner.
func (f *jsFeed) watchOwner() {
	defer f.b.wg.Done()
	found := make(chan uuid.UUID, 1)
	name := f.b.index.CachedInfo().Config.Name
	var cc jetstream.ConsumeContext
	var cons jetstream.Consumer
	for attempt := 0; cc == nil; attempt++ {
		var err error
		cons, err = f.b.js.OrderedConsumer(f.ctx, name, jetstream.OrderedConsumerConfig{
			FilterSubjects: []string{ownerFilter(f.key)}, DeliverPolicy: jetstream.DeliverAllPolicy,
			InactiveThreshold: 10 * time.Second,
		})
		if err == nil {
			cc, err = cons.Consume(func(m jetstream.Msg) {
				if t, ok := ownerOfIndexSubject(m.Subject()); ok {
					select {
					case found <- t:
					default:
					}
				}
			}, jetstream.PullHeartbeat(time.Second), jetstream.PullExpiry(5*time.Second))
		}
		if err != nil {
			f.b.log.LogAttrs(f.ctx, slog.LevelDebug, "owner watch failed; retrying", slog.String("key", f.key), slog.Any("err", err))
			select {
			case <-time.After(min(time.Duration(attempt+1)*250*time.Millisecond, 5*time.Second)):
			case <-f.ctx.Done():
				return
			}
		}
	}
	defer func() {
		cc.Stop()
		f.b.deleteConsumer(name, cons)
	}()
	select {
	case t := <-found:
		f.resolve(t)
	case <-f.ctx.Done():
	}
}

// resolve makes tenant the owner of the feed's key. When events without a tenant were held back, the owner's topic of
// the key starts over at the feed's head and the owner's subscriptions are fed again from the stream after their last
// delivery: the held-back events reach them in stream order, and nothing they had comes twice.
func (f *jsFeed) resolve(tenant uuid.UUID) {
	tenant = f.b.owners.claim(f.key, tenant)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.owner != uuid.Nil {
		return
	}
	f.owner = tenant
	if !f.unresolved {
		return
	}
	f.unresolved = false
	if f.tenants[tenant] != nil {
		f.tenants[tenant] = f.b.stream.hub.ResetTopic(bus.TopicKey{Tenant: tenant, Stream: f.key}, f.head+1)
	}
	for s, t := range f.subs {
		if t == tenant {
			s.refeed()
		}
	}
}
