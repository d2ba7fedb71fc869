package httpapi

import (
	"net/http"

	"github.com/parley-chat/parley/services/gateway/internal/tenant"
)

// tenantBody is PUT /v1/tenants/{tenant}.
type tenantBody struct {
	Name   string        `json:"name"`
	Limits tenant.Limits `json:"limits"`
}

func (a *API) putTenant(w http.ResponseWriter, r *http.Request) error {
	if err := a.operator(r); err != nil {
		return err
	}
	var body tenantBody
	if err := decode(w, r, &body, false); err != nil {
		return err
	}
	t := tenant.Tenant{ID: r.PathValue("tenant"), Name: body.Name, Limits: body.Limits}
	if err := t.Validate(); err != nil {
		return invalid(err.Error())
	}
	created, err := a.cfg.Tenants.Put(r.Context(), t)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	t.Limits = t.Limits.Effective()
	writeJSON(w, status, t)
	return nil
}

func (a *API) listTenants(w http.ResponseWriter, r *http.Request) error {
	if err := a.operator(r); err != nil {
		return err
	}
	ts := a.cfg.Tenants.List()
	for i := range ts {
		ts[i].Limits = ts[i].Limits.Effective()
	}
	writeJSON(w, http.StatusOK, map[string][]tenant.Tenant{"tenants": ts})
	return nil
}
