package httpapi

import (
	"net/http"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/chatapi"
)

// profileBody is the body of PUT /v1/me/profile. Its values are the chat
// service's to judge (conversation.CheckProfile): the gateway passes them
// on.
type profileBody struct {
	Name  string `json:"name"`
	Email string `json:"email"`
}

// putProfile sets the profile the visitor gives themself, replacing the one
// before.
func (a *API) putProfile(w http.ResponseWriter, r *http.Request) error {
	p, err := a.memberAs(r, auth.RoleVisitor)
	if err != nil {
		return err
	}
	var body profileBody
	if err := decode(w, r, &body, false); err != nil {
		return err
	}
	var res chatapi.Profile
	if err := a.call(r, chatapi.ProfilePutSubject, p, chatapi.ProfileArgs(body), &res); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

func (a *API) getProfile(w http.ResponseWriter, r *http.Request) error {
	p, err := a.memberAs(r, auth.RoleVisitor)
	if err != nil {
		return err
	}
	var res chatapi.Profile
	if err := a.call(r, chatapi.ProfileGetSubject, p, struct{}{}, &res); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

// deleteProfile removes the visitor's profile; removing none is no error.
func (a *API) deleteProfile(w http.ResponseWriter, r *http.Request) error {
	p, err := a.memberAs(r, auth.RoleVisitor)
	if err != nil {
		return err
	}
	var res struct{}
	if err := a.call(r, chatapi.ProfileDeleteSubject, p, struct{}{}, &res); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
