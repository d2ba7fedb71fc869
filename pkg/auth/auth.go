// Package auth issues and verifies Parley's bearer tokens: EdDSA-signed JWTs
// carrying the tenant, the principal's id and one role.
//
// A Signer and a Verifier are safe for concurrent use.
package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/parley-chat/parley/pkg/stream"
)

// Role is what a principal may do.
type Role string

// The roles. Operator is the only role of tenant "*" and manages tenants only.
const (
	RoleVisitor    Role = "visitor"
	RoleAgent      Role = "agent"
	RoleSupervisor Role = "supervisor"
	RoleAdmin      Role = "admin"
	RoleAnalyst    Role = "analyst"
	RoleAuditor    Role = "auditor"
	RoleOperator   Role = "operator"
	// RoleBot is a bot an admin registered: it answers in the
	// conversations assigned to it, and nothing else.
	RoleBot Role = "bot"
)

// RoleSystem is the role of a service calling another on its own behalf
// (System): never in a token, so never a user's. It is accepted on
// internal endpoints only, which only services may reach (see pkg/rpc).
const RoleSystem Role = "system"

// System is the principal of service (its name on the bus, such as
// privacyapi.Service) acting on tenant's data on its own behalf.
func System(tenant, service string) Principal {
	return Principal{Tenant: tenant, ID: service, Role: RoleSystem}
}

// OperatorTenant is the tenant of operator tokens.
const OperatorTenant = "*"

const issuer = "parley"

// Errors returned by Verify.
var (
	ErrInvalidToken = errors.New("invalid token")
	ErrExpiredToken = errors.New("token expired")
)

// Valid reports whether r is a role a token may carry: any but
// RoleSystem.
func (r Role) Valid() bool {
	switch r {
	case RoleVisitor, RoleAgent, RoleSupervisor, RoleAdmin, RoleAnalyst, RoleAuditor, RoleOperator, RoleBot:
		return true
	}
	return false
}

// Staff reports whether r is a role of the support organisation's own
// people; a bot is not one.
func (r Role) Staff() bool {
	return r.Valid() && r != RoleVisitor && r != RoleOperator && r != RoleBot
}

// Principal is the verified caller of a request.
type Principal struct {
	Tenant string `json:"tenant"`
	ID     string `json:"id"`
	Role   Role   `json:"role"`
}

// tenantIDRe is what may name a tenant: it fits a DNS label and a NATS
// subject token.
var tenantIDRe = regexp.MustCompile(`^[a-z0-9-]{1,63}$`)

// ValidTenantID reports whether id may name a tenant: 1 to 63 lowercase
// letters, digits and hyphens.
func ValidTenantID(id string) bool { return tenantIDRe.MatchString(id) }

// Validate checks that p could be put in a token.
func (p Principal) Validate() error {
	switch {
	case !p.Role.Valid():
		return fmt.Errorf("role %q is not one of visitor, agent, supervisor, admin, analyst, auditor, operator, bot", p.Role)
	case p.Role == RoleOperator && p.Tenant != OperatorTenant:
		return fmt.Errorf("the operator role belongs to tenant %q", OperatorTenant)
	case p.Role != RoleOperator && !stream.ValidToken(p.Tenant):
		return fmt.Errorf("tenant %q: want 1-64 of [A-Za-z0-9_-]", p.Tenant)
	case !stream.ValidToken(p.ID):
		return fmt.Errorf("id %q: want 1-64 of [A-Za-z0-9_-]", p.ID)
	}
	return nil
}

type claims struct {
	jwt.RegisteredClaims
	Tenant string `json:"tenant"`
	Role   Role   `json:"role"`
}

// Signer issues tokens with an Ed25519 private key.
type Signer struct {
	key ed25519.PrivateKey
	// Now stamps the tokens issued; nil means time.Now. Tests set their
	// own clock.
	Now func() time.Time
}

// NewSigner returns a Signer for key.
func NewSigner(key ed25519.PrivateKey) *Signer { return &Signer{key: key} }

// Issue returns a token for p valid for ttl.
func (s *Signer) Issue(p Principal, ttl time.Duration) (string, error) {
	if err := p.Validate(); err != nil {
		return "", fmt.Errorf("issue token: %w", err)
	}
	now := clock(s.Now)
	c := claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    issuer,
			Subject:   p.ID,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		},
		Tenant: p.Tenant,
		Role:   p.Role,
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c).SignedString(s.key)
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return tok, nil
}

// Verifier checks tokens against an Ed25519 public key. It remembers the
// tokens it has verified until they expire, because a signature check costs
// far more than the rest of a typical request and clients send the same
// token again and again: a token stays valid until it expires, whatever
// happens to the session that issued it, which is why access tokens are
// short-lived.
type Verifier struct {
	key    ed25519.PublicKey
	parser *jwt.Parser
	// Now is the time tokens are checked at; nil means time.Now. Tests set
	// their own clock, before the first Verify.
	Now func() time.Time

	mu       sync.Mutex
	verified map[string]verified
}

type verified struct {
	principal Principal
	expires   time.Time
}

// maxVerified bounds the memory of remembered tokens (a few hundred bytes
// each); past it, the oldest entries are not tracked, arbitrary ones go.
const maxVerified = 50_000

// NewVerifier returns a Verifier for key.
func NewVerifier(key ed25519.PublicKey) *Verifier {
	v := &Verifier{
		key:      key,
		verified: make(map[string]verified),
	}
	v.parser = jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg()}),
		jwt.WithIssuer(issuer),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(5*time.Second),
		jwt.WithTimeFunc(func() time.Time { return clock(v.Now) }),
	)
	return v
}

// clock returns now(), or time.Now() when now is nil.
func clock(now func() time.Time) time.Time {
	if now == nil {
		return time.Now()
	}
	return now()
}

// Verify returns the principal of a valid token; ErrExpiredToken for an
// expired one and ErrInvalidToken for anything else wrong with it.
func (v *Verifier) Verify(token string) (Principal, error) {
	now := clock(v.Now)
	v.mu.Lock()
	hit, ok := v.verified[token]
	v.mu.Unlock()
	if ok && now.Before(hit.expires) {
		return hit.principal, nil
	}
	p, expires, err := v.verify(token)
	if err != nil {
		return Principal{}, err
	}
	v.mu.Lock()
	if len(v.verified) >= maxVerified {
		v.evict(now)
	}
	v.verified[token] = verified{principal: p, expires: expires}
	v.mu.Unlock()
	return p, nil
}

// evict drops expired entries, and arbitrary ones while the map is still
// over a tenth full; v.mu must be held.
func (v *Verifier) evict(now time.Time) {
	for t, e := range v.verified {
		if !now.Before(e.expires) || len(v.verified) > maxVerified*9/10 {
			delete(v.verified, t)
		}
	}
}

func (v *Verifier) verify(token string) (Principal, time.Time, error) {
	var c claims
	_, err := v.parser.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return v.key, nil })
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return Principal{}, time.Time{}, ErrExpiredToken
	case err != nil:
		return Principal{}, time.Time{}, ErrInvalidToken
	}
	p := Principal{Tenant: c.Tenant, ID: c.Subject, Role: c.Role}
	if p.Validate() != nil {
		return Principal{}, time.Time{}, ErrInvalidToken
	}
	return p, c.ExpiresAt.Time, nil
}

// SigningKeyFile is the name of the signing key under a data directory.
const SigningKeyFile = "signing-key.pem"

// LoadOrCreateKey reads the PEM (PKCS #8) Ed25519 key at path, creating it
// with mode 0600 when it does not exist yet.
func LoadOrCreateKey(path string) (ed25519.PrivateKey, error) {
	key, err := ReadKey(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return key, err
	}
	_, key, err = ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate signing key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode signing key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create signing key dir: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		// Another process created it first: use theirs.
		return ReadKey(path)
	}
	if err != nil {
		return nil, fmt.Errorf("create signing key: %w", err)
	}
	if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		f.Close()
		return nil, fmt.Errorf("write signing key: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("write signing key: %w", err)
	}
	return key, nil
}

// ReadKey reads a PEM (PKCS #8) Ed25519 private key; the error wraps
// fs.ErrNotExist when there is no file.
func ReadKey(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read signing key: %w", err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("read signing key %s: no PEM block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("read signing key %s: %w", path, err)
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("read signing key %s: not an Ed25519 key", path)
	}
	return ek, nil
}
