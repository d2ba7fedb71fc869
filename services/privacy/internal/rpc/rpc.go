// Package rpc serves the privacy service's request/reply subjects on NATS:
// the key service (personkey.GetSubject) and the calls of privacyapi.
// Errors become rpc Codes here, in one place.
package rpc

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"

	"github.com/nats-io/nats.go"

	"github.com/parley-chat/parley/pkg/audit"
	"github.com/parley-chat/parley/pkg/personkey"
	"github.com/parley-chat/parley/pkg/privacyapi"
	"github.com/parley-chat/parley/pkg/rpc"

	"github.com/parley-chat/parley/services/privacy/internal/app"
	"github.com/parley-chat/parley/services/privacy/internal/keyring"
)

// Serve serves a's calls as the micro service privacyapi.Service in queue
// group privacyapi.Queue until the caller stops what it returns; pings
// answer health.
func Serve(ctx context.Context, nc *nats.Conn, log *slog.Logger, health *rpc.Health, a *app.App) (*rpc.Served, error) {
	keys := []rpc.Route{
		{Subject: personkey.GetSubject, Handler: rpc.Handle(func(ctx context.Context, req personkey.Request) (personkey.Keys, error) {
			if req.Probe {
				return personkey.Keys{}, codeOf(a.ProbeKeys(ctx, req.Tenant, req.Person))
			}
			k, err := a.GetKeys(ctx, req.Tenant, req.Person, req.Create)
			if errors.Is(err, keyring.ErrUnknownKEK) {
				// The caller is told only that the keys are unreadable; the
				// operator needs to know which KEK holds them.
				log.Error("keys wrapped under another key-encryption key", "err", err)
			}
			return k, codeOf(err)
		})},
	}
	routes := []rpc.Route{
		{Subject: privacyapi.RegisterVisitorSubject, Handler: rpc.Handle(func(ctx context.Context, req rpc.Request[privacyapi.RegisterVisitorArgs]) (privacyapi.RegisterVisitorResult, error) {
			res, err := a.RegisterVisitor(ctx, req.Args.Tenant, req.Args.Consent, req.Args.NetworkData)
			return res, codeOf(err)
		})},
		{Subject: privacyapi.StartSessionSubject, Handler: rpc.Handle(func(ctx context.Context, req rpc.Request[privacyapi.StartSessionArgs]) (privacyapi.Session, error) {
			res, err := a.StartSession(ctx, req.Principal, req.Args.Tenant)
			return res, codeOf(err)
		})},
		{Subject: privacyapi.RefreshSessionSubject, Handler: rpc.Handle(func(ctx context.Context, req rpc.Request[privacyapi.RefreshArgs]) (privacyapi.Session, error) {
			res, err := a.RefreshSession(ctx, req.Args.RefreshToken)
			return res, codeOf(err)
		})},
		{Subject: privacyapi.EndSessionSubject, Handler: rpc.Handle(func(ctx context.Context, req rpc.Request[privacyapi.RefreshArgs]) (struct{}, error) {
			return struct{}{}, codeOf(a.EndSession(ctx, req.Args.RefreshToken))
		})},
		{Subject: privacyapi.RevokeSessionsSubject, Handler: rpc.Handle(func(ctx context.Context, req rpc.Request[privacyapi.PersonArgs]) (privacyapi.RevokeSessionsResult, error) {
			n, err := a.RevokeSessions(ctx, req.Principal, req.Args.Tenant, req.Args.Person)
			return privacyapi.RevokeSessionsResult{Revoked: n}, codeOf(err)
		})},
		{Subject: privacyapi.EraseSubject, Handler: rpc.Handle(func(ctx context.Context, req rpc.Request[privacyapi.EraseArgs]) (privacyapi.Erasure, error) {
			res, err := a.Erase(ctx, req.Principal, req.Args.Tenant, req.Args.Person)
			return res, codeOf(err)
		})},
		{Subject: privacyapi.ErasureStatusSubject, Handler: rpc.Handle(func(ctx context.Context, req rpc.Request[privacyapi.ErasureStatusArgs]) (privacyapi.Erasure, error) {
			res, err := a.ErasureStatus(ctx, req.Principal, req.Args.Tenant, req.Args.ErasureID)
			return res, codeOf(err)
		})},
		{Subject: privacyapi.SetConsentSubject, Handler: rpc.Handle(func(ctx context.Context, req rpc.Request[privacyapi.SetConsentArgs]) (privacyapi.ConsentResult, error) {
			res, err := a.SetConsent(ctx, req.Principal, req.Args)
			return res, codeOf(err)
		})},
		{Subject: privacyapi.GetConsentSubject, Handler: rpc.Handle(func(ctx context.Context, req privacyapi.PersonArgs) (privacyapi.ConsentResult, error) {
			res, err := a.GetConsent(ctx, req.Tenant, req.Person)
			return res, codeOf(err)
		})},
		{Subject: privacyapi.ConsentHistorySubject, Handler: rpc.Handle(func(ctx context.Context, req rpc.Request[privacyapi.PersonArgs]) (privacyapi.ConsentHistoryResult, error) {
			res, err := a.ConsentHistory(ctx, req.Principal, req.Args.Tenant, req.Args.Person)
			return res, codeOf(err)
		})},
		{Subject: privacyapi.ExportSubject, Handler: rpc.Handle(func(ctx context.Context, req rpc.Request[privacyapi.PersonArgs]) (privacyapi.ExportResult, error) {
			res, err := a.Export(ctx, req.Principal, req.Args.Tenant, req.Args.Person)
			return res, codeOf(err)
		})},
		{Subject: privacyapi.ExportPageSubject, Handler: rpc.Handle(func(ctx context.Context, req rpc.Request[privacyapi.ExportPageArgs]) (json.RawMessage, error) {
			res, err := a.ExportPage(ctx, req.Principal, req.Args)
			return res, codeOf(err)
		})},
		{Subject: privacyapi.TrainingExportSubject, Handler: rpc.Handle(func(ctx context.Context, req rpc.Request[privacyapi.TenantArgs]) (privacyapi.TrainingExport, error) {
			res, err := a.StartTrainingExport(ctx, req.Principal, req.Args.Tenant)
			return res, codeOf(err)
		})},
		{Subject: privacyapi.TrainingPageSubject, Handler: rpc.Handle(func(ctx context.Context, req rpc.Request[privacyapi.TrainingPageArgs]) (privacyapi.TrainingPage, error) {
			res, err := a.TrainingPage(ctx, req.Principal, req.Args)
			return res, codeOf(err)
		})},
		{Subject: privacyapi.ListAuditSubject, Handler: rpc.Handle(func(ctx context.Context, req rpc.Request[privacyapi.ListAuditArgs]) (privacyapi.ListAuditResult, error) {
			res, err := a.ListAudit(ctx, req.Principal, req.Args.Tenant, req.Args.Since)
			return res, codeOf(err)
		})},
		{Subject: privacyapi.AuditStreamSubject, Handler: rpc.Handle(func(ctx context.Context, req rpc.Request[privacyapi.AuditStreamArgs]) (audit.Entry, error) {
			res, err := a.AuditStream(ctx, req.Principal, req.Args)
			return res, codeOf(err)
		})},
		{Subject: privacyapi.AuditCheckpointSubject, Handler: rpc.Handle(func(ctx context.Context, req rpc.Request[privacyapi.TenantArgs]) (privacyapi.AuditCheckpointResult, error) {
			res, err := a.AuditCheckpoint(ctx, req.Principal, req.Args.Tenant)
			return res, codeOf(err)
		})},
		{Subject: privacyapi.DeliveriesSubject, Handler: rpc.Handle(func(ctx context.Context, req rpc.Request[privacyapi.DeliveriesArgs]) (privacyapi.DeliveriesResult, error) {
			res, err := a.Deliveries(ctx, req.Principal, req.Args)
			return res, codeOf(err)
		})},
		{Subject: privacyapi.GetSettingsSubject, Handler: rpc.Handle(func(ctx context.Context, req rpc.Request[privacyapi.TenantArgs]) (privacyapi.Settings, error) {
			res, err := a.GetSettings(ctx, req.Principal, req.Args.Tenant)
			return res, codeOf(err)
		})},
		{Subject: privacyapi.PutSettingsSubject, Handler: rpc.Handle(func(ctx context.Context, req rpc.Request[privacyapi.PutSettingsArgs]) (privacyapi.Settings, error) {
			res, err := a.PutSettings(ctx, req.Principal, req.Args.Tenant, req.Args.Settings)
			return res, codeOf(err)
		})},
		{Subject: privacyapi.PutIntegrationSubject, Handler: rpc.Handle(func(ctx context.Context, req rpc.Request[privacyapi.PutIntegrationArgs]) (privacyapi.PutIntegrationResult, error) {
			res, err := a.PutIntegration(ctx, req.Principal, req.Args)
			return res, codeOf(err)
		})},
		{Subject: privacyapi.GetIntegrationSubject, Handler: rpc.Handle(func(ctx context.Context, req rpc.Request[privacyapi.IntegrationArgs]) (privacyapi.IntegrationView, error) {
			res, err := a.GetIntegration(ctx, req.Principal, req.Args)
			return res, codeOf(err)
		})},
		{Subject: privacyapi.ListIntegrationsSubject, Handler: rpc.Handle(func(ctx context.Context, req rpc.Request[privacyapi.IntegrationArgs]) (privacyapi.ListIntegrationsResult, error) {
			res, err := a.ListIntegrations(ctx, req.Principal, req.Args.Tenant, req.Args.Kind)
			return privacyapi.ListIntegrationsResult{Integrations: res}, codeOf(err)
		})},
		{Subject: privacyapi.DeleteIntegrationSubject, Handler: rpc.Handle(func(ctx context.Context, req rpc.Request[privacyapi.IntegrationArgs]) (struct{}, error) {
			return struct{}{}, codeOf(a.DeleteIntegration(ctx, req.Principal, req.Args))
		})},
		{Subject: privacyapi.StartBotSessionSubject, Handler: rpc.Handle(func(ctx context.Context, req rpc.Request[privacyapi.IntegrationArgs]) (privacyapi.Session, error) {
			res, err := a.StartBotSession(ctx, req.Principal, req.Args.Tenant, req.Args.ID)
			return res, codeOf(err)
		})},
	}
	groups := []rpc.Group{
		// The key service: no principal, for the services whose bus
		// permissions let them ask (the gateway and chat).
		{Prefix: "parley.keys", Routes: keys},
		{Prefix: "parley.privacy", Routes: routes},
		// Services' calls, as the system principal (rpc.Handle checks).
		{Prefix: "parley.internal.privacy", Internal: true, Routes: []rpc.Route{
			{Subject: privacyapi.AppendAuditSubject, Handler: rpc.Handle(func(ctx context.Context, req rpc.Request[privacyapi.AppendAuditArgs]) (audit.Entry, error) {
				res, err := a.AppendAudit(ctx, req.Args)
				return res, codeOf(err)
			})},
		}},
	}
	for _, g := range groups {
		for i := range g.Routes {
			g.Routes[i].Handler = bounded(g.Routes[i].Handler)
		}
	}
	return rpc.Serve(ctx, nc, log, rpc.Service{
		Name:        privacyapi.Service,
		Description: "the key service, consent, erasure, exports, the audit trail, tenant settings, sessions, bots and integrations",
		Queue:       privacyapi.Queue,
		Health:      health,
		Groups:      groups,
	})
}

// requestTimeout bounds the work on one request; a caller waits
// rpc.DefaultTimeout at most, so more would be wasted.
const requestTimeout = rpc.DefaultTimeout

// bounded gives each request a deadline, so that a store in trouble fails
// it with CodeUnavailable instead of holding it forever.
func bounded(h rpc.Handler) rpc.Handler {
	return func(ctx context.Context, data []byte) (any, error) {
		ctx, cancel := context.WithTimeout(ctx, requestTimeout)
		defer cancel()
		return h(ctx, data)
	}
}

// codeOf maps the errors of app to rpc errors. Messages never carry ids or
// values: a validation error names the field only. Anything unmapped stays
// as is, so that rpc.Serve logs it and answers CodeInternal.
func codeOf(err error) error {
	var verr *app.ValidationError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &verr):
		return rpc.Errorf(rpc.CodeInvalid, "%s", err)
	case errors.Is(err, app.ErrForbidden):
		return rpc.Errorf(rpc.CodeForbidden, "not allowed")
	case errors.Is(err, app.ErrSessionRefused):
		return rpc.Errorf(rpc.CodeForbidden, "refresh token refused")
	case errors.Is(err, keyring.ErrErased), errors.Is(err, app.ErrErased):
		return rpc.Errorf(rpc.CodeGone, "subject erased")
	case errors.Is(err, keyring.ErrNotFound):
		return rpc.Errorf(rpc.CodeNotFound, "subject has no keys")
	case errors.Is(err, keyring.ErrUnknownKEK):
		return rpc.Errorf(rpc.CodeUnreadable, "subject's keys are wrapped under another key-encryption key")
	case errors.Is(err, keyring.ErrRotating), errors.Is(err, keyring.ErrKEKRetired):
		// Refused before anything was stored: the caller may try again
		// once the rotation completed or the instance was restarted.
		return rpc.Errorf(rpc.CodeUnavailable, "key-encryption key rotation: no new keys for now")
	case errors.Is(err, app.ErrAuditMissing):
		// Logged once by app; the act waits for the trail to be restored.
		return rpc.Errorf(rpc.CodeUnavailable, "audit trail unavailable")
	case errors.Is(err, app.ErrNotFound):
		return rpc.Errorf(rpc.CodeNotFound, "not found")
	case errors.Is(err, app.ErrKindTaken):
		return rpc.Errorf(rpc.CodeConflict, "the id is taken by a bot or integration of the other kind")
	case rpc.Unavailable(err):
		return rpc.Errorf(rpc.CodeUnavailable, "store unavailable")
	}
	return err
}
