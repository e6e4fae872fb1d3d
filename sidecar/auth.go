package sidecar

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"

	"github.com/flovyn/eventhook/sidecar/config"
	"github.com/google/uuid"
)

// Authentication and authorisation (SECURITY.md at the top of the repository says what they defend).
//
// Tokens are configured as SHA-256 hashes (or read from an environment variable at start and hashed), each with its
// tenants and rights. A request presents one as "Authorization: Bearer <token>" or, for EventSource clients that cannot
// set headers, as the access_token query parameter. The presented token is hashed and compared with every configured
// hash in constant time. Callers on the Unix socket are trusted through the socket's file permissions unless
// auth.unix_socket is "token". With no token configured at all, every caller has every right (TCP is then loopback only,
// which the configuration enforces unless auth.allow_unauthenticated_tcp is set).

// right is what a principal may do.
type right uint8

const (
	rightPublish right = 1 << iota
	rightSubscribe
)

func (r right) String() string {
	if r == rightPublish {
		return "publish"
	}
	return "subscribe"
}

// principal is who is calling.
type principal struct {
	name    string
	all     bool // every tenant
	tenants map[uuid.UUID]bool
	rights  right
}

// onlyTenant returns the tenant of a principal limited to exactly one.
func (p *principal) onlyTenant() (uuid.UUID, bool) {
	if p == nil || p.all || len(p.tenants) != 1 {
		return uuid.Nil, false
	}
	for t := range p.tenants {
		return t, true
	}
	return uuid.Nil, false
}

// trusted has every right: the Unix socket caller by default, or anyone when no token is configured.
var trusted = &principal{name: "trusted", all: true, rights: rightPublish | rightSubscribe}

// tokenEntry is a configured token, hashed.
type tokenEntry struct {
	hash [sha256.Size]byte
	p    principal
}

// authenticator checks presented tokens.
type authenticator struct {
	tokens         []tokenEntry
	socketRequires bool
}

// newAuthenticator reads the tokens of cfg; a token held in an unset environment variable is an error naming it.
func newAuthenticator(cfg config.Auth) (*authenticator, error) {
	a := &authenticator{socketRequires: cfg.UnixSocket == "token"}
	for i, t := range cfg.Tokens {
		e := tokenEntry{p: principal{name: t.Name, tenants: map[uuid.UUID]bool{}}}
		switch {
		case t.Env != "":
			v := os.Getenv(t.Env)
			if v == "" {
				return nil, fmt.Errorf("auth.tokens[%d] (%s): the environment variable %s is not set or empty", i, t.Name, t.Env)
			}
			e.hash = sha256.Sum256([]byte(v))
		default:
			b, err := hex.DecodeString(t.SHA256)
			if err != nil || len(b) != sha256.Size {
				return nil, fmt.Errorf("auth.tokens[%d] (%s): sha256 is not 64 hex digits", i, t.Name)
			}
			copy(e.hash[:], b)
		}
		for _, ten := range t.Tenants {
			if ten == "*" {
				e.p.all = true
				continue
			}
			id, err := uuid.Parse(ten)
			if err != nil {
				return nil, fmt.Errorf("auth.tokens[%d] (%s): tenant %q is not a UUID", i, t.Name, ten)
			}
			e.p.tenants[id] = true
		}
		for _, r := range t.Allow {
			switch r {
			case "publish":
				e.p.rights |= rightPublish
			case "subscribe":
				e.p.rights |= rightSubscribe
			}
		}
		a.tokens = append(a.tokens, e)
	}
	return a, nil
}

// match returns the principal of a presented token's hash, or nil. Every configured hash is compared, in constant time.
func (a *authenticator) match(h [sha256.Size]byte) *principal {
	var found *principal
	for i := range a.tokens {
		if subtle.ConstantTimeCompare(h[:], a.tokens[i].hash[:]) == 1 {
			found = &a.tokens[i].p
		}
	}
	return found
}

type ctxKey uint8

const (
	ctxUnix ctxKey = iota
	ctxCaller
)

// caller is what withAuth keeps in a request's context: who the caller is, and what it presented.
type caller struct {
	p     *principal
	creds credentials
}

// connContext marks the requests that came over the Unix socket.
func connContext(ctx context.Context, c net.Conn) context.Context {
	if _, ok := c.LocalAddr().(*net.UnixAddr); ok {
		return context.WithValue(ctx, ctxUnix, true)
	}
	return ctx
}

// credentials is what a request presented, kept by an SSE stream so that it can be checked again when the tokens are
// reloaded: whether it came over the Unix socket, and the SHA-256 of its token (never the token itself).
type credentials struct {
	unix, present, bearer bool
	hash                  [sha256.Size]byte
}

// credentialsOf reads the credentials of r.
func credentialsOf(r *http.Request) credentials {
	unix, _ := r.Context().Value(ctxUnix).(bool)
	c := credentials{unix: unix}
	if h := r.Header.Get("Authorization"); h != "" {
		c.present = true
		if scheme, tok, ok := strings.Cut(h, " "); ok && strings.EqualFold(scheme, "Bearer") {
			c.bearer, c.hash = true, sha256.Sum256([]byte(strings.TrimSpace(tok)))
		}
		return c // present but not a bearer token: refused by check
	}
	if r.URL.RawQuery == "" {
		return c // the common publish: no query to parse
	}
	if tok := r.URL.Query().Get("access_token"); tok != "" {
		c.present, c.bearer, c.hash = true, true, sha256.Sum256([]byte(tok))
	}
	return c
}

// check returns the principal of the credentials, or a 401 error.
func (a *authenticator) check(c credentials) (*principal, error) {
	if len(a.tokens) == 0 {
		return trusted, nil
	}
	if c.unix && !a.socketRequires {
		return trusted, nil
	}
	if !c.present {
		return nil, &errStatus{status: http.StatusUnauthorized,
			detail: "a token is required: send Authorization: Bearer <token> (or ?access_token= for EventSource)"}
	}
	if c.bearer {
		if p := a.match(c.hash); p != nil {
			return p, nil
		}
	}
	return nil, &errStatus{status: http.StatusUnauthorized, detail: "the token is not valid"}
}

// withAuth authenticates every request except the operations endpoints and CORS preflights, and keeps the principal in
// the request's context. access_token is removed from the URL once read, so that it can reach no log.
func (s *Server) withAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/healthz", "/readyz", "/metrics", "/openapi.json":
			next.ServeHTTP(w, r)
			return
		}
		if r.Method == http.MethodOptions {
			next.ServeHTTP(w, r)
			return
		}
		creds := credentialsOf(r)
		p, err := s.auth.Load().check(creds)
		if err != nil {
			s.metrics.rejected.WithLabelValues("unauthorized").Inc()
			w.Header().Set("WWW-Authenticate", `Bearer realm="eventhook"`)
			s.writeError(w, r, err)
			return
		}
		if r.URL.RawQuery != "" { // (a key may be percent-encoded: only the parsed query tells)
			if q := r.URL.Query(); q.Has("access_token") {
				q.Del("access_token")
				r.URL.RawQuery = q.Encode()
			}
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxCaller, &caller{p: p, creds: creds})))
	})
}

// principalOf returns the principal withAuth found for r.
func principalOf(r *http.Request) *principal {
	if c, ok := r.Context().Value(ctxCaller).(*caller); ok {
		return c.p
	}
	return trusted // handlers called without withAuth, in tests
}

// allow returns a 403 error unless the caller of r may use tenant for what.
func allow(r *http.Request, tenant uuid.UUID, what right) error {
	return principalOf(r).allows(tenant, what)
}

// allows returns a 403 error unless p may use tenant for what.
func (p *principal) allows(tenant uuid.UUID, what right) error {
	if p.rights&what == 0 {
		return &errStatus{status: http.StatusForbidden, detail: fmt.Sprintf("the token %q may not %s", p.name, what)}
	}
	if !p.all && !p.tenants[tenant] {
		return &errStatus{status: http.StatusForbidden, detail: fmt.Sprintf("the token %q may not %s for tenant %s", p.name, what, tenant)}
	}
	return nil
}
