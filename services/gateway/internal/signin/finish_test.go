package signin

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/stream"
)

// fakeProvider is an OpenID provider that answers every issuer's calls:
// its discovery document names the issuer asked for, its token endpoint
// answers an id token of claims signed with its Ed25519 key, and its key
// set is that key, or what keys writes when set.
type fakeProvider struct {
	key ed25519.PrivateKey

	mu     sync.Mutex
	claims map[string]any
	keys   http.HandlerFunc
}

func (p *fakeProvider) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// The Flow's calls reach the server whatever their issuer's host, which
	// toServer keeps in the Host header; the issuer's path is the prefix
	// of every endpoint's.
	w.Header().Set("Content-Type", "application/json")
	p.mu.Lock()
	defer p.mu.Unlock()
	const discovery = "/.well-known/openid-configuration"
	switch path := r.URL.Path; {
	case strings.HasSuffix(path, discovery):
		issuer := "https://" + r.Host + strings.TrimSuffix(path, discovery)
		json.NewEncoder(w).Encode(map[string]any{
			"issuer": issuer, "authorization_endpoint": issuer + "/auth", "token_endpoint": issuer + "/token",
			"jwks_uri": issuer + "/keys", "id_token_signing_alg_values_supported": []string{"EdDSA"},
		})
	case strings.HasSuffix(path, "/token"):
		json.NewEncoder(w).Encode(map[string]any{"access_token": "at", "token_type": "Bearer", "id_token": p.sign(p.claims)})
	case strings.HasSuffix(path, "/keys") && p.keys != nil:
		p.keys(w, r)
	case strings.HasSuffix(path, "/keys"):
		x := base64.RawURLEncoding.EncodeToString(p.key.Public().(ed25519.PublicKey))
		json.NewEncoder(w).Encode(map[string]any{"keys": []map[string]string{{"kty": "OKP", "crv": "Ed25519", "kid": "k1", "alg": "EdDSA", "use": "sig", "x": x}}})
	default:
		http.NotFound(w, r)
	}
}

// sign returns the JWT of claims.
func (p *fakeProvider) sign(claims map[string]any) string {
	enc := func(v any) string {
		b, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	signed := enc(map[string]string{"alg": "EdDSA", "kid": "k1", "typ": "JWT"}) + "." + enc(claims)
	return signed + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(p.key, []byte(signed)))
}

// toServer sends every request to the server at addr over plain HTTP,
// keeping the request's host in its Host header.
type toServer struct {
	rt   http.RoundTripper
	addr string
}

func (s toServer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Host = r.URL.Host
	r.URL.Scheme, r.URL.Host = "http", s.addr
	return s.rt.RoundTrip(r)
}

// startFlow returns a Flow whose calls to any provider reach a
// fakeProvider, and that provider; tenant demo's provider is issuer's.
func startFlow(t *testing.T, issuer string) (*Flow, *fakeProvider) {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	op := &fakeProvider{key: key}
	srv := httptest.NewServer(op)
	t.Cleanup(srv.Close)
	_, js := natstest.Connect(t, natstest.Start(t, ""))
	log := slog.New(slog.DiscardHandler)
	providers, err := OpenProviders(t.Context(), js, stream.Options{}, log)
	if err != nil {
		t.Fatal(err)
	}
	f, err := Open(t.Context(), js, stream.Options{}, providers, nil, true, log)
	if err != nil {
		t.Fatal(err)
	}
	f.client.Transport = toServer{rt: f.client.Transport, addr: srv.Listener.Addr().String()}
	p := validProvider()
	p.Issuer = issuer
	if _, err := providers.Put(t.Context(), "demo", p, false); err != nil {
		t.Fatal(err)
	}
	return f, op
}

// signIn starts a sign-in of tenant demo and finishes it with an id token
// of the claims of a member of the support-agents group, iss as its issuer.
func signIn(t *testing.T, f *Flow, op *fakeProvider, iss, sub string) (auth.Principal, error) {
	t.Helper()
	authURL, binding, err := f.Start(t.Context(), "demo")
	if err != nil {
		t.Fatalf("Start() = %v", err)
	}
	u, err := url.Parse(authURL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	now := time.Now()
	op.mu.Lock()
	op.claims = map[string]any{
		"iss": iss, "sub": sub, "aud": "parley", "nonce": q.Get("nonce"),
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "groups": []string{"support-agents"},
	}
	op.mu.Unlock()
	return f.Finish(t.Context(), q.Get("state"), "code", binding)
}

// TestFinishStaffIDIsOfTheConfiguredIssuer: go-oidc takes Google's id
// tokens of issuer accounts.google.com for the issuer
// https://accounts.google.com, so the id must not depend on which one a
// token names; a token naming the configured issuer keeps the id it had.
func TestFinishStaffIDIsOfTheConfiguredIssuer(t *testing.T) {
	const google = "https://accounts.google.com"
	tests := []struct {
		name    string
		issuer  string
		tokenIs string
	}{
		{"google", google, google},
		{"google without its scheme", google, "accounts.google.com"},
		{"any other", "https://id.example.com/realms/acme", "https://id.example.com/realms/acme"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, op := startFlow(t, tt.issuer)
			got, err := signIn(t, f, op, tt.tokenIs, "user-1")
			want := auth.Principal{Tenant: "demo", ID: StaffID(tt.issuer, "user-1"), Role: auth.RoleAgent}
			if err != nil || got != want {
				t.Errorf("Finish() of a token of %s = %v, %v; want %v", tt.tokenIs, got, err, want)
			}
		})
	}
}

// TestFinishErrorIsBounded: go-oidc quotes a failing key set's answer in
// its error, which the gateway logs.
func TestFinishErrorIsBounded(t *testing.T) {
	f, op := startFlow(t, "https://id.example.com")
	const end = "END-OF-THE-ANSWER"
	op.mu.Lock()
	op.keys = func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
		w.Write([]byte(strings.Repeat("é", 32<<10) + end))
	}
	op.mu.Unlock()
	_, err := signIn(t, f, op, "https://id.example.com", "user-1")
	if !errors.Is(err, ErrRefused) || len(err.Error()) > 2*maxProviderErrorText || strings.Contains(err.Error(), end) {
		t.Errorf("Finish() with a key set failing = %d bytes of error (errors.Is ErrRefused %v), want ErrRefused of at most %d bytes",
			len(err.Error()), errors.Is(err, ErrRefused), 2*maxProviderErrorText)
	}
}
