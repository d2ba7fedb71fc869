// Package rpc serves the analytics service's request/reply subjects
// (analyticsapi.MetricsSubject, and the internal analyticsapi.EraseSubject)
// in queue group analyticsapi.Queue. Errors become rpc Codes here, in one place.
package rpc

import (
	"context"
	"errors"
	"log/slog"

	"github.com/nats-io/nats.go"

	"github.com/parley-chat/parley/pkg/analyticsapi"
	"github.com/parley-chat/parley/pkg/rpc"
	"github.com/parley-chat/parley/pkg/stream"

	"github.com/parley-chat/parley/services/analytics/internal/app"
)

// Handlers are the use cases served.
type Handlers struct {
	Metrics func(context.Context, rpc.Request[analyticsapi.MetricsArgs]) (analyticsapi.MetricsResult, error)
	Erase   func(ctx context.Context, tenant, pseudonym string) (int64, error)
}

// Serve serves h as the micro service analyticsapi.Service until the
// caller stops what it returns; pings answer health.
func Serve(ctx context.Context, nc *nats.Conn, log *slog.Logger, health *rpc.Health, h Handlers) (*rpc.Served, error) {
	return rpc.Serve(ctx, nc, log, rpc.Service{
		Name:        analyticsapi.Service,
		Description: "metrics of pseudonymized facts, and their erasure",
		Queue:       analyticsapi.Queue,
		Health:      health,
		Groups: []rpc.Group{
			{Prefix: "parley.analytics", Routes: []rpc.Route{
				{Subject: analyticsapi.MetricsSubject, Handler: rpc.Handle(func(ctx context.Context, req rpc.Request[analyticsapi.MetricsArgs]) (analyticsapi.MetricsResult, error) {
					res, err := h.Metrics(ctx, req)
					return res, codeOf(err)
				})},
			}},
			// rpc.Handle admits the system principal only.
			{Prefix: "parley.internal.analytics", Internal: true, Routes: []rpc.Route{
				{Subject: analyticsapi.EraseSubject, Handler: rpc.Handle(func(ctx context.Context, req rpc.Request[analyticsapi.EraseArgs]) (analyticsapi.EraseResult, error) {
					if !stream.ValidToken(req.Args.Tenant) || !analyticsapi.ValidPseudonym(req.Args.Pseudonym) {
						return analyticsapi.EraseResult{}, rpc.Errorf(rpc.CodeInvalid, "tenant or pseudonym malformed")
					}
					n, err := h.Erase(ctx, req.Args.Tenant, req.Args.Pseudonym)
					return analyticsapi.EraseResult{RowsDeleted: n}, codeOf(err)
				})},
			}},
		},
	})
}

func codeOf(err error) error {
	var verr *app.ValidationError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &verr):
		return rpc.Errorf(rpc.CodeInvalid, "%s", err)
	case errors.Is(err, app.ErrForbidden):
		return rpc.Errorf(rpc.CodeForbidden, "not allowed")
	case errors.Is(err, app.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return rpc.Errorf(rpc.CodeUnavailable, "analytics store unavailable")
	}
	return err
}
