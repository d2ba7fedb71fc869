package signin

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/parley-chat/parley/pkg/auth"
)

func validProvider() Provider {
	return Provider{
		Issuer: "https://id.example.com/realms/acme", ClientID: "parley", ClientSecret: "s3cret",
		RedirectURL: "https://console.example.com/signed-in", RolesClaim: "groups",
		Roles: map[string]auth.Role{"support-agents": auth.RoleAgent, "support-admins": auth.RoleAdmin},
	}
}

func TestProviderValidate(t *testing.T) {
	tests := []struct {
		name      string
		edit      func(*Provider)
		wantField string
	}{
		{"valid", func(*Provider) {}, ""},
		{"loopback http issuer", func(p *Provider) { p.Issuer = "http://127.0.0.1:5556" }, ""},
		{"public client", func(p *Provider) { p.ClientSecret = "" }, ""},
		{"nested claim", func(p *Provider) { p.RolesClaim = "realm_access.roles" }, ""},
		{"http issuer elsewhere", func(p *Provider) { p.Issuer = "http://id.example.com" }, "issuer"},
		{"issuer with credentials", func(p *Provider) { p.Issuer = "https://u:p@id.example.com" }, "issuer"},
		{"issuer with a query", func(p *Provider) { p.Issuer = "http://127.0.0.1:8123/?query=SELECT%201%20--" }, "issuer"},
		{"issuer with an empty query", func(p *Provider) { p.Issuer = "https://id.example.com/realms/acme?" }, "issuer"},
		{"relative redirect", func(p *Provider) { p.RedirectURL = "/signed-in" }, "redirect_url"},
		{"loopback http redirect", func(p *Provider) { p.RedirectURL = "http://localhost:8080/v1/sign-in/callback" }, ""},
		{"http redirect elsewhere", func(p *Provider) { p.RedirectURL = "http://chat.example.com/v1/sign-in/callback" }, "redirect_url"},
		{"no client id", func(p *Provider) { p.ClientID = "" }, "client_id"},
		{"secret with a newline", func(p *Provider) { p.ClientSecret = "a\nb" }, "client_secret"},
		{"scope with a space", func(p *Provider) { p.Scopes = []string{"a b"} }, "scopes"},
		{"claim path too deep", func(p *Provider) { p.RolesClaim = "a.b.c.d.e.f" }, "roles_claim"},
		{"no roles", func(p *Provider) { p.Roles = nil }, "roles"},
		{"operator role", func(p *Provider) { p.Roles = map[string]auth.Role{"ops": auth.RoleOperator} }, "roles"},
		{"visitor role", func(p *Provider) { p.Roles = map[string]auth.Role{"x": auth.RoleVisitor} }, "roles"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := validProvider()
			tt.edit(&p)
			err := p.Validate()
			switch {
			case tt.wantField == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tt.wantField != "" && (!errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.wantField)):
				t.Errorf("Validate() = %v, want ErrInvalid naming %s", err, tt.wantField)
			case err != nil && strings.Contains(err.Error(), "s3cret"):
				t.Errorf("Validate() = %v, names the secret", err)
			}
		})
	}
}

func TestProviderRole(t *testing.T) {
	p := validProvider()
	p.Roles["support-leads"] = auth.RoleSupervisor
	tests := []struct {
		name   string
		claims map[string]any
		want   auth.Role
	}{
		{"one group", map[string]any{"groups": []any{"support-agents"}}, auth.RoleAgent},
		{"a string claim", map[string]any{"groups": "support-leads"}, auth.RoleSupervisor},
		{"admin wins", map[string]any{"groups": []any{"support-agents", "support-admins", "support-leads"}}, auth.RoleAdmin},
		{"unmapped groups", map[string]any{"groups": []any{"sales"}}, ""},
		{"no claim", map[string]any{}, ""},
		{"not strings", map[string]any{"groups": []any{1, true}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := p.role(tt.claims)
			if got != tt.want || ok != (tt.want != "") {
				t.Errorf("role(%v) = %q, %v; want %q", tt.claims, got, ok, tt.want)
			}
		})
	}
	p.RolesClaim = "realm_access.roles"
	if got, _ := p.role(map[string]any{"realm_access": map[string]any{"roles": []any{"support-admins"}}}); got != auth.RoleAdmin {
		t.Errorf("role of a nested claim = %q, want admin", got)
	}
}

func TestStaffID(t *testing.T) {
	a := StaffID("https://id.example.com", "user-1")
	if a != StaffID("https://id.example.com", "user-1") {
		t.Error("StaffID differs for the same person")
	}
	if a == StaffID("https://other.example.com", "user-1") {
		t.Error("StaffID is the same for the same sub at another provider")
	}
	if err := (auth.Principal{Tenant: "demo", ID: a, Role: auth.RoleAgent}).Validate(); err != nil {
		t.Errorf("StaffID %q is not a valid principal id: %v", a, err)
	}
}

func TestProviderLogsNoSecret(t *testing.T) {
	var buf strings.Builder
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("provider", "p", validProvider())
	if strings.Contains(buf.String(), "s3cret") || !strings.Contains(buf.String(), "client_secret_set") {
		t.Errorf("logged %s, want the provider without its secret", buf.String())
	}
}

// TestProviderClientRefusesLocal calls a server on loopback, as a provider
// whose settings or discovery document name one would make the gateway
// do: refused unless loopback providers are allowed (a try-out).
func TestProviderClientRefusesLocal(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	defer srv.Close()
	if _, err := providerClient(false).Get(srv.URL); !errors.Is(err, errLocalAddress) {
		t.Errorf("GET %s without loopback = %v, want errLocalAddress", srv.URL, err)
	}
	resp, err := providerClient(true).Get(srv.URL)
	if err != nil {
		t.Fatalf("GET %s with loopback allowed: %v", srv.URL, err)
	}
	resp.Body.Close()
	for addr, refused := range map[string]bool{
		"127.0.0.1:443": true, "[::1]:443": true, "169.254.169.254:80": true, "0.0.0.0:80": true,
		"[::ffff:127.0.0.1]:443": true, "10.1.2.3:443": false, "203.0.113.7:443": false,
	} {
		if err := refuseLocal("tcp", addr, nil); (err != nil) != refused {
			t.Errorf("refuseLocal(%s) = %v, want refused %v", addr, err, refused)
		}
	}
}

// TestProviderClientCapsBodies reads answers up to maxProviderBody and
// fails past it, whatever reads them: go-oidc reads whole.
func TestProviderClientCapsBodies(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		w.Write(bytes.Repeat([]byte("a"), n))
	}))
	defer srv.Close()
	tests := []struct {
		name    string
		size    int
		wantErr error
	}{
		{"empty", 0, nil},
		{"at the cap", maxProviderBody, nil},
		{"past the cap", maxProviderBody + 1, errProviderBodyTooLarge},
		{"far past the cap", 8 * maxProviderBody, errProviderBodyTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := providerClient(true).Get(fmt.Sprintf("%s?n=%d", srv.URL, tt.size))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if !errors.Is(err, tt.wantErr) || tt.wantErr == nil && len(b) != tt.size {
				t.Errorf("read an answer of %d bytes = %d bytes, %v; want %v", tt.size, len(b), err, tt.wantErr)
			}
		})
	}
}

// TestProviderClientUsesNoProxy: behind a proxy refuseLocal would see
// only the proxy's address, never the provider's. ProxyFromEnvironment
// reads the environment once per process and never proxies loopback, so
// the transport is checked rather than a call.
func TestProviderClientUsesNoProxy(t *testing.T) {
	for _, loopback := range []bool{false, true} {
		if tr := providerClient(loopback).Transport.(capBodies).rt.(*http.Transport); tr.Proxy != nil {
			t.Errorf("providerClient(%v) has a proxy, want none", loopback)
		}
	}
}
