package httpapi

import (
	"net/http"

	"github.com/parley-chat/parley/pkg/privacyapi"
)

// botDeliveries is GET /v1/bots/{id}/deliveries.
func (a *API) botDeliveries(w http.ResponseWriter, r *http.Request) error {
	return a.deliveries(w, r, privacyapi.KindBot)
}

// integrationDeliveries is GET /v1/integrations/{id}/deliveries.
func (a *API) integrationDeliveries(w http.ResponseWriter, r *http.Request) error {
	return a.deliveries(w, r, privacyapi.KindIntegration)
}

// deliveries answers the delivery log of a bot or an integration of kind;
// the privacy service decides who may read it.
func (a *API) deliveries(w http.ResponseWriter, r *http.Request, kind string) error {
	p, args, err := a.integrationArgs(r, kind, false)
	if err != nil {
		return err
	}
	since, err := sinceParam(r)
	if err != nil {
		return err
	}
	var res privacyapi.DeliveriesResult
	if err := a.kindCall(r, privacyapi.DeliveriesSubject, p, kind, privacyapi.DeliveriesArgs{Tenant: args.Tenant, Kind: kind, ID: args.ID, Since: since}, &res); err != nil {
		return err
	}
	if res.Deliveries == nil {
		res.Deliveries = []privacyapi.Delivery{}
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}
