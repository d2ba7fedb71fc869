package signin

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/parley-chat/parley/pkg/natsembed/natstest"
)

// TestDiscoveryKeptPerIssuer shows what discovery fetches: nothing kept
// of a failed discovery, one fetch for sign-ins that miss at once, none
// while the provider is fresh, one more after DiscoveryTTL.
func TestDiscoveryKeptPerIssuer(t *testing.T) {
	var fetched atomic.Int32
	var failing atomic.Bool
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/.well-known/openid-configuration" {
			http.NotFound(w, r)
			return
		}
		fetched.Add(1)
		if failing.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{
			"issuer": srv.URL, "authorization_endpoint": srv.URL + "/auth",
			"token_endpoint": srv.URL + "/token", "jwks_uri": srv.URL + "/keys",
		})
	}))
	defer srv.Close()
	clock := natstest.NewClock()
	d := newDiscovery(clock.Now)
	ctx := oidc.ClientContext(t.Context(), srv.Client())

	failing.Store(true)
	if _, err := d.provider(ctx, srv.URL); err == nil {
		t.Fatal("provider() of a failing discovery = nil error")
	}
	failing.Store(false)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if _, err := d.provider(ctx, srv.URL); err != nil {
				t.Errorf("provider() = %v", err)
			}
		})
	}
	wg.Wait()
	if got := fetched.Load(); got != 2 {
		t.Errorf("fetches after a failure and 8 sign-ins = %d, want 2: the failure kept nothing, the sign-ins shared one", got)
	}
	clock.Advance(DiscoveryTTL - time.Second)
	if _, err := d.provider(ctx, srv.URL); err != nil || fetched.Load() != 2 {
		t.Errorf("provider() within DiscoveryTTL = %v after %d fetches, want nil after 2", err, fetched.Load())
	}
	clock.Advance(time.Second)
	if _, err := d.provider(ctx, srv.URL); err != nil || fetched.Load() != 3 {
		t.Errorf("provider() after DiscoveryTTL = %v after %d fetches, want nil after 3", err, fetched.Load())
	}
}
