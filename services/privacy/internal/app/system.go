package app

import (
	"context"
	"errors"

	"github.com/parley-chat/parley/pkg/audit"
	"github.com/parley-chat/parley/pkg/privacyapi"
)

// SystemActor is who the audit trail names for what the platform does by
// itself, on a tenant's settings or a visitor's choice rather than at
// someone's request: the automatic erasure of conversations after they
// close. Its role is no auth.Role a token can carry.
var SystemActor = audit.Actor{Role: "system", ID: "erase-after-close"}

// RetentionActor is who the audit trail names for the erasure of a visitor
// whose conversations have all expired by their tenant's retention: the
// expiry of their keys.
var RetentionActor = audit.Actor{Role: "system", ID: "retention"}

// ActionConversationErase is the platform's erasure of one conversation,
// every event of it secure-deleted; the target is "conversation:<id>".
const ActionConversationErase = "conversation.erase"

// AuditSystem writes an act of SystemActor to the tenant's audit trail.
func (a *App) AuditSystem(ctx context.Context, tenant, action, target string) error {
	if err := validToken("tenant", tenant); err != nil {
		return err
	}
	_, err := a.appendAudit(ctx, privacyapi.AppendAuditArgs{Tenant: tenant, Actor: SystemActor, Action: action, Target: target})
	return err
}

// EraseBySystem erases tenant's subject as Erase does, on behalf of
// SystemActor, and writes the erasure (action "erase") to the audit trail
// before it happens. A subject erased already answers that erasure and
// writes nothing; one with neither keys nor privacy events gets ErrNotFound.
func (a *App) EraseBySystem(ctx context.Context, tenant, subject string) (privacyapi.Erasure, error) {
	if err := errors.Join(validToken("tenant", tenant), validToken("subject", subject)); err != nil {
		return privacyapi.Erasure{}, err
	}
	return a.erase(ctx, SystemActor, true, tenant, subject)
}

// ExpireSubject erases tenant's subject as EraseBySystem does, on behalf
// of RetentionActor: the subject's data all expired by retention, so their
// keys go too.
func (a *App) ExpireSubject(ctx context.Context, tenant, subject string) (privacyapi.Erasure, error) {
	if err := errors.Join(validToken("tenant", tenant), validToken("subject", subject)); err != nil {
		return privacyapi.Erasure{}, err
	}
	return a.erase(ctx, RetentionActor, true, tenant, subject)
}
