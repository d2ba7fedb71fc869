package web

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/fstest"
)

func gz(t *testing.T, s string) []byte {
	t.Helper()
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write([]byte(s))
	w.Close()
	return b.Bytes()
}

func TestHandler(t *testing.T) {
	h, err := NewFS(fstest.MapFS{
		"README.md":                 {Data: []byte("not served")},
		"widget.js":                 {Data: []byte("loader")},
		"widget.js.gz":              {Data: gz(t, "loader")},
		"assets/widget-abc.js":      {Data: []byte("bundle")},
		"assets/widget-abc.js.gz":   {Data: gz(t, "bundle")},
		"demo.html":                 {Data: []byte("<!doctype html>")},
		"assets/not-compressed.css": {Data: []byte("p{}")},
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path, acceptEncoding string
		wantStatus                 int
		wantBody, wantEncoding     string
		wantCache, wantType        string
	}{
		{"loader, gzip", "/widget.js", "gzip, br", 200, "loader", "gzip", shortCache, "text/javascript; charset=utf-8"},
		{"loader, identity", "/widget.js", "", 200, "loader", "", shortCache, "text/javascript; charset=utf-8"},
		{"loader, gzip refused", "/widget.js", "gzip;q=0", 200, "loader", "", shortCache, "text/javascript; charset=utf-8"},
		{"hashed bundle", "/assets/widget-abc.js", "gzip", 200, "bundle", "gzip", immutable, "text/javascript; charset=utf-8"},
		{"no gzip copy", "/assets/not-compressed.css", "gzip", 200, "p{}", "", immutable, "text/css; charset=utf-8"},
		{"demo page", "/demo", "", 200, "<!doctype html>", "", noCache, "text/html; charset=utf-8"},
		{"the README", "/README.md", "", 404, "", "", "", ""},
		{"unknown", "/assets/widget-def.js", "", 404, "", "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, tt.path, nil)
			if tt.acceptEncoding != "" {
				r.Header.Set("Accept-Encoding", tt.acceptEncoding)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tt.wantStatus {
				t.Fatalf("GET %s = %d, want %d", tt.path, w.Code, tt.wantStatus)
			}
			if tt.wantStatus != 200 {
				return
			}
			body := w.Body.Bytes()
			if got := w.Header().Get("Content-Encoding"); got != tt.wantEncoding {
				t.Errorf("Content-Encoding = %q, want %q", got, tt.wantEncoding)
			}
			if tt.wantEncoding == "gzip" {
				zr, err := gzip.NewReader(bytes.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				body, _ = io.ReadAll(zr)
			}
			if string(body) != tt.wantBody {
				t.Errorf("body = %q, want %q", body, tt.wantBody)
			}
			csp := CSP
			if tt.path == "/demo" {
				csp = DemoCSP
			}
			for k, want := range map[string]string{
				"Cache-Control": tt.wantCache, "Content-Type": tt.wantType, "Content-Security-Policy": csp,
				"X-Content-Type-Options": "nosniff", "Vary": "Accept-Encoding",
			} {
				if got := w.Header().Get(k); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
		})
	}
}

func TestHandlerRevalidates(t *testing.T) {
	h, err := NewFS(fstest.MapFS{"widget.js": {Data: []byte("loader")}, "widget.js.gz": {Data: gz(t, "loader")}})
	if err != nil {
		t.Fatal(err)
	}
	for _, enc := range []string{"", "gzip"} {
		r := httptest.NewRequest(http.MethodGet, "/widget.js", nil)
		r.Header.Set("Accept-Encoding", enc)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		etag := w.Header().Get("ETag")
		r.Header.Set("If-None-Match", etag)
		w = httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusNotModified {
			t.Errorf("GET /widget.js (Accept-Encoding %q) with If-None-Match %s = %d, want 304", enc, etag, w.Code)
		}
	}
}

func TestBuiltTellsAMissingBuild(t *testing.T) {
	h, err := NewFS(fstest.MapFS{"README.md": {Data: []byte("only this")}})
	if err != nil {
		t.Fatal(err)
	}
	if h.Built() {
		t.Error("Built() = true for a dist/ with its README only")
	}
}

// TestOnlyTheWidgetFrameMayBeFramed: a host page frames /widget-frame; no
// other page may be framed (clickjacking), and the frame's policy is as
// strict as the others' in all else.
func TestOnlyTheWidgetFrameMayBeFramed(t *testing.T) {
	h, err := NewFS(fstest.MapFS{
		"widget-frame.html": {Data: []byte("<!doctype html>")},
		"console.html":      {Data: []byte("<!doctype html>")},
		"widget.js":         {Data: []byte("launcher")},
	})
	if err != nil {
		t.Fatal(err)
	}
	get := func(p string) http.Header {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, p, nil))
		if w.Code != http.StatusOK {
			t.Fatalf("GET %s = %d", p, w.Code)
		}
		return w.Header()
	}
	frame := get("/widget-frame")
	if got := frame.Get("Content-Security-Policy"); got != FrameCSP {
		t.Errorf("/widget-frame's policy = %q, want %q", got, FrameCSP)
	}
	if got := frame.Get("Referrer-Policy"); got != "no-referrer" {
		t.Errorf("/widget-frame's Referrer-Policy = %q, want no-referrer", got)
	}
	if strings.TrimSuffix(FrameCSP, "frame-ancestors *") != strings.TrimSuffix(CSP, "frame-ancestors 'none'") {
		t.Errorf("the frame's policy %q differs from the pages' %q in more than frame-ancestors", FrameCSP, CSP)
	}
	if strings.Contains(CSP, "frame-src") {
		t.Errorf("the pages' policy %q lets them frame", CSP)
	}
	for _, p := range []string{"/console", "/widget.js"} {
		if got := get(p).Get("Content-Security-Policy"); !strings.HasSuffix(got, "frame-ancestors 'none'") {
			t.Errorf("%s's policy = %q: it may be framed", p, got)
		}
	}
}
