package httpapi

import (
	"crypto/ed25519"
	"crypto/rand"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/stream"
	"github.com/parley-chat/parley/services/gateway/internal/live"
	"github.com/parley-chat/parley/services/gateway/internal/tenant"
)

// TestStreamWithoutBus checks that a live session the bus cannot follow is
// answered 503 with Retry-After, a problem, before the upgrade.
func TestStreamWithoutBus(t *testing.T) {
	s := natstest.Start(t, t.TempDir())
	nc, js := natstest.Connect(t, s)
	log := slog.New(slog.DiscardHandler)
	tenants, err := tenant.Open(t.Context(), js, stream.Options{}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tenants.Close() })
	if _, err := tenants.Put(t.Context(), tenant.Tenant{ID: "demo", Name: "Demo"}); err != nil {
		t.Fatal(err)
	}
	hubNC, _ := natstest.Connect(t, s)
	hub := live.NewHub(log, nil, nil)
	hub.Follow(hubNC)
	hubNC.Close()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	signer := auth.NewSigner(priv)
	api, err := New(Config{
		NC: nc, Log: log, Signer: signer, Verifier: auth.NewVerifier(pub),
		Tenants: tenants, Hub: hub, Registerer: reg, Gatherer: reg, StreamContext: t.Context(),
	})
	if err != nil {
		t.Fatal(err)
	}
	token, err := signer.Issue(auth.Principal{Tenant: "demo", ID: "s1", Role: auth.RoleSupervisor}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	r := httptest.NewRequest(http.MethodGet, "/v1/stream", nil)
	r.Header.Set("Authorization", "Bearer "+token)
	r.Header.Set("Connection", "Upgrade")
	r.Header.Set("Upgrade", "websocket")
	r.Header.Set("Sec-WebSocket-Version", "13")
	r.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	w := httptest.NewRecorder()
	api.ServeHTTP(w, r)
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Content-Type") != problemContentType || w.Header().Get("Retry-After") != "2" {
		t.Errorf("GET /v1/stream without a bus = %d %q, Retry-After %q; want a 503 problem, Retry-After 2",
			w.Code, w.Header().Get("Content-Type"), w.Header().Get("Retry-After"))
	}
	if n := hub.Sessions(); n != 0 {
		t.Errorf("Sessions() = %d, want 0", n)
	}
}
