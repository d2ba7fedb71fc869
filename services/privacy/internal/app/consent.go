package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/event"
	"github.com/parley-chat/parley/pkg/privacyapi"
)

// SetConsent records new consent choices of the visitor p: a
// ConsentRecorded event, then a ConsentChanged broadcast. It returns the
// consent now in force. Only a visitor of tenant may set consent, their own;
// a visitor never registered gets ErrNotFound, an erased one ErrErased.
//
// The event is appended only if the subject has no event past those read,
// so that the notice version kept with args.SameNotice is the one in force
// when the consent is recorded, and no erasure slips in between the check
// and the append; a lost race is read again, as long as ctx allows: each
// loss is another writer's success, so the writers of one subject all get
// through in turn.
func (a *App) SetConsent(ctx context.Context, p auth.Principal, args privacyapi.SetConsentArgs) (privacyapi.ConsentResult, error) {
	tenant, c := args.Tenant, args.Consent
	var notice error
	switch {
	case !args.SameNotice:
		notice = validNoticeVersion(c.NoticeVersion)
	case c.NoticeVersion != "":
		notice = &ValidationError{Field: "notice_version", Reason: "must be left out to keep the one in force"}
	}
	if err := errors.Join(validToken("tenant", tenant), notice); err != nil {
		return privacyapi.ConsentResult{}, err
	}
	if err := allow(p, tenant, auth.RoleVisitor); err != nil {
		return privacyapi.ConsentResult{}, err
	}
	id := subjectID{tenant, p.ID}
	for {
		if err := ctx.Err(); err != nil {
			return privacyapi.ConsentResult{}, fmt.Errorf("record consent of %s/%s: %w", tenant, p.ID, err)
		}
		v, err := a.consented(ctx, id)
		if err != nil {
			return privacyapi.ConsentResult{}, err
		}
		if args.SameNotice {
			c.NoticeVersion = v.consents[len(v.consents)-1].Consent.NoticeVersion
		}
		e, err := event.NewClear(event.ConsentRecorded, tenant, p.ID, p.ID, a.now(), c)
		if err != nil {
			return privacyapi.ConsentResult{}, err
		}
		seq, err := a.events.AppendExpect(ctx, e, v.last)
		if errors.Is(err, ErrConflict) {
			if err := a.CatchUp(ctx); err != nil {
				return privacyapi.ConsentResult{}, err
			}
			continue
		}
		if err != nil {
			return privacyapi.ConsentResult{}, fmt.Errorf("record consent: %w", err)
		}
		if err := a.index.waitApplied(ctx, seq); err != nil {
			return privacyapi.ConsentResult{}, err
		}
		res := privacyapi.ConsentResult{Consent: c, At: e.At, Seq: seq}
		if err := a.bus.Broadcast(privacyapi.ConsentChangedSubject, privacyapi.ConsentChanged{Tenant: tenant, Person: p.ID, Result: res}); err != nil {
			return privacyapi.ConsentResult{}, err
		}
		return res, nil
	}
}

// GetConsent returns the consent in force for tenant's subject; ErrNotFound
// when none was recorded, ErrErased when the subject was erased.
func (a *App) GetConsent(ctx context.Context, tenant, subject string) (privacyapi.ConsentResult, error) {
	if err := errors.Join(validToken("tenant", tenant), validToken("subject", subject)); err != nil {
		return privacyapi.ConsentResult{}, err
	}
	cs, err := a.consents(ctx, subjectID{tenant, subject})
	if err != nil {
		return privacyapi.ConsentResult{}, err
	}
	return cs[len(cs)-1], nil
}

// ConsentHistory returns every consent tenant's subject gave, oldest first,
// for the subject themself (a visitor) or an admin of the tenant.
func (a *App) ConsentHistory(ctx context.Context, p auth.Principal, tenant, subject string) (privacyapi.ConsentHistoryResult, error) {
	if err := errors.Join(validToken("tenant", tenant), validToken("subject", subject)); err != nil {
		return privacyapi.ConsentHistoryResult{}, err
	}
	if p.Tenant != tenant || !(p.Role == auth.RoleAdmin || p.Role == auth.RoleVisitor && p.ID == subject) {
		return privacyapi.ConsentHistoryResult{}, ErrForbidden
	}
	cs, err := a.consents(ctx, subjectID{tenant, subject})
	if err != nil {
		return privacyapi.ConsentHistoryResult{}, err
	}
	res := privacyapi.ConsentHistoryResult{Entries: make([]privacyapi.ConsentEntry, len(cs))}
	for i, c := range cs {
		res.Entries[i] = privacyapi.ConsentEntry{Consent: c.Consent, At: c.At}
	}
	return res, nil
}

// consents returns the subject's consents, oldest first and never empty;
// ErrNotFound when there are none, even after catching up with the stream,
// and ErrErased when the subject was erased.
func (a *App) consents(ctx context.Context, id subjectID) ([]privacyapi.ConsentResult, error) {
	v, err := a.consented(ctx, id)
	return v.consents, err
}

// consented returns what the index holds of a subject with consents, as
// consents does.
func (a *App) consented(ctx context.Context, id subjectID) (subjectView, error) {
	v, err := a.subject(ctx, id)
	if err == nil && v.erasure.id == "" && len(v.consents) == 0 {
		if err := a.CatchUp(ctx); err != nil {
			return subjectView{}, err
		}
		v, err = a.subject(ctx, id)
	}
	if err != nil {
		return subjectView{}, err
	}
	switch {
	case v.erasure.id != "":
		return subjectView{}, fmt.Errorf("consent of %s/%s: %w", id.tenant, id.subject, ErrErased)
	case len(v.consents) == 0:
		return subjectView{}, fmt.Errorf("consent of %s/%s: %w", id.tenant, id.subject, ErrNotFound)
	}
	return v, nil
}
