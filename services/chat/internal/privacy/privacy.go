// Package privacy is the chat service's client of the privacy service: the
// audit trail, where chat writes the staff reads it serves, and visitors'
// consent, which a bot's read of a transcript needs.
package privacy

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/nats-io/nats.go"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/chatapi"
	"github.com/parley-chat/parley/pkg/privacyapi"
	"github.com/parley-chat/parley/pkg/rpc"
)

// Client calls the privacy service over the bus: it is the app.Auditor
// and the app.Consents of chat, safe for concurrent use.
type Client struct {
	nc  *nats.Conn
	log *slog.Logger
}

// NewClient returns a Client calling on nc, logging to log what it could
// not have answered or stored.
func NewClient(nc *nats.Conn, log *slog.Logger) *Client { return &Client{nc: nc, log: log} }

// Audit stores act and returns once the privacy service answered that it
// is in the trail.
func (a *Client) Audit(ctx context.Context, act privacyapi.AppendAuditArgs) error {
	req := rpc.Request[privacyapi.AppendAuditArgs]{Principal: auth.System(act.Tenant, chatapi.Service), Args: act}
	if err := rpc.Call(ctx, a.nc, privacyapi.AppendAuditSubject, req, nil); err != nil {
		// The caller is told only that the act was not audited; the
		// operator needs the cause.
		a.log.Warn("append to the audit trail", "action", act.Action, "target", act.Target, "err", err)
		return fmt.Errorf("append %s to the audit trail: %w", act.Action, err)
	}
	return nil
}

// AI reports whether the visitor's ai consent holds now. Every error is
// "not consented" (privacyapi.GetConsentSubject): a visitor with no record
// or erased has given none, and one the privacy service cannot answer for
// now has not been shown to have.
func (c *Client) AI(ctx context.Context, tenant, visitor string) bool {
	var res privacyapi.ConsentResult
	err := rpc.Call(ctx, c.nc, privacyapi.GetConsentSubject, privacyapi.PersonArgs{Tenant: tenant, Person: visitor}, &res)
	if code := rpc.CodeOf(err); err != nil && code != rpc.CodeNotFound && code != rpc.CodeGone {
		// The caller is told only "not consented"; the operator needs the
		// cause.
		c.log.Warn("ask for a visitor's consent", "err", err)
	}
	return err == nil && res.Consent.AI
}
