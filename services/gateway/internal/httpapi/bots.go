package httpapi

import (
	"net/http"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/privacyapi"
	"github.com/parley-chat/parley/pkg/rpc"
	"github.com/parley-chat/parley/pkg/stream"
)

// The routes of bots (/v1/bots) and integrations (/v1/integrations): the
// privacy service validates, decides who may, audits and stores; these
// translate.

var (
	errUnknownBot         = newError(http.StatusNotFound, "not-found", "no such bot")
	errUnknownIntegration = newError(http.StatusNotFound, "not-found", "no such integration")
)

// integrationBody is PUT /v1/bots/{id} and PUT /v1/integrations/{id}.
type integrationBody struct {
	Name        string `json:"name"`
	WebhookURL  string `json:"webhook_url"`
	NATSSubject string `json:"nats_subject"`
}

// createdIntegration is the answer to a registration: the view, and what
// is given once: the signing secret and, for a bot, its session.
type createdIntegration struct {
	privacyapi.IntegrationView
	Secret  string       `json:"secret"`
	Session *sessionView `json:"session,omitempty"`
}

// A bot's and an integration's routes differ in the kind they name only.
func (a *API) putBot(w http.ResponseWriter, r *http.Request) error {
	return a.putKind(w, r, privacyapi.KindBot)
}

func (a *API) putIntegration(w http.ResponseWriter, r *http.Request) error {
	return a.putKind(w, r, privacyapi.KindIntegration)
}

func (a *API) getBot(w http.ResponseWriter, r *http.Request) error {
	return a.getKind(w, r, privacyapi.KindBot)
}

func (a *API) getIntegration(w http.ResponseWriter, r *http.Request) error {
	return a.getKind(w, r, privacyapi.KindIntegration)
}

func (a *API) deleteBot(w http.ResponseWriter, r *http.Request) error {
	return a.deleteKind(w, r, privacyapi.KindBot)
}

func (a *API) deleteIntegration(w http.ResponseWriter, r *http.Request) error {
	return a.deleteKind(w, r, privacyapi.KindIntegration)
}

func (a *API) listBots(w http.ResponseWriter, r *http.Request) error {
	return a.listKind(w, r, privacyapi.KindBot)
}

func (a *API) listIntegrations(w http.ResponseWriter, r *http.Request) error {
	return a.listKind(w, r, privacyapi.KindIntegration)
}

// integrationArgs returns the caller and the bot or integration of the
// path. An id that could be none is unknown; a registration sends it on,
// to be refused by the privacy service naming the field.
func (a *API) integrationArgs(r *http.Request, kind string, registering bool) (auth.Principal, privacyapi.IntegrationArgs, error) {
	p, err := a.member(r, false)
	if err != nil {
		return p, privacyapi.IntegrationArgs{}, err
	}
	args := privacyapi.IntegrationArgs{Tenant: p.Tenant, Kind: kind, ID: r.PathValue("id")}
	if !registering && !stream.ValidToken(args.ID) {
		return p, args, unknownKind(kind)
	}
	return p, args, nil
}

func unknownKind(kind string) error {
	if kind == privacyapi.KindBot {
		return errUnknownBot
	}
	return errUnknownIntegration
}

// kindCall makes a call about a bot or integration of kind, whose
// absence the answer names.
func (a *API) kindCall(r *http.Request, subject string, p auth.Principal, kind string, args, resp any) error {
	err := a.call(r, subject, p, args, resp)
	if rpc.CodeOf(err) == rpc.CodeNotFound {
		return unknownKind(kind)
	}
	return err
}

func (a *API) putKind(w http.ResponseWriter, r *http.Request, kind string) error {
	p, args, err := a.integrationArgs(r, kind, true)
	if err != nil {
		return err
	}
	var body integrationBody
	if err := decode(w, r, &body, false); err != nil {
		return err
	}
	var res privacyapi.PutIntegrationResult
	put := privacyapi.PutIntegrationArgs{IntegrationArgs: args, Name: body.Name, WebhookURL: body.WebhookURL, NATSSubject: body.NATSSubject}
	if err := a.call(r, privacyapi.PutIntegrationSubject, p, put, &res); err != nil {
		return err
	}
	if !res.Created {
		writeJSON(w, http.StatusOK, res.Integration)
		return nil
	}
	out := createdIntegration{IntegrationView: res.Integration, Secret: res.Secret}
	if res.Session != nil {
		view, err := a.sessionView(*res.Session)
		if err != nil {
			return err
		}
		out.Session = &view
	}
	writeJSON(w, http.StatusCreated, out)
	return nil
}

func (a *API) getKind(w http.ResponseWriter, r *http.Request, kind string) error {
	p, args, err := a.integrationArgs(r, kind, false)
	if err != nil {
		return err
	}
	var res privacyapi.IntegrationView
	if err := a.kindCall(r, privacyapi.GetIntegrationSubject, p, args.Kind, args, &res); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

func (a *API) listKind(w http.ResponseWriter, r *http.Request, kind string) error {
	p, err := a.member(r, false)
	if err != nil {
		return err
	}
	var res privacyapi.ListIntegrationsResult
	if err := a.call(r, privacyapi.ListIntegrationsSubject, p, privacyapi.IntegrationArgs{Tenant: p.Tenant, Kind: kind}, &res); err != nil {
		return err
	}
	if res.Integrations == nil {
		res.Integrations = []privacyapi.IntegrationView{}
	}
	// Named after the path: {"bots": […]} or {"integrations": […]}.
	name := "integrations"
	if kind == privacyapi.KindBot {
		name = "bots"
	}
	writeJSON(w, http.StatusOK, map[string][]privacyapi.IntegrationView{name: res.Integrations})
	return nil
}

func (a *API) deleteKind(w http.ResponseWriter, r *http.Request, kind string) error {
	p, args, err := a.integrationArgs(r, kind, false)
	if err != nil {
		return err
	}
	if err := a.kindCall(r, privacyapi.DeleteIntegrationSubject, p, args.Kind, args, nil); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// startBotSession is POST /v1/bots/{id}/session: for a bot that lost its
// refresh token, its sessions revoked and a new one started.
func (a *API) startBotSession(w http.ResponseWriter, r *http.Request) error {
	p, args, err := a.integrationArgs(r, privacyapi.KindBot, false)
	if err != nil {
		return err
	}
	var body struct{}
	if err := decode(w, r, &body, true); err != nil {
		return err
	}
	var s privacyapi.Session
	if err := a.kindCall(r, privacyapi.StartBotSessionSubject, p, args.Kind, args, &s); err != nil {
		return err
	}
	view, err := a.sessionView(s)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, view)
	return nil
}
