package httpapi

import (
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/parley-chat/parley/pkg/analyticsapi"
	"github.com/parley-chat/parley/pkg/auth"
)

var (
	errBadMetric   = newError(http.StatusNotFound, "not-found", "no such metric; try conversations, messages, first_response_seconds, resolution_seconds or csat")
	errBadInterval = invalid("interval must be hour or day")
	errBadRange    = invalid("from and to must be times in RFC 3339 format, such as 2026-01-02T15:04:05Z, with to after from")
)

var metricNames = map[string]bool{
	analyticsapi.MetricConversations: true,
	analyticsapi.MetricMessages:      true,
	analyticsapi.MetricFirstResponse: true,
	analyticsapi.MetricResolution:    true,
	analyticsapi.MetricCSAT:          true,
}

// getMetric is GET /v1/metrics/{name}: one pseudonymized metric of the
// caller's tenant, for analysts and admins. The analytics service
// suppresses the points of groups smaller than the tenant's
// min_group_size, and never of fewer than analyticsapi.DefaultMinGroupSize.
func (a *API) getMetric(w http.ResponseWriter, r *http.Request) error {
	p, err := a.memberAs(r, auth.RoleAnalyst, auth.RoleAdmin)
	if err != nil {
		return err
	}
	name := r.PathValue("name")
	if !metricNames[name] {
		return errBadMetric
	}
	interval, from, to, err := metricRange(r.URL.Query())
	if err != nil {
		return err
	}
	set, err := a.cfg.Settings.Of(r.Context(), p.Tenant)
	if err != nil {
		// Not read yet: the tenant's minimum group size is not known.
		return errors.Join(errNotReady, err)
	}
	var res analyticsapi.MetricsResult
	args := analyticsapi.MetricsArgs{Tenant: p.Tenant, Metric: name, From: from, To: to, Interval: interval, MinGroupSize: set.MinGroupSize}
	if err := a.call(r, analyticsapi.MetricsSubject, p, args, &res); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

// metricRange reads a metric query: interval (hour or day, by default day),
// and from and to, RFC 3339 times with to after from.
func metricRange(q url.Values) (interval string, from, to time.Time, err error) {
	interval = q.Get("interval")
	if interval == "" {
		interval = analyticsapi.IntervalDay
	}
	if interval != analyticsapi.IntervalHour && interval != analyticsapi.IntervalDay {
		return "", time.Time{}, time.Time{}, errBadInterval
	}
	from, errFrom := time.Parse(time.RFC3339, q.Get("from"))
	to, errTo := time.Parse(time.RFC3339, q.Get("to"))
	if errFrom != nil || errTo != nil || !to.After(from) {
		return "", time.Time{}, time.Time{}, errBadRange
	}
	return interval, from, to, nil
}
