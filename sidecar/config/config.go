package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/flovyn/eventhook/sidecar/event"
	"github.com/google/uuid"
	"gopkg.in/yaml.v3"
)

// This file is the daemon's configuration (SPEC §7): one plain struct decoded from YAML with unknown keys rejected,
// defaults filled in one place (Default, applied to zero values by ApplyDefaults), and a Validate that names the
// bad key by its dotted YAML path and says how to fix it.
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
	StorageMemory       = "memory"
	StorageFile         = "file"
	cfgSocketTrusted    = "trusted"
	cfgSocketToken      = "token"
	cfgRightPublish     = "publish"
	cfgRightSubscribe   = "subscribe"
	cfgAllTenants       = "*"
)

// ErrInvalid is the family of every configuration problem; check it with errors.Is. The concrete errors are
// *Error values, joined with errors.Join when there are several.
var ErrInvalid = errors.New("sidecar: invalid configuration")

// Error is one problem in a configuration.
type Error struct {
	// File is the configuration file, set by Load.
	File string
	// Line is the 1-based line of the offending key in the file; 0 when unknown (the value is a default, or the Config
	// was built in code).
	Line int
	// Key is the dotted YAML path of the offending key, such as "nats.urls" or "auth.tokens[0].sha256"; empty for a
	// problem with the whole document.
	Key string
	// Msg is the message, naming the key and saying how to fix it.
	Msg string
}

// Error returns the message prefixed with the file and line when they are known, as in
// `config.yaml line 3: unknown key "listn" in http (known: listen, ...)`.
func (e *Error) Error() string {
	switch {
	case e.File != "" && e.Line > 0:
		return fmt.Sprintf("%s line %d: %s", e.File, e.Line, e.Msg)
	case e.File != "":
		return e.File + ": " + e.Msg
	case e.Line > 0:
		return fmt.Sprintf("line %d: %s", e.Line, e.Msg)
	}
	return e.Msg
}

// Unwrap returns ErrInvalid.
func (e *Error) Unwrap() error { return ErrInvalid }

// Duration is a time.Duration read from and written to YAML as a Go duration string ("5s", "10m", "168h").
type Duration time.Duration

// D returns the duration as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String returns the duration in Go syntax without zero trailing units: "168h" rather than "168h0m0s".
func (d Duration) String() string {
	s := time.Duration(d).String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// UnmarshalYAML reads a Go duration string. A bare number other than 0 is refused: "5" is ambiguous, "5s" is not.
// A null value leaves the duration unchanged. The error is a *yaml.TypeError carrying the line.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return nil
	}
	if n.Kind != yaml.ScalarNode {
		return cfgTypeError(n.Line, "want a duration such as \"5s\", \"10m\" or \"168h\", not a %s", cfgKindName(n.Kind))
	}
	v, err := time.ParseDuration(strings.TrimSpace(n.Value))
	if err != nil {
		return cfgTypeError(n.Line, "%q is not a duration; write a Go duration such as \"5s\", \"10m\" or \"168h\"", n.Value)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration as a string, in the form String returns.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// Config is the daemon's configuration, as read from config.yaml (SPEC §7). Its zero value, after ApplyDefaults, is
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
}

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
	// may (default true; see jsstreams.go); false requires them to exist, and only checks their subjects and the events
	// stream's duplicate window.
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

// Default returns the default configuration of SPEC §7: the jetstream backend on an embedded NATS server with
// its data under ./data, HTTP on 127.0.0.1:8787 and the socket ./eventhook.sock.
func Default() *Config {
	yes := true
	manage := true
	return &Config{
		HTTP: HTTP{
			Listen:            "127.0.0.1:8787",
			UnixSocket:        "./eventhook.sock",
			UnixSocketMode:    "0660",
			ReadHeaderTimeout: Duration(5 * time.Second),
		},
		Backend: cfgBackendJetStream,
		NATS: NATS{
			Embedded:       &yes,
			EmbeddedListen: "127.0.0.1:4222",
			StoreDir:       "./data",
			ConnectTimeout: Duration(10 * time.Second),
		},
		JetStream: JetStream{
			EventsStream:    "FLOVYN_EVENTS",
			StreamsStream:   "FLOVYN_STREAMS",
			StreamsStorage:  StorageMemory,
			Replicas:        1,
			EventsMaxAge:    Duration(168 * time.Hour),
			EventsMaxBytes:  -1,
			StreamsMaxAge:   Duration(time.Hour),
			DuplicateWindow: Duration(2 * time.Minute),
			ManageStreams:   &manage,
			PublishTimeout:  Duration(5 * time.Second),
		},
		Memory: Memory{
			EventBuffer:  1024,
			StreamBuffer: 256,
			IdleTTL:      Duration(10 * time.Minute),
			MaxBytes:     256 << 20,
		},
		Events: Events{
			DefaultSource: event.DefaultSource,
			MaxEventBytes: 1 << 20,
			MaxBatch:      1000,
			TenantKey:     event.TenantKeyTenantID,
		},
		SSE: SSE{
			Heartbeat:               Duration(15 * time.Second),
			MaxSubscribers:          10_000,
			MaxSubscribersPerTenant: 1000,
			WriteTimeout:            Duration(10 * time.Second),
			Format:                  FormatEventhook,
		},
		Auth: Auth{UnixSocket: cfgSocketTrusted},
		Log:  Log{Level: "info", Format: "text"},
	}
}

// ApplyDefaults fills every zero value with its default from Default. Two fields are special: nats.embedded,
// when unset, becomes true unless nats.urls is set (then false); http.listen and http.unix_socket are filled only when
// both are empty, since an empty one turns that listener off. Empty lists become nil, and token hashes are
// lower-cased.
func (c *Config) ApplyDefaults() {
	d := Default()
	if c.HTTP.Listen == "" && c.HTTP.UnixSocket == "" {
		c.HTTP.Listen, c.HTTP.UnixSocket = d.HTTP.Listen, d.HTTP.UnixSocket
	}
	cfgOrDefault(&c.HTTP.UnixSocketMode, d.HTTP.UnixSocketMode)
	cfgOrDefault(&c.HTTP.ReadHeaderTimeout, d.HTTP.ReadHeaderTimeout)
	if len(c.HTTP.CORSOrigins) == 0 {
		c.HTTP.CORSOrigins = nil
	}

	cfgOrDefault(&c.Backend, d.Backend)

	if len(c.NATS.URLs) == 0 {
		c.NATS.URLs = nil
	}
	if c.NATS.Embedded == nil {
		embedded := len(c.NATS.URLs) == 0
		c.NATS.Embedded = &embedded
	}
	// nats.embedded_listen is not defaulted here: "" means in-process connections only (Default sets the address).
	cfgOrDefault(&c.NATS.StoreDir, d.NATS.StoreDir)
	cfgOrDefault(&c.NATS.ConnectTimeout, d.NATS.ConnectTimeout)

	js := &c.JetStream
	cfgOrDefault(&js.EventsStream, d.JetStream.EventsStream)
	cfgOrDefault(&js.StreamsStream, d.JetStream.StreamsStream)
	cfgOrDefault(&js.StreamsStorage, d.JetStream.StreamsStorage)
	cfgOrDefault(&js.Replicas, d.JetStream.Replicas)
	cfgOrDefault(&js.EventsMaxAge, d.JetStream.EventsMaxAge)
	cfgOrDefault(&js.EventsMaxBytes, d.JetStream.EventsMaxBytes)
	cfgOrDefault(&js.StreamsMaxAge, d.JetStream.StreamsMaxAge)
	cfgOrDefault(&js.DuplicateWindow, d.JetStream.DuplicateWindow)
	if js.ManageStreams == nil {
		manage := *d.JetStream.ManageStreams
		js.ManageStreams = &manage
	}
	cfgOrDefault(&js.PublishTimeout, d.JetStream.PublishTimeout)

	cfgOrDefault(&c.Memory.EventBuffer, d.Memory.EventBuffer)
	cfgOrDefault(&c.Memory.StreamBuffer, d.Memory.StreamBuffer)
	cfgOrDefault(&c.Memory.IdleTTL, d.Memory.IdleTTL)
	cfgOrDefault(&c.Memory.MaxBytes, d.Memory.MaxBytes)

	cfgOrDefault(&c.Events.DefaultSource, d.Events.DefaultSource)
	cfgOrDefault(&c.Events.MaxEventBytes, d.Events.MaxEventBytes)
	cfgOrDefault(&c.Events.MaxBatch, d.Events.MaxBatch)
	cfgOrDefault(&c.Events.TenantKey, d.Events.TenantKey)

	cfgOrDefault(&c.SSE.Heartbeat, d.SSE.Heartbeat)
	cfgOrDefault(&c.SSE.MaxSubscribers, d.SSE.MaxSubscribers)
	cfgOrDefault(&c.SSE.MaxSubscribersPerTenant, d.SSE.MaxSubscribersPerTenant)
	cfgOrDefault(&c.SSE.WriteTimeout, d.SSE.WriteTimeout)
	cfgOrDefault(&c.SSE.Format, d.SSE.Format)

	if len(c.Auth.Tokens) == 0 {
		c.Auth.Tokens = nil
	}
	for i := range c.Auth.Tokens {
		c.Auth.Tokens[i].SHA256 = strings.ToLower(c.Auth.Tokens[i].SHA256)
	}
	cfgOrDefault(&c.Auth.UnixSocket, d.Auth.UnixSocket)

	cfgOrDefault(&c.Log.Level, d.Log.Level)
	cfgOrDefault(&c.Log.Format, d.Log.Format)
}

// cfgOrDefault sets *v to def when it is the zero value.
func cfgOrDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
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

// Load reads the file at path and parses it with Parse. A read error is returned wrapped (it names the
// path); configuration problems are *Error values (ErrInvalid) whose File is path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load config: %w", err)
	}
	return parseConfig(data, path)
}

// Parse reads a configuration: it expands ${VAR} and ${VAR:-default} in the text (only the braced form; $$ is a
// literal $), decodes the YAML strictly (unknown keys are errors) on top of Default, then applies the defaults
// and validates. An empty document is the default configuration. Every problem found is reported, each a *Error
// (ErrInvalid) naming the key and its line, joined with errors.Join.
func Parse(data []byte) (*Config, error) {
	return parseConfig(data, "")
}

func parseConfig(data []byte, file string) (*Config, error) {
	c, errs := decodeConfig(data)
	for _, e := range errs {
		e.File = file
	}
	if len(errs) > 0 {
		return nil, joinConfigErrors(errs)
	}
	return c, nil
}

func decodeConfig(data []byte) (*Config, []*Error) {
	text, errs := expandEnv(data)
	if len(errs) > 0 {
		return nil, errs
	}

	c := Default()
	c.NATS.Embedded = nil // its default depends on nats.urls: ApplyDefaults decides

	dec := yaml.NewDecoder(bytes.NewReader(text))
	var doc yaml.Node
	switch err := dec.Decode(&doc); {
	case errors.Is(err, io.EOF):
		c.ApplyDefaults() // an empty document: the defaults
		return c, nil
	case err != nil:
		return nil, []*Error{cfgSyntaxError(err)}
	}
	var second yaml.Node
	if err := dec.Decode(&second); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, []*Error{cfgSyntaxError(err)}
		}
		return nil, []*Error{{Line: second.Line, Msg: "more than one YAML document; put the whole configuration " +
			"in one"}}
	}
	root := cfgResolveAlias(&doc)
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = cfgResolveAlias(root.Content[0])
	}
	if root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null" {
		c.ApplyDefaults()
		return c, nil
	}
	if root.Kind != yaml.MappingNode {
		return nil, []*Error{{Line: root.Line, Msg: fmt.Sprintf(
			"the configuration must be a mapping of sections (%s), not a %s",
			strings.Join(cfgYAMLKeys(reflect.TypeFor[Config]()), ", "), cfgKindName(root.Kind))}}
	}
	idx := &cfgKeyIndex{}
	idx.walk(root, reflect.TypeFor[Config](), "")

	strict := yaml.NewDecoder(bytes.NewReader(text))
	strict.KnownFields(true)
	if err := strict.Decode(c); err != nil {
		return nil, idx.describe(err)
	}

	if c.HTTP.Listen == "" && c.HTTP.UnixSocket == "" {
		// Checked before ApplyDefaults, which would fill both: both were emptied explicitly.
		errs = append(errs, cfgNoListener())
	}
	c.ApplyDefaults()
	if len(errs) == 0 {
		errs = c.validate()
	}
	for _, e := range errs {
		if e.Line == 0 {
			e.Line = idx.lineOf(e.Key)
		}
	}
	slices.SortStableFunc(errs, func(a, b *Error) int { return a.Line - b.Line }) // in the order of the file
	if len(errs) > 0 {
		return nil, errs
	}
	return c, nil
}

// YAML returns the configuration as YAML, for `eventhook config check`. Secrets are redacted: nats.token is shown as
// "<redacted>" when set, and so is the user information of a NATS URL. Without secrets, Parse of the result gives
// back the same configuration.
func (c *Config) YAML() ([]byte, error) {
	out := *c
	embedded := c.NATS.IsEmbedded()
	out.NATS.Embedded = &embedded
	if c.JetStream.ManageStreams == nil {
		manage := true
		out.JetStream.ManageStreams = &manage
	}
	if out.NATS.Token != "" {
		out.NATS.Token = cfgRedacted
	}
	if len(c.NATS.URLs) > 0 {
		out.NATS.URLs = make([]string, len(c.NATS.URLs))
		for i, u := range c.NATS.URLs {
			out.NATS.URLs[i] = cfgRedactURL(u)
		}
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&out); err != nil {
		return nil, fmt.Errorf("encode config: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode config: %w", err)
	}
	return buf.Bytes(), nil
}

// cfgRedactURL hides the user information of a URL (a NATS URL may carry a token or a password in it).
func cfgRedactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		if at := strings.LastIndex(s, "@"); at >= 0 {
			if scheme := strings.Index(s, "://"); scheme >= 0 && scheme < at {
				return s[:scheme+3] + cfgRedacted + s[at:]
			}
		}
		return s
	}
	return u.Scheme + "://" + cfgRedacted + "@" + u.Host + u.EscapedPath()
}

// Validate checks a configuration whose defaults have been applied (Parse does both; a Config built in code
// should call ApplyDefaults first). It returns nil, or every problem found, each a *Error (ErrInvalid)
// naming the key by its dotted YAML path and saying how to fix it, joined with errors.Join.
func (c *Config) Validate() error {
	var errs []*Error
	if c.HTTP.Listen == "" && c.HTTP.UnixSocket == "" {
		errs = append(errs, cfgNoListener())
	}
	errs = append(errs, c.validate()...)
	return joinConfigErrors(errs)
}

func joinConfigErrors(errs []*Error) error {
	if len(errs) == 0 {
		return nil
	}
	if len(errs) == 1 {
		return errs[0]
	}
	list := make([]error, len(errs))
	for i, e := range errs {
		list[i] = e
	}
	return errors.Join(list...)
}

func cfgNoListener() *Error {
	return &Error{Key: "http", Msg: `http: listen and unix_socket are both empty, so nothing would be served; ` +
		`set http.listen (e.g. "127.0.0.1:8787") or http.unix_socket (e.g. "./eventhook.sock")`}
}

// cfgProblems collects the ConfigErrors of a validation.
type cfgProblems []*Error

func (p *cfgProblems) add(key, format string, args ...any) {
	*p = append(*p, &Error{Key: key, Msg: key + ": " + fmt.Sprintf(format, args...)})
}

func (p *cfgProblems) positive(key string, d Duration, example string) {
	if d <= 0 {
		p.add(key, "is %s; it must be positive, e.g. %q", d, example)
	}
}

func (p *cfgProblems) atLeastOne(key string, v int64) {
	if v < 1 {
		p.add(key, "is %d; it must be at least 1", v)
	}
}

// validate checks everything but the presence of a listener (see Validate and decodeConfig).
func (c *Config) validate() []*Error {
	var p cfgProblems
	c.validateHTTP(&p)

	switch c.Backend {
	case cfgBackendMemory, cfgBackendNATS, cfgBackendJetStream:
	default:
		p.add("backend", "%q is not a backend; use memory, nats or jetstream", c.Backend)
	}

	c.validateNATS(&p)
	c.validateJetStream(&p)

	m := c.Memory
	p.atLeastOne("memory.event_buffer", int64(m.EventBuffer))
	p.atLeastOne("memory.stream_buffer", int64(m.StreamBuffer))
	p.positive("memory.idle_ttl", m.IdleTTL, "10m")
	p.atLeastOne("memory.max_bytes", m.MaxBytes)

	e := c.Events
	if e.DefaultTenantID != "" {
		if id, err := uuid.Parse(e.DefaultTenantID); err != nil || id == uuid.Nil {
			p.add("events.default_tenant_id", "%q is not a tenant ID; write a non-nil UUID, or leave it empty to "+
				"require a tenant on every event", e.DefaultTenantID)
		}
	}
	if id := c.Streams.UntenantedTenantID; id != "" {
		if u, err := uuid.Parse(id); err != nil || u == uuid.Nil || len(id) != 36 {
			p.add("streams.untenanted_tenant_id", "%q is not a tenant ID; write a non-nil UUID, or leave it empty", id)
		}
	}
	if msg := cfgCheckPrintable(e.DefaultSource, event.MaxSourceBytes); msg != "" {
		p.add("events.default_source", "%s; the default is %q", msg, event.DefaultSource)
	}
	if e.MaxEventBytes < cfgMinEventBytes || e.MaxEventBytes > cfgMaxEventBytes {
		p.add("events.max_event_bytes", "is %d; it must be between %d (1 KiB) and %d (64 MiB)", e.MaxEventBytes,
			cfgMinEventBytes, cfgMaxEventBytes)
	}
	if e.MaxBatch < 1 || e.MaxBatch > cfgMaxBatch {
		p.add("events.max_batch", "is %d; it must be between 1 and %d", e.MaxBatch, cfgMaxBatch)
	}
	switch e.TenantKey {
	case event.TenantKeyTenantID, event.TenantKeyOrgID:
	default:
		p.add("events.tenant_key", "%q is not a key; use tenant_id (the default) or org_id", e.TenantKey)
	}

	s := c.SSE
	if s.Heartbeat < Duration(cfgMinHeartbeat) {
		p.add("sse.heartbeat", "is %s; it must be at least 1s, e.g. \"15s\"", s.Heartbeat)
	}
	p.atLeastOne("sse.max_subscribers", int64(s.MaxSubscribers))
	p.atLeastOne("sse.max_subscribers_per_tenant", int64(s.MaxSubscribersPerTenant))
	if s.MaxSubscribersPerTenant > s.MaxSubscribers && s.MaxSubscribers >= 1 {
		p.add("sse.max_subscribers_per_tenant", "is %d, more than sse.max_subscribers (%d); lower it or raise "+
			"sse.max_subscribers", s.MaxSubscribersPerTenant, s.MaxSubscribers)
	}
	p.positive("sse.write_timeout", s.WriteTimeout, "10s")
	if !ValidFormat(s.Format) {
		p.add("sse.format", "%q is not a format; use %s (the default) or %s (Flovyn's server's framing of lifecycle "+
			"events, for pages written for that server)", s.Format, FormatEventhook, FormatFlovyn)
	}

	c.validateAuth(&p)

	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		p.add("log.level", "%q is not a level; use debug, info, warn or error", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		p.add("log.format", "%q is not a format; use text or json", c.Log.Format)
	}
	return p
}

func (c *Config) validateHTTP(p *cfgProblems) {
	h := c.HTTP
	if h.Listen != "" {
		host, port, err := net.SplitHostPort(h.Listen)
		if err != nil || !cfgValidPort(port, false) {
			p.add("http.listen", "%q is not a host:port; write e.g. \"127.0.0.1:8787\" (\":8787\" listens on every "+
				"interface), or leave it empty to serve only on the Unix socket", h.Listen)
		} else if !cfgIsLoopback(host) && len(c.Auth.Tokens) == 0 && !c.Auth.AllowUnauthenticatedTCP {
			p.add("http.listen", "%q is not a loopback address and auth.tokens is empty, so anyone who reaches the "+
				"port could publish and subscribe; add auth.tokens, listen on 127.0.0.1, or set "+
				"auth.allow_unauthenticated_tcp: true", h.Listen)
		}
	}
	if _, err := parseSocketMode(h.UnixSocketMode); err != nil {
		p.add("http.unix_socket_mode", "%q is not a file mode; write an octal string between \"0000\" and \"0777\", "+
			"e.g. \"0660\" (quoted)", h.UnixSocketMode)
	}
	p.positive("http.read_header_timeout", h.ReadHeaderTimeout, "5s")
	for i, o := range h.CORSOrigins {
		if !cfgValidOrigin(o) {
			p.add(fmt.Sprintf("http.cors_origins[%d]", i), "%q is not an origin; write \"*\" or scheme://host[:port], "+
				"e.g. \"https://app.example.com\", without a path", o)
		}
	}
}

func (c *Config) validateNATS(p *cfgProblems) {
	n := c.NATS
	if n.Embedded != nil && *n.Embedded && len(n.URLs) > 0 {
		p.add("nats.embedded", "is true while nats.urls is set; they are exclusive: remove nats.embedded to connect to "+
			"the cluster in nats.urls (embedded defaults to false when urls are set), or remove nats.urls to run the "+
			"embedded server")
	}
	usesNATS := c.Backend == cfgBackendNATS || c.Backend == cfgBackendJetStream
	if usesNATS && !n.IsEmbedded() && len(n.URLs) == 0 {
		p.add("nats.urls", "is empty while nats.embedded is false, so there is no NATS server to connect to; list the "+
			"cluster's servers, e.g. [\"nats://nats:4222\"], or set nats.embedded: true")
	}
	for i, u := range n.URLs {
		if msg := cfgCheckNATSURL(u); msg != "" {
			p.add(fmt.Sprintf("nats.urls[%d]", i), "%q %s", cfgRedactURL(u), msg)
		}
	}
	if usesNATS && n.IsEmbedded() && n.EmbeddedListen != "" {
		_, port, err := net.SplitHostPort(n.EmbeddedListen)
		if err != nil || !cfgValidPort(port, true) {
			p.add("nats.embedded_listen", "%q is not a host:port; write e.g. \"127.0.0.1:4222\" (port -1 picks a "+
				"free one)", n.EmbeddedListen)
		}
		if n.StoreDir == "" {
			p.add("nats.store_dir", "is empty; the embedded server needs a directory for JetStream, e.g. \"./data\"")
		}
	}
	switch {
	case n.TLS.CertFile != "" && n.TLS.KeyFile == "":
		p.add("nats.tls.key_file", "is empty while nats.tls.cert_file is set; a client certificate needs its key: "+
			"set both or neither")
	case n.TLS.CertFile == "" && n.TLS.KeyFile != "":
		p.add("nats.tls.cert_file", "is empty while nats.tls.key_file is set; a client key needs its certificate: "+
			"set both or neither")
	}
	if n.CredsFile != "" && n.Token != "" {
		p.add("nats.token", "is set together with nats.creds_file; they are exclusive: authenticate with one of them")
	}
	p.positive("nats.connect_timeout", n.ConnectTimeout, "10s")
}

func (c *Config) validateJetStream(p *cfgProblems) {
	js := c.JetStream
	cfgCheckStreamName(p, "jetstream.events_stream", js.EventsStream)
	cfgCheckStreamName(p, "jetstream.streams_stream", js.StreamsStream)
	if js.EventsStream != "" && js.EventsStream == js.StreamsStream {
		p.add("jetstream.streams_stream", "%q is also jetstream.events_stream; the two streams need different names",
			js.StreamsStream)
	}
	switch js.StreamsStorage {
	case StorageMemory, StorageFile:
	default:
		p.add("jetstream.streams_storage", "%q is not a storage type; use memory (as Flovyn's server creates the "+
			"stream) or file (stream events then survive a restart of the NATS servers)", js.StreamsStorage)
	}
	if js.Replicas < 1 || js.Replicas > cfgMaxReplicas {
		p.add("jetstream.replicas", "is %d; it must be between 1 and %d", js.Replicas, cfgMaxReplicas)
	}
	p.positive("jetstream.events_max_age", js.EventsMaxAge, "168h")
	if js.EventsMaxBytes != -1 && js.EventsMaxBytes < 1 {
		p.add("jetstream.events_max_bytes", "is %d; it must be -1 (no bound) or a positive number of bytes",
			js.EventsMaxBytes)
	}
	p.positive("jetstream.streams_max_age", js.StreamsMaxAge, "1h")
	p.positive("jetstream.duplicate_window", js.DuplicateWindow, "2m")
	if js.DuplicateWindow > js.EventsMaxAge && js.EventsMaxAge > 0 {
		p.add("jetstream.duplicate_window", "is %s, longer than jetstream.events_max_age (%s); JetStream cannot "+
			"remember IDs longer than it keeps the events: shorten it", js.DuplicateWindow, js.EventsMaxAge)
	}
	p.positive("jetstream.publish_timeout", js.PublishTimeout, "5s")
}

func (c *Config) validateAuth(p *cfgProblems) {
	a := c.Auth
	switch a.UnixSocket {
	case cfgSocketTrusted:
	case cfgSocketToken:
		if len(a.Tokens) == 0 {
			p.add("auth.unix_socket", "is \"token\" but auth.tokens is empty, so no caller could use the socket; add "+
				"a token or use \"trusted\"")
		}
	default:
		p.add("auth.unix_socket", "%q is not a socket policy; use \"trusted\" (no token needed on the socket) or "+
			"\"token\"", a.UnixSocket)
	}
	names := make(map[string]int, len(a.Tokens))
	for i, t := range a.Tokens {
		key := fmt.Sprintf("auth.tokens[%d]", i)
		if t.Name == "" {
			p.add(key+".name", "is empty; give the token a name, which identifies it without revealing it")
		} else if j, dup := names[t.Name]; dup {
			p.add(key+".name", "%q is also the name of auth.tokens[%d]; token names must be unique", t.Name, j)
		} else {
			names[t.Name] = i
		}
		switch {
		case t.SHA256 != "" && t.Env != "":
			p.add(key, "sets both sha256 and env; give the token by exactly one of them")
		case t.SHA256 == "" && t.Env == "":
			p.add(key, "sets neither sha256 nor env; give the token's hash (sha256: the output of "+
				"`printf %%s \"$TOKEN\" | sha256sum`) or the environment variable holding it (env: VAR_NAME)")
		case t.SHA256 != "" && !cfgIsHex(t.SHA256, 64):
			// The value is not echoed: it may be a token pasted by mistake.
			p.add(key+".sha256", "is not a SHA-256 hash (%d characters); want 64 hexadecimal digits, the output of "+
				"`printf %%s \"$TOKEN\" | sha256sum`", len(t.SHA256))
		case t.Env != "" && !cfgEnvName.MatchString(t.Env):
			p.add(key+".env", "is not an environment variable name (%d characters); want letters, digits and _, not "+
				"starting with a digit", len(t.Env))
		}
		if len(t.Tenants) == 0 {
			p.add(key+".tenants", "is empty; list the tenant IDs the token may use, or write \"*\" for every tenant")
		}
		for j, tenant := range t.Tenants {
			tk := fmt.Sprintf("%s.tenants[%d]", key, j)
			if tenant == cfgAllTenants {
				if len(t.Tenants) > 1 {
					p.add(tk, "\"*\" already covers every tenant; remove the other entries")
				}
				continue
			}
			if id, err := uuid.Parse(tenant); err != nil || id == uuid.Nil {
				p.add(tk, "%q is not a tenant ID; write a non-nil UUID, or \"*\" for every tenant", tenant)
			}
		}
		if len(t.Allow) == 0 {
			p.add(key+".allow", "is empty; list the token's rights: publish, subscribe or both")
		}
		for j, right := range t.Allow {
			if right != cfgRightPublish && right != cfgRightSubscribe {
				p.add(fmt.Sprintf("%s.allow[%d]", key, j), "%q is not a right; use publish or subscribe", right)
			}
		}
	}
}

var cfgEnvName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func cfgCheckStreamName(p *cfgProblems, key, name string) {
	switch {
	case name == "":
		p.add(key, "is empty; name the JetStream stream, e.g. %q", Default().JetStream.EventsStream)
	case len(name) > cfgMaxStreamName:
		p.add(key, "is %d bytes; a stream name has at most %d", len(name), cfgMaxStreamName)
	case strings.ContainsAny(name, ".*>/\\") || strings.IndexFunc(name, unicode.IsSpace) >= 0 ||
		strings.IndexFunc(name, unicode.IsControl) >= 0:
		p.add(key, "%q is not a stream name; it may not contain '.', '*', '>', '/', '\\' or whitespace", name)
	}
}

func cfgCheckNATSURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "does not parse as a URL; write e.g. nats://nats:4222"
	}
	switch strings.ToLower(u.Scheme) {
	case "nats", "tls", "ws", "wss":
	default:
		return "is not a NATS URL; write scheme://host:port with scheme nats, tls, ws or wss, e.g. nats://nats:4222"
	}
	if u.Hostname() == "" {
		return "has no host; write e.g. nats://nats:4222"
	}
	if port := u.Port(); port != "" || strings.HasSuffix(u.Host, ":") {
		if !cfgValidPort(port, false) || port == "0" {
			return "has an invalid port; write e.g. nats://nats:4222"
		}
	}
	return ""
}

// cfgValidPort reports whether s is a port number 0 to 65535, or -1 when random is true (nats-server's "any port").
func cfgValidPort(s string, random bool) bool {
	n, err := strconv.Atoi(s)
	if err != nil {
		return false
	}
	return (n >= 0 && n <= 65535) || (random && n == -1)
}

// cfgIsLoopback reports whether host is "localhost" or a loopback IP address; an empty host (every interface) and other
// names are not.
func cfgIsLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	host, _, _ = strings.Cut(host, "%") // an IPv6 zone
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func cfgValidOrigin(s string) bool {
	if s == "*" {
		return true
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return false
	}
	return (u.Path == "" || u.Path == "/") && u.RawQuery == "" && u.Fragment == ""
}

func cfgIsHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') && (c < 'A' || c > 'F') {
			return false
		}
	}
	return true
}

// cfgCheckPrintable says what is wrong with s as a short printable text of at most limit bytes, or "".
func cfgCheckPrintable(s string, limit int) string {
	if s == "" {
		return "is empty"
	}
	if len(s) > limit {
		return fmt.Sprintf("is %d bytes; at most %d are allowed", len(s), limit)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return fmt.Sprintf("has a control character at byte %d; only printable characters are allowed", i)
		}
	}
	return ""
}

// expandEnv replaces ${VAR} with the variable's value (empty when unset) and ${VAR:-default} with the default when the
// variable is unset or empty; $$ is a literal $, and any other $ is left as it is (so "$2a$10$..." survives). A
// default runs to the first '}' and is not itself expanded. Malformed ${...} expressions are errors with their line.
func expandEnv(data []byte) ([]byte, []*Error) {
	if !bytes.Contains(data, []byte("$")) {
		return data, nil
	}
	var out bytes.Buffer
	out.Grow(len(data))
	var errs []*Error
	line := 1
	for i := 0; i < len(data); i++ {
		b := data[i]
		if b == '\n' {
			line++
		}
		if b != '$' || i+1 >= len(data) {
			out.WriteByte(b)
			continue
		}
		switch data[i+1] {
		case '$':
			out.WriteByte('$')
			i++
		case '{':
			rest := data[i+2:]
			end := bytes.IndexAny(rest, "}\n")
			if end < 0 || rest[end] != '}' {
				errs = append(errs, &Error{Line: line, Msg: "unterminated \"${\"; write ${NAME} or " +
					"${NAME:-default}, or $${ for a literal \"${\""})
				out.WriteByte(b)
				continue
			}
			expr := string(rest[:end])
			name, def, hasDefault := strings.Cut(expr, ":-")
			if !cfgEnvName.MatchString(name) {
				errs = append(errs, &Error{Line: line, Msg: fmt.Sprintf("%q is not a variable reference; "+
					"write ${NAME} or ${NAME:-default}, or $${ for a literal \"${\"", "${"+expr+"}")})
			}
			v := os.Getenv(name)
			if hasDefault && v == "" {
				v = def
			}
			out.WriteString(v)
			i += 2 + end
		default:
			out.WriteByte(b)
		}
	}
	return out.Bytes(), errs
}

// cfgKeyIndex remembers where each key of a YAML document is, and which configuration section holds it, to name keys
// and lines in errors.
type cfgKeyIndex struct {
	entries []cfgKeyEntry
}

type cfgKeyEntry struct {
	path      string       // dotted path: "http.listen", "auth.tokens[0].name"; an item of a list is "auth.tokens[0]"
	parent    string       // path of the section holding the key, "" at the top level
	key       string       // the key itself; "" for a list item
	section   reflect.Type // struct type of the section holding the key; nil when unknown
	line      int          // line of the key (of the item, for a list item)
	valueLine int          // line of the value
	value     string       // the value, when a scalar
}

// walk records the keys of n, a node decoded into type t at path.
func (x *cfgKeyIndex) walk(n *yaml.Node, t reflect.Type, path string) {
	n = cfgResolveAlias(n)
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case n.Kind == yaml.MappingNode && t != nil && t.Kind() == reflect.Struct:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], cfgResolveAlias(n.Content[i+1])
			if k.Value == "<<" { // a merge key: its mappings are this section's keys
				x.walk(v, t, path)
				continue
			}
			child := cfgJoinPath(path, k.Value)
			x.entries = append(x.entries, cfgKeyEntry{path: child, parent: path, key: k.Value, section: t,
				line: k.Line, valueLine: v.Line, value: v.Value})
			if f, ok := cfgField(t, k.Value); ok {
				x.walk(v, f.Type, child)
			}
		}
	case n.Kind == yaml.SequenceNode && t != nil && t.Kind() == reflect.Slice:
		for i, item := range n.Content {
			item = cfgResolveAlias(item)
			child := fmt.Sprintf("%s[%d]", path, i)
			x.entries = append(x.entries, cfgKeyEntry{path: child, parent: path, line: item.Line,
				valueLine: item.Line, value: item.Value})
			x.walk(item, t.Elem(), child)
		}
	}
}

// lineOf returns the line of key, or of its nearest enclosing key present in the document; 0 when none is.
func (x *cfgKeyIndex) lineOf(key string) int {
	for key != "" {
		for _, e := range x.entries {
			if e.path == key {
				return e.line
			}
		}
		i := strings.LastIndexAny(key, ".[")
		if i < 0 {
			return 0
		}
		key = key[:i]
	}
	return 0
}

var (
	cfgLineMsg      = regexp.MustCompile(`^line (\d+): (.*)$`)
	cfgUnknownMsg   = regexp.MustCompile(`^field (.+) not found in type \S+$`)
	cfgCannotMsg    = regexp.MustCompile("^cannot unmarshal (!!\\w+)(?: `(.*)`)? into (.+)$")
	cfgDuplicateMsg = regexp.MustCompile(`^mapping key "(.*)" already defined at line \d+$`)
)

// describe turns a decoding error of yaml.v3 into ConfigErrors naming the key and its line.
func (x *cfgKeyIndex) describe(err error) []*Error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return []*Error{cfgSyntaxError(err)}
	}
	var errs []*Error
	for _, s := range te.Errors {
		m := cfgLineMsg.FindStringSubmatch(s)
		if m == nil {
			errs = append(errs, &Error{Msg: s})
			continue
		}
		line, _ := strconv.Atoi(m[1])
		msg := m[2]
		if u := cfgUnknownMsg.FindStringSubmatch(msg); u != nil {
			errs = append(errs, x.unknownKey(line, u[1]))
			continue
		}
		if d := cfgDuplicateMsg.FindStringSubmatch(msg); d != nil {
			e := x.find(line, func(e cfgKeyEntry) bool { return e.key == d[1] })
			path := e.path
			if path == "" {
				path = d[1]
			}
			errs = append(errs, &Error{Line: line, Key: path, Msg: path + ": is set twice; remove one of them"})
			continue
		}
		if c := cfgCannotMsg.FindStringSubmatch(msg); c != nil {
			prefix := strings.TrimSuffix(c[2], "...")
			e := x.find(line, func(e cfgKeyEntry) bool { return e.valueLine == line && strings.HasPrefix(e.value, prefix) })
			got := c[1]
			switch {
			case c[2] != "":
				got = strconv.Quote(c[2])
			case c[1] == "!!seq":
				got = "a list"
			case c[1] == "!!map":
				got = "a mapping"
			}
			errs = append(errs, &Error{Line: line, Key: e.path,
				Msg: cfgKeyPrefix(e.path) + fmt.Sprintf("%s is not valid here; want %s", got, cfgDescribeType(c[3]))})
			continue
		}
		e := x.find(line, func(e cfgKeyEntry) bool {
			return e.valueLine == line && e.value != "" &&
				(strings.Contains(msg, strconv.Quote(e.value)) || strings.Contains(msg, "`"+e.value+"`"))
		})
		errs = append(errs, &Error{Line: line, Key: e.path, Msg: cfgKeyPrefix(e.path) + msg})
	}
	return errs
}

// find returns the entry at line that matches, or else the last entry whose value is on line, or else the last entry
// whose key is on line.
func (x *cfgKeyIndex) find(line int, match func(cfgKeyEntry) bool) cfgKeyEntry {
	var byValue, byKey cfgKeyEntry
	for _, e := range x.entries {
		if (e.line == line || e.valueLine == line) && match(e) {
			return e
		}
		if e.valueLine == line {
			byValue = e
		}
		if e.line == line {
			byKey = e
		}
	}
	if byValue.path != "" {
		return byValue
	}
	return byKey
}

func (x *cfgKeyIndex) unknownKey(line int, key string) *Error {
	e := x.find(line, func(e cfgKeyEntry) bool { return e.line == line && e.key == key })
	known := "?"
	if e.section != nil {
		known = strings.Join(cfgYAMLKeys(e.section), ", ")
	}
	msg := fmt.Sprintf("unknown key %q in %s (known: %s)", key, e.parent, known)
	if e.parent == "" {
		msg = fmt.Sprintf("unknown top-level key %q (known: %s)", key, known)
	}
	path := e.path
	if path == "" {
		path = key
	}
	return &Error{Line: line, Key: path, Msg: msg}
}

func cfgKeyPrefix(path string) string {
	if path == "" {
		return ""
	}
	return path + ": "
}

// cfgDescribeType names what a Go type of the configuration wants, for error messages.
func cfgDescribeType(goType string) string {
	switch goType {
	case "int", "int64":
		return "an integer"
	case "bool", "*bool":
		return "true or false"
	case "string":
		return "a string"
	case "[]string":
		return "a list of strings"
	case "[]config.Token":
		return "a list of tokens"
	case "event.TenantKey":
		return "tenant_id or org_id"
	}
	if strings.HasPrefix(goType, "config.") {
		return "a mapping"
	}
	return goType
}

func cfgSyntaxError(err error) *Error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if m := cfgLineMsg.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &Error{Line: line, Msg: "invalid YAML: " + m[2]}
	}
	return &Error{Msg: "invalid YAML: " + msg}
}

func cfgTypeError(line int, format string, args ...any) *yaml.TypeError {
	return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: ", line) + fmt.Sprintf(format, args...)}}
}

func cfgResolveAlias(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func cfgKindName(k yaml.Kind) string {
	switch k {
	case yaml.SequenceNode:
		return "list"
	case yaml.MappingNode:
		return "mapping"
	case yaml.ScalarNode:
		return "single value"
	}
	return "document"
}

func cfgJoinPath(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

// cfgYAMLKeys returns the YAML keys of struct type t, in declaration order.
func cfgYAMLKeys(t reflect.Type) []string {
	keys := make([]string, 0, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		if name := cfgYAMLName(t.Field(i)); name != "" {
			keys = append(keys, name)
		}
	}
	return keys
}

func cfgField(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := 0; i < t.NumField(); i++ {
		if f := t.Field(i); cfgYAMLName(f) == key {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func cfgYAMLName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	switch name {
	case "-":
		return ""
	case "":
		return strings.ToLower(f.Name)
	}
	return name
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
