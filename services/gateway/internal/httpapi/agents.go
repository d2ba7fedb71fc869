package httpapi

import (
	"net/http"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/chatapi"
	"github.com/parley-chat/parley/pkg/stream"
)

// errUnknownAgent answers an agent id that could be no agent's.
var errUnknownAgent = newError(http.StatusNotFound, "not-found", "no such agent")

// putPresence sets the calling agent's presence; the chat service, which
// assigns by it, decides who may.
func (a *API) putPresence(w http.ResponseWriter, r *http.Request) error {
	p, err := a.member(r, false)
	if err != nil {
		return err
	}
	var body chatapi.PresenceArgs
	if err := decode(w, r, &body, false); err != nil {
		return err
	}
	return a.availability(w, r, p, chatapi.PresenceSubject, body)
}

// putCapacity sets how many open conversations may be assigned to the
// agent in the path.
func (a *API) putCapacity(w http.ResponseWriter, r *http.Request) error {
	p, err := a.member(r, false)
	if err != nil {
		return err
	}
	agent := r.PathValue("id")
	if !stream.ValidToken(agent) {
		return errUnknownAgent
	}
	var body struct {
		MaxOpen *int `json:"max_open"`
	}
	if err := decode(w, r, &body, false); err != nil {
		return err
	}
	return a.availability(w, r, p, chatapi.CapacitySubject, chatapi.CapacityArgs{Agent: agent, MaxOpen: body.MaxOpen})
}

// getAgent answers the availability of the agent in the path.
func (a *API) getAgent(w http.ResponseWriter, r *http.Request) error {
	p, err := a.member(r, false)
	if err != nil {
		return err
	}
	agent := r.PathValue("id")
	if !stream.ValidToken(agent) {
		return errUnknownAgent
	}
	return a.availability(w, r, p, chatapi.AvailabilitySubject, chatapi.AgentArgs{Agent: agent})
}

// availability calls a chat subject that answers an agent's availability
// on behalf of p, the caller, and writes it. The caller is known before
// the request's body is read: an anonymous request is refused as such
// (401), whatever its body.
func (a *API) availability(w http.ResponseWriter, r *http.Request, p auth.Principal, subject string, args any) error {
	var res chatapi.Availability
	if err := a.call(r, subject, p, args, &res); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}
