package httpapi

import (
	"errors"
	"net/http"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/privacyapi"
	"github.com/parley-chat/parley/pkg/rpc"
	"github.com/parley-chat/parley/pkg/stream"
	"github.com/parley-chat/parley/services/gateway/internal/signin"
)

// The problems of sign-in; problemFor maps the errors of package signin to
// them.
var (
	errNoProvider = newError(http.StatusNotFound, "not-found", "this tenant has no identity provider set")
	// A sign-in is served for every tenant, but possible only once a
	// provider is set: the tenant's state forbids it (409), the route is
	// there.
	errNoSignIn        = newError(http.StatusConflict, "conflict", "this tenant has no identity provider set: its staff cannot sign in yet")
	errProviderDown    = newError(http.StatusServiceUnavailable, "unavailable", "the tenant's identity provider could not be reached or answered something unusable")
	errSignInState     = newError(http.StatusUnauthorized, "unauthorized", "the sign-in is unknown, was finished already, or took too long: start again")
	errSignInElsewhere = newError(http.StatusUnauthorized, "unauthorized", "the sign-in was begun in another browser: start again in this one")
	errSignInRefused   = newError(http.StatusUnauthorized, "unauthorized", "the identity provider's answer signs no one in")
	errSignInNoRole    = newError(http.StatusForbidden, "forbidden", "the identity provider gives this person no Parley role")
	errProviderAccess  = newError(http.StatusForbidden, "forbidden", "only the operator or an admin of the tenant sets its identity provider")
)

// providerBody is PUT /v1/tenants/{tenant}/identity-provider. An absent
// client_secret keeps the one stored for the same issuer and client id.
type providerBody struct {
	signin.Provider
	ClientSecret *string `json:"client_secret"`
}

// providerAdmin returns the tenant of the path when the caller may set its
// identity provider: the operator, or an admin of that tenant.
func (a *API) providerAdmin(r *http.Request) (string, error) {
	p, err := a.authenticate(r, false)
	if err != nil {
		return "", err
	}
	tid := r.PathValue("tenant")
	if !(p.Role == auth.RoleOperator || p.Role == auth.RoleAdmin && p.Tenant == tid) {
		return "", errProviderAccess
	}
	if !auth.ValidTenantID(tid) || !a.cfg.Tenants.Exists(tid) {
		return "", errUnknownTenant
	}
	return tid, nil
}

func (a *API) putProvider(w http.ResponseWriter, r *http.Request) error {
	tid, err := a.providerAdmin(r)
	if err != nil {
		return err
	}
	var body providerBody
	if err := decode(w, r, &body, false); err != nil {
		return err
	}
	p := body.Provider
	if body.ClientSecret != nil {
		p.ClientSecret = *body.ClientSecret
	}
	stored, err := a.cfg.Providers.Put(r.Context(), tid, p, body.ClientSecret == nil)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, stored.View())
	return nil
}

func (a *API) getProvider(w http.ResponseWriter, r *http.Request) error {
	tid, err := a.providerAdmin(r)
	if err != nil {
		return err
	}
	p, found, err := a.cfg.Providers.Get(r.Context(), tid)
	if err != nil {
		return err
	}
	if !found {
		return errNoProvider
	}
	writeJSON(w, http.StatusOK, p.View())
	return nil
}

// startSignIn answers the provider's URL to send a member of staff's
// browser to. It is anonymous and stores the pending sign-in, so it counts
// against the client address's registrations, as visitor registration
// does.
func (a *API) startSignIn(w http.ResponseWriter, r *http.Request) error {
	tid := r.PathValue("tenant")
	if !auth.ValidTenantID(tid) || !a.cfg.Tenants.Exists(tid) {
		return errUnknownTenant
	}
	giveBack, err := a.admitRegistration(r, tid)
	if err != nil {
		return err
	}
	u, binding, err := a.cfg.SignIn.Start(r.Context(), tid)
	if errors.Is(err, signin.ErrNoProvider) {
		// Stored nothing: it uses none of the limits.
		giveBack()
		return errNoSignIn
	}
	if err != nil {
		return err
	}
	http.SetCookie(w, signInCookie(r, binding, int(stream.SignInTTL.Seconds())))
	writeJSON(w, http.StatusOK, map[string]string{"authorization_url": u})
	return nil
}

// finishSignIn takes the provider's answer, which the browser brings back,
// and answers a session of the person signed in.
func (a *API) finishSignIn(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	state, code := q.Get("state"), q.Get("code")
	switch {
	case state == "":
		return invalid("state is required")
	case q.Get("error") != "":
		// The provider refused (access_denied, …); the pending sign-in
		// expires unused.
		return errSignInRefused
	case code == "":
		return invalid("code is required")
	}
	var binding string
	if c, err := r.Cookie(signInCookieName); err == nil {
		binding = c.Value
	}
	p, err := a.cfg.SignIn.Finish(r.Context(), state, code, binding)
	if errors.Is(err, signin.ErrRefused) {
		// Why, for the operator; the client hears only that it failed.
		a.cfg.Log.Warn("sign-in refused", "err", err)
	}
	if err != nil {
		return err
	}
	var s privacyapi.Session
	if err := rpc.Call(r.Context(), a.cfg.NC, privacyapi.StartSessionSubject, rpc.Request[privacyapi.StartSessionArgs]{
		Principal: p, Args: privacyapi.StartSessionArgs{Tenant: p.Tenant},
	}, &s); err != nil {
		return err
	}
	view, err := a.sessionView(s)
	if err != nil {
		return err
	}
	http.SetCookie(w, signInCookie(r, "", -1))
	writeJSON(w, http.StatusOK, view)
	return nil
}

// signInCookieName is the cookie holding a sign-in's binding (signin.Start)
// from its start to the provider's answer, in the browser that began it.
const signInCookieName = "parley_sign_in"

// signInCookie is the binding cookie: HttpOnly, sent back only to the
// callback and, SameSite=Lax, on the provider's redirect to it (a
// top-level navigation) but not on a request another site makes; Secure
// when the gateway is reached over TLS, here or at a proxy in front.
func signInCookie(r *http.Request, binding string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name: signInCookieName, Value: binding, Path: "/v1/sign-in/", MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteLaxMode,
		Secure: r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https",
	}
}
