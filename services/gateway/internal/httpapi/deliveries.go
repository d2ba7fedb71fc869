package httpapi

import (
	"net/http"
	"time"

	"github.com/parley-chat/parley/pkg/privacyapi"
	"github.com/parley-chat/parley/pkg/stream"
)

// deliveries answers the delivery log of a bot or an integration of kind;
// the privacy service decides who may read it.
func (a *API) deliveries(kind string) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		p, err := a.member(r, false)
		if err != nil {
			return err
		}
		id := r.PathValue("id")
		if !stream.ValidToken(id) {
			return errUnknownInteg
		}
		var since time.Time
		if q := r.URL.Query(); q.Has("since") {
			if since, err = time.Parse(time.RFC3339, q.Get("since")); err != nil {
				return errBadSince
			}
		}
		var res privacyapi.DeliveriesResult
		args := privacyapi.DeliveriesArgs{Tenant: p.Tenant, Kind: kind, ID: id, Since: since}
		if err := a.call(r, privacyapi.DeliveriesSubject, p, args, &res); err != nil {
			return err
		}
		if res.Deliveries == nil {
			res.Deliveries = []privacyapi.Delivery{}
		}
		writeJSON(w, http.StatusOK, res)
		return nil
	}
}

// The kinds of integration, by the path that names them.
const (
	kindBot         = privacyapi.KindBot
	kindIntegration = privacyapi.KindIntegration
)
