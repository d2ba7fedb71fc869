package httpapi

import "github.com/parley-chat/parley/services/gateway/internal/web"

// staticRoutes serves the front-end's files beside the API. They are no API
// calls, so openapi.json does not list them (its test reads the routes of
// httpapi.go only); docs/widget.md does. They pass through ServeHTTP like
// the API: counted by route, a 404 answered as a problem.
func (a *API) staticRoutes() {
	if a.cfg.Web == nil {
		return
	}
	for _, p := range web.Patterns {
		a.mux.Handle(p, a.cfg.Web)
	}
}
