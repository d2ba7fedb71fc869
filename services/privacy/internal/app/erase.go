package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/parley-chat/parley/pkg/audit"
	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/event"
	"github.com/parley-chat/parley/pkg/personkey"
	"github.com/parley-chat/parley/pkg/privacyapi"

	"github.com/parley-chat/parley/services/privacy/internal/keyring"
)

// eraseAttempts bounds the appends an erasure may lose to other writers of
// the subject's privacy events before it gives up.
const eraseAttempts = 5

// Erase erases tenant's subject on behalf of p: a visitor erasing
// themself, or an admin of the tenant (audited). Anyone else gets
// ErrForbidden; a subject with neither keys nor privacy events gets
// ErrNotFound and nothing is written.
//
// The steps, each safe to repeat: the erasure written to the audit trail
// when p is an admin (when the trail cannot take it, the erasure is
// refused before anything else is stored); an ErasureRequested event (whose id is the
// erasure id) on the subject's privacy subject, appended expecting the
// subject's last event, so that of two instances erasing at once only one
// request is stored; the erasure broadcast to every service (their caches
// drop the keys, the gateway closes the subject's sessions); the keys
// destroyed and a tombstone stored in their place; the subject's keys
// dropped from memory; an ErasureCompleted event with the report. A
// subject whose erasure was requested already is not requested again:
// Erase finishes that erasure if it is pending (after a crash) and answers
// it, and so does FinishStalled, which every instance runs, unasked.
// Nothing here reads the subject's history, so the time taken does not
// depend on it.
func (a *App) Erase(ctx context.Context, p auth.Principal, tenant, subject string) (privacyapi.Erasure, error) {
	if err := errors.Join(validToken("tenant", tenant), validToken("subject", subject)); err != nil {
		return privacyapi.Erasure{}, err
	}
	if p.Tenant != tenant || !(p.Role == auth.RoleAdmin || p.Role == auth.RoleVisitor && p.ID == subject) {
		return privacyapi.Erasure{}, ErrForbidden
	}
	return a.erase(ctx, actor(p), p.Role.Staff(), tenant, subject)
}

// erase erases a valid subject on behalf of by, writing the erasure to the
// audit trail first when audited: before its request is stored, or, for
// one requested already and pending, before it is finished.
func (a *App) erase(ctx context.Context, by audit.Actor, audited bool, tenant, subject string) (privacyapi.Erasure, error) {
	id := subjectID{tenant, subject}
	for range eraseAttempts {
		requested, last, err := a.erasureOf(ctx, id)
		if err != nil {
			return privacyapi.Erasure{}, err
		}
		if requested.id != "" {
			return a.finishErasure(ctx, by, audited, requested)
		}
		if last == 0 {
			found, err := a.exists(ctx, id)
			if err != nil {
				return privacyapi.Erasure{}, err
			}
			if !found {
				return privacyapi.Erasure{}, fmt.Errorf("erase %s/%s: %w", tenant, subject, ErrNotFound)
			}
		}
		// A request takes the subject's keys out of every reader's reach
		// at once, so an audited one is written to the trail before it is
		// stored: one the trail cannot take changes nothing.
		if audited {
			if err := a.auditErasure(ctx, by, tenant, subject); err != nil {
				return privacyapi.Erasure{}, err
			}
			// This act is in the trail, whoever's request is stored.
			audited = false
		}
		rec, err := a.requestErasure(ctx, by, id, last)
		if errors.Is(err, ErrConflict) {
			if err := a.CatchUp(ctx); err != nil {
				return privacyapi.Erasure{}, err
			}
			continue
		}
		if err != nil {
			return privacyapi.Erasure{}, err
		}
		return a.finishErasure(ctx, by, false, rec)
	}
	return privacyapi.Erasure{}, fmt.Errorf("erase %s/%s: other writers won %d times", tenant, subject, eraseAttempts)
}

// exists reports whether the subject has keys or privacy events, after
// catching up with events other instances may just have stored.
func (a *App) exists(ctx context.Context, id subjectID) (bool, error) {
	if err := a.CatchUp(ctx); err != nil {
		return false, err
	}
	if _, last, err := a.erasureOf(ctx, id); err != nil || last != 0 {
		return last != 0, err
	}
	_, err := a.keys.Load(ctx, id.tenant, id.subject)
	switch {
	case errors.Is(err, keyring.ErrNotFound):
		return false, nil
	case errors.Is(err, keyring.ErrErased):
		// A tombstone without its request cannot be written by Erase; an
		// erasure of it finishes at once and records what it finds.
		return true, nil
	case err != nil:
		return false, err
	}
	return true, nil
}

// requestErasure appends the request and returns the erasure once the
// index has it.
func (a *App) requestErasure(ctx context.Context, by audit.Actor, id subjectID, last uint64) (erasureRecord, error) {
	rec := erasureRecord{id: event.NewID(), tenant: id.tenant, subject: id.subject, by: by, requestedAt: a.now()}
	e, err := event.NewClear(privacyapi.ErasureRequestedType, id.tenant, id.subject, id.subject, rec.requestedAt,
		privacyapi.ErasureRequested{ErasureID: rec.id, By: by})
	if err != nil {
		return erasureRecord{}, err
	}
	e.ID, rec.requestedAt = rec.id, e.At
	// Recorded first, so that an erasure stored is found by its id, and
	// by whichever instance starts next while it is pending.
	if a.erasures != nil {
		if err := a.erasures.Record(ctx, rec.ref(), true); err != nil {
			return erasureRecord{}, err
		}
	}
	seq, err := a.events.AppendExpect(ctx, e, last)
	if errors.Is(err, ErrConflict) {
		// Not stored: another writer's event came first.
		a.unmark(ctx, rec.id)
	}
	if err != nil {
		return erasureRecord{}, err
	}
	if err := a.index.waitApplied(ctx, seq); err != nil {
		return erasureRecord{}, err
	}
	return rec, nil
}

// finishErasure completes the erasure rec, as its subject's events hold
// it, unless it is completed, and returns where it stands; when audited it
// writes the erasure by by to the audit trail first.
func (a *App) finishErasure(ctx context.Context, by audit.Actor, audited bool, rec erasureRecord) (privacyapi.Erasure, error) {
	if rec.completed {
		return rec.view(), nil
	}
	if audited {
		if err := a.auditErasure(ctx, by, rec.tenant, rec.subject); err != nil {
			return privacyapi.Erasure{}, err
		}
	}
	// Told first: the request already refuses the keys at the key
	// service, but the services' caches (pkg/personkey) hold them until
	// told, and the steps below may fail or be cut short by a stop.
	if err := a.bus.Broadcast(personkey.ErasedSubject, personkey.Erased{Tenant: rec.tenant, Person: rec.subject}); err != nil {
		return privacyapi.Erasure{}, err
	}
	// The pseudonym can only be computed while the keys exist.
	pseudonym, err := a.prepareAnalytics(ctx, rec.tenant, rec.subject)
	if err != nil {
		return privacyapi.Erasure{}, err
	}
	notices, err := a.prepareNotices(ctx, rec)
	if err != nil {
		return privacyapi.Erasure{}, err
	}
	tomb, err := a.keys.Destroy(ctx, rec.tenant, rec.subject, keyring.Tombstone{ErasureID: rec.id, ErasedAt: a.now()})
	if err != nil {
		return privacyapi.Erasure{}, err
	}
	a.Forget(rec.tenant, rec.subject)
	counts := a.cleanAnalytics(ctx, rec.tenant, pseudonym)
	if n := a.deleteSessionsOfErased(ctx, rec.tenant, rec.subject); n > 0 {
		if counts == nil {
			counts = make(map[string]int64)
		}
		counts["sessions_revoked"] = int64(n)
	}
	var integrations []privacyapi.ErasureIntegration
	if a.notices != nil {
		integrations = a.notices.Notify(ctx, rec.tenant, rec.subject, rec.id, notices)
	}
	at := a.now()
	report := privacyapi.ErasureReport{
		KeysDestroyed: tomb.KeysDestroyed,
		At:            at.UTC(),
		DurationMS:    at.Sub(rec.requestedAt).Milliseconds(),
		Counts:        counts,
		Integrations:  integrations,
	}
	return a.completeErasure(ctx, rec, report)
}

// StalledAfter is how long an erasure may stay pending before
// FinishStalled takes it for stalled: well past the deadline of the call
// that requested it, which finishes it itself unless its instance stopped
// or a step failed.
const StalledAfter = 2 * time.Minute

// FinishStalled finishes the erasures requested more than StalledAfter ago
// and not completed — their instance stopped or failed between the request
// and the end — so that none waits for someone to ask again. It returns how
// many it finished and the errors of those it could not, having tried each.
// Two instances finishing one erasure at once store one completion
// (completeErasure).
func (a *App) FinishStalled(ctx context.Context) (int, error) {
	// The index follows PRIVACY as it is written: a request two minutes
	// old is in it, and a round with none pending reads nothing.
	stalled := a.index.pendingErasures(a.now().Add(-StalledAfter))
	if len(stalled) == 0 {
		return 0, nil
	}
	if err := a.CatchUp(ctx); err != nil {
		return 0, err
	}
	var (
		finished int
		errs     []error
	)
	for _, rec := range stalled {
		// Recorded pending by a request whose append failed, or completed
		// before this instance's start: nothing to finish.
		now, _, err := a.erasureOf(ctx, subjectID{rec.tenant, rec.subject})
		if err != nil {
			errs = append(errs, fmt.Errorf("finish erasure %s: %w", rec.id, err))
			continue
		}
		if now.id != rec.id || now.completed {
			a.index.forgetPending(rec.id)
			a.unmark(ctx, rec.id)
			continue
		}
		if _, err := a.finishErasure(ctx, rec.by, false, now); err != nil {
			errs = append(errs, fmt.Errorf("finish erasure %s: %w", rec.id, err))
			continue
		}
		finished++
	}
	return finished, errors.Join(errs...)
}

// auditErasure writes by's erasure of the subject to the audit trail.
func (a *App) auditErasure(ctx context.Context, by audit.Actor, tenant, subject string) error {
	if _, err := a.appendAudit(ctx, privacyapi.AppendAuditArgs{
		Tenant: tenant, Actor: by, Action: audit.ActionErase, Target: "subject:" + subject,
	}); err != nil {
		return fmt.Errorf("audit erasure: %w", err)
	}
	return nil
}

// prepareNotices stores the "subject erased" notices of the integrations
// that received the subject's events, before the keys go.
func (a *App) prepareNotices(ctx context.Context, rec erasureRecord) ([]ErasureNotice, error) {
	if a.notices == nil {
		return nil, nil
	}
	n, err := a.notices.Prepare(ctx, rec.tenant, rec.subject, rec.id)
	if err != nil {
		return nil, fmt.Errorf("prepare erasure notices: %w", err)
	}
	return n, nil
}

// completeErasure appends ErasureCompleted unless another instance did
// first, and returns the erasure as the index then holds it.
func (a *App) completeErasure(ctx context.Context, rec erasureRecord, report privacyapi.ErasureReport) (privacyapi.Erasure, error) {
	id := subjectID{rec.tenant, rec.subject}
	for range eraseAttempts {
		e, err := event.NewClear(privacyapi.ErasureCompletedType, rec.tenant, rec.subject, rec.subject, report.At,
			privacyapi.ErasureCompleted{ErasureID: rec.id, Report: report})
		if err != nil {
			return privacyapi.Erasure{}, err
		}
		_, last, err := a.erasureOf(ctx, id)
		if err != nil {
			return privacyapi.Erasure{}, err
		}
		seq, err := a.events.AppendExpect(ctx, e, last)
		if errors.Is(err, ErrConflict) {
			if err := a.CatchUp(ctx); err != nil {
				return privacyapi.Erasure{}, err
			}
			now, _, err := a.erasureOf(ctx, id)
			if err != nil {
				return privacyapi.Erasure{}, err
			}
			if now.completed {
				return now.view(), nil
			}
			continue
		}
		if err != nil {
			return privacyapi.Erasure{}, err
		}
		// The follower unmarks it as it applies the completion.
		if err := a.index.waitApplied(ctx, seq); err != nil {
			return privacyapi.Erasure{}, err
		}
		done, _, err := a.erasureOf(ctx, id)
		if err != nil {
			return privacyapi.Erasure{}, err
		}
		return done.view(), nil
	}
	return privacyapi.Erasure{}, fmt.Errorf("complete erasure %s: other writers won %d times", rec.id, eraseAttempts)
}

// unmark drops the erasure's pending mark in ErasureRecords. A failure is
// logged: the next start drops a mark its subject's events belie.
func (a *App) unmark(ctx context.Context, erasureID string) {
	if a.erasures == nil {
		return
	}
	if err := a.erasures.Done(ctx, erasureID); err != nil {
		a.log.Warn("unmark an erasure as pending", "erasure_id", erasureID, "err", err)
	}
}

// ErasureStatus returns where erasure erasureID of tenant stands, for an
// admin of the tenant or for the erased visitor themself. Another visitor,
// like anyone asking about an unknown erasure, gets ErrNotFound; other
// roles get ErrForbidden.
func (a *App) ErasureStatus(ctx context.Context, p auth.Principal, tenant, erasureID string) (privacyapi.Erasure, error) {
	if err := errors.Join(validToken("tenant", tenant), validToken("erasure_id", erasureID)); err != nil {
		return privacyapi.Erasure{}, err
	}
	if err := allow(p, tenant, auth.RoleAdmin, auth.RoleVisitor); err != nil {
		return privacyapi.Erasure{}, err
	}
	rec, ok, err := a.erasure(ctx, erasureID)
	if err == nil && !ok {
		if err := a.CatchUp(ctx); err != nil {
			return privacyapi.Erasure{}, err
		}
		rec, ok, err = a.erasure(ctx, erasureID)
	}
	if err != nil {
		return privacyapi.Erasure{}, err
	}
	if !ok || rec.tenant != tenant || p.Role == auth.RoleVisitor && p.ID != rec.subject {
		return privacyapi.Erasure{}, fmt.Errorf("erasure %s: %w", erasureID, ErrNotFound)
	}
	return rec.view(), nil
}

// deleteSessionsOfErased deletes the sessions of an erased subject, every
// entry of them, and counts them: a revoked session kept until it expires
// would keep the subject's id. A failure is logged and the erasure goes on:
// with the keys gone, a refresh of those sessions is refused all the same,
// and deletes its session (stillHeld).
func (a *App) deleteSessionsOfErased(ctx context.Context, tenant, subject string) int {
	if a.sessions == nil {
		return 0
	}
	n, err := a.deleteAll(ctx, tenant, subject)
	if err != nil {
		a.log.Warn("delete sessions of an erased subject; their refresh is refused by the keys' absence", "tenant", tenant, "err", err)
	}
	return n
}
