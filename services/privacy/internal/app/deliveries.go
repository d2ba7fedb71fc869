package app

import (
	"context"
	"time"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/privacyapi"
)

// DeliveryLog is the content-free log of deliveries to bots and
// integrations (internal/delivery).
type DeliveryLog interface {
	// List returns up to limit entries of tenant's integration id stored
	// at or after since, oldest first, and whether more follow.
	List(ctx context.Context, tenant, id string, since time.Time, limit int) ([]privacyapi.Delivery, bool, error)
}

// ErasureNotifier tells the bots and integrations that received an erased
// subject's events of the erasure (internal/delivery).
type ErasureNotifier interface {
	// Prepare stores, durably, a "subject erased" notice for each
	// integration that received the subject's events, before the keys
	// go, so that the notices are sent even if the erasure stops right
	// after; it returns them. Safe to repeat.
	Prepare(ctx context.Context, tenant, subject, erasureID string) ([]ErasureNotice, error)
	// Notify sends the notices now, waiting a bounded time for each
	// acknowledgement, reports which integrations acknowledged, and
	// removes the records of who received the subject. An unacknowledged
	// notice stays stored and is sent again with backoff.
	Notify(ctx context.Context, tenant, subject, erasureID string, notices []ErasureNotice) []privacyapi.ErasureIntegration
}

// ErasureNotice is a notice Prepare stored: to which integration, of
// which kind, dated when, and where it is stored.
type ErasureNotice struct {
	Integration string
	Kind        string
	At          time.Time
	Seq         uint64
}

// Deliveries returns the delivery log of tenant's bot or integration, for
// an admin of the tenant; ErrNotFound when it has none of that kind and id.
func (a *App) Deliveries(ctx context.Context, p auth.Principal, args privacyapi.DeliveriesArgs) (privacyapi.DeliveriesResult, error) {
	which := privacyapi.IntegrationArgs{Tenant: args.Tenant, Kind: args.Kind, ID: args.ID}
	if err := checkIntegrationArgs(which); err != nil {
		return privacyapi.DeliveriesResult{}, err
	}
	if err := allow(p, args.Tenant, auth.RoleAdmin); err != nil {
		return privacyapi.DeliveriesResult{}, err
	}
	if _, err := a.integration(ctx, which); err != nil {
		return privacyapi.DeliveriesResult{}, err
	}
	if a.deliveries == nil {
		return privacyapi.DeliveriesResult{Deliveries: []privacyapi.Delivery{}}, nil
	}
	list, more, err := a.deliveries.List(ctx, args.Tenant, args.ID, args.Since, privacyapi.MaxDeliveries)
	if err != nil {
		return privacyapi.DeliveriesResult{}, err
	}
	if list == nil {
		list = []privacyapi.Delivery{}
	}
	return privacyapi.DeliveriesResult{Deliveries: list, More: more}, nil
}
