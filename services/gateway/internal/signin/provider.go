package signin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/stream"
)

// Bounds of a Provider's fields.
const (
	MaxURLLen      = 2048
	MaxClientIDLen = 256
	MaxSecretLen   = 1024
	MaxScopes      = 20
	MaxRoleValues  = 100
	MaxValueLen    = 256
)

// ErrInvalid is wrapped by the errors of Provider.Validate.
var ErrInvalid = errors.New("invalid identity provider")

// claimRe is a claim name, or a dotted path into nested claims
// (realm_access.roles).
var claimRe = regexp.MustCompile(`^[A-Za-z0-9_:/-]{1,64}(\.[A-Za-z0-9_:/-]{1,64}){0,4}$`)

// Provider is a tenant's OpenID provider: where its staff sign in and how
// the provider's claims map to Parley roles.
type Provider struct {
	// Issuer is the provider's issuer URL: https, or http on a loopback
	// host for trying out.
	Issuer   string `json:"issuer"`
	ClientID string `json:"client_id"`
	// ClientSecret is empty for a public client, which PKCE alone
	// protects. It is never shown: see View.
	ClientSecret string `json:"client_secret,omitempty"`
	// RedirectURL is where the provider sends the browser back: the
	// gateway's /v1/sign-in/callback, or a page of the client that hands
	// the code and state on to it.
	RedirectURL string `json:"redirect_url"`
	// Scopes are asked for besides openid, such as "groups".
	Scopes []string `json:"scopes,omitempty"`
	// RolesClaim names the claim of the id token that holds the person's
	// groups or roles: a string or a list of strings.
	RolesClaim string `json:"roles_claim"`
	// Roles maps the claim's values to Parley roles. A person whose values
	// map to several roles gets the first of admin, supervisor, agent,
	// analyst, auditor; one whose values map to none is refused.
	Roles map[string]auth.Role `json:"roles"`
}

// View is a Provider as the API shows it: the secret is never given back,
// only whether there is one.
type View struct {
	Issuer          string               `json:"issuer"`
	ClientID        string               `json:"client_id"`
	ClientSecretSet bool                 `json:"client_secret_set"`
	RedirectURL     string               `json:"redirect_url"`
	Scopes          []string             `json:"scopes"`
	RolesClaim      string               `json:"roles_claim"`
	Roles           map[string]auth.Role `json:"roles"`
}

// LogValue logs p without its secret.
func (p Provider) LogValue() slog.Value {
	return slog.GroupValue(slog.String("issuer", p.Issuer), slog.String("client_id", p.ClientID),
		slog.Bool("client_secret_set", p.ClientSecret != ""), slog.String("roles_claim", p.RolesClaim))
}

// View returns p without its secret.
func (p Provider) View() View {
	return View{Issuer: p.Issuer, ClientID: p.ClientID, ClientSecretSet: p.ClientSecret != "", RedirectURL: p.RedirectURL,
		Scopes: append([]string{}, p.Scopes...), RolesClaim: p.RolesClaim, Roles: p.Roles}
}

// precedence orders the roles a person may be mapped to, the first
// winning.
var precedence = []auth.Role{auth.RoleAdmin, auth.RoleSupervisor, auth.RoleAgent, auth.RoleAnalyst, auth.RoleAuditor}

// Validate checks p; its error wraps ErrInvalid and names the field,
// never its value.
func (p Provider) Validate() error {
	var errs []error
	bad := func(field, reason string) { errs = append(errs, fmt.Errorf("%w: %s %s", ErrInvalid, field, reason)) }
	// An issuer has no query (OpenID Connect Discovery 1.0, section 2):
	// the discovery document's address is the issuer's with a path added,
	// so a query would reach whatever answers there with the caller's
	// words in it — ClickHouse's HTTP port beside `parley all` reads its
	// SQL from one.
	if u, err := url.Parse(p.Issuer); !validURL(p.Issuer) || err != nil || u.RawQuery != "" || u.ForceQuery {
		bad("issuer", "must be an https URL without a query (http only on a loopback host)")
	}
	if !validURL(p.RedirectURL) {
		bad("redirect_url", "must be an https URL (http only on a loopback host)")
	}
	if p.ClientID == "" || len(p.ClientID) > MaxClientIDLen || !printable(p.ClientID) {
		bad("client_id", fmt.Sprintf("must be 1 to %d printable ASCII characters", MaxClientIDLen))
	}
	if len(p.ClientSecret) > MaxSecretLen || !printable(p.ClientSecret) {
		bad("client_secret", fmt.Sprintf("must be at most %d printable ASCII characters", MaxSecretLen))
	}
	if len(p.Scopes) > MaxScopes || slices.ContainsFunc(p.Scopes, func(s string) bool { return s == "" || len(s) > 64 || !printable(s) || strings.Contains(s, " ") }) {
		bad("scopes", fmt.Sprintf("must be at most %d scopes of 1 to 64 printable ASCII characters without spaces", MaxScopes))
	}
	if !claimRe.MatchString(p.RolesClaim) {
		bad("roles_claim", "must be a claim name, or a dotted path of up to 5 names")
	}
	if len(p.Roles) == 0 || len(p.Roles) > MaxRoleValues {
		bad("roles", fmt.Sprintf("must map 1 to %d claim values to roles", MaxRoleValues))
	}
	for v, r := range p.Roles {
		if v == "" || len(v) > MaxValueLen {
			bad("roles", fmt.Sprintf("claim values must be 1 to %d bytes", MaxValueLen))
			break
		}
		if !slices.Contains(precedence, r) {
			bad("roles", "roles must be agent, supervisor, admin, analyst or auditor")
			break
		}
	}
	return errors.Join(errs...)
}

func printable(s string) bool {
	for _, c := range []byte(s) {
		if c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}

// validURL reports whether s may be a provider's or a callback's URL:
// https, or http on loopback only.
func validURL(s string) bool {
	u, err := url.Parse(s)
	if err != nil || len(s) > MaxURLLen || u.Host == "" || u.User != nil || u.Fragment != "" {
		return false
	}
	switch u.Scheme {
	case "https":
		return true
	case "http":
		// Only on loopback, for a try-out: elsewhere the provider's
		// answer (state and code) and the secret's use would cross the
		// network in clear.
		ip := net.ParseIP(u.Hostname())
		return u.Hostname() == "localhost" || ip != nil && ip.IsLoopback()
	}
	return false
}

// role returns the role the claims map to, if any.
func (p Provider) role(claims map[string]any) (auth.Role, bool) {
	var v any = claims
	for name := range strings.SplitSeq(p.RolesClaim, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return "", false
		}
		v = m[name]
	}
	var values []string
	switch v := v.(type) {
	case string:
		values = []string{v}
	case []any:
		for _, e := range v {
			if s, ok := e.(string); ok {
				values = append(values, s)
			}
		}
	}
	mapped := make(map[auth.Role]bool)
	for _, s := range values {
		if r, ok := p.Roles[s]; ok {
			mapped[r] = true
		}
	}
	for _, r := range precedence {
		if mapped[r] {
			return r, true
		}
	}
	return "", false
}

// Providers keeps each tenant's Provider in the IDENTITY_PROVIDERS bucket,
// which only the gateway's bus user (and the bus administrator) may read.
// It is safe for concurrent use.
type Providers struct {
	kv jetstream.KeyValue
}

// OpenProviders creates the bucket when missing and returns a store on it.
func OpenProviders(ctx context.Context, js jetstream.JetStream, o stream.Options, log *slog.Logger) (*Providers, error) {
	kv, err := stream.OpenBucket(ctx, js, o, log, stream.IdentityProvidersBucket)
	if err != nil {
		return nil, err
	}
	return &Providers{kv: kv}, nil
}

// Get returns the tenant's provider; found is false when none is set.
func (s *Providers) Get(ctx context.Context, tenant string) (p Provider, found bool, err error) {
	e, err := s.kv.Get(ctx, tenant)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Provider{}, false, nil
	}
	if err != nil {
		return Provider{}, false, fmt.Errorf("read identity provider of %s: %w", tenant, err)
	}
	if err := json.Unmarshal(e.Value(), &p); err != nil {
		return Provider{}, false, fmt.Errorf("decode identity provider of %s: %w", tenant, err)
	}
	return p, true, nil
}

// Put validates p and stores it as the tenant's provider. An empty
// ClientSecret keeps the secret stored, if any, unless keepSecret is
// false.
func (s *Providers) Put(ctx context.Context, tenant string, p Provider, keepSecret bool) (Provider, error) {
	if keepSecret && p.ClientSecret == "" {
		old, found, err := s.Get(ctx, tenant)
		if err != nil {
			return Provider{}, err
		}
		if found && old.Issuer == p.Issuer && old.ClientID == p.ClientID {
			p.ClientSecret = old.ClientSecret
		}
	}
	if err := p.Validate(); err != nil {
		return Provider{}, err
	}
	p.Roles = maps.Clone(p.Roles)
	b, err := json.Marshal(p)
	if err != nil {
		return Provider{}, fmt.Errorf("encode identity provider of %s: %w", tenant, err)
	}
	if _, err := s.kv.Put(ctx, tenant, b); err != nil {
		return Provider{}, fmt.Errorf("store identity provider of %s: %w", tenant, err)
	}
	return p, nil
}
