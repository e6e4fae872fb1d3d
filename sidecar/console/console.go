// Package console serves the event console: a single page, embedded in the binary, that shows a workflow's or a
// tenant's events live in the browser (lifecycle events as rows, tokens as running text, progress as bars, errors and
// gaps in place, the connection state, "copy as curl").
//
// The page is plain HTML, CSS and JavaScript under static/, with no build step and no external URL, so it works
// offline and behind `kubectl port-forward`. It reads only the public SSE endpoints (/workflow-executions/{id}/stream,
// /task-executions/{id}/stream, /events/stream) from its own origin; tokens travel as ?access_token= (EventSource cannot
// set headers) and stay in the tab's sessionStorage, never in the page's URL.
//
// The files are static and hold no data, so they are served without a token even when auth.tokens are configured:
// every stream the page opens is authenticated as any other client's.
package console

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed static
var static embed.FS

// CSP is the Content-Security-Policy of every console response: scripts, styles and images from the page's own origin
// only (no inline script or style, no eval), connections (EventSource, fetch) to the same origin only, no frames, no
// forms posted anywhere, no plugins.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Prefix is the path under which the console's assets are served; the page itself is at "/".
const Prefix = "/console/"

type file struct {
	body        []byte
	contentType string
	etag        string
}

var files = func() map[string]file {
	m := map[string]file{}
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := static.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		m[strings.TrimPrefix(p, "static/")] = file{body: b, contentType: contentType(p), etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
		return nil
	})
	if err != nil {
		panic("console: embedded files: " + err.Error()) // cannot happen: the files are compiled in
	}
	return m
}()

func contentType(p string) string {
	switch path.Ext(p) {
	case ".html":
		return "text/html; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".svg":
		return "image/svg+xml"
	}
	return "application/octet-stream"
}

// Size returns the total size in bytes of the console's embedded files.
func Size() int {
	n := 0
	for _, f := range files {
		n += len(f.body)
	}
	return n
}

// Handler returns a handler that serves the console's page at "/" and its assets under Prefix, and hands every other
// request to next. Only GET and HEAD reach the console (another method on its paths is a 405); an asset that does not
// exist is a plain 404. Every console response carries CSP, nosniff and no-referrer, and an ETag so that a browser
// revalidates instead of keeping the page of an older binary.
func Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, ok := "", false
		switch p := r.URL.Path; {
		case p == "/":
			name, ok = "index.html", true
		case strings.HasPrefix(p, Prefix):
			name, ok = strings.TrimPrefix(p, Prefix), true
		}
		if !ok {
			next.ServeHTTP(w, r)
			return
		}
		h := w.Header()
		h.Set("Content-Security-Policy", CSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			http.Error(w, "the console is read with GET", http.StatusMethodNotAllowed)
			return
		}
		f, found := files[name]
		if !found || name == "index.html" && r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		h.Set("Content-Type", f.contentType)
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", f.etag)
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(f.body))
	})
}
