package sidecar

import (
	"strings"
	"testing"

	"github.com/flovyn/eventhook/sidecar/console"
)

// TestConsoleServed: the console is at / on the API's listeners, with its CSP, and needs no token even with auth on
// (its files hold no data; the streams it opens are authenticated as any client's). http.console: false turns it off.
func TestConsoleServed(t *testing.T) {
	h, a, _ := authHarness(t, "trusted")
	status, hdr, body := h.tcpDo(t, "GET", "/", "", "")
	if status != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "text/html") || !strings.Contains(string(body), "/console/console.js") {
		t.Fatalf("GET / with auth on, no token: %d %q %.80s; want the console page", status, hdr.Get("Content-Type"), body)
	}
	if hdr.Get("Content-Security-Policy") != console.CSP {
		t.Errorf("GET /: Content-Security-Policy %q; want %q", hdr.Get("Content-Security-Policy"), console.CSP)
	}
	if status, _, _ := h.tcpDo(t, "GET", "/console/console.js", "", ""); status != 200 {
		t.Errorf("GET /console/console.js = %d; want 200", status)
	}
	// The API behind it is as before: a token is required.
	if status, _, _ := h.tcpDo(t, "GET", "/events/stream?tenant_id="+a.String(), "", ""); status != 401 {
		t.Errorf("a stream without a token = %d; want 401", status)
	}
	if status, _, _ := h.tcpDo(t, "GET", "/v2/nothing", "token-a", ""); status != 404 {
		t.Errorf("GET /v2/nothing = %d; want the API's 404", status)
	}

	cfg := testConfig(t)
	off := false
	cfg.HTTP.Console = &off
	h = newHarness(t, cfg, nil)
	status, hdr, _ = h.tcpDo(t, "GET", "/", "", "")
	if status != 404 || !strings.HasPrefix(hdr.Get("Content-Type"), "application/problem+json") {
		t.Errorf("GET / with http.console false = %d %q; want the API's 404", status, hdr.Get("Content-Type"))
	}
	if status, _, _ := h.tcpDo(t, "GET", "/console/console.js", "", ""); status != 404 {
		t.Errorf("GET /console/console.js with http.console false = %d; want 404", status)
	}
}
