package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/parley-chat/parley/pkg/audit"
	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/event"
	"github.com/parley-chat/parley/pkg/privacyapi"

	"github.com/parley-chat/parley/services/privacy/internal/keyring"
)

// Export starts an export of tenant's subject, for the subject themself (a
// visitor) or an admin of the tenant, and returns what the service holds
// about them: their consents, their network data decrypted, and their
// requests. Each export is recorded as an ExportRequested event first, and
// an admin's is audited before that: an export that could not be audited or
// recorded answers nothing. Its conversations follow from ExportPage.
//
// A subject that never existed gets ErrNotFound and an erased one
// ErrErased; nothing is written for either. Network data that no longer
// opens, because the subject's keys expired, is left out.
func (a *App) Export(ctx context.Context, p auth.Principal, tenant, subject string) (privacyapi.ExportResult, error) {
	if err := errors.Join(validToken("tenant", tenant), validToken("subject", subject)); err != nil {
		return privacyapi.ExportResult{}, err
	}
	if p.Tenant != tenant || !(p.Role == auth.RoleAdmin || p.Role == auth.RoleVisitor && p.ID == subject) {
		return privacyapi.ExportResult{}, ErrForbidden
	}
	id := subjectID{tenant, subject}
	v, err := a.subject(ctx, id)
	if err != nil {
		return privacyapi.ExportResult{}, err
	}
	if !v.known {
		found, err := a.exists(ctx, id)
		if err != nil {
			return privacyapi.ExportResult{}, err
		}
		if !found {
			return privacyapi.ExportResult{}, fmt.Errorf("export %s/%s: %w", tenant, subject, ErrNotFound)
		}
	}
	if v.erasure.id != "" {
		return privacyapi.ExportResult{}, fmt.Errorf("export %s/%s: %w", tenant, subject, ErrErased)
	}
	if p.Role.Staff() {
		if _, err := a.appendAudit(ctx, privacyapi.AppendAuditArgs{
			Tenant: tenant, Actor: actor(p), Action: audit.ActionExport, Target: "subject:" + subject,
		}); err != nil {
			return privacyapi.ExportResult{}, fmt.Errorf("audit export: %w", err)
		}
	}
	exportID := event.NewID()
	e, err := event.NewClear(privacyapi.ExportRequestedType, tenant, subject, subject, a.now(),
		privacyapi.ExportRequested{ExportID: exportID, By: actor(p)})
	if err != nil {
		return privacyapi.ExportResult{}, err
	}
	e.ID = exportID
	seq, err := a.events.Append(ctx, e)
	if err != nil {
		return privacyapi.ExportResult{}, fmt.Errorf("record export: %w", err)
	}
	if err := a.index.waitApplied(ctx, seq); err != nil {
		return privacyapi.ExportResult{}, err
	}
	// What the index holds now includes this export, and anything another
	// instance wrote before it (an erasure among them).
	if v, err = a.subject(ctx, id); err != nil {
		return privacyapi.ExportResult{}, err
	}
	if v.erasure.id != "" {
		return privacyapi.ExportResult{}, fmt.Errorf("export %s/%s: %w", tenant, subject, ErrErased)
	}
	network, err := a.openNetworkData(ctx, id, v.network)
	if err != nil {
		return privacyapi.ExportResult{}, err
	}
	res := privacyapi.ExportResult{
		ExportID:    exportID,
		At:          e.At,
		Consents:    make([]privacyapi.ConsentEntry, len(v.consents)),
		NetworkData: network,
		Requests:    v.requests,
	}
	for i, c := range v.consents {
		res.Consents[i] = privacyapi.ConsentEntry{Consent: c.Consent, At: c.At}
	}
	return res, nil
}

// ExportPage returns a page of the conversations of the export exportID of
// tenant's subject, read from the chat service on behalf of p, who must
// have started that export (Export) within privacyapi.ExportPagesWithin:
// so every conversation exported is under an export recorded, and audited
// when staff asked. An export p did not start, or started earlier, is
// ErrNotFound; a subject erased meanwhile ErrErased.
func (a *App) ExportPage(ctx context.Context, p auth.Principal, args privacyapi.ExportPageArgs) (json.RawMessage, error) {
	tenant, subject := args.Tenant, args.Person
	if err := errors.Join(validToken("tenant", tenant), validToken("subject", subject), validToken("export_id", args.ExportID)); err != nil {
		return nil, err
	}
	if p.Tenant != tenant || !(p.Role == auth.RoleAdmin || p.Role == auth.RoleVisitor && p.ID == subject) {
		return nil, ErrForbidden
	}
	id := subjectID{tenant, subject}
	v, err := a.subject(ctx, id)
	if err != nil {
		return nil, err
	}
	started, ok := v.exportOf(args.ExportID, actor(p))
	if !ok {
		// Started on another instance, which this one may not have applied
		// yet.
		if err := a.CatchUp(ctx); err != nil {
			return nil, err
		}
		if v, err = a.subject(ctx, id); err != nil {
			return nil, err
		}
		started, ok = v.exportOf(args.ExportID, actor(p))
	}
	if !ok || a.chat == nil || !a.now().Before(started.Add(privacyapi.ExportPagesWithin)) {
		return nil, fmt.Errorf("export %s of %s/%s: %w", args.ExportID, tenant, subject, ErrNotFound)
	}
	if v.erasure.id != "" {
		return nil, fmt.Errorf("export %s/%s: %w", tenant, subject, ErrErased)
	}
	page, err := a.chat.ExportPage(ctx, p, subject, args.After)
	if err != nil {
		return nil, fmt.Errorf("export %s/%s: %w", tenant, subject, err)
	}
	return page, nil
}

// exportOf returns when by started the subject's export exportID.
func (v subjectView) exportOf(exportID string, by audit.Actor) (time.Time, bool) {
	for _, r := range v.requests {
		if r.Kind == privacyapi.RequestExport && r.ID == exportID && r.By == by {
			return r.At, true
		}
	}
	return time.Time{}, false
}

// openNetworkData decrypts the subject's network data events; none when
// the subject's keys expired. It is ErrErased when they were erased.
func (a *App) openNetworkData(ctx context.Context, id subjectID, sealed []event.Envelope) ([]privacyapi.NetworkDataEntry, error) {
	out := []privacyapi.NetworkDataEntry{}
	if len(sealed) == 0 {
		return out, nil
	}
	keys, err := a.GetKeys(ctx, id.tenant, id.subject, false)
	switch {
	case errors.Is(err, keyring.ErrErased):
		return nil, fmt.Errorf("network data of %s/%s: %w", id.tenant, id.subject, ErrErased)
	case errors.Is(err, keyring.ErrNotFound):
		return out, nil
	case err != nil:
		return nil, err
	}
	for _, e := range sealed {
		var nd privacyapi.NetworkData
		if err := e.Open(keys.Data, &nd); err != nil {
			return nil, fmt.Errorf("network data of %s/%s: %w", id.tenant, id.subject, err)
		}
		out = append(out, privacyapi.NetworkDataEntry{NetworkData: nd, At: e.At})
	}
	return out, nil
}
