package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

const (
	cfgTenant  = "3f0c2b1e-8a4d-4c61-9f0e-2d7b5a9c00e1"
	cfgTenant2 = "0b5d8f4e-1c2a-4e3b-8d7f-6a5b4c3d2e1f"
	cfgNilUUID = "00000000-0000-0000-0000-000000000000"
	cfgHash    = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08" // sha256("test")
)

// configErrors returns the *Error values of err, which may be joined.
func configErrors(tb testing.TB, err error) []*Error {
	tb.Helper()
	var list []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		list = j.Unwrap()
	} else {
		list = []error{err}
	}
	out := make([]*Error, 0, len(list))
	for _, e := range list {
		var ce *Error
		if !errors.As(e, &ce) {
			tb.Fatalf("error %v (%T) is not a *ConfigError", e, e)
		}
		out = append(out, ce)
	}
	return out
}

// wantConfigError checks that err is an ErrInvalid with a Error on key whose message names the key.
func wantConfigError(tb testing.TB, err error, key string) *Error {
	tb.Helper()
	if !errors.Is(err, ErrInvalid) {
		tb.Fatalf("error = %v; want ErrInvalidConfig", err)
	}
	for _, ce := range configErrors(tb, err) {
		if ce.Key == key {
			// An unknown key is named in its section: `unknown key "listn" in http`.
			last := key[strings.LastIndex(key, ".")+1:]
			if key != "" && !strings.Contains(ce.Msg, key) && !strings.Contains(ce.Msg, strconv.Quote(last)) {
				tb.Errorf("message %q does not name the key %q", ce.Msg, key)
			}
			return ce
		}
	}
	tb.Fatalf("error = %v; want one on key %q", err, key)
	return nil
}

func cfgBoolPtr(b bool) *bool { return &b }

func TestDefaultConfig(t *testing.T) {
	want := &Config{
		HTTP: HTTP{Listen: "127.0.0.1:8787", UnixSocket: "./eventhook.sock", UnixSocketMode: "0660",
			ReadHeaderTimeout: Duration(5 * time.Second), Console: cfgBoolPtr(true), BodyBudget: 32 << 20},
		Backend: "jetstream",
		NATS: NATS{Embedded: cfgBoolPtr(true), EmbeddedListen: "127.0.0.1:4222", StoreDir: "./data",
			ConnectTimeout: Duration(10 * time.Second)},
		JetStream: JetStream{EventsStream: "FLOVYN_EVENTS", StreamsStream: "FLOVYN_STREAMS", StreamsStorage: "memory", Replicas: 1,
			EventsMaxAge: Duration(168 * time.Hour), EventsMaxBytes: -1, StreamsMaxAge: Duration(time.Hour),
			DuplicateWindow: Duration(2 * time.Minute), ManageStreams: cfgBoolPtr(true),
			PublishTimeout: Duration(10 * time.Second)},
		Memory:  Memory{EventBuffer: 1024, StreamBuffer: 256, IdleTTL: Duration(10 * time.Minute), MaxBytes: 268435456},
		Events:  Events{DefaultSource: "system", MaxEventBytes: 1048576, MaxBatch: 1000, TenantKey: "tenant_id"},
		Streams: Streams{AcceptUntenanted: false},
		SSE: SSE{Heartbeat: Duration(15 * time.Second), MaxSubscribers: 10000, MaxSubscribersPerTenant: 1000,
			WriteTimeout: Duration(10 * time.Second), Format: "eventhook"},
		Auth: Auth{UnixSocket: "trusted"},
		Log:  Log{Level: "info", Format: "text"},
	}
	if got := Default(); !reflect.DeepEqual(got, want) {
		t.Fatalf("DefaultConfig() = %+v; want %+v", got, want)
	}
	if err := Default().Validate(); err != nil {
		t.Fatalf("DefaultConfig().Validate() = %v; want nil", err)
	}

	zero := &Config{}
	zero.ApplyDefaults()
	// One key keeps its zero value: nats.embedded_listen "" means in-process connections only, so only a
	// file that leaves the key out gets the address.
	want.NATS.EmbeddedListen = ""
	if !reflect.DeepEqual(zero, want) {
		t.Fatalf("Config{}.ApplyDefaults() = %+v; want the defaults %+v", zero, want)
	}
	want.NATS.EmbeddedListen = "127.0.0.1:4222"

	for _, doc := range []string{"", "# nothing\n", "~\n", "http:\nnats:\n"} {
		got, err := Parse([]byte(doc))
		if err != nil {
			t.Fatalf("ParseConfig(%q) = %v", doc, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("ParseConfig(%q) = %+v; want the defaults", doc, got)
		}
	}
}

func TestConfigRootFile(t *testing.T) {
	c, err := Load("../../config.yaml")
	if err != nil {
		t.Fatalf("LoadConfig(../../config.yaml) = %v", err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate() = %v", err)
	}
	// The development file spells out exactly the defaults.
	if want := Default(); !reflect.DeepEqual(c, want) {
		t.Fatalf("../../config.yaml = %+v; want the defaults %+v", c, want)
	}
	if !c.NATS.IsEmbedded() || c.Backend != "jetstream" || c.NATS.StoreDir != "./data" {
		t.Fatalf("../../config.yaml is not the embedded jetstream development setup: %+v", c)
	}
}

// cfgTokenDoc returns a configuration with one token of the given fields.
func cfgTokenDoc(fields string) string { return "auth: {tokens: [{" + fields + "}]}" }

const cfgToken = `{name: ops, sha256: "` + cfgHash + `", tenants: "*", allow: [publish, subscribe]}`

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		wantKey string // "" for a valid configuration
	}{
		// Valid configurations.
		{name: "memory backend", yaml: "backend: memory"},
		{name: "nats backend embedded", yaml: "backend: nats"},
		{name: "socket only", yaml: `http: {listen: ""}`},
		{name: "tcp only", yaml: `http: {unix_socket: ""}`},
		{name: "flovyn framing", yaml: `sse: {format: flovyn}`},
		{name: "cluster", yaml: `nats: {urls: ["nats://a:4222", "tls://b:4443", "ws://c:8080", "wss://d/ws", "nats://e"]}`},
		{name: "cluster with creds and tls", yaml: `nats: {urls: ["tls://a:4222"], creds_file: "/etc/nats/user.creds",
  tls: {ca_file: ca.pem, cert_file: c.pem, key_file: k.pem}}`},
		{name: "all interfaces with a token", yaml: "http: {listen: \":8787\"}\nauth: {tokens: [" + cfgToken + "]}"},
		{name: "all interfaces allowed", yaml: "http: {listen: \"0.0.0.0:8787\"}\nauth: {allow_unauthenticated_tcp: true}"},
		{name: "loopback names", yaml: `http: {listen: "localhost:0"}`},
		{name: "ipv6 loopback", yaml: `http: {listen: "[::1]:8787"}`},
		{name: "unquoted socket mode", yaml: "http:\n  unix_socket_mode: 0600"},
		{name: "socket mode 0o", yaml: `http: {unix_socket_mode: "0o600"}`},
		{name: "embedded random port", yaml: `nats: {embedded_listen: "127.0.0.1:-1"}`},
		{name: "cors origins", yaml: `http: {cors_origins: ["*", "https://app.example.com", "http://localhost:3000"]}`},
		{name: "socket needs a token", yaml: "auth: {unix_socket: token, tokens: [" + cfgToken + "]}"},
		{name: "token from env", yaml: cfgTokenDoc(`name: ui, env: EH_UI_TOKEN, tenants: ["` + cfgTenant + `"], allow: [subscribe]`)},
		{name: "upper-case hash", yaml: cfgTokenDoc(`name: ops, sha256: "` + strings.ToUpper(cfgHash) + `", tenants: "*", allow: [publish]`)},
		{name: "default tenant", yaml: `events: {default_tenant_id: "` + cfgTenant + `"}`},
		{name: "tenant key org_id", yaml: `events: {tenant_key: org_id}`},
		{name: "tenant key tenant_id", yaml: `events: {tenant_key: tenant_id}`},
		{name: "limits at their bounds", yaml: "events: {max_event_bytes: 1024, max_batch: 100000}\n" +
			"sse: {heartbeat: 1s, max_subscribers: 5, max_subscribers_per_tenant: 5}\njetstream: {replicas: 5}"},
		{name: "duplicate window equal to max age", yaml: `jetstream: {events_max_age: 2m, duplicate_window: 2m}`},
		{name: "events max bytes", yaml: `jetstream: {events_max_bytes: 1073741824}`},
		{name: "streams on file storage", yaml: `jetstream: {streams_storage: file}`},
		{name: "streams on memory storage", yaml: `jetstream: {streams_storage: memory}`},
		{name: "merge key", yaml: "sse:\n  <<: {heartbeat: 20s}\n  max_subscribers: 50\n  max_subscribers_per_tenant: 5"},

		// backend
		{name: "unknown backend", yaml: "backend: kafka", wantKey: "backend"},
		// http
		{name: "no listener", yaml: `http: {listen: "", unix_socket: ""}`, wantKey: "http"},
		{name: "listen without port", yaml: `http: {listen: "localhost"}`, wantKey: "http.listen"},
		{name: "listen bad port", yaml: `http: {listen: "127.0.0.1:99999"}`, wantKey: "http.listen"},
		{name: "listen named port", yaml: `http: {listen: "127.0.0.1:http"}`, wantKey: "http.listen"},
		{name: "public listen without tokens", yaml: `http: {listen: "0.0.0.0:8787"}`, wantKey: "http.listen"},
		{name: "every interface without tokens", yaml: `http: {listen: ":8787"}`, wantKey: "http.listen"},
		{name: "socket mode not octal", yaml: `http: {unix_socket_mode: "0999"}`, wantKey: "http.unix_socket_mode"},
		{name: "socket mode too large", yaml: `http: {unix_socket_mode: "01000"}`, wantKey: "http.unix_socket_mode"},
		{name: "socket mode symbolic", yaml: `http: {unix_socket_mode: "rw-rw----"}`, wantKey: "http.unix_socket_mode"},
		{name: "negative header timeout", yaml: `http: {read_header_timeout: -1s}`, wantKey: "http.read_header_timeout"},
		{name: "cors origin without scheme", yaml: `http: {cors_origins: ["app.example.com"]}`, wantKey: "http.cors_origins[0]"},
		{name: "cors origin with path", yaml: `http: {cors_origins: ["*", "https://app.example.com/x"]}`, wantKey: "http.cors_origins[1]"},
		// nats
		{name: "embedded and urls", yaml: `nats: {embedded: true, urls: ["nats://a:4222"]}`, wantKey: "nats.embedded"},
		{name: "not embedded without urls", yaml: `nats: {embedded: false}`, wantKey: "nats.urls"},
		{name: "url with http scheme", yaml: `nats: {urls: ["http://a:4222"]}`, wantKey: "nats.urls[0]"},
		{name: "url without scheme", yaml: `nats: {urls: ["nats://a:4222", "localhost:4222"]}`, wantKey: "nats.urls[1]"},
		{name: "url without host", yaml: `nats: {urls: ["nats://:4222"]}`, wantKey: "nats.urls[0]"},
		{name: "url with bad port", yaml: `nats: {urls: ["nats://a:99999"]}`, wantKey: "nats.urls[0]"},
		{name: "url that does not parse", yaml: `nats: {urls: ["nats://a:port"]}`, wantKey: "nats.urls[0]"},
		{name: "cert without key", yaml: `nats: {urls: ["tls://a:4222"], tls: {cert_file: c.pem}}`, wantKey: "nats.tls.key_file"},
		{name: "key without cert", yaml: `nats: {urls: ["tls://a:4222"], tls: {key_file: k.pem}}`, wantKey: "nats.tls.cert_file"},
		{name: "creds and token", yaml: `nats: {urls: ["nats://a:4222"], creds_file: u.creds, token: s3cret}`, wantKey: "nats.token"},
		{name: "negative connect timeout", yaml: `nats: {connect_timeout: -1s}`, wantKey: "nats.connect_timeout"},
		{name: "bad embedded listen", yaml: `nats: {embedded_listen: "4222"}`, wantKey: "nats.embedded_listen"},
		// jetstream
		{name: "too many replicas", yaml: `jetstream: {replicas: 6}`, wantKey: "jetstream.replicas"},
		{name: "negative replicas", yaml: `jetstream: {replicas: -1}`, wantKey: "jetstream.replicas"},
		{name: "stream name with dot", yaml: `jetstream: {events_stream: FLOVYN.EVENTS}`, wantKey: "jetstream.events_stream"},
		{name: "stream name with star", yaml: `jetstream: {events_stream: "EVENTS*"}`, wantKey: "jetstream.events_stream"},
		{name: "stream name with gt", yaml: `jetstream: {streams_stream: "STREAMS>"}`, wantKey: "jetstream.streams_stream"},
		{name: "stream name with space", yaml: `jetstream: {streams_stream: "MY STREAMS"}`, wantKey: "jetstream.streams_stream"},
		{name: "stream name with tab", yaml: `jetstream: {streams_stream: "MY\tSTREAMS"}`, wantKey: "jetstream.streams_stream"},
		{name: "same stream names", yaml: `jetstream: {events_stream: X, streams_stream: X}`, wantKey: "jetstream.streams_stream"},
		{name: "negative events max age", yaml: `jetstream: {events_max_age: -1h}`, wantKey: "jetstream.events_max_age"},
		{name: "negative streams max age", yaml: `jetstream: {streams_max_age: -1m}`, wantKey: "jetstream.streams_max_age"},
		{name: "negative duplicate window", yaml: `jetstream: {duplicate_window: -1s}`, wantKey: "jetstream.duplicate_window"},
		{name: "duplicate window beyond max age", yaml: `jetstream: {duplicate_window: 200h}`, wantKey: "jetstream.duplicate_window"},
		{name: "events max bytes", yaml: `jetstream: {events_max_bytes: -2}`, wantKey: "jetstream.events_max_bytes"},
		{name: "negative publish timeout", yaml: `jetstream: {publish_timeout: -5s}`, wantKey: "jetstream.publish_timeout"},
		{name: "unknown streams storage", yaml: `jetstream: {streams_storage: disk}`, wantKey: "jetstream.streams_storage"},
		{name: "streams storage in capitals", yaml: `jetstream: {streams_storage: Memory}`, wantKey: "jetstream.streams_storage"},
		// memory
		{name: "event buffer", yaml: `memory: {event_buffer: -1}`, wantKey: "memory.event_buffer"},
		{name: "stream buffer", yaml: `memory: {stream_buffer: -1}`, wantKey: "memory.stream_buffer"},
		{name: "idle ttl", yaml: `memory: {idle_ttl: -1m}`, wantKey: "memory.idle_ttl"},
		{name: "max bytes", yaml: `memory: {max_bytes: -5}`, wantKey: "memory.max_bytes"},
		// events
		{name: "default tenant not a uuid", yaml: `events: {default_tenant_id: acme}`, wantKey: "events.default_tenant_id"},
		{name: "default tenant nil", yaml: `events: {default_tenant_id: "` + cfgNilUUID + `"}`, wantKey: "events.default_tenant_id"},
		{name: "default source too long", yaml: `events: {default_source: "` + strings.Repeat("s", 256) + `"}`, wantKey: "events.default_source"},
		{name: "default source control", yaml: `events: {default_source: "a\tb"}`, wantKey: "events.default_source"},
		{name: "max event bytes too small", yaml: `events: {max_event_bytes: 1023}`, wantKey: "events.max_event_bytes"},
		{name: "max event bytes too large", yaml: `events: {max_event_bytes: 67108865}`, wantKey: "events.max_event_bytes"},
		{name: "max batch too large", yaml: `events: {max_batch: 100001}`, wantKey: "events.max_batch"},
		{name: "max batch negative", yaml: `events: {max_batch: -1}`, wantKey: "events.max_batch"},
		{name: "tenant key unknown", yaml: `events: {tenant_key: orgId}`, wantKey: "events.tenant_key"},
		{name: "tenant key empty", yaml: `events: {tenant_key: ""}`},
		{name: "tenant key a list", yaml: "events:\n  max_batch: 10\n  tenant_key: [org_id]", wantKey: "events.tenant_key"},
		// sse
		{name: "heartbeat too short", yaml: `sse: {heartbeat: 500ms}`, wantKey: "sse.heartbeat"},
		{name: "max subscribers", yaml: `sse: {max_subscribers: -1}`, wantKey: "sse.max_subscribers"},
		{name: "per tenant negative", yaml: `sse: {max_subscribers_per_tenant: -1}`, wantKey: "sse.max_subscribers_per_tenant"},
		{name: "per tenant above global", yaml: `sse: {max_subscribers: 10, max_subscribers_per_tenant: 11}`, wantKey: "sse.max_subscribers_per_tenant"},
		{name: "write timeout", yaml: `sse: {write_timeout: -1s}`, wantKey: "sse.write_timeout"},
		{name: "sse format", yaml: `sse: {format: Flovyn}`, wantKey: "sse.format"},
		// auth
		{name: "socket policy", yaml: `auth: {unix_socket: open}`, wantKey: "auth.unix_socket"},
		{name: "socket token without tokens", yaml: `auth: {unix_socket: token}`, wantKey: "auth.unix_socket"},
		{name: "token without name", yaml: cfgTokenDoc(`sha256: "` + cfgHash + `", tenants: "*", allow: [publish]`), wantKey: "auth.tokens[0].name"},
		{name: "token names not unique", yaml: "auth: {tokens: [" + cfgToken + ", " + cfgToken + "]}", wantKey: "auth.tokens[1].name"},
		{name: "token with hash and env", yaml: cfgTokenDoc(`name: a, sha256: "` + cfgHash + `", env: TOK, tenants: "*", allow: [publish]`), wantKey: "auth.tokens[0]"},
		{name: "token with neither", yaml: cfgTokenDoc(`name: a, tenants: "*", allow: [publish]`), wantKey: "auth.tokens[0]"},
		{name: "hash too short", yaml: cfgTokenDoc(`name: a, sha256: "abc", tenants: "*", allow: [publish]`), wantKey: "auth.tokens[0].sha256"},
		{name: "hash not hex", yaml: cfgTokenDoc(`name: a, sha256: "` + strings.Repeat("g", 64) + `", tenants: "*", allow: [publish]`), wantKey: "auth.tokens[0].sha256"},
		{name: "env not a name", yaml: cfgTokenDoc(`name: a, env: "MY-TOKEN", tenants: "*", allow: [publish]`), wantKey: "auth.tokens[0].env"},
		{name: "env starting with digit", yaml: cfgTokenDoc(`name: a, env: "1TOKEN", tenants: "*", allow: [publish]`), wantKey: "auth.tokens[0].env"},
		{name: "no tenants", yaml: cfgTokenDoc(`name: a, env: TOK, allow: [publish]`), wantKey: "auth.tokens[0].tenants"},
		{name: "empty tenants", yaml: cfgTokenDoc(`name: a, env: TOK, tenants: [], allow: [publish]`), wantKey: "auth.tokens[0].tenants"},
		{name: "tenant not a uuid", yaml: cfgTokenDoc(`name: a, env: TOK, tenants: [acme], allow: [publish]`), wantKey: "auth.tokens[0].tenants[0]"},
		{name: "tenant nil uuid", yaml: cfgTokenDoc(`name: a, env: TOK, tenants: ["` + cfgTenant + `", "` + cfgNilUUID + `"], allow: [publish]`), wantKey: "auth.tokens[0].tenants[1]"},
		{name: "star with tenants", yaml: cfgTokenDoc(`name: a, env: TOK, tenants: ["*", "` + cfgTenant + `"], allow: [publish]`), wantKey: "auth.tokens[0].tenants[0]"},
		{name: "no rights", yaml: cfgTokenDoc(`name: a, env: TOK, tenants: "*"`), wantKey: "auth.tokens[0].allow"},
		{name: "unknown right", yaml: cfgTokenDoc(`name: a, env: TOK, tenants: "*", allow: [publish, admin]`), wantKey: "auth.tokens[0].allow[1]"},
		// log
		{name: "log level", yaml: `log: {level: trace}`, wantKey: "log.level"},
		{name: "log format", yaml: `log: {format: xml}`, wantKey: "log.format"},
		// shape of values
		{name: "integer expected", yaml: "memory:\n  event_buffer: lots", wantKey: "memory.event_buffer"},
		{name: "duration without unit", yaml: "sse:\n  heartbeat: 15", wantKey: "sse.heartbeat"},
		{name: "duration garbage", yaml: `sse: {write_timeout: 1s, heartbeat: soon}`, wantKey: "sse.heartbeat"},
		{name: "section not a mapping", yaml: "http: 5", wantKey: "http"},
		{name: "list expected", yaml: "nats:\n  urls: nats://a:4222", wantKey: "nats.urls"},
		{name: "bool expected", yaml: "streams:\n  accept_untenanted: maybe", wantKey: "streams.accept_untenanted"},
		{name: "untenanted tenant not a uuid", yaml: "streams:\n  untenanted_tenant_id: acme", wantKey: "streams.untenanted_tenant_id"},
		{name: "untenanted tenant nil", yaml: "streams:\n  untenanted_tenant_id: \"" + cfgNilUUID + "\"", wantKey: "streams.untenanted_tenant_id"},
		{name: "untenanted tenant", yaml: "streams:\n  untenanted_tenant_id: \"" + cfgTenant + "\""},
		{name: "tenants mapping", yaml: "auth:\n  tokens:\n  - name: a\n    env: TOK\n    tenants: {a: b}\n    allow: [publish]", wantKey: "auth.tokens[0].tenants"},
		{name: "key set twice", yaml: "log:\n  level: info\n  level: debug", wantKey: "log.level"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.yaml))
			if tt.wantKey == "" {
				if err != nil {
					t.Fatalf("ParseConfig(%q) = %v; want nil", tt.yaml, err)
				}
				if err := c.Validate(); err != nil {
					t.Fatalf("Validate() after ParseConfig = %v; want nil", err)
				}
				return
			}
			if c != nil {
				t.Errorf("ParseConfig(%q) returned a config with an error", tt.yaml)
			}
			ce := wantConfigError(t, err, tt.wantKey)
			if ce.Line == 0 {
				t.Errorf("ParseConfig(%q) = %v; want the line of %s", tt.yaml, err, tt.wantKey)
			}
		})
	}
}

// TestConfigValidateInCode checks Validate on configurations built in code, without a file: no lines, keys named.
func TestConfigValidateInCode(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(*Config)
		wantKey string
		wantErr error
	}{
		{name: "defaults", edit: func(*Config) {}},
		{name: "zero replicas", edit: func(c *Config) { c.JetStream.Replicas = 0 }, wantKey: "jetstream.replicas", wantErr: ErrInvalid},
		{name: "no listener", edit: func(c *Config) { c.HTTP.Listen, c.HTTP.UnixSocket = "", "" }, wantKey: "http", wantErr: ErrInvalid},
		{name: "empty stream name", edit: func(c *Config) { c.JetStream.EventsStream = "" }, wantKey: "jetstream.events_stream", wantErr: ErrInvalid},
		{name: "empty backend", edit: func(c *Config) { c.Backend = "" }, wantKey: "backend", wantErr: ErrInvalid},
		{name: "empty source", edit: func(c *Config) { c.Events.DefaultSource = "" }, wantKey: "events.default_source", wantErr: ErrInvalid},
		{name: "zero heartbeat", edit: func(c *Config) { c.SSE.Heartbeat = 0 }, wantKey: "sse.heartbeat", wantErr: ErrInvalid},
		{name: "tenant key", edit: func(c *Config) { c.Events.TenantKey = "tenant" }, wantKey: "events.tenant_key", wantErr: ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.edit(c)
			err := c.Validate()
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Validate() = %v; want %v", err, tt.wantErr)
			}
			if tt.wantErr == nil {
				return
			}
			ce := wantConfigError(t, err, tt.wantKey)
			if ce.Line != 0 || ce.File != "" {
				t.Errorf("error %q has a file or line; want neither", ce)
			}
			if !strings.HasPrefix(ce.Error(), tt.wantKey+": ") {
				t.Errorf("Error() = %q; want it to start with %q", ce.Error(), tt.wantKey+": ")
			}
		})
	}

	// Several problems are reported together.
	c := Default()
	c.Log.Level, c.Log.Format, c.JetStream.Replicas = "loud", "xml", 9
	if n := len(configErrors(t, c.Validate())); n != 3 {
		t.Fatalf("Validate() with 3 problems reported %d", n)
	}
}

func TestConfigDocumentShape(t *testing.T) {
	tests := []struct {
		name     string
		yaml     string
		wantLine int
		wantMsg  string
	}{
		{name: "sequence", yaml: "- http\n- nats\n", wantLine: 1, wantMsg: "must be a mapping of sections (http, backend, nats"},
		{name: "scalar", yaml: "hello\n", wantLine: 1, wantMsg: "not a single value"},
		{name: "two documents", yaml: "backend: memory\n---\nbackend: nats\n", wantLine: 2, wantMsg: "more than one YAML document"},
		{name: "syntax", yaml: "http:\n  listen: [\n", wantMsg: "invalid YAML"},
		{name: "tab indentation", yaml: "http:\n\tlisten: x\n", wantMsg: "invalid YAML"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml))
			ce := wantConfigError(t, err, "")
			if !strings.Contains(ce.Msg, tt.wantMsg) {
				t.Errorf("ParseConfig(%q) = %q; want it to contain %q", tt.yaml, ce.Msg, tt.wantMsg)
			}
			if tt.wantLine != 0 && ce.Line != tt.wantLine {
				t.Errorf("ParseConfig(%q) line = %d; want %d", tt.yaml, ce.Line, tt.wantLine)
			}
		})
	}
}

func TestConfigUnknownKey(t *testing.T) {
	tests := []struct {
		name     string
		yaml     string
		wantKey  string
		wantLine int
		wantMsg  string
	}{
		{name: "in a section", yaml: "backend: memory\nhttp:\n  listn: \"127.0.0.1:1\"\n", wantKey: "http.listn", wantLine: 3,
			wantMsg: `unknown key "listn" in http (known: listen, unix_socket, unix_socket_mode, read_header_timeout, cors_origins, console, body_budget)`},
		{name: "top level", yaml: "backend: memory\nbackends: nats\n", wantKey: "backends", wantLine: 2,
			wantMsg: `unknown top-level key "backends" (known: http, backend, nats, jetstream, memory, events, streams, sse, auth, log)`},
		{name: "nested", yaml: "nats:\n  tls: {ca: x}\n", wantKey: "nats.tls.ca", wantLine: 2,
			wantMsg: `unknown key "ca" in nats.tls (known: ca_file, cert_file, key_file)`},
		{name: "in a token", yaml: "auth:\n  tokens:\n    - name: a\n      env: TOK\n      tenant: \"*\"\n      allow: [publish]\n",
			wantKey: "auth.tokens[0].tenant", wantLine: 5,
			wantMsg: `unknown key "tenant" in auth.tokens[0] (known: name, sha256, env, tenants, allow)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml))
			ce := wantConfigError(t, err, tt.wantKey)
			if ce.Msg != tt.wantMsg {
				t.Errorf("message = %q; want %q", ce.Msg, tt.wantMsg)
			}
			if ce.Line != tt.wantLine {
				t.Errorf("line = %d; want %d", ce.Line, tt.wantLine)
			}
		})
	}

	// Every unknown key is reported at once, and Load names the file.
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte("http:\n  listn: x\nlog:\n  levl: debug\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	errs := configErrors(t, err)
	if len(errs) != 2 {
		t.Fatalf("LoadConfig = %v; want 2 errors", err)
	}
	want := path + ` line 2: unknown key "listn" in http (known: listen,`
	if !strings.HasPrefix(errs[0].Error(), want) {
		t.Errorf("Error() = %q; want it to start with %q", errs[0].Error(), want)
	}
	if errs[1].Key != "log.levl" || errs[1].Line != 4 || errs[1].File != path {
		t.Errorf("second error = %+v; want log.levl at line 4 of %s", errs[1], path)
	}
}

func TestLoadConfigErrors(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "missing.yaml"))
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "missing.yaml") {
		t.Fatalf("LoadConfig(missing) = %v; want ErrNotExist naming the path", err)
	}

	// A validation error carries the file and the line of its key.
	path := filepath.Join(t.TempDir(), "eventhook.yaml")
	if err := os.WriteFile(path, []byte("backend: memory\njetstream:\n  replicas: 7\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Load(path)
	ce := wantConfigError(t, err, "jetstream.replicas")
	if got, want := ce.Error(), path+" line 3: jetstream.replicas: is 7; it must be between 1 and 5"; got != want {
		t.Fatalf("Error() = %q; want %q", got, want)
	}
}

func TestConfigEnvExpansion(t *testing.T) {
	t.Setenv("EH_LISTEN", "127.0.0.1:9999")
	t.Setenv("EH_EMPTY", "")
	t.Setenv("EH_REPLICAS", "3")
	t.Setenv("EH_NATS_TOKEN", "s3cret # not a comment")
	tests := []struct {
		name    string
		yaml    string
		check   func(*Config) bool
		wantErr error
	}{
		{name: "set", yaml: `http: {listen: "${EH_LISTEN}"}`,
			check: func(c *Config) bool { return c.HTTP.Listen == "127.0.0.1:9999" }},
		{name: "unquoted", yaml: "http:\n  listen: ${EH_LISTEN}",
			check: func(c *Config) bool { return c.HTTP.Listen == "127.0.0.1:9999" }},
		{name: "default when unset", yaml: `http: {listen: "${EH_UNSET_VAR:-127.0.0.1:7000}"}`,
			check: func(c *Config) bool { return c.HTTP.Listen == "127.0.0.1:7000" }},
		{name: "default when empty", yaml: `http: {listen: "${EH_EMPTY:-127.0.0.1:7001}"}`,
			check: func(c *Config) bool { return c.HTTP.Listen == "127.0.0.1:7001" }},
		{name: "value wins over default", yaml: `http: {listen: "${EH_LISTEN:-127.0.0.1:7002}"}`,
			check: func(c *Config) bool { return c.HTTP.Listen == "127.0.0.1:9999" }},
		{name: "empty default", yaml: `http: {listen: "${EH_UNSET_VAR:-}"}`,
			check: func(c *Config) bool { return c.HTTP.Listen == "" && c.HTTP.UnixSocket == "./eventhook.sock" }},
		{name: "unset", yaml: `http: {listen: "${EH_UNSET_VAR}"}`, wantErr: ErrInvalid},
		{name: "number", yaml: "jetstream:\n  replicas: ${EH_REPLICAS:-1}",
			check: func(c *Config) bool { return c.JetStream.Replicas == 3 }},
		{name: "secret", yaml: `nats: {urls: ["nats://a:4222"], token: "${EH_NATS_TOKEN}"}`,
			check: func(c *Config) bool { return c.NATS.Token == "s3cret # not a comment" }},
		{name: "escaped dollar", yaml: `events: {default_source: "cost $$5 $${EH_LISTEN}"}`,
			check: func(c *Config) bool { return c.Events.DefaultSource == "cost $5 ${EH_LISTEN}" }},
		{name: "bare dollar untouched", yaml: `events: {default_source: "$2a$10$N9qo8uLOickgx2ZMRZoMye $EH_LISTEN"}`,
			check: func(c *Config) bool { return c.Events.DefaultSource == "$2a$10$N9qo8uLOickgx2ZMRZoMye $EH_LISTEN" }},
		{name: "dollar at the end", yaml: `events: {default_source: "x$"}`,
			check: func(c *Config) bool { return c.Events.DefaultSource == "x$" }},
		{name: "in a comment", yaml: "# ${EH_UNSET_VAR}\nbackend: memory # or ${EH_UNSET_VAR}",
			check: func(c *Config) bool { return c.Backend == "memory" }},
		{name: "a hash in a value", yaml: `events: {default_source: "a#${EH_LISTEN}"}`,
			check: func(c *Config) bool { return c.Events.DefaultSource == "a#127.0.0.1:9999" }},
		{name: "unterminated", yaml: "backend: memory\nhttp: {listen: \"${EH_LISTEN\"}\n", wantErr: ErrInvalid},
		{name: "not a name", yaml: `http: {listen: "${EH-LISTEN}"}`, wantErr: ErrInvalid},
		{name: "unsupported form", yaml: `http: {listen: "${EH_LISTEN:=x}"}`, wantErr: ErrInvalid},
		{name: "empty braces", yaml: `http: {listen: "${}"}`, wantErr: ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.yaml))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("ParseConfig(%q) = %v; want %v", tt.yaml, err, tt.wantErr)
			}
			if tt.wantErr != nil {
				if ce := configErrors(t, err)[0]; ce.Line == 0 || !strings.Contains(ce.Msg, "${NAME:-default}") &&
					!strings.Contains(ce.Msg, "EH_UNSET_VAR is not set") {
					t.Errorf("error %q; want a line and the supported forms", ce)
				}
				return
			}
			if !tt.check(c) {
				t.Fatalf("ParseConfig(%q) = %+v; the expanded value is wrong", tt.yaml, c)
			}
		})
	}

	_, err := Parse([]byte("backend: memory\nhttp: {listen: \"${EH_LISTEN\"}\n"))
	if ce := wantConfigError(t, err, ""); ce.Line != 2 {
		t.Errorf("unterminated ${ reported on line %d; want 2", ce.Line)
	}
}

func TestConfigEmbeddedAndURLs(t *testing.T) {
	tests := []struct {
		name         string
		yaml         string
		wantEmbedded bool
		wantKey      string
	}{
		{name: "default", yaml: "", wantEmbedded: true},
		{name: "urls imply not embedded", yaml: `nats: {urls: ["nats://a:4222", "nats://b:4222"]}`, wantEmbedded: false},
		{name: "explicit false with urls", yaml: `nats: {embedded: false, urls: ["nats://a:4222"]}`, wantEmbedded: false},
		{name: "explicit true", yaml: `nats: {embedded: true}`, wantEmbedded: true},
		{name: "memory backend needs no server", yaml: "backend: memory\nnats: {embedded: false}", wantEmbedded: false},
		{name: "both", yaml: `nats: {embedded: true, urls: ["nats://a:4222"]}`, wantKey: "nats.embedded"},
		{name: "neither", yaml: `nats: {embedded: false}`, wantKey: "nats.urls"},
		{name: "neither with core nats", yaml: "backend: nats\nnats: {embedded: false, urls: []}", wantKey: "nats.urls"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.yaml))
			if tt.wantKey != "" {
				ce := wantConfigError(t, err, tt.wantKey)
				if !strings.Contains(ce.Msg, "exclusive") && tt.wantKey == "nats.embedded" {
					t.Errorf("message %q; want it to say the keys are exclusive", ce.Msg)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseConfig(%q) = %v", tt.yaml, err)
			}
			if got := c.NATS.IsEmbedded(); got != tt.wantEmbedded {
				t.Fatalf("IsEmbedded() = %v; want %v", got, tt.wantEmbedded)
			}
			if c.NATS.Embedded == nil || *c.NATS.Embedded != tt.wantEmbedded {
				t.Fatalf("nats.embedded = %v; want it set to %v by the defaults", c.NATS.Embedded, tt.wantEmbedded)
			}
			if *c.JetStream.ManageStreams != true {
				t.Fatalf("jetstream.manage_streams = false; want the default true")
			}
		})
	}

	if (NATS{}).IsEmbedded() != true || (NATS{URLs: []string{"nats://a:4222"}}).IsEmbedded() != false {
		t.Fatal("IsEmbedded of an unset embedded does not follow urls")
	}
}

func TestConfigTokenTenants(t *testing.T) {
	tests := []struct {
		name        string
		tenants     string
		wantTenants []string
	}{
		{name: "star string", tenants: `"*"`, wantTenants: []string{"*"}},
		{name: "star single quoted", tenants: `'*'`, wantTenants: []string{"*"}},
		{name: "star list", tenants: `["*"]`, wantTenants: []string{"*"}},
		{name: "list", tenants: `["` + cfgTenant + `", "` + cfgTenant2 + `"]`, wantTenants: []string{cfgTenant, cfgTenant2}},
		{name: "block list", tenants: "\n      - " + cfgTenant + "\n      - " + cfgTenant2, wantTenants: []string{cfgTenant, cfgTenant2}},
		{name: "single id", tenants: cfgTenant, wantTenants: []string{cfgTenant}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := "auth:\n  tokens:\n    - name: ops\n      sha256: " + strings.ToUpper(cfgHash) + "\n      tenants: " +
				tt.tenants + "\n      allow: [publish]\n"
			c, err := Parse([]byte(doc))
			if err != nil {
				t.Fatalf("ParseConfig(%q) = %v", doc, err)
			}
			tok := c.Auth.Tokens[0]
			if !reflect.DeepEqual(tok.Tenants, tt.wantTenants) {
				t.Fatalf("tenants = %q; want %q", tok.Tenants, tt.wantTenants)
			}
			if tok.Name != "ops" || tok.SHA256 != cfgHash || !reflect.DeepEqual(tok.Allow, []string{"publish"}) {
				t.Fatalf("token = %+v; want name ops, the lower-case hash, allow [publish]", tok)
			}
		})
	}
}

func TestConfigYAMLRoundTrip(t *testing.T) {
	rich := `
http:
  listen: "[::1]:9000"
  unix_socket: /run/eventhook/eventhook.sock
  unix_socket_mode: "0600"
  read_header_timeout: 2500ms
  cors_origins: ["https://app.example.com"]
  console: false
backend: nats
nats:
  urls: ["nats://nats-0:4222", "nats://nats-1:4222"]
  creds_file: /etc/nats/user.creds
  tls: {ca_file: /etc/nats/ca.pem, cert_file: /etc/nats/tls.crt, key_file: /etc/nats/tls.key}
  connect_timeout: 1m30s
jetstream:
  events_stream: EVENTS
  streams_stream: STREAMS
  streams_storage: file
  replicas: 3
  events_max_age: 720h
  events_max_bytes: 10737418240
  streams_max_age: 30m
  duplicate_window: 5m
  manage_streams: false
  publish_timeout: 2s
memory: {event_buffer: 10, stream_buffer: 20, idle_ttl: 1h0m30s, max_bytes: 1048576}
events: {default_tenant_id: "` + cfgTenant + `", default_source: "worker: w-1", max_event_bytes: 65536, max_batch: 50}
streams: {accept_untenanted: true}
sse: {heartbeat: 5s, max_subscribers: 100, max_subscribers_per_tenant: 10, write_timeout: 3s}
auth:
  unix_socket: token
  tokens:
    - {name: ops, sha256: "` + cfgHash + `", tenants: "*", allow: [publish, subscribe]}
    - {name: ui, env: EH_UI_TOKEN, tenants: ["` + cfgTenant + `"], allow: [subscribe]}
log: {level: debug, format: json}
`
	tests := []struct {
		name string
		yaml string
	}{
		{name: "defaults", yaml: ""},
		{name: "development file", yaml: cfgReadFile(t, "../../config.yaml")},
		{name: "everything set", yaml: rich},
		{name: "memory", yaml: "backend: memory\nhttp: {listen: \"\"}\nnats: {embedded: false}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.yaml))
			if err != nil {
				t.Fatal(err)
			}
			out, err := c.YAML()
			if err != nil {
				t.Fatalf("YAML() = %v", err)
			}
			back, err := Parse(out)
			if err != nil {
				t.Fatalf("ParseConfig(YAML()) = %v\n%s", err, out)
			}
			if !reflect.DeepEqual(back, c) {
				t.Fatalf("ParseConfig(YAML()) = %+v; want %+v\n%s", back, c, out)
			}
		})
	}

	c, err := Parse([]byte(rich))
	if err != nil {
		t.Fatal(err)
	}
	out, _ := c.YAML()
	for _, want := range []string{"events_max_age: 720h\n", "idle_ttl: 1h0m30s\n", "connect_timeout: 1m30s\n",
		"read_header_timeout: 2.5s\n", "embedded: false\n", "manage_streams: false\n", "streams_storage: file\n"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("YAML() lacks %q:\n%s", want, out)
		}
	}
}

func TestConfigYAMLRedactsSecrets(t *testing.T) {
	c, err := Parse([]byte(`nats: {urls: ["nats://user:pa55word@a:4222", "nats://t0ken@b:4222/", "nats://c:4222"], token: "s3cret"}`))
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.YAML()
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"s3cret", "pa55word", "t0ken", "user"} {
		if strings.Contains(string(out), secret) {
			t.Errorf("YAML() shows the secret %q:\n%s", secret, out)
		}
	}
	for _, want := range []string{"token: <redacted>\n", "nats://<redacted>@a:4222", "nats://<redacted>@b:4222/", "nats://c:4222"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("YAML() lacks %q:\n%s", want, out)
		}
	}
	if c.NATS.Token != "s3cret" || c.NATS.URLs[0] != "nats://user:pa55word@a:4222" {
		t.Fatal("YAML() changed the configuration it printed")
	}

	// An empty token is not shown as redacted.
	c.NATS.Token = ""
	out, _ = c.YAML()
	if !strings.Contains(string(out), "token: \"\"\n") {
		t.Errorf("YAML() with no token:\n%s", out)
	}

	// Errors about URLs do not echo their credentials either.
	_, err = Parse([]byte(`nats: {urls: ["http://user:pa55word@a:4222"]}`))
	wantConfigError(t, err, "nats.urls[0]")
	if strings.Contains(err.Error(), "pa55word") {
		t.Fatalf("error %q shows the password", err)
	}
}

func cfgReadFile(tb testing.TB, path string) string {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

func TestConfigDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0s", 168 * time.Hour: "168h", time.Hour: "1h", 2 * time.Minute: "2m", 90 * time.Second: "1m30s",
		time.Hour + 30*time.Second: "1h0m30s", 1500 * time.Millisecond: "1.5s", 500 * time.Millisecond: "500ms",
		-time.Hour: "-1h",
	} {
		if got := Duration(d).String(); got != want {
			t.Errorf("Duration(%v).String() = %q; want %q", d, got, want)
		}
		if got, err := time.ParseDuration(Duration(d).String()); err != nil || got != d {
			t.Errorf("time.ParseDuration(%q) = %v, %v; want %v", Duration(d), got, err, d)
		}
	}
	if Duration(time.Second).D() != time.Second {
		t.Error("D() does not return the time.Duration")
	}
	c, err := Parse([]byte("sse:\n  heartbeat: 0\n"))
	if err != nil {
		t.Fatalf("heartbeat 0: %v", err)
	}
	if c.SSE.Heartbeat.D() != 15*time.Second {
		t.Errorf("heartbeat 0 gave %v; want the default 15s", c.SSE.Heartbeat)
	}
}

func TestConfigSocketMode(t *testing.T) {
	for mode, want := range map[string]os.FileMode{"0660": 0o660, "0600": 0o600, "0o640": 0o640, "777": 0o777,
		"0000": 0, "0999": 0o660, "": 0o660, "01000": 0o660} {
		if got := (HTTP{UnixSocketMode: mode}).SocketMode(); got != want {
			t.Errorf("SocketMode(%q) = %o; want %o", mode, got, want)
		}
	}
}

func TestConfigDefaultTenant(t *testing.T) {
	tests := []struct {
		id     string
		want   uuid.UUID
		wantOK bool
	}{
		{id: ""},
		{id: cfgTenant, want: uuid.MustParse(cfgTenant), wantOK: true},
		{id: strings.ToUpper(cfgTenant), want: uuid.MustParse(cfgTenant), wantOK: true},
		{id: "acme"},
		{id: cfgNilUUID},
	}
	for _, tt := range tests {
		c := Default()
		c.Events.DefaultTenantID = tt.id
		if got, ok := c.DefaultTenant(); got != tt.want || ok != tt.wantOK {
			t.Errorf("DefaultTenant(%q) = %v, %v; want %v, %v", tt.id, got, ok, tt.want, tt.wantOK)
		}
	}
}

func TestConfigErrorFormat(t *testing.T) {
	tests := []struct {
		err  Error
		want string
	}{
		{Error{Key: "log.level", Msg: "log.level: bad"}, "log.level: bad"},
		{Error{Line: 4, Key: "log.level", Msg: "log.level: bad"}, "line 4: log.level: bad"},
		{Error{File: "c.yaml", Key: "log.level", Msg: "log.level: bad"}, "c.yaml: log.level: bad"},
		{Error{File: "c.yaml", Line: 4, Key: "log.level", Msg: "log.level: bad"}, "c.yaml line 4: log.level: bad"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q; want %q", got, tt.want)
		}
		if !errors.Is(&tt.err, ErrInvalid) {
			t.Errorf("errors.Is(%v, ErrInvalidConfig) = false", &tt.err)
		}
	}
}

// TestCORSOrigins: an origin is written as a browser sends it (a trailing slash, upper case, a default port are
// normalised away); a path is an error naming the entry; "*" is refused with tokens configured.
func TestCORSOrigins(t *testing.T) {
	c, err := Parse([]byte(`http: {cors_origins: ["http://127.0.0.1:8001/", "HTTPS://App.Example.com:443", "http://[::1]:80/"]}`))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"http://127.0.0.1:8001", "https://app.example.com", "http://[::1]"}; !slices.Equal(c.HTTP.CORSOrigins, want) {
		t.Fatalf("cors_origins = %q; want %q", c.HTTP.CORSOrigins, want)
	}
	for _, tt := range []struct{ name, yaml, key, msg string }{
		{"a path", `http: {cors_origins: ["https://app.example.com/app/"]}`, "http.cors_origins[0]", "no path"},
		{"a query", `http: {cors_origins: ["https://app.example.com/?x=1"]}`, "http.cors_origins[0]", "no path, query"},
		{"any origin with tokens", "http: {cors_origins: [\"*\"]}\nauth: {tokens: [{name: a, env: TOK, tenants: \"*\", allow: [publish]}]}",
			"http.cors_origins[0]", "only without auth.tokens"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml))
			ce := wantConfigError(t, err, tt.key)
			if !strings.Contains(ce.Error(), tt.msg) {
				t.Errorf("error %q; want it to say %q", ce.Error(), tt.msg)
			}
		})
	}
}

// TestConfigReportsEveryMistake: a file with several mistakes of every kind gets them all, each with its line and
// key, in the order of the file.
func TestConfigReportsEveryMistake(t *testing.T) {
	yaml := `http:
  listn: "127.0.0.1:8787"
  cors_origins: ["https://app.example.com/app"]
backend: memroy
jetstream:
  replicas: lots
memory:
  event_buffer: -5
events:
  default_tenant_id: "${EH_NOT_SET_ANYWHERE}"
sse:
  heartbeat: 10ms
`
	_, err := Parse([]byte(yaml))
	var got []string
	for _, e := range configErrors(t, err) {
		got = append(got, fmt.Sprintf("%d %s", e.Line, e.Key))
	}
	want := []string{"2 http.listn", "3 http.cors_origins[0]", "4 backend", "6 jetstream.replicas",
		"8 memory.event_buffer", "10 events.default_tenant_id", "12 sse.heartbeat"}
	if strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Fatalf("mistakes (line key) = %q\nwant %q\n%v", got, want, err)
	}
}
