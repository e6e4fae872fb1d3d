package config

import (
	"reflect"
	"strings"
	"time"

	"github.com/flovyn/eventhook/sidecar/bus"
	"github.com/flovyn/eventhook/sidecar/event"
	"github.com/flovyn/eventhook/sidecar/natsbus"
)

// Default returns the default configuration: the jetstream backend on an embedded NATS server with
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
			Console:           &yes,
			BodyBudget:        32 << 20,
		},
		Backend: cfgBackendJetStream,
		NATS: NATS{
			Embedded:       &yes,
			EmbeddedListen: "127.0.0.1:4222",
			StoreDir:       "./data",
			ConnectTimeout: Duration(natsbus.DefaultConnectTimeout),
		},
		JetStream: JetStream{
			EventsStream:    natsbus.DefaultEventsStream,
			StreamsStream:   natsbus.DefaultStreamsStream,
			StreamsStorage:  natsbus.DefaultStreamsStorage,
			Replicas:        1,
			EventsMaxAge:    Duration(natsbus.DefaultEventsMaxAge),
			EventsMaxBytes:  -1,
			StreamsMaxAge:   Duration(natsbus.DefaultStreamsMaxAge),
			DuplicateWindow: Duration(bus.DefaultDedupWindow),
			ManageStreams:   &manage,
			PublishTimeout:  Duration(natsbus.DefaultPublishTimeout),
		},
		Memory: Memory{
			EventBuffer:  bus.DefaultEventBuffer,
			StreamBuffer: bus.DefaultStreamBuffer,
			IdleTTL:      Duration(bus.DefaultIdleTTL),
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

// ApplyDefaults fills every zero value with its default from Default, so that each default is written once, there.
// Three settings are special: nats.embedded, when unset, becomes true unless nats.urls is set (then false);
// http.listen and http.unix_socket are filled only when both are empty, since an empty one turns that listener off;
// nats.embedded_listen is never filled ("" means in-process connections only). A false boolean is a setting, not a
// zero to fill. Empty lists become nil, token hashes are lower-cased, and CORS origins are written as browsers send
// them (NormalizeOrigin).
func (c *Config) ApplyDefaults() {
	d := Default()
	if c.HTTP.Listen == "" && c.HTTP.UnixSocket == "" {
		c.HTTP.Listen, c.HTTP.UnixSocket = d.HTTP.Listen, d.HTTP.UnixSocket
	}
	if c.NATS.Embedded == nil {
		embedded := len(c.NATS.URLs) == 0
		c.NATS.Embedded = &embedded
	}
	fillDefaults(reflect.ValueOf(c).Elem(), reflect.ValueOf(d).Elem(), "")
	for i := range c.Auth.Tokens {
		c.Auth.Tokens[i].SHA256 = strings.ToLower(c.Auth.Tokens[i].SHA256)
	}
	for i, o := range c.HTTP.CORSOrigins {
		c.HTTP.CORSOrigins[i] = NormalizeOrigin(o)
	}
}

// notDefaulted are the keys whose zero value is a setting of its own (see ApplyDefaults).
var notDefaulted = map[string]bool{"http.listen": true, "http.unix_socket": true, "nats.embedded_listen": true}

// fillDefaults sets every zero field of v, a section of the configuration at path, to its value in d, the same section
// of Default: scalars and nil pointers; an empty list becomes nil; booleans are left as they are.
func fillDefaults(v, d reflect.Value, path string) {
	for i := range v.NumField() {
		f, df := v.Field(i), d.Field(i)
		key := cfgJoinPath(path, cfgYAMLName(v.Type().Field(i)))
		switch {
		case notDefaulted[key], f.Kind() == reflect.Bool:
		case f.Kind() == reflect.Struct:
			fillDefaults(f, df, key)
		case f.Kind() == reflect.Slice:
			if f.Len() == 0 {
				f.SetZero()
			}
		case f.Kind() == reflect.Pointer:
			if f.IsNil() && !df.IsNil() {
				p := reflect.New(f.Type().Elem())
				p.Elem().Set(df.Elem())
				f.Set(p)
			}
		case f.IsZero():
			f.Set(df)
		}
	}
}
