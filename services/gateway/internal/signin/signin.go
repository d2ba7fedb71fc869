// Package signin signs members of staff in through their tenant's own
// OpenID provider: the authorization code flow with PKCE, by
// golang.org/x/oauth2 and github.com/coreos/go-oidc/v3, which check the id
// token's signature, issuer, audience and expiry. The state, nonce and PKCE
// verifier of a sign-in wait in the SIGN_IN bucket, so any gateway
// instance finishes a sign-in another began, and each is used once.
//
// The client secret is read from the IDENTITY_PROVIDERS bucket for the
// code exchange only: it is never logged and never answered.
package signin

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/oauth2"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/egress"
	"github.com/parley-chat/parley/pkg/stream"
)

// Errors of Start and Finish.
var (
	// ErrNoProvider means the tenant has no identity provider set.
	ErrNoProvider = errors.New("no identity provider")
	// ErrProvider means the provider could not be reached or answered
	// something unusable: its discovery document, its token endpoint.
	ErrProvider = errors.New("identity provider unavailable")
	// ErrState means the state names no pending sign-in: unknown, used
	// already, or older than stream.SignInTTL.
	ErrState = errors.New("unknown or used sign-in state")
	// ErrOtherBrowser means the sign-in was begun with another binding
	// (see Start): the provider's answer was brought by someone else than
	// who asked for it, from a leaked redirect or a forged link.
	ErrOtherBrowser = errors.New("sign-in begun elsewhere")
	// ErrRefused means the provider's answer does not sign anyone in: the
	// code was refused, or the id token failed a check (signature, issuer,
	// audience, expiry, nonce).
	ErrRefused = errors.New("sign-in refused")
	// ErrNoRole means the person's claims map to no Parley role.
	ErrNoRole = errors.New("no Parley role for this person")
)

// Flow starts and finishes sign-ins. It is safe for concurrent use.
type Flow struct {
	providers *Providers
	pending   jetstream.KeyValue
	// client makes the calls to providers.
	client     *http.Client
	now        func() time.Time
	discovered *discovery
}

// providerTimeout bounds each call to a provider.
const providerTimeout = 10 * time.Second

// maxProviderBody bounds each answer a provider's call reads. go-oidc reads
// discovery documents and key sets whole (io.ReadAll), and providerTimeout
// bounds time only: a provider streaming for 10 s could fill the gateway's
// memory. Real documents and key sets take a few KiB, the largest tens.
const maxProviderBody = 1 << 20

// errProviderBodyTooLarge is what reading past maxProviderBody of an
// answer fails with.
var errProviderBodyTooLarge = fmt.Errorf("identity provider's answer longer than %d bytes", maxProviderBody)

// Open returns a Flow on the tenants' providers and the SIGN_IN bucket,
// which it creates when missing; now is its clock (nil: time.Now). Unless
// loopback is true, for a try-out on one machine, the Flow calls out to no
// loopback, link-local or unspecified address, whatever a provider's
// settings or discovery document name: a tenant's admin sets the issuer,
// and the gateway must not become their way to its own host's services or
// a cloud's metadata endpoint.
func Open(ctx context.Context, js jetstream.JetStream, o stream.Options, providers *Providers, now func() time.Time, loopback bool, log *slog.Logger) (*Flow, error) {
	kv, err := stream.OpenBucket(ctx, js, o, log, stream.SignInBucket)
	if err != nil {
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	return &Flow{providers: providers, pending: kv, client: providerClient(loopback), now: now, discovered: newDiscovery(now)}, nil
}

// providerClient is the client of the calls to providers: on loopback
// addresses only when loopback is true (see Open), each answer read up to
// maxProviderBody.
func providerClient(loopback bool) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	// Straight to the provider, never through HTTPS_PROXY or HTTP_PROXY:
	// through a proxy refuseLocal would see only the proxy's address, and
	// the proxy would reach the local addresses it refuses.
	tr.Proxy = nil
	if !loopback {
		tr.DialContext = (&net.Dialer{Timeout: providerTimeout, Control: refuseLocal}).DialContext
	}
	return &http.Client{Timeout: providerTimeout, Transport: capBodies{rt: tr}}
}

// capBodies makes the bodies of rt's answers fail past maxProviderBody.
type capBodies struct{ rt http.RoundTripper }

func (c capBodies) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := c.rt.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	resp.Body = &cappedBody{ReadCloser: resp.Body, left: maxProviderBody}
	return resp, nil
}

// cappedBody reads left bytes at most: reading more fails with
// errProviderBodyTooLarge.
type cappedBody struct {
	io.ReadCloser
	left int64
}

func (b *cappedBody) Read(p []byte) (int, error) {
	if b.left < 0 {
		return 0, errProviderBodyTooLarge
	}
	// One byte more than is left tells a body longer than the cap from
	// one that ends at it.
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	if b.left < 0 {
		return n + int(b.left), errProviderBodyTooLarge
	}
	return n, err
}

// errLocalAddress is what refuseLocal answers a forbidden address with.
var errLocalAddress = errors.New("identity provider on a loopback, link-local or unspecified address")

// refuseLocal refuses, as the connection is made, an address the gateway's
// own host or network infrastructure answers on. Private networks are
// allowed: a tenant's provider may well be on its own.
var refuseLocal = egress.Control(func(ip netip.Addr) bool {
	return !ip.IsLoopback() && !ip.IsLinkLocalUnicast() && !ip.IsLinkLocalMulticast() && !ip.IsUnspecified()
}, errLocalAddress)

// maxProviderErrorText bounds the text of an error of the provider that
// Start and Finish return: go-oidc quotes a failing discovery document's
// or key set's whole answer (up to maxProviderBody) in its errors, and the
// gateway logs why a sign-in was refused.
const maxProviderErrorText = 512

// clipped is err with its text cut to maxProviderErrorText bytes.
type clipped struct{ err error }

func (c clipped) Error() string {
	s := c.err.Error()
	if len(s) <= maxProviderErrorText {
		return s
	}
	return strings.ToValidUTF8(s[:maxProviderErrorText], "") + " …"
}

func (c clipped) Unwrap() error { return c.err }

type pending struct {
	Tenant   string    `json:"tenant"`
	Nonce    string    `json:"nonce"`
	Verifier string    `json:"verifier"`
	Started  time.Time `json:"started"`
	// Binding is the hash of the binding Start gave its caller.
	Binding string `json:"binding"`
}

// discover returns the tenant's provider settings, its discovered
// endpoints and keys, and the OAuth 2 configuration of the client. The
// discovery is kept for DiscoveryTTL, by issuer.
func (f *Flow) discover(ctx context.Context, tenant string) (Provider, *oidc.Provider, oauth2.Config, error) {
	p, found, err := f.providers.Get(ctx, tenant)
	if err != nil {
		return Provider{}, nil, oauth2.Config{}, err
	}
	if !found {
		return Provider{}, nil, oauth2.Config{}, ErrNoProvider
	}
	// go-oidc checks that the discovery document names the issuer it was
	// asked for.
	op, err := f.discovered.provider(f.context(ctx), p.Issuer)
	if err != nil {
		return Provider{}, nil, oauth2.Config{}, fmt.Errorf("%w: discovery: %w", ErrProvider, clipped{err})
	}
	cfg := oauth2.Config{
		ClientID:     p.ClientID,
		ClientSecret: p.ClientSecret,
		Endpoint:     op.Endpoint(),
		RedirectURL:  p.RedirectURL,
		Scopes:       append([]string{oidc.ScopeOpenID}, p.Scopes...),
	}
	return p, op, cfg, nil
}

// context makes the oauth2 and oidc packages call out with f.client.
func (f *Flow) context(ctx context.Context) context.Context {
	return oidc.ClientContext(context.WithValue(ctx, oauth2.HTTPClient, f.client), f.client)
}

// Start begins a sign-in of a member of staff of tenant and returns the
// provider's URL to send their browser to, and a binding the same browser
// must bring to Finish (the gateway keeps it in a cookie): the provider's
// answer alone, state and code, signs no one in, so neither a leaked
// redirect nor a link forged to sign a victim in as someone else works.
func (f *Flow) Start(ctx context.Context, tenant string) (authURL, binding string, err error) {
	_, _, cfg, err := f.discover(ctx, tenant)
	if err != nil {
		return "", "", err
	}
	state, nonce, verifier, binding := rand.Text(), rand.Text(), oauth2.GenerateVerifier(), rand.Text()
	b, err := json.Marshal(pending{Tenant: tenant, Nonce: nonce, Verifier: verifier, Started: f.now().UTC(), Binding: digest(binding)})
	if err != nil {
		return "", "", fmt.Errorf("encode sign-in: %w", err)
	}
	if _, err := f.pending.Create(ctx, digest(state), b); err != nil {
		return "", "", fmt.Errorf("store sign-in: %w", err)
	}
	return cfg.AuthCodeURL(state, oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier)), binding, nil
}

// digest is the hex SHA-256 of a secret of a sign-in, what the bucket
// holds of it: nothing a request could be forged with.
func digest(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

// take removes and returns the pending sign-in of state when binding is
// the one Start gave: of two takes of one state, one gets it. A wrong
// binding leaves the sign-in to its own browser.
func (f *Flow) take(ctx context.Context, state, binding string) (pending, error) {
	key := digest(state)
	e, err := f.pending.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return pending{}, ErrState
	}
	if err != nil {
		return pending{}, fmt.Errorf("read sign-in: %w", err)
	}
	var p pending
	if err := json.Unmarshal(e.Value(), &p); err != nil {
		return pending{}, fmt.Errorf("decode sign-in: %w", err)
	}
	if subtle.ConstantTimeCompare([]byte(p.Binding), []byte(digest(binding))) != 1 {
		return pending{}, ErrOtherBrowser
	}
	err = f.pending.Delete(ctx, key, jetstream.LastRevision(e.Revision()))
	if stream.WrongLastSequence(err) {
		return pending{}, ErrState
	}
	if err != nil {
		return pending{}, fmt.Errorf("use sign-in: %w", err)
	}
	// The bucket drops entries after the same time; this holds on a clock
	// of the caller's.
	if f.now().Sub(p.Started) > stream.SignInTTL {
		return pending{}, ErrState
	}
	return p, nil
}

// Finish completes the sign-in of state with the provider's code, for the
// browser that brings the binding Start gave: it
// exchanges the code with the PKCE verifier, verifies the id token
// (signature, issuer, audience, expiry) and its nonce, and maps its claims
// to a Parley principal, whose id is derived from the tenant's provider's
// issuer, as its settings name it, and the subject, so the same person
// gets the same id at every sign-in.
func (f *Flow) Finish(ctx context.Context, state, code, binding string) (auth.Principal, error) {
	pend, err := f.take(ctx, state, binding)
	if err != nil {
		return auth.Principal{}, err
	}
	p, op, cfg, err := f.discover(ctx, pend.Tenant)
	if err != nil {
		return auth.Principal{}, err
	}
	cctx := f.context(ctx)
	tok, err := cfg.Exchange(cctx, code, oauth2.VerifierOption(pend.Verifier))
	var rerr *oauth2.RetrieveError
	switch {
	case errors.As(err, &rerr) && rerr.Response != nil && rerr.Response.StatusCode < 500:
		// Only the status: the body is the provider's to word.
		return auth.Principal{}, fmt.Errorf("%w: code exchange answered %d", ErrRefused, rerr.Response.StatusCode)
	case err != nil:
		return auth.Principal{}, fmt.Errorf("%w: code exchange failed", ErrProvider)
	}
	raw, ok := tok.Extra("id_token").(string)
	if !ok {
		return auth.Principal{}, fmt.Errorf("%w: no id token", ErrRefused)
	}
	// The provider's own key set, kept with it, fetches the keys once, and
	// again only for a key it does not know, through f.client.
	idt, err := op.Verifier(&oidc.Config{ClientID: p.ClientID, Now: f.now}).Verify(cctx, raw)
	if err != nil {
		return auth.Principal{}, fmt.Errorf("%w: %w", ErrRefused, clipped{err})
	}
	if idt.Nonce != pend.Nonce {
		return auth.Principal{}, fmt.Errorf("%w: nonce does not match", ErrRefused)
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		return auth.Principal{}, fmt.Errorf("%w: claims: %w", ErrRefused, err)
	}
	role, ok := p.role(claims)
	if !ok {
		return auth.Principal{}, ErrNoRole
	}
	// The configured issuer, not the token's: go-oidc takes Google's tokens
	// of issuer accounts.google.com for https://accounts.google.com, and the
	// person must get one id whichever their token names. Every other
	// token names the configured issuer exactly, so their ids are as before.
	return auth.Principal{Tenant: pend.Tenant, ID: StaffID(p.Issuer, idt.Subject), Role: role}, nil
}

// StaffID is the Parley id of the person sub of the provider issuer: the
// same at every sign-in, a valid principal id, and different for the same
// sub at another provider.
func StaffID(issuer, sub string) string {
	h := sha256.Sum256([]byte(issuer + "\x00" + sub))
	return "oidc-" + hex.EncodeToString(h[:16])
}
