package httpapi

import (
	"net/http"
	"time"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/privacyapi"
	"github.com/parley-chat/parley/pkg/rpc"
	"github.com/parley-chat/parley/pkg/stream"
)

var errRefreshRefused = newError(http.StatusUnauthorized, "unauthorized",
	"the refresh token opens no session: unknown, expired, spent, or of a session that ended")

// sessionView is a session as the API gives it: a short-lived access token
// and the refresh token that gets the next one, given once.
type sessionView struct {
	AccessToken      string         `json:"access_token"`
	TokenType        string         `json:"token_type"`
	ExpiresIn        int            `json:"expires_in"`
	RefreshToken     string         `json:"refresh_token"`
	RefreshExpiresAt time.Time      `json:"refresh_expires_at"`
	Principal        auth.Principal `json:"principal"`
}

// sessionView issues the access token of s.
func (a *API) sessionView(s privacyapi.Session) (sessionView, error) {
	tok, err := a.cfg.Signer.Issue(s.Principal, a.cfg.AccessTokenTTL)
	if err != nil {
		return sessionView{}, err
	}
	return sessionView{
		AccessToken:      tok,
		TokenType:        "Bearer",
		ExpiresIn:        int(a.cfg.AccessTokenTTL / time.Second),
		RefreshToken:     s.RefreshToken,
		RefreshExpiresAt: s.ExpiresAt,
		Principal:        s.Principal,
	}, nil
}

type refreshBody struct {
	RefreshToken string `json:"refresh_token"`
}

// refreshArgs reads the refresh token of the body. The token is the
// credential: no Authorization is needed, since the access token may well
// have expired.
func refreshArgs(w http.ResponseWriter, r *http.Request) (privacyapi.RefreshArgs, error) {
	var body refreshBody
	if err := decode(w, r, &body, false); err != nil {
		return privacyapi.RefreshArgs{}, err
	}
	if body.RefreshToken == "" {
		return privacyapi.RefreshArgs{}, invalid("refresh_token is required")
	}
	return privacyapi.RefreshArgs(body), nil
}

// sessionCall makes a call with a refresh token, whose refusal is the
// client's to hear as 401.
func (a *API) sessionCall(r *http.Request, subject string, args privacyapi.RefreshArgs, resp any) error {
	err := rpc.Call(r.Context(), a.cfg.NC, subject, rpc.Request[privacyapi.RefreshArgs]{Args: args}, resp)
	if rpc.CodeOf(err) == rpc.CodeForbidden {
		return errRefreshRefused
	}
	return err
}

func (a *API) refreshSession(w http.ResponseWriter, r *http.Request) error {
	args, err := refreshArgs(w, r)
	if err != nil {
		return err
	}
	var s privacyapi.Session
	if err := a.sessionCall(r, privacyapi.RefreshSessionSubject, args, &s); err != nil {
		return err
	}
	if !a.cfg.Tenants.Exists(s.Principal.Tenant) {
		return errUnknownTenant
	}
	view, err := a.sessionView(s)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, view)
	return nil
}

func (a *API) signOut(w http.ResponseWriter, r *http.Request) error {
	args, err := refreshArgs(w, r)
	if err != nil {
		return err
	}
	if err := a.sessionCall(r, privacyapi.EndSessionSubject, args, nil); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// getMe answers whom a member of staff's token names, once it is verified
// and its tenant found: how the staff pages check a try-out token before
// they rely on it, since a browser cannot read why the live stream's
// handshake was refused. It calls no service. Visitors and bots are
// refused: nothing of theirs needs it, and a bot's calls are those its
// guarantee lists, an erased visitor's none.
func (a *API) getMe(w http.ResponseWriter, r *http.Request) error {
	p, err := a.member(r, false)
	if err != nil {
		return err
	}
	if !p.Role.Staff() {
		return errRole
	}
	writeJSON(w, http.StatusOK, p)
	return nil
}

// signOutEverywhere revokes every session of the caller (/v1/me/sessions)
// or, for an admin, of a person of their tenant (/v1/people/{id}/sessions);
// the privacy service decides who may.
func (a *API) signOutEverywhere(w http.ResponseWriter, r *http.Request) error {
	p, err := a.member(r, false)
	if err != nil {
		return err
	}
	person := p.ID
	if id := r.PathValue("id"); id != "" {
		if !stream.ValidToken(id) {
			return errUnknownSubj
		}
		person = id
	}
	var res privacyapi.RevokeSessionsResult
	if err := a.call(r, privacyapi.RevokeSessionsSubject, p, privacyapi.PersonArgs{Tenant: p.Tenant, Person: person}, &res); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}
