package httpapi

import (
	"crypto/ed25519"
	"crypto/rand"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"testing/fstest"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/services/gateway/internal/live"
	"github.com/parley-chat/parley/services/gateway/internal/tenant"
	"github.com/parley-chat/parley/services/gateway/internal/web"
)

// TestStaticFiles: the front-end's files pass through the API's handler with
// their own answers — a revalidation's 304 is not turned into a problem —
// and a missing one is a 404 problem.
func TestStaticFiles(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	files, err := web.NewFS(fstest.MapFS{"widget.js": {Data: []byte("loader")}})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	reg := prometheus.NewRegistry()
	api, err := New(Config{
		NC: &nats.Conn{}, Log: log, Signer: auth.NewSigner(priv), Verifier: auth.NewVerifier(pub),
		Tenants: &tenant.Registry{}, Hub: live.NewHub(log, nil, nil), Registerer: reg, Gatherer: reg,
		StreamContext: t.Context(), Web: files,
	})
	if err != nil {
		t.Fatal(err)
	}
	get := func(path, etag string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodGet, path, nil)
		if etag != "" {
			r.Header.Set("If-None-Match", etag)
		}
		w := httptest.NewRecorder()
		api.ServeHTTP(w, r)
		return w
	}

	w := get("/widget.js", "")
	if w.Code != http.StatusOK || w.Body.String() != "loader" || w.Header().Get("Content-Security-Policy") != web.CSP {
		t.Fatalf("GET /widget.js = %d %q, CSP %q; want 200 loader with the CSP", w.Code, w.Body, w.Header().Get("Content-Security-Policy"))
	}
	if w := get("/widget.js", w.Header().Get("ETag")); w.Code != http.StatusNotModified || w.Body.Len() != 0 {
		t.Errorf("GET /widget.js revalidated = %d %q, want 304 and no body", w.Code, w.Body)
	}
	if w := get("/assets/widget-gone.js", ""); w.Code != http.StatusNotFound || w.Header().Get("Content-Type") != problemContentType {
		t.Errorf("GET a missing asset = %d %q, want a 404 problem", w.Code, w.Header().Get("Content-Type"))
	}
}
