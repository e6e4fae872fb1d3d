package sidecar

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/flovyn/eventhook/sidecar/bus"
	"github.com/flovyn/eventhook/sidecar/bus/bustest"
	"github.com/flovyn/eventhook/sidecar/client"
	"github.com/flovyn/eventhook/sidecar/config"
	"github.com/flovyn/eventhook/sidecar/event"
	"github.com/google/uuid"
)

func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// authHarness serves with three tokens: "token-a" (tenant A, publish and subscribe), "reader" (every tenant,
// subscribe only) and one read from the environment (tenant B, publish only).
func authHarness(t *testing.T, socket string) (h *harness, a, b uuid.UUID) {
	a, b = uuid.New(), uuid.New()
	t.Setenv("EH_TEST_TOKEN", "from-env")
	cfg := testConfig(t)
	cfg.Auth.UnixSocket = socket
	cfg.Auth.Tokens = []config.Token{
		{Name: "a", SHA256: sha("token-a"), Tenants: []string{a.String()}, Allow: []string{"publish", "subscribe"}},
		{Name: "reader", SHA256: sha("reader"), Tenants: []string{"*"}, Allow: []string{"subscribe"}},
		{Name: "env", Env: "EH_TEST_TOKEN", Tenants: []string{b.String()}, Allow: []string{"publish"}},
	}
	return newHarness(t, cfg, nil), a, b
}

// tcpDo sends a request over TCP with an optional bearer token.
func (h *harness) tcpDo(t *testing.T, method, path, token, body string) (int, http.Header, []byte) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), method, h.tcp.BaseURL()+path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := h.tcp.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := new(strings.Builder)
	if method == "GET" && resp.StatusCode == 200 && strings.Contains(path, "stream") {
		return resp.StatusCode, resp.Header, nil // an open stream: do not read it to the end
	}
	_, _ = fmt.Fprint(buf, readAllString(resp))
	return resp.StatusCode, resp.Header, []byte(buf.String())
}

func readAllString(resp *http.Response) string {
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			return b.String()
		}
	}
}

func TestAuthTokens(t *testing.T) {
	h, a, b := authHarness(t, "trusted")
	evA, evB := eventJSON(a, "x.y", ""), eventJSON(b, "x.y", "")
	tests := []struct {
		name, method, path, token, body string
		status                          int
	}{
		{"no token over TCP", "POST", "/v1/events", "", evA, 401},
		{"wrong token", "POST", "/v1/events", "nope", evA, 401},
		{"publish own tenant", "POST", "/v1/events", "token-a", evA, 202},
		{"publish other tenant", "POST", "/v1/events", "token-a", evB, 403},
		{"token from the environment", "POST", "/v1/events", "from-env", evB, 202},
		{"env token, wrong tenant", "POST", "/v1/events", "from-env", evA, 403},
		{"reader may not publish", "POST", "/v1/events", "reader", evA, 403},
		{"the only tenant of the token is the default", "POST", "/v1/events", "token-a", `{"event_type":"x.z"}`, 202},
		{"batch mixing tenants", "POST", "/v1/events/batch", "token-a", evA + "\n" + evB, 403},
		{"streams other tenant", "POST", "/v1/streams?x", "from-env", `{"workflowExecutionId":"w","type":"TOKEN"}`, 202},
		{"subscribe other tenant", "GET", "/events/stream?tenant_id=" + b.String(), "token-a", "", 403},
		{"subscribe own tenant", "GET", "/events/stream?tenant_id=" + a.String(), "token-a", "", 200},
		{"reader subscribes anywhere", "GET", "/events/stream?tenant_id=" + b.String(), "reader", "", 200},
		{"publish-only token may not subscribe", "GET", "/events/stream?tenant_id=" + b.String(), "from-env", "", 403},
		{"access_token query", "GET", "/events/stream?tenant_id=" + a.String() + "&access_token=token-a", "", "", 200},
		{"healthz needs no token", "GET", "/healthz", "", "", 200},
		{"readyz needs no token", "GET", "/readyz", "", "", 200},
		{"metrics need no token", "GET", "/metrics", "", "", 200},
		{"openapi needs no token", "GET", "/openapi.json", "", "", 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, hdr, body := h.tcpDo(t, tt.method, tt.path, tt.token, tt.body)
			if status != tt.status {
				t.Fatalf("status %d; want %d (%s)", status, tt.status, body)
			}
			if status == 401 && !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("401 without WWW-Authenticate: Bearer")
			}
			if status >= 400 {
				problemOf(t, status, hdr, body, tt.status)
				if strings.Contains(string(body), "token-a") || strings.Contains(string(body), "from-env") {
					t.Errorf("the answer repeats the token: %s", body)
				}
			}
		})
	}
	// Nothing of tenant B reached the bus through token-a's batch.
	sub := bustest.Subscribe(t, h.bus, event.AllEvents(b), bus.StartEarliest())
	// The env token published one lifecycle event (x.y) for tenant B, and a stream event, which is not on this bus.
	if e := bustest.NextEvent(t, sub); e.EventType != "x.y" || e.TenantID != b {
		t.Fatalf("tenant B holds %s", e.AppendJSON(nil))
	}
	h.publish(t, eventJSON(b, "sentinel", "")) // over the trusted socket
	bustest.ExpectNext(t, sub, "sentinel")
}

func TestAuthUnixSocket(t *testing.T) {
	trustedH, a, _ := authHarness(t, "trusted")
	if status, _, body := trustedH.do(t, "POST", "/v1/events", "", eventJSON(a, "x.y", "")); status != 202 {
		t.Fatalf("trusted socket without token: %d %s", status, body)
	}
	tokenH, a2, _ := authHarness(t, "token")
	status, hdr, body := tokenH.do(t, "POST", "/v1/events", "", eventJSON(a2, "x.y", ""))
	problemOf(t, status, hdr, body, 401)
	if status, _, body := tokenH.do(t, "POST", "/v1/events", "", eventJSON(a2, "x.y", ""), "Authorization", "Bearer token-a"); status != 202 {
		t.Fatalf("socket with auth.unix_socket token and a good token: %d %s", status, body)
	}
}

// TestIsolationHostileIDs subscribes as tenant A and publishes as tenant B with the same ids, and tries ids and filters
// made of '.', '*', '>', whitespace, '$' and their URL-encoded forms, on the memory and the JetStream backends: nothing of
// B ever reaches A, and every hostile id is a 400.
func TestIsolationHostileIDs(t *testing.T) {
	for _, backend := range []string{"memory", "jetstream"} {
		t.Run(backend, func(t *testing.T) {
			var eb bus.Bus
			if backend == "jetstream" {
				eb = newJetStreamTestBus(t)
				t.Cleanup(func() { eb.Close() })
			}
			h := newHarness(t, nil, eb)
			a, b, wf := uuid.New(), uuid.New(), uuid.New()
			qa := url.Values{"tenant_id": {a.String()}}
			wfStream := h.stream(t, h.unix, "/workflow-executions/"+wf.String()+"/stream", qa, event.CursorEarliest)
			taskStream := h.stream(t, h.unix, "/task-executions/"+wf.String()+"/stream", qa, event.CursorEarliest)
			tenantStream := h.stream(t, h.unix, "/events/stream", qa, event.CursorEarliest)

			// B uses A's workflow id as workflow, as task, and as stream key.
			h.publish(t, eventJSON(b, "secret.b", wfField(wf)+taskField(wf)))
			tok := fmt.Sprintf(`{"workflowExecutionId":%q,"taskExecutionId":%q,"type":"TOKEN","payload":"secret"}`, wf, wf)
			if _, err := h.unix.PublishStreams(t.Context(), []byte(tok), "", b.String()); err != nil {
				t.Fatal(err)
			}
			standalone := fmt.Sprintf(`{"workflowExecutionId":"","taskExecutionId":%q,"type":"PROGRESS","payload":"0.9"}`, wf)
			if _, err := h.unix.PublishStreams(t.Context(), []byte(standalone), "", b.String()); err != nil {
				t.Fatal(err)
			}
			// A body naming A with B's header is refused, not routed.
			status, hdr, body := h.do(t, "POST", "/v1/events", "", eventJSON(a, "x.y", ""), event.TenantHeader, b.String())
			problemOf(t, status, hdr, body, 400)

			h.publish(t, eventJSON(a, "sentinel", wfField(wf)+taskField(wf)))
			wfStream.nextLifecycle(t, "sentinel")
			taskStream.nextLifecycle(t, "sentinel")
			tenantStream.nextLifecycle(t, "sentinel")

			hostile := []string{".", "a.b", "*", ">", "a*", "a>", " ", "a b", "\t", "$SYS", "$", "%2E", "%2A", "%3E", "%20",
				"%24SYS", "a%2Eb", "..", "%00", b.String() + ".>", "flovyn.events.>"}
			for _, id := range hostile {
				esc := url.PathEscape(id)
				paths := []string{
					"/workflow-executions/" + esc + "/stream?tenant_id=" + a.String(),
					"/task-executions/" + esc + "/stream?tenant_id=" + a.String(),
					"/task-executions/" + wf.String() + "/stream?tenant_id=" + a.String() + "&workflow_execution_id=" + url.QueryEscape(id),
					"/events/stream?tenant_id=" + a.String() + "&workflow_execution_id=" + url.QueryEscape(id),
					"/events/stream?tenant_id=" + url.QueryEscape(id),
				}
				// Dotted names are valid event types and type filters, and a type filter only ever applies inside the
				// subscriber's own tenant: those stay out of the type checks. A blank types parameter means everything.
				dotted := strings.Contains(id, ".") && !strings.ContainsAny(id, "%* \t$") && id != "." && id != ".."
				if strings.TrimSpace(id) != "" && !dotted {
					paths = append(paths, "/events/stream?tenant_id="+a.String()+"&types="+url.QueryEscape(id))
				}
				for _, path := range paths {
					status, _, body := h.do(t, "GET", path, "", "")
					if status != 400 && status != 404 {
						t.Errorf("GET %s = %d (%.100s); want 400", path, status, body)
					}
				}
				ev := fmt.Sprintf(`{"tenant_id":%q,"event_type":%q}`, a, id)
				if status, _, _ := h.do(t, "POST", "/v1/events", "", ev); status != 400 && !(dotted && !strings.Contains(id, ">")) {
					t.Errorf("event_type %q accepted (%d)", id, status)
				}
				st := fmt.Sprintf(`{"workflowExecutionId":%q,"type":"TOKEN"}`, id)
				if status, _, _ := h.do(t, "POST", "/v1/streams", "", st, event.TenantHeader, a.String()); status != 400 {
					t.Errorf("stream key %q accepted (%d)", id, status)
				}
			}
		})
	}
}

// TestReloadAuth replaces the tokens of a running server: a removed token is refused at once and its open stream ends
// at once; a token narrowed to fewer tenants ends only its streams of the tenants it lost; a new token works; a reload
// with an error changes nothing.
func TestReloadAuth(t *testing.T) {
	a, b := uuid.New(), uuid.New()
	cfg := testConfig(t)
	// testConfig's keep-alive is an hour: a stream that ends within the test's wait was woken by the reload itself.
	cfg.Auth.UnixSocket = "token"
	both := config.Token{Name: "both", SHA256: sha("both"), Tenants: []string{a.String(), b.String()}, Allow: []string{"publish", "subscribe"}}
	cfg.Auth.Tokens = []config.Token{
		{Name: "old", SHA256: sha("old"), Tenants: []string{"*"}, Allow: []string{"publish", "subscribe"}},
		both,
	}
	h := newHarness(t, cfg, nil)
	client := func(token string) *client.Sidecar {
		c, err := client.New(h.socket, token)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		return c
	}
	q := func(tenant uuid.UUID) url.Values { return url.Values{"tenant_id": {tenant.String()}} }
	oldStream := h.stream(t, client("old"), "/events/stream", q(a), "")
	bothA := h.stream(t, client("both"), "/events/stream", q(a), "")
	bothB := h.stream(t, client("both"), "/events/stream", q(b), "")

	bad := []config.Token{{Name: "bad", SHA256: "not hex", Tenants: []string{"*"}, Allow: []string{"publish"}}}
	if err := h.srv.ReloadAuth(config.Auth{UnixSocket: "token", Tokens: bad}); err == nil {
		t.Fatal("ReloadAuth with a malformed sha256 succeeded")
	}
	if _, err := client("old").PublishEvent(t.Context(), []byte(eventJSON(a, "still.old", "")), ""); err != nil {
		t.Fatalf("after a failed reload the old token was refused: %v", err)
	}
	oldStream.nextLifecycle(t, "still.old")
	bothA.nextLifecycle(t, "still.old")

	both.Tenants = []string{a.String()} // loses tenant b
	fresh := config.Token{Name: "new", SHA256: sha("new"), Tenants: []string{"*"}, Allow: []string{"publish", "subscribe"}}
	if err := h.srv.ReloadAuth(config.Auth{UnixSocket: "token", Tokens: []config.Token{both, fresh}}); err != nil {
		t.Fatal(err)
	}
	var p *event.Problem
	if _, err := client("old").PublishEvent(t.Context(), []byte(eventJSON(a, "x.y", "")), ""); !errors.As(err, &p) || p.Status != 401 {
		t.Fatalf("a removed token after the reload: %v; want 401", err)
	}
	if _, err := client("new").PublishEvent(t.Context(), []byte(eventJSON(a, "after.reload", "")), ""); err != nil {
		t.Fatalf("a new token after the reload: %v", err)
	}
	oldStream.ended(t)
	bothB.ended(t)
	bothA.nextLifecycle(t, "after.reload") // still allowed: stays open
}

// TestAccessTokenLeftOutOfURL: the handlers (and so any log of the URL) never see an access_token query parameter,
// whether it authenticated the request, a header did, or its key was percent-encoded.
func TestAccessTokenLeftOutOfURL(t *testing.T) {
	h, _, _ := authHarness(t, "trusted")
	var seen string
	handler := h.srv.withAuth(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { seen = r.URL.RawQuery }))
	for _, tt := range []struct{ query, header string }{
		{"access_token=token-a&tenant_id=x", ""},
		{"access%5Ftoken=token-a&tenant_id=x", ""},
		{"tenant_id=x&access_token=token-a", "Bearer reader"},
	} {
		seen = "(not called)"
		req := httptest.NewRequest(http.MethodGet, "/events/stream?"+tt.query, nil)
		if tt.header != "" {
			req.Header.Set("Authorization", tt.header)
		}
		handler.ServeHTTP(httptest.NewRecorder(), req)
		if seen != "tenant_id=x" {
			t.Errorf("%q (Authorization %q): the handler saw the query %q; want tenant_id=x", tt.query, tt.header, seen)
		}
	}
}
