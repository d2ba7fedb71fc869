// Package app holds the analytics service's use cases: metrics with a
// minimum group size, and the erasure of a pseudonym's rows.
package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/parley-chat/parley/pkg/analyticsapi"
	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/stream"

	"github.com/parley-chat/parley/services/analytics/internal/clickhouse"
)

// Errors of the use cases, besides *ValidationError.
var (
	// ErrForbidden means the principal may not make the call.
	ErrForbidden = errors.New("not allowed")
	// ErrUnavailable means the store is not reachable now.
	ErrUnavailable = errors.New("analytics store unavailable")
)

// ValidationError reports an argument that breaks a rule; its text names
// the field and never holds the value.
type ValidationError struct {
	Field  string
	Reason string
}

func (e *ValidationError) Error() string { return e.Field + " " + e.Reason }

// Queries answers the buckets of a metric; nil while the store is not
// reachable.
type Queries interface {
	Metric(ctx context.Context, tenant, metric string, from, to time.Time, step time.Duration) ([]clickhouse.Bucket, error)
}

var steps = map[string]time.Duration{
	analyticsapi.IntervalHour: time.Hour,
	analyticsapi.IntervalDay:  24 * time.Hour,
}

// Metrics answers args for p, an analyst or an admin of args.Tenant. Each
// point is computed from the deduplicated facts of its bucket; a bucket
// with fewer distinct visitors than the minimum group size has neither
// value nor count.
func Metrics(ctx context.Context, q Queries, p auth.Principal, args analyticsapi.MetricsArgs) (analyticsapi.MetricsResult, error) {
	if !stream.ValidToken(args.Tenant) {
		return analyticsapi.MetricsResult{}, &ValidationError{"tenant", "must be 1 to 64 letters, digits, '-' or '_'"}
	}
	if p.Tenant != args.Tenant || p.Role != auth.RoleAnalyst && p.Role != auth.RoleAdmin {
		return analyticsapi.MetricsResult{}, ErrForbidden
	}
	step, ok := steps[args.Interval]
	switch {
	case !clickhouse.KnownMetric(args.Metric):
		return analyticsapi.MetricsResult{}, &ValidationError{"metric", "must be one of conversations, messages, first_response_seconds, resolution_seconds, csat"}
	case !ok:
		return analyticsapi.MetricsResult{}, &ValidationError{"interval", "must be hour or day"}
	case args.From.IsZero() || args.To.IsZero() || !args.To.After(args.From):
		return analyticsapi.MetricsResult{}, &ValidationError{"to", "must be after from"}
	case args.From.Unix() < 0 || args.To.Unix() > 1<<32-1:
		return analyticsapi.MetricsResult{}, &ValidationError{"from", "and to must lie between 1970 and 2106"}
	case args.To.Sub(args.From) > analyticsapi.MaxPoints*step:
		return analyticsapi.MetricsResult{}, &ValidationError{"from", fmt.Sprintf("and to may span %d intervals at most", analyticsapi.MaxPoints)}
	}
	minGroup := max(args.MinGroupSize, analyticsapi.DefaultMinGroupSize)
	if q == nil {
		return analyticsapi.MetricsResult{}, ErrUnavailable
	}
	buckets, err := q.Metric(ctx, args.Tenant, args.Metric, args.From, args.To, step)
	if err != nil {
		return analyticsapi.MetricsResult{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	res := analyticsapi.MetricsResult{Metric: args.Metric, Interval: args.Interval, MinGroupSize: minGroup, Points: []analyticsapi.Point{}}
	for _, b := range buckets {
		pt := analyticsapi.Point{T: b.Start}
		if b.Visitors >= uint64(minGroup) {
			value, count := b.Mean, int64(b.Facts)
			if args.Metric == analyticsapi.MetricConversations || args.Metric == analyticsapi.MetricMessages {
				value = float64(b.Facts)
			}
			pt.Value, pt.Count = &value, &count
		}
		res.Points = append(res.Points, pt)
	}
	return res, nil
}
