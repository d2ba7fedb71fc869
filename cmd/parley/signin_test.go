package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/personkey"
	"github.com/parley-chat/parley/services/gateway"
)

// Tests of staff sign-in through a tenant's OpenID provider: a real one,
// zitadel/oidc's example provider, on loopback, driven over HTTP as a
// browser would.

const (
	opClientID     = "parley-console"
	opClientSecret = "op-client-secret-9f2c"
	opPassword     = "verysecure"
)

// groupsStorage is the example provider's storage, with a groups claim in
// the id token of each user.
type groupsStorage struct {
	*storage.Storage
	groups map[string][]string
}

func (s *groupsStorage) SetUserinfoFromRequest(ctx context.Context, info *oidc.UserInfo, req op.IDTokenRequest, scopes []string) error {
	if err := s.Storage.SetUserinfoFromRequest(ctx, info, req, scopes); err != nil {
		return err
	}
	info.AppendClaims("groups", s.groups[req.GetSubject()])
	return nil
}

// testProvider is an OpenID provider on loopback whose token answers a
// test may tamper with.
type testProvider struct {
	issuer  string
	storage *groupsStorage

	mu     sync.Mutex
	tamper func(idToken string) string
	// served counts the requests answered, by path.
	served map[string]int
}

// startProvider runs a provider whose client opClientID redirects to
// redirect.
func startProvider(t *testing.T, redirect string) *testProvider {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &testProvider{issuer: "http://" + ln.Addr().String(), served: map[string]int{}}
	p.storage = &groupsStorage{
		Storage: storage.NewStorageWithClients(storage.NewUserStore(p.issuer), map[string]*storage.Client{
			opClientID: storage.WebClient(opClientID, opClientSecret, redirect),
		}),
		// id1 is test-user@127.0.0.1, id2 test-user2.
		groups: map[string][]string{"id1": {"staff", "support-admins"}, "id2": {"staff"}},
	}
	router := exampleop.SetupServer(p.issuer, p.storage, nil, false)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		tamper := p.tamper
		p.served[r.URL.Path]++
		p.mu.Unlock()
		if r.URL.Path != "/oauth/token" || tamper == nil {
			router.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		router.ServeHTTP(rec, r)
		var body map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body["id_token"] == nil {
			t.Errorf("token answer %d %s: no id token to tamper with", rec.Code, rec.Body)
			return
		}
		body["id_token"] = tamper(body["id_token"].(string))
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(body)
	}))
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return p
}

// requests returns how many requests for path p answered.
func (p *testProvider) requests(path string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.served[path]
}

// settings are the identity provider settings of tenant demo for p at the
// gateway at base.
func (p *testProvider) settings(base string) map[string]any {
	return map[string]any{
		"issuer": p.issuer, "client_id": opClientID, "client_secret": opClientSecret,
		"redirect_url": base + "/v1/sign-in/callback", "roles_claim": "groups",
		"roles": map[string]string{"support-admins": "admin", "staff": "agent"},
	}
}

func (p *testProvider) setTamper(f func(string) string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tamper = f
}

// forge returns idToken with its claims edited, signed by key as kid.
func forge(t *testing.T, idToken string, key any, kid string, edit func(map[string]any)) string {
	t.Helper()
	parts := strings.Split(idToken, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	edit(claims)
	b, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: kid}}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	jws, err := signer.Sign(b)
	if err != nil {
		t.Fatal(err)
	}
	s, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// resigned edits the id token's claims and signs it again with the
// provider's own key: only the edited claim is wrong.
func (p *testProvider) resigned(t *testing.T, edit func(map[string]any)) func(string) string {
	key, err := p.storage.SigningKey(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return func(idToken string) string { return forge(t, idToken, key.Key(), key.ID(), edit) }
}

var loginIDRe = regexp.MustCompile(`name="id" value="([^"]+)"`)

// signIn signs user in to tenant demo through the provider as a browser
// would, and returns the gateway's answer to the provider's redirect, and
// that redirect's path and query.
func signIn(t *testing.T, base string, p *testProvider, user string) (int, map[string]any, string) {
	t.Helper()
	return signInVia(t, base, base, p, user)
}

// signInVia is signIn begun at the gateway at base and finished at the one
// at finish.
func signInVia(t *testing.T, base, finish string, p *testProvider, user string) (int, map[string]any, string) {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	browser := &http.Client{Jar: jar, Timeout: 30 * time.Second, CheckRedirect: func(req *http.Request, _ []*http.Request) error {
		if strings.HasPrefix(req.URL.String(), base) {
			return http.ErrUseLastResponse
		}
		return nil
	}}
	status, start := browserGet(t, browser, base+"/v1/tenants/demo/sign-in")
	if status != http.StatusOK {
		t.Fatalf("sign-in start = %d %v, want 200", status, start)
	}
	authURL := start["authorization_url"].(string)
	resp, err := browser.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := loginIDRe.FindSubmatch(page)
	if m == nil {
		t.Fatalf("provider's login page (%d) has no login form: %s", resp.StatusCode, page)
	}
	resp, err = browser.PostForm(p.issuer+"/login/username", url.Values{"id": {string(m[1])}, "username": {user}, "password": {opPassword}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	back := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(back, base+"/v1/sign-in/callback?") {
		t.Fatalf("provider answered the login %d to %q, want a redirect to the gateway", resp.StatusCode, back)
	}
	callback := strings.TrimPrefix(back, base)
	// The provider's answer brought by anyone but the browser that began
	// the sign-in signs no one in, and leaves the sign-in to that browser.
	if status, out := call(t, finish, "GET", callback, "", nil); status != http.StatusUnauthorized {
		t.Errorf("callback from another browser = %d %v, want 401", status, out)
	}
	status, out := browserGet(t, browser, finish+callback)
	if again, _ := browserGet(t, browser, finish+callback); again != http.StatusUnauthorized {
		t.Errorf("callback repeated by its own browser = %d, want 401: the answer is used once", again)
	}
	return status, out, callback
}

// browserGet GETs url with browser and returns the status and JSON answer.
func browserGet(t *testing.T, browser *http.Client, url string) (int, map[string]any) {
	t.Helper()
	resp, err := browser.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("GET %s: %d, not JSON: %v", url, resp.StatusCode, err)
	}
	return resp.StatusCode, out
}

// startSecondGateway runs another gateway instance on a's bus, and returns
// its URL.
func startSecondGateway(t *testing.T, a *allInOne) string {
	t.Helper()
	nc, _ := adminConn(t, a)
	key, err := auth.ReadKey(filepath.Join(a.cfg.DataDir, auth.SigningKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := personkey.NewCache(nc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { keys.Close() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- gateway.Run(ctx, gateway.Deps{NC: nc, Log: slog.New(slog.DiscardHandler), Listener: ln,
			Signer: auth.NewSigner(key), Verifier: auth.NewVerifier(key.Public().(ed25519.PublicKey)), Keys: keys,
			LoopbackIdentityProviders: true})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("second gateway: %v", err)
		}
	})
	base := "http://" + ln.Addr().String()
	waitReady(t, base)
	return base
}

// TestStaffSignIn: a member of staff signs in through their tenant's
// provider and gets a session with the role their groups map to, under
// the same id every time; every forged or replayed answer is refused with
// a problem and no session; the client secret is never answered; sign-in
// and sign-out everywhere are audited.
func TestStaffSignIn(t *testing.T) {
	dir := t.TempDir()
	a, logs := testAllAt(t, dir, natstest.NewClock())
	base := a.URL()
	p := startProvider(t, base+"/v1/sign-in/callback")
	admin := staffToken(t, dir, "demo", "admin", "ada")
	auditor := staffToken(t, dir, "demo", "auditor", "aud")
	user := "test-user@127.0.0.1"

	mustCall(t, base, "GET", "/v1/tenants/demo/sign-in", "", nil, http.StatusConflict)
	settings := p.settings(base)
	agent := staffToken(t, dir, "demo", "agent", "al")
	mustCall(t, base, "PUT", "/v1/tenants/demo/identity-provider", agent, settings, http.StatusForbidden)
	mustCall(t, base, "PUT", "/v1/tenants/demo/identity-provider", admin, settings, http.StatusOK)
	// Changing the mapping without the secret keeps it.
	delete(settings, "client_secret")
	view := mustCall(t, base, "PUT", "/v1/tenants/demo/identity-provider", admin, settings, http.StatusOK)
	for _, got := range []map[string]any{view, mustCall(t, base, "GET", "/v1/tenants/demo/identity-provider", admin, nil, http.StatusOK)} {
		b, _ := json.Marshal(got)
		if strings.Contains(string(b), opClientSecret) || got["client_secret_set"] != true {
			t.Errorf("identity provider = %s, want no secret and client_secret_set true", b)
		}
	}

	status, first, callback := signIn(t, base, p, user)
	if status != http.StatusOK {
		t.Fatalf("sign-in = %d %v, want 200", status, first)
	}
	who := first["principal"].(map[string]any)
	if who["role"] != "admin" || who["tenant"] != "demo" || !strings.HasPrefix(who["id"].(string), "oidc-") {
		t.Errorf("signed in as %v, want an admin of demo", who)
	}
	mustCall(t, base, "GET", "/v1/settings", first["access_token"].(string), nil, http.StatusOK)
	// The provider's answer is used once.
	mustCall(t, base, "GET", callback, "", nil, http.StatusUnauthorized)
	mustCall(t, base, "GET", "/v1/sign-in/callback?state=forged&code=forged", "", nil, http.StatusUnauthorized)

	// Begun at one gateway instance, finished at another.
	status, second, _ := signInVia(t, base, startSecondGateway(t, a), p, user)
	if status != http.StatusOK || second["principal"].(map[string]any)["id"] != who["id"] {
		t.Fatalf("second sign-in, through two gateways = %d %v, want the same person", status, second)
	}
	if status, out, _ := signIn(t, base, p, "test-user2"); status != http.StatusOK || out["principal"].(map[string]any)["role"] != "agent" {
		t.Errorf("sign-in of a member of staff only = %d %v, want an agent", status, out)
	}

	otherKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	opKey, err := p.storage.SigningKey(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		tamper func(string) string
	}{
		{"wrong issuer", p.resigned(t, func(c map[string]any) { c["iss"] = "http://127.0.0.1:1" })},
		{"wrong audience", p.resigned(t, func(c map[string]any) { c["aud"] = []string{"another-client"}; c["azp"] = "another-client" })},
		{"bad nonce", p.resigned(t, func(c map[string]any) { c["nonce"] = "forged-nonce" })},
		{"expired", p.resigned(t, func(c map[string]any) {
			c["exp"] = time.Now().Add(-time.Hour).Unix()
			c["iat"] = time.Now().Add(-2 * time.Hour).Unix()
		})},
		{"re-signed", func(idToken string) string { return forge(t, idToken, otherKey, opKey.ID(), func(map[string]any) {}) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p.setTamper(tt.tamper)
			defer p.setTamper(nil)
			status, out, _ := signIn(t, base, p, user)
			if status != http.StatusUnauthorized || out["type"] == nil || out["access_token"] != nil || out["refresh_token"] != nil {
				t.Errorf("sign-in with %s = %d %v, want a 401 problem and no session", tt.name, status, out)
			}
		})
	}

	settings["roles"] = map[string]string{"support-admins": "admin"}
	mustCall(t, base, "PUT", "/v1/tenants/demo/identity-provider", admin, settings, http.StatusOK)
	if status, out, _ := signIn(t, base, p, "test-user2"); status != http.StatusForbidden || out["access_token"] != nil {
		t.Errorf("sign-in of a person mapped to no role = %d %v, want a 403 problem", status, out)
	}

	id := who["id"].(string)
	if got := mustCall(t, base, "DELETE", "/v1/people/"+id+"/sessions", admin, nil, http.StatusOK)["revoked"]; got != 2.0 {
		t.Errorf("sign-out everywhere revoked %v sessions, want 2", got)
	}
	for _, s := range []map[string]any{first, second} {
		mustCall(t, base, "POST", "/v1/sessions/refresh", "", map[string]string{"refresh_token": s["refresh_token"].(string)}, http.StatusUnauthorized)
	}
	signIns := 0
	for _, e := range auditActions(t, base, auditor) {
		if strings.HasPrefix(e, "session.sign_in ") {
			signIns++
		}
		for _, secret := range []string{opClientSecret, first["refresh_token"].(string), second["refresh_token"].(string)} {
			if strings.Contains(e, secret) {
				t.Errorf("audit entry %q holds a secret", e)
			}
		}
	}
	if signIns != 3 {
		t.Errorf("audit holds %d sign-ins, want the 3 that succeeded", signIns)
	}
	if got := auditActions(t, base, auditor); got[len(got)-1] != "session.sign_out_everywhere subject:"+id {
		t.Errorf("last audit entry = %q, want the sign-out everywhere of %s", got[len(got)-1], id)
	}
	code, err := url.ParseQuery(strings.SplitN(callback, "?", 2)[1])
	if err != nil {
		t.Fatal(err)
	}
	logsHoldNone(t, a, logs, map[string]string{"client secret": opClientSecret, "provider's code": code.Get("code"),
		"refresh token": first["refresh_token"].(string), "access token": first["access_token"].(string)})
}

// TestSignInDiscoversOncePerPeriod signs in three times through one
// gateway: the provider's discovery document and its keys are fetched
// once, not at each sign-in, and the discovery again once an hour has
// passed (the gateway's DiscoveryTTL).
func TestSignInDiscoversOncePerPeriod(t *testing.T) {
	dir := t.TempDir()
	clock := natstest.NewClock()
	a, _ := testAllAt(t, dir, clock)
	base := a.URL()
	p := startProvider(t, base+"/v1/sign-in/callback")
	mustCall(t, base, "PUT", "/v1/tenants/demo/identity-provider", staffToken(t, dir, "demo", "admin", "ada"), p.settings(base), http.StatusOK)

	for _, user := range []string{"test-user@127.0.0.1", "test-user2", "test-user@127.0.0.1"} {
		if status, out, _ := signIn(t, base, p, user); status != http.StatusOK {
			t.Fatalf("sign-in of %s = %d %v, want 200", user, status, out)
		}
	}
	const discoveryPath, keysPath = "/.well-known/openid-configuration", "/keys"
	if got := p.requests(discoveryPath); got != 1 {
		t.Errorf("discovery documents fetched for 3 sign-ins = %d, want 1", got)
	}
	if got := p.requests(keysPath); got != 1 {
		t.Errorf("key sets fetched for 3 sign-ins = %d, want 1", got)
	}
	clock.Advance(time.Hour)
	mustCall(t, base, "GET", "/v1/tenants/demo/sign-in", "", nil, http.StatusOK)
	if got := p.requests(discoveryPath); got != 2 {
		t.Errorf("discovery documents fetched an hour later = %d, want 2", got)
	}
}
