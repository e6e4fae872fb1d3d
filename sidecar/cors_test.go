package sidecar

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/flovyn/eventhook/sidecar/bus"
	"github.com/flovyn/eventhook/sidecar/config"
)

// TestCORSOnEveryAnswer: every answer to a request from an allowed origin carries the CORS headers — success, every
// error (401 and 404 included), 429, 503 and the SSE stream — so that a page can read a wrong token as a 401 problem
// rather than a network failure.
func TestCORSOnEveryAnswer(t *testing.T) {
	const origin = "http://127.0.0.1:8001"
	a := uuid.New()
	cfg := testConfig(t)
	cfg.HTTP.CORSOrigins = []string{origin}
	cfg.SSE.MaxSubscribersPerTenant = 1
	cfg.Auth.Tokens = []config.Token{{Name: "a", SHA256: sha("token-a"), Tenants: []string{a.String()}, Allow: []string{"publish", "subscribe"}}}
	mem := bus.NewMemory(bus.MemoryOptions{Feed: bus.FeedOptions{EventBuffer: 16, StreamBuffer: 16,
		Encoders: FrameEncoders(cfg.Events.TenantKey)}})
	t.Cleanup(func() { mem.Close() })
	h := newHarness(t, cfg, &failingBus{Bus: mem, ok: 1})
	do := func(method, path, token, body string) *http.Response {
		t.Helper()
		ctx, cancel := context.WithCancel(t.Context())
		t.Cleanup(cancel)
		req, _ := http.NewRequestWithContext(ctx, method, h.tcp.BaseURL()+path, strings.NewReader(body))
		req.Header.Set("Origin", origin)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := h.tcp.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	event := `{"tenant_id":"` + a.String() + `","event_type":"x.y"}`
	stream := "/events/stream?tenant_id=" + a.String()
	for _, tt := range []struct {
		name         string
		method, path string
		token, body  string
		status       int
	}{
		{"stored", "POST", "/v1/events", "token-a", event, 202},
		{"backend down", "POST", "/v1/events", "token-a", event, 503},
		{"no token", "POST", "/v1/events", "", event, 401},
		{"wrong token", "GET", stream, "nope", "", 401},
		{"other tenant", "GET", "/events/stream?tenant_id=" + uuid.NewString(), "token-a", "", 403},
		{"bad input", "POST", "/v1/events", "token-a", `{"event_type":"x.y","tenant_id":"nope"}`, 400},
		{"no route", "GET", "/nope", "token-a", "", 404},
		{"wrong method", "DELETE", "/v1/events", "token-a", "", 405},
		{"the stream", "GET", stream, "token-a", "", 200},
		{"too many streams", "GET", stream, "token-a", "", 429},
		{"health", "GET", "/healthz", "", "", 200},
	} {
		resp := do(tt.method, tt.path, tt.token, tt.body)
		if resp.StatusCode != tt.status || resp.Header.Get("Access-Control-Allow-Origin") != origin ||
			!strings.Contains(resp.Header.Get("Access-Control-Expose-Headers"), "Retry-After") {
			t.Errorf("%s: %d, headers %v; want %d with Access-Control-Allow-Origin %s", tt.name, resp.StatusCode,
				resp.Header, tt.status, origin)
		}
	}
}
