package natsbus

import (
	"cmp"
	"time"

	"github.com/flovyn/eventhook/sidecar/bus"
	"github.com/flovyn/eventhook/sidecar/event"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
)

// Options configure a NATS backend: NewCore (core NATS) and NewJetStream read these and nothing else. The
// daemon fills them in from its configuration (the nats, jetstream, memory, events and streams sections).
type Options struct {
	// Conn is the connection: an embedded server or an external cluster.
	Conn ConnOptions
	// Streams names and sizes the JetStream streams; only NewJetStream reads it.
	Streams StreamOptions
	// Feed holds the settings every backend shares: the sizes of the live rings, their byte bound, the dedup window,
	// and the encoders of the SSE frames shared by every subscriber.
	Feed bus.FeedOptions
	// TenantKey is the key under which every lifecycle event written to NATS carries its tenant (tenant_id or org_id).
	TenantKey event.TenantKey
	// DefaultSource is the source given to a lifecycle event received from NATS without one (default "system").
	DefaultSource string
	// AcceptUntenanted delivers a stream event that carries no tenant to the owner of its key (see owners.go).
	AcceptUntenanted bool
	// UntenantedTenant, when not nil, receives every stream event that carries no tenant (and has no owner).
	UntenantedTenant uuid.UUID
	// Linger keeps a NATS feed (and its ring) open this long after its last subscriber leaves, so a reconnecting client
	// resumes from memory (0: 30s; negative: close at once).
	Linger time.Duration

	// feedHook, when set, runs before a feed hands a message to the hub. Tests use it to make the live feed lag
	// behind the store.
	feedHook func()
	// firstSend, when set, gives the message a publish sends first (a resend sends the original). Tests use it to
	// lose first sends, as a stream leader that dies does.
	firstSend func(*nats.Msg) *nats.Msg
}

// ConnOptions is the NATS connection: an embedded server (development) or an external cluster (production).
type ConnOptions struct {
	// Embedded runs a NATS server with JetStream in the process; URLs are then ignored.
	Embedded bool
	// EmbeddedListen is the embedded server's client address ("" for in-process clients only; port -1 picks a free
	// one).
	EmbeddedListen string
	// StoreDir is the embedded server's JetStream storage directory.
	StoreDir string
	// SyncAlways makes the embedded server fsync every write.
	SyncAlways bool
	// URLs are the external cluster's servers.
	URLs []string
	// CredsFile is a NATS credentials file (exclusive with Token).
	CredsFile string
	// Token is a NATS authentication token (exclusive with CredsFile).
	Token string
	// TLS is the client TLS configuration for the external cluster.
	TLS TLSOptions
	// ConnectTimeout bounds a connection attempt, and the embedded server's start (0: DefaultConnectTimeout).
	ConnectTimeout time.Duration
}

// TLSOptions is a client TLS configuration: a CA to verify the servers and an optional client certificate.
type TLSOptions struct {
	// CAFile is a PEM bundle of the CAs that sign the servers' certificates.
	CAFile string
	// CertFile is the client certificate (PEM); it needs KeyFile.
	CertFile string
	// KeyFile is the client certificate's private key (PEM).
	KeyFile string
}

// StreamOptions names and sizes the JetStream streams of the jetstream backend; a zero field means its default (see
// the constants). The duplicate window of the streams is Options.Feed.DedupWindow.
type StreamOptions struct {
	// EventsStream is the lifecycle events stream on flovyn.events.>; its index stream is named after it.
	EventsStream string
	// StreamsStream is the generic streams stream on flovyn.streams.workflow.>.
	StreamsStream string
	// StreamsStorage is the storage the generic streams stream is created with: "memory" or "file".
	StreamsStorage string
	// Replicas is the replication factor of the streams.
	Replicas int
	// EventsMaxAge is the retention of lifecycle events.
	EventsMaxAge time.Duration
	// EventsMaxBytes bounds the events stream; -1 (or 0) for no bound.
	EventsMaxBytes int64
	// StreamsMaxAge is the retention of generic stream events.
	StreamsMaxAge time.Duration
	// VerifyOnly requires the streams to exist, and only checks their subjects and the events stream's duplicate
	// window; false (the default) creates the missing streams and adopts the existing ones, updating them as far as
	// eventhook may (see jsstreams.go).
	VerifyOnly bool
	// PublishTimeout bounds the wait for JetStream's acknowledgement of an asynchronous publish.
	PublishTimeout time.Duration
}

// The defaults of StreamOptions.
const (
	DefaultEventsStream   = "FLOVYN_EVENTS"
	DefaultStreamsStream  = "FLOVYN_STREAMS"
	DefaultStreamsStorage = "memory"
	DefaultEventsMaxAge   = 168 * time.Hour
	DefaultStreamsMaxAge  = time.Hour
	DefaultPublishTimeout = 10 * time.Second
	// DefaultConnectTimeout bounds a connection attempt and the embedded server's start (ConnOptions.ConnectTimeout).
	DefaultConnectTimeout = 10 * time.Second
)

// withDefaults returns o with its zero fields set to their defaults.
func (o Options) withDefaults() Options {
	o.Feed = o.Feed.WithDefaults()
	s := &o.Streams
	s.EventsStream = cmp.Or(s.EventsStream, DefaultEventsStream)
	s.StreamsStream = cmp.Or(s.StreamsStream, DefaultStreamsStream)
	s.StreamsStorage = cmp.Or(s.StreamsStorage, DefaultStreamsStorage)
	s.Replicas = cmp.Or(s.Replicas, 1)
	s.EventsMaxAge = cmp.Or(s.EventsMaxAge, DefaultEventsMaxAge)
	s.EventsMaxBytes = cmp.Or(s.EventsMaxBytes, -1)
	s.StreamsMaxAge = cmp.Or(s.StreamsMaxAge, DefaultStreamsMaxAge)
	s.PublishTimeout = cmp.Or(s.PublishTimeout, DefaultPublishTimeout)
	o.DefaultSource = cmp.Or(o.DefaultSource, event.DefaultSource)
	return o
}
