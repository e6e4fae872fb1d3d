package console

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func serve(t *testing.T, method, target string, header ...string) *http.Response {
	t.Helper()
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-API", "1")
		w.WriteHeader(http.StatusTeapot)
	})
	req := httptest.NewRequest(method, target, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	Handler(api).ServeHTTP(rec, req)
	return rec.Result()
}

func TestHandler(t *testing.T) {
	tests := []struct {
		name, method, path string
		status             int
		contentType        string
		console            bool // answered by the console, not the API
	}{
		{"page", "GET", "/", 200, "text/html; charset=utf-8", true},
		{"page, HEAD", "HEAD", "/", 200, "text/html; charset=utf-8", true},
		{"script", "GET", "/console/console.js", 200, "text/javascript; charset=utf-8", true},
		{"style", "GET", "/console/console.css", 200, "text/css; charset=utf-8", true},
		{"icon", "GET", "/console/icon.svg", 200, "image/svg+xml", true},
		{"no such asset", "GET", "/console/nothing.js", 404, "", true},
		{"the page under the prefix", "GET", "/console/index.html", 404, "", true},
		{"post to the page", "POST", "/", 405, "", true},
		{"an API route", "GET", "/events/stream", 418, "", false},
		{"another path", "GET", "/consolex", 418, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := serve(t, tt.method, tt.path)
			if res.StatusCode != tt.status {
				t.Fatalf("%s %s = %d; want %d", tt.method, tt.path, res.StatusCode, tt.status)
			}
			if got := res.Header.Get("X-API") == ""; got != tt.console {
				t.Fatalf("%s %s answered by the console: %v; want %v", tt.method, tt.path, got, tt.console)
			}
			if !tt.console {
				return
			}
			if got := res.Header.Get("Content-Security-Policy"); got != CSP {
				t.Errorf("Content-Security-Policy = %q; want %q", got, CSP)
			}
			if res.Header.Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("no X-Content-Type-Options: nosniff")
			}
			if tt.contentType != "" && res.Header.Get("Content-Type") != tt.contentType {
				t.Errorf("Content-Type = %q; want %q", res.Header.Get("Content-Type"), tt.contentType)
			}
		})
	}
}

func TestHandlerRevalidates(t *testing.T) {
	res := serve(t, "GET", "/console/console.js")
	etag := res.Header.Get("ETag")
	if etag == "" || res.Header.Get("Cache-Control") != "no-cache" {
		t.Fatalf("ETag %q, Cache-Control %q; want an ETag and no-cache", etag, res.Header.Get("Cache-Control"))
	}
	if res := serve(t, "GET", "/console/console.js", "If-None-Match", etag); res.StatusCode != http.StatusNotModified {
		t.Fatalf("If-None-Match with the ETag = %d; want 304", res.StatusCode)
	}
}

// TestPageIsSelfContained holds the files to what the CSP allows and the console promises: no inline script or style,
// no URL of another origin, every asset the page names exists, and all of it small.
func TestPageIsSelfContained(t *testing.T) {
	if n := Size(); n > 100_000 {
		t.Errorf("the console is %d bytes; keep it under 100 KB", n)
	}
	body, _ := io.ReadAll(serve(t, "GET", "/").Body)
	page := string(body)
	if regexp.MustCompile(`<script(\s[^>]*)?>[^<]`).MatchString(page) || strings.Contains(page, "<style") ||
		regexp.MustCompile(`\son[a-z]+=`).MatchString(page) || strings.Contains(page, " style=") {
		t.Error("the page has an inline script, style or event handler: the CSP refuses them")
	}
	for name, f := range files {
		if m := regexp.MustCompile(`(https?:)?//[a-z0-9.-]+\.[a-z]{2,}`).FindString(string(f.body)); m != "" && !strings.Contains(m, "www.w3.org") {
			t.Errorf("%s names another origin: %s", name, m)
		}
		if strings.Contains(string(f.body), "eval(") || strings.Contains(string(f.body), "new Function") {
			t.Errorf("%s evaluates code: the CSP refuses it", name)
		}
	}
	for _, m := range regexp.MustCompile(`(?:src|href)="([^"]+)"`).FindAllStringSubmatch(page, -1) {
		if res := serve(t, "GET", m[1]); res.StatusCode != 200 {
			t.Errorf("the page names %s, which answers %d", m[1], res.StatusCode)
		}
	}
}
