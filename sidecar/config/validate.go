package config

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"unicode"

	"github.com/flovyn/eventhook/sidecar/event"
	"github.com/google/uuid"
)

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
	if h.BodyBudget < 1<<20 {
		p.add("http.body_budget", "is %d bytes; it must be at least 1048576 (1 MiB), e.g. 33554432 (32 MiB)", h.BodyBudget)
	}
	for i, o := range h.CORSOrigins {
		key := fmt.Sprintf("http.cors_origins[%d]", i)
		switch {
		case o == "*" && len(c.Auth.Tokens) > 0:
			p.add(key, "\"*\" (any origin) is allowed only without auth.tokens: a page of any site could use a token "+
				"its visitor holds; list the origins of your pages instead")
		case !cfgValidOrigin(o):
			p.add(key, "%q is not an origin; write \"*\" or scheme://host[:port], e.g. \"https://app.example.com\", "+
				"with no path, query or fragment (a browser sends exactly that in Origin)", o)
		}
	}
}

// NormalizeOrigin returns the origin o as a browser sends it in the Origin header: scheme and host in lower case, no
// default port (80 for http, 443 for https), no trailing slash (as people paste it: "http://127.0.0.1:8001/"). Anything
// it cannot read as an origin is returned unchanged, for Validate to name.
func NormalizeOrigin(o string) string {
	u, err := url.Parse(o)
	if err != nil || u.Host == "" || u.Opaque != "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" ||
		u.Fragment != "" || u.User != nil {
		return o
	}
	scheme, host, port := strings.ToLower(u.Scheme), strings.ToLower(u.Hostname()), u.Port()
	if (scheme == "http" && port == "80") || (scheme == "https" && port == "443") {
		port = ""
	}
	if port != "" {
		host = net.JoinHostPort(host, port)
	} else if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return scheme + "://" + host
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
	case cfgStorageMemory, cfgStorageFile:
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
	return u.Path == "" && u.RawQuery == "" && u.Fragment == "" && !u.ForceQuery
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
