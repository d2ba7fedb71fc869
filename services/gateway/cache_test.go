package gateway_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/privacyapi"
	"github.com/parley-chat/parley/pkg/rpc"
	"github.com/parley-chat/parley/services/gateway"
)

// TestAnswersAreNotStored: an answer holding a token must not be kept by a
// browser or a cache (RFC 6749 §5.1), nor any other of the API's, which
// are personal or a principal's; the privacy notice, the same for every
// visitor, keeps the caching its handler sets.
func TestAnswersAreNotStored(t *testing.T) {
	e := startGatewayWith(t, func(d *gateway.Deps) {
		// The notice is read from the settings, whose bucket the privacy
		// service would have made.
		js, err := jetstream.New(d.NC)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: privacyapi.SettingsBucket}); err != nil {
			t.Fatal(err)
		}
	})
	natstest.Until(t, 15*time.Second, "the settings read", func() bool {
		return e.do(http.MethodGet, "/v1/tenants/demo/notice", "", nil).status != http.StatusServiceUnavailable
	})
	serve(t, e.nc, privacyapi.RegisterVisitorSubject, func(context.Context, rpc.Request[privacyapi.RegisterVisitorArgs]) (privacyapi.RegisterVisitorResult, error) {
		return registered("v-1"), nil
	})
	serve(t, e.nc, privacyapi.RefreshSessionSubject, func(context.Context, rpc.Request[privacyapi.RefreshArgs]) (privacyapi.Session, error) {
		return registered("v-1").Session, nil
	})
	serve(t, e.nc, privacyapi.StartBotSessionSubject, func(context.Context, rpc.Request[privacyapi.IntegrationArgs]) (privacyapi.Session, error) {
		return privacyapi.Session{ID: "s-b1", Principal: auth.Principal{Tenant: "demo", ID: "b1", Role: auth.RoleBot}, RefreshToken: "r-b1", ExpiresAt: time.Now().Add(time.Hour)}, nil
	})
	admin := e.token(auth.Principal{Tenant: "demo", ID: "ada", Role: auth.RoleAdmin})
	tests := []struct {
		name, method, path, token, body string
		wantStatus                      int
		wantCache                       string
	}{
		{"visitor registration", http.MethodPost, "/v1/tenants/demo/visitors", "", `{"consent":{"analytics":false,"network_data":false,"ai":false},"notice_version":"1"}`, http.StatusCreated, "no-store"},
		{"session refresh", http.MethodPost, "/v1/sessions/refresh", "", `{"refresh_token":"r-v-1"}`, http.StatusOK, "no-store"},
		{"bot session", http.MethodPost, "/v1/bots/b1/session", admin, "", http.StatusCreated, "no-store"},
		{"sign-in callback refused", http.MethodGet, "/v1/sign-in/callback?state=s", "", "", http.StatusUnprocessableEntity, "no-store"},
		{"privacy notice", http.MethodGet, "/v1/tenants/demo/notice", "", "", http.StatusOK, "public, max-age=60"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do(tt.method, tt.path, tt.token, bodyOf(tt.body))
			if got := r.header.Values("Cache-Control"); r.status != tt.wantStatus || len(got) != 1 || got[0] != tt.wantCache {
				t.Errorf("%s %s = %d with Cache-Control %q, want %d with %q (body %s)", tt.method, tt.path, r.status, got, tt.wantStatus, tt.wantCache, r.body)
			}
		})
	}
}
