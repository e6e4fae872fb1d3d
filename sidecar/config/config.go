package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/flovyn/eventhook/sidecar/event"
	"github.com/google/uuid"
	"gopkg.in/yaml.v3"
)

// This file is the schema of the configuration: Config and its sections, one struct per section of config.yaml.
// defaults.go holds the defaults, load.go the reading (Load, Parse), validate.go the checks, errors.go the errors
// that name a key and its line, options.go the backends' options.
//
// Reading a file goes: ${VAR} expansion in the text, a parse into a yaml.Node (to reject a document that is not a
// mapping and to remember the line of every key), a strict decode (KnownFields) on top of Default, ApplyDefaults,
// Validate. Every problem is a *Error; all of them are reported at once, joined.

// Limits enforced by Validate, and the words of the configuration.
const (
	cfgMinEventBytes    = 1024
	cfgMaxEventBytes    = 64 << 20
	cfgMaxBatch         = 100_000
	cfgMaxReplicas      = 5
	cfgMaxStreamName    = 255
	cfgMinHeartbeat     = time.Second
	cfgRedacted         = "<redacted>"
	cfgBackendMemory    = "memory"
	cfgBackendNATS      = "nats"
	cfgBackendJetStream = "jetstream"
	cfgStorageMemory    = "memory"
	cfgStorageFile      = "file"
	cfgSocketTrusted    = "trusted"
	cfgSocketToken      = "token"
	cfgRightPublish     = "publish"
	cfgRightSubscribe   = "subscribe"
	cfgAllTenants       = "*"
)

// Config is the daemon's configuration, as read from config.yaml. Its zero value, after ApplyDefaults, is
// Default().
type Config struct {
	HTTP HTTP `yaml:"http"`
	// Backend is memory, nats or jetstream (the default).
	Backend   string    `yaml:"backend"`
	NATS      NATS      `yaml:"nats"`
	JetStream JetStream `yaml:"jetstream"`
	Memory    Memory    `yaml:"memory"`
	Events    Events    `yaml:"events"`
	Streams   Streams   `yaml:"streams"`
	SSE       SSE       `yaml:"sse"`
	Auth      Auth      `yaml:"auth"`
	Log       Log       `yaml:"log"`
}

// HTTP is where the daemon serves its HTTP API. An empty Listen or UnixSocket turns that listener off; at least
// one must be set (when both are empty, ApplyDefaults fills in both).
type HTTP struct {
	// Listen is the TCP host:port (default 127.0.0.1:8787). A non-loopback address needs auth tokens, or
	// auth.allow_unauthenticated_tcp.
	Listen string `yaml:"listen"`
	// UnixSocket is the path of the Unix socket (default ./eventhook.sock).
	UnixSocket string `yaml:"unix_socket"`
	// UnixSocketMode is the socket file's mode as an octal string (default "0660").
	UnixSocketMode string `yaml:"unix_socket_mode"`
	// ReadHeaderTimeout bounds the reading of a request's headers (default 5s).
	ReadHeaderTimeout Duration `yaml:"read_header_timeout"`
	// CORSOrigins are the origins allowed to call the API from a browser: "*" or scheme://host[:port] (default none).
	CORSOrigins []string `yaml:"cors_origins"`
	// Console serves the event console, a page that shows streams live in a browser, at / (default true).
	Console *bool `yaml:"console"`
	// BodyBudget bounds the bytes of publish request bodies read and held at once (default 32 MiB): beyond it a
	// publish waits up to 2 s for room, then gets 503 with Retry-After.
	BodyBudget int64 `yaml:"body_budget"`
}

// ConsoleEnabled reports whether the event console is served: true unless http.console is false.
func (h HTTP) ConsoleEnabled() bool { return h.Console == nil || *h.Console }

// SocketMode returns UnixSocketMode parsed as an octal file mode, or 0660 when it does not parse (Validate rejects such
// a value).
func (h HTTP) SocketMode() os.FileMode {
	m, err := parseSocketMode(h.UnixSocketMode)
	if err != nil {
		return 0o660
	}
	return m
}

func parseSocketMode(s string) (os.FileMode, error) {
	digits := strings.TrimPrefix(strings.TrimPrefix(s, "0o"), "0O")
	if digits == "" {
		return 0, errors.New("empty")
	}
	v, err := strconv.ParseUint(digits, 8, 32)
	if err != nil {
		return 0, err
	}
	if v > 0o777 {
		return 0, errors.New("out of range")
	}
	return os.FileMode(v), nil
}

// NATS is the NATS connection: an embedded server (development) or an external cluster (production).
type NATS struct {
	// Embedded runs a NATS server with JetStream inside the daemon. Unset, it is true unless URLs are set; setting it
	// to true together with URLs is an error.
	Embedded *bool `yaml:"embedded"`
	// EmbeddedListen is the embedded server's client address (default 127.0.0.1:4222; port -1 picks a free one).
	EmbeddedListen string `yaml:"embedded_listen"`
	// StoreDir is the embedded server's JetStream storage directory (default ./data).
	StoreDir string `yaml:"store_dir"`
	// SyncAlways makes the embedded server fsync every write.
	SyncAlways bool `yaml:"sync_always"`
	// URLs are the external cluster's servers: nats://, tls://, ws:// or wss:// URLs.
	URLs []string `yaml:"urls"`
	// CredsFile is a NATS credentials file (exclusive with Token).
	CredsFile string `yaml:"creds_file"`
	// Token is a NATS authentication token (exclusive with CredsFile). It is never printed.
	Token string `yaml:"token"`
	// TLS is the client TLS configuration for the external cluster.
	TLS TLS `yaml:"tls"`
	// ConnectTimeout bounds a connection attempt (default 10s).
	ConnectTimeout Duration `yaml:"connect_timeout"`
}

// IsEmbedded reports whether the daemon runs its own NATS server: Embedded when set, otherwise true exactly when no
// URLs are configured. It matters only for the nats and jetstream backends.
func (n NATS) IsEmbedded() bool {
	if n.Embedded != nil {
		return *n.Embedded
	}
	return len(n.URLs) == 0
}

// TLS is a client TLS configuration: a CA to verify the servers and an optional client certificate.
type TLS struct {
	// CAFile is a PEM bundle of the CAs that sign the servers' certificates.
	CAFile string `yaml:"ca_file"`
	// CertFile is the client certificate (PEM); it needs KeyFile.
	CertFile string `yaml:"cert_file"`
	// KeyFile is the client certificate's private key (PEM); it needs CertFile.
	KeyFile string `yaml:"key_file"`
}

// JetStream names and sizes the two JetStream streams of the jetstream backend.
type JetStream struct {
	// EventsStream is the lifecycle events stream on flovyn.events.> (default FLOVYN_EVENTS).
	EventsStream string `yaml:"events_stream"`
	// StreamsStream is the generic streams stream on flovyn.streams.workflow.> (default FLOVYN_STREAMS).
	StreamsStream string `yaml:"streams_stream"`
	// StreamsStorage is the storage the generic streams stream is created with: memory (the default, as Flovyn's
	// server creates it) or file. A stream that already exists keeps its storage: JetStream cannot change it in place.
	StreamsStorage string `yaml:"streams_storage"`
	// Replicas is the replication factor of both streams, 1 to 5 (default 1).
	Replicas int `yaml:"replicas"`
	// EventsMaxAge is the retention of lifecycle events (default 168h).
	EventsMaxAge Duration `yaml:"events_max_age"`
	// EventsMaxBytes bounds the events stream, -1 for no bound (default -1).
	EventsMaxBytes int64 `yaml:"events_max_bytes"`
	// StreamsMaxAge is the retention of generic stream events (default 1h).
	StreamsMaxAge Duration `yaml:"streams_max_age"`
	// DuplicateWindow is how long a published event ID is remembered for deduplication (default 2m).
	DuplicateWindow Duration `yaml:"duplicate_window"`
	// ManageStreams creates the missing streams at start and adopts the existing ones, updating them as far as eventhook
	// may (default true; see sidecar/natsbus/jsstreams.go); false requires them to exist, and only checks their
	// subjects and the events stream's duplicate window.
	ManageStreams *bool `yaml:"manage_streams"`
	// PublishTimeout bounds the wait for JetStream's acknowledgement of a publish (default 5s).
	PublishTimeout Duration `yaml:"publish_timeout"`
}

// Memory sizes the memory backend and the live rings of every backend.
type Memory struct {
	// EventBuffer is the number of lifecycle events held per tenant (default 1024).
	EventBuffer int `yaml:"event_buffer"`
	// StreamBuffer is the number of events held per workflow stream (default 256).
	StreamBuffer int `yaml:"stream_buffer"`
	// IdleTTL is how long an idle tenant's or stream's ring is kept (default 10m).
	IdleTTL Duration `yaml:"idle_ttl"`
	// MaxBytes bounds the memory held by the rings (default 268435456, 256 MiB).
	MaxBytes int64 `yaml:"max_bytes"`
}

// Events holds the publishing defaults and limits of lifecycle events.
type Events struct {
	// DefaultTenantID is the tenant of an event published without one; empty (the default) makes the tenant required.
	DefaultTenantID string `yaml:"default_tenant_id"`
	// DefaultSource is stamped on an event published without a source (default "system").
	DefaultSource string `yaml:"default_source"`
	// MaxEventBytes bounds one event's encoded size, 1 KiB to 64 MiB (default 1048576, 1 MiB).
	MaxEventBytes int `yaml:"max_event_bytes"`
	// MaxBatch bounds the number of events of one batch publish, 1 to 100000 (default 1000).
	MaxBatch int `yaml:"max_batch"`
	// TenantKey is the key under which every lifecycle event the daemon writes (SSE frames, NATS messages) carries its
	// tenant: tenant_id (the default) or org_id, Flovyn's name of the tenant since 2026-01-12. Input accepts both.
	TenantKey event.TenantKey `yaml:"tenant_key"`
}

// Streams holds the settings of generic streams.
type Streams struct {
	// AcceptUntenanted delivers a stream event that arrives on NATS without a tenant, and whose workflow's tenant is
	// not known, to every subscriber of its workflow id, whatever its tenant (default false). Only for a cluster where
	// every producer is trusted.
	AcceptUntenanted bool `yaml:"accept_untenanted"`
	// UntenantedTenantID is the tenant of a stream event that arrives on NATS without a tenant and whose workflow's
	// tenant is not known (a single-tenant deployment); empty (the default) for none.
	UntenantedTenantID string `yaml:"untenanted_tenant_id"`
}

// SSE holds the settings of Server-Sent Events subscriptions.
type SSE struct {
	// Heartbeat is the interval of keep-alive comments on an idle stream, at least 1s (default 15s).
	Heartbeat Duration `yaml:"heartbeat"`
	// MaxSubscribers bounds the concurrent SSE subscribers of the daemon (default 10000).
	MaxSubscribers int `yaml:"max_subscribers"`
	// MaxSubscribersPerTenant bounds the concurrent SSE subscribers of one tenant (default 1000).
	MaxSubscribersPerTenant int `yaml:"max_subscribers_per_tenant"`
	// WriteTimeout bounds one write to a subscriber; a subscriber that does not read is disconnected (default 10s).
	WriteTimeout Duration `yaml:"write_timeout"`
	// Format is the framing of lifecycle events on workflow and task streams when a request names none (its format
	// query parameter): eventhook (the default: `event: lifecycle` with the FlovynEvent) or flovyn (Flovyn's server's
	// framing, `event: data` with a StateEventPayload, for pages written for that server). The tenant stream is always
	// framed as eventhook.
	Format string `yaml:"format"`
}

// Auth holds the bearer tokens and who must present them.
type Auth struct {
	// Tokens are the accepted bearer tokens.
	Tokens []Token `yaml:"tokens"`
	// UnixSocket is "trusted" (the default: callers on the socket need no token) or "token".
	UnixSocket string `yaml:"unix_socket"`
	// AllowUnauthenticatedTCP allows serving TCP on a non-loopback address without any token.
	AllowUnauthenticatedTCP bool `yaml:"allow_unauthenticated_tcp"`
}

// Token is one bearer token: its name, the token itself given as a SHA-256 hash or as the name of an environment
// variable holding it, its tenants and its rights.
type Token struct {
	// Name identifies the token without revealing it; names are unique.
	Name string `yaml:"name"`
	// SHA256 is the hex SHA-256 of the token (64 hex digits, lower-cased by ApplyDefaults). Exclusive with Env.
	SHA256 string `yaml:"sha256"`
	// Env is the name of the environment variable holding the token, read at start. Exclusive with SHA256.
	Env string `yaml:"env"`
	// Tenants are the tenant IDs the token may use, or "*" for all. YAML accepts a list or a single string ("*").
	Tenants []string `yaml:"tenants"`
	// Allow is a non-empty subset of publish and subscribe.
	Allow []string `yaml:"allow"`
}

// UnmarshalYAML reads a token, accepting tenants as a list or as a single string such as "*". Unknown keys are
// rejected as a strict decoder would. Errors are *yaml.TypeError values carrying lines.
func (t *Token) UnmarshalYAML(n *yaml.Node) error {
	n = cfgResolveAlias(n)
	if n.Kind != yaml.MappingNode {
		return cfgTypeError(n.Line, "want a token mapping {name, sha256 or env, tenants, allow}, not a %s",
			cfgKindName(n.Kind))
	}
	var issues []string
	rest := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: n.Line, Column: n.Column}
	var tenants *yaml.Node
	known := cfgYAMLKeys(reflect.TypeFor[Token]())
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch {
		case k.Value == "tenants":
			tenants = cfgResolveAlias(v)
		case !slices.Contains(known, k.Value):
			issues = append(issues, fmt.Sprintf("line %d: field %s not found in type %s", k.Line, k.Value,
				reflect.TypeFor[Token]()))
		default:
			rest.Content = append(rest.Content, k, v)
		}
	}
	type plain Token // without this method
	p := plain(*t)
	if err := rest.Decode(&p); err != nil {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return err
		}
		issues = append(issues, te.Errors...)
	}
	*t = Token(p)
	if tenants != nil {
		switch {
		case tenants.Kind == yaml.ScalarNode && tenants.ShortTag() == "!!null":
			t.Tenants = nil
		case tenants.Kind == yaml.ScalarNode:
			t.Tenants = []string{tenants.Value}
		case tenants.Kind == yaml.SequenceNode:
			var list []string
			if err := tenants.Decode(&list); err != nil {
				issues = append(issues, fmt.Sprintf("line %d: want \"*\" or a list of tenant IDs", tenants.Line))
			}
			t.Tenants = list
		default:
			issues = append(issues, fmt.Sprintf("line %d: want \"*\" or a list of tenant IDs, not a %s",
				tenants.Line, cfgKindName(tenants.Kind)))
		}
	}
	if len(issues) > 0 {
		return &yaml.TypeError{Errors: issues}
	}
	return nil
}

// Log is the daemon's logging.
type Log struct {
	// Level is debug, info (the default), warn or error.
	Level string `yaml:"level"`
	// Format is text (the default) or json.
	Format string `yaml:"format"`
}

// DefaultTenant returns events.default_tenant_id parsed, and false when it is empty (or does not parse, which
// Validate rejects).
func (c *Config) DefaultTenant() (uuid.UUID, bool) {
	if c.Events.DefaultTenantID == "" {
		return uuid.Nil, false
	}
	id, err := uuid.Parse(c.Events.DefaultTenantID)
	if err != nil || id == uuid.Nil {
		return uuid.Nil, false
	}
	return id, true
}

// UntenantedTenant returns streams.untenanted_tenant_id parsed, or uuid.Nil when it is empty (or does not parse,
// which Validate rejects).
func (c *Config) UntenantedTenant() uuid.UUID {
	id, err := uuid.Parse(c.Streams.UntenantedTenantID)
	if err != nil {
		return uuid.Nil
	}
	return id
}

// The framings of lifecycle events on a workflow or task stream (sse.format, and the format query parameter):
// eventhook (`event: lifecycle` with the FlovynEvent) and flovyn (Flovyn's server's framing of the lifecycle events
// that have a legacy name).
const (
	FormatEventhook = "eventhook"
	FormatFlovyn    = "flovyn"
)

// FormatValues lists the valid values of format and sse.format, for error messages.
const FormatValues = FormatEventhook + " or " + FormatFlovyn

// ValidFormat reports whether f is a framing.
func ValidFormat(f string) bool { return f == FormatEventhook || f == FormatFlovyn }
