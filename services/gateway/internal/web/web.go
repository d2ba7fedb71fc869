// Package web serves the front-end that `make build` bundles from the web/
// directory into dist/ and embeds here: the widget's launcher (/widget.js)
// and its chat frame (/widget-frame), the staff pages (/console, /privacy,
// /dashboard), a demo page (/demo), and their content-hashed bundles and
// icon (/assets/…).
//
// Hashed files never change under their name, so they are cached for a
// year; the loader keeps its name across releases, so it is cached for five
// minutes and revalidated by ETag. Every file is precompressed at build
// time; a client that accepts gzip gets the .gz copy. Every answer carries a
// Content-Security-Policy that allows scripts, styles and connections from
// the gateway only: no inline script, no eval. Only the widget's frame may
// be framed, by any site (FrameCSP).
//
// Without a build (go test where node is absent) dist/ holds only its README:
// the handler then answers 404 for every file, and Built reports false.
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed all:dist
var dist embed.FS

// CSP is the Content-Security-Policy of every file the handler serves but
// the widget's frame. 'self' covers the gateway's WebSocket too (CSP level
// 3).
const CSP = policy + "frame-ancestors 'none'"

// FrameCSP is the widget's frame's: the same, but any site may frame it,
// since the widget goes on the tenants' own sites and a tenant names none
// in Parley. What the frame holds is the visitor's, never the framing
// page's to read: the browser keeps a cross-origin frame's document and
// storage from it.
const FrameCSP = policy + "frame-ancestors *"

// DemoCSP is the demo page's: it embeds the widget, whose launcher frames
// the chat from the gateway, its own origin.
const DemoCSP = policy + "frame-src 'self'; frame-ancestors 'none'"

const policy = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; " +
	"base-uri 'none'; form-action 'none'; "

// framePath is the widget's frame's path.
const framePath = "/widget-frame"

// policies are the paths whose Content-Security-Policy is not CSP.
var policies = map[string]string{framePath: FrameCSP, "/demo": DemoCSP}

const (
	immutable  = "public, max-age=31536000, immutable"
	shortCache = "public, max-age=300"
	noCache    = "no-cache"
)

// file is one servable file, with its precompressed copy when the build made
// one.
type file struct {
	body, gzip []byte
	etag       string
	ctype      string
	cache      string
}

// Handler serves the embedded files.
type Handler struct {
	files map[string]file
}

// New reads the embedded build.
func New() (*Handler, error) {
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		return nil, err
	}
	return NewFS(sub)
}

// NewFS reads a build laid out as dist/ is: the embedded one (New), or a
// test's own.
func NewFS(fsys fs.FS) (*Handler, error) {
	h := &Handler{files: make(map[string]file)}
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(p, ".gz") || p == "README.md" {
			return err
		}
		body, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		// Absent when the build found it not worth compressing.
		gz, _ := fs.ReadFile(fsys, p+".gz")
		sum := sha256.Sum256(body)
		name := "/" + p
		f := file{body: body, gzip: gz, etag: `"` + hex.EncodeToString(sum[:8]) + `"`, cache: shortCache}
		f.ctype = mime.TypeByExtension(path.Ext(name))
		switch {
		case strings.HasPrefix(name, "/assets/"):
			f.cache = immutable
		case strings.HasSuffix(name, ".html"):
			f.cache = noCache
			name = strings.TrimSuffix(name, ".html")
		}
		h.files[name] = f
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the front-end build: %w", err)
	}
	return h, nil
}

// Built reports whether the front-end build was embedded.
func (h *Handler) Built() bool { return len(h.files) > 0 }

// Pages are the paths a person opens, named in the gateway's start-up log.
var Pages = []string{"/demo", "/console", "/dashboard", "/privacy"}

// Patterns are the ServeMux patterns the handler answers: the launcher, its
// frame, the bundles and the pages.
var Patterns = func() []string {
	p := []string{"GET /widget.js", "GET " + framePath, "GET /assets/{name}"}
	for _, page := range Pages {
		p = append(p, "GET "+page)
	}
	return p
}()

// ServeHTTP serves the file of r's path, 404 for any other.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f, ok := h.files[r.URL.Path]
	if !ok {
		http.NotFound(w, r)
		return
	}
	hd := w.Header()
	csp, ok := policies[r.URL.Path]
	if !ok {
		csp = CSP
	}
	hd.Set("Content-Security-Policy", csp)
	if r.URL.Path == framePath {
		// Its address (and the host page's, were it sent) is nobody's business.
		hd.Set("Referrer-Policy", "no-referrer")
	}
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Cache-Control", f.cache)
	hd.Set("Content-Type", f.ctype)
	hd.Set("Vary", "Accept-Encoding")
	body, etag := f.body, f.etag
	if f.gzip != nil && acceptsGzip(r) {
		hd.Set("Content-Encoding", "gzip")
		body, etag = f.gzip, strings.TrimSuffix(etag, `"`)+`-gz"`
	}
	hd.Set("ETag", etag)
	// ServeContent answers If-None-Match and ranges; the zero time sends no
	// Last-Modified, which an embedded file does not have.
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
}

// acceptsGzip reports whether r's Accept-Encoding lists gzip without q=0.
func acceptsGzip(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept-Encoding") {
		for _, part := range strings.Split(v, ",") {
			coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
			if strings.EqualFold(strings.TrimSpace(coding), "gzip") {
				q := strings.ReplaceAll(params, " ", "")
				return q != "q=0" && q != "q=0.0" && q != "q=0.00" && q != "q=0.000"
			}
		}
	}
	return false
}
