package app

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"regexp"
	"sync"
	"time"

	"github.com/parley-chat/parley/pkg/audit"
	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/privacyapi"
)

// auditAttempts bounds the appends an entry may lose to another instance
// writing the same tenant's chain.
const auditAttempts = 10

// MaxAuditTarget is the longest audit target accepted, in bytes.
const MaxAuditTarget = 256

var (
	actionRe = regexp.MustCompile(`^[a-z0-9._]{1,64}$`)
	targetRe = regexp.MustCompile(`^[\x20-\x7e]+$`)
)

// chains holds the head of each tenant's audit chain as this instance last
// wrote or read it. Appends to one chain take turns on its head's lock;
// another instance's appends show up as a conflict, after which the head is
// read again.
type chains struct {
	mu    sync.Mutex
	heads map[string]*chainHead
}

type chainHead struct {
	mu     sync.Mutex
	loaded bool
	// refused is set once the chain was refused and the log told why.
	refused bool
	AuditHead
}

func (c *chains) head(tenant string) *chainHead {
	c.mu.Lock()
	defer c.mu.Unlock()
	h := c.heads[tenant]
	if h == nil {
		h = &chainHead{}
		c.heads[tenant] = h
	}
	return h
}

// AppendAudit links an act into its tenant's audit chain and stores it,
// stamped with the current time. Invalid arguments give a
// *ValidationError and store nothing.
func (a *App) AppendAudit(ctx context.Context, args privacyapi.AppendAuditArgs) (audit.Entry, error) {
	var errs []error
	errs = append(errs, validToken("tenant", args.Tenant), validToken("actor.id", args.Actor.ID))
	if !args.Actor.Role.Valid() {
		errs = append(errs, &ValidationError{Field: "actor.role", Reason: "must be a known role"})
	}
	if !actionRe.MatchString(args.Action) {
		errs = append(errs, &ValidationError{Field: "action", Reason: "must be 1 to 64 of a-z, 0-9, '.' or '_'"})
	}
	if len(args.Target) > MaxAuditTarget || !targetRe.MatchString(args.Target) {
		errs = append(errs, &ValidationError{Field: "target", Reason: fmt.Sprintf("must be 1 to %d printable ASCII characters", MaxAuditTarget)})
	}
	if err := errors.Join(errs...); err != nil {
		return audit.Entry{}, err
	}
	return a.appendAudit(ctx, args)
}

// appendAudit stores the entry, then the checkpoint of the chain with it,
// before it answers: an act is audited once both are stored. An instance
// that stops in between leaves the checkpoint one entry behind, until the
// next append.
func (a *App) appendAudit(ctx context.Context, args privacyapi.AppendAuditArgs) (audit.Entry, error) {
	h := a.chains.head(args.Tenant)
	h.mu.Lock()
	defer h.mu.Unlock()
	for range auditAttempts {
		if !h.loaded {
			head, err := a.loadHead(ctx, args.Tenant)
			if err != nil {
				if (errors.Is(err, ErrAuditBroken) || errors.Is(err, ErrAuditMissing)) && !h.refused {
					// Once: every audited act of the tenant is refused
					// until an operator repairs the trail.
					h.refused = true
					a.log.Error("audit trail refused: no audited act of the tenant goes ahead until it is repaired",
						"tenant", args.Tenant, "err", err)
				}
				return audit.Entry{}, err
			}
			h.AuditHead, h.loaded, h.refused = head, true, false
		}
		e := audit.Entry{
			At:     a.now().UTC(),
			Tenant: args.Tenant,
			Actor:  args.Actor,
			Action: args.Action,
			Target: args.Target,
		}.Link(h.Hash)
		seq, err := a.audit.Append(ctx, e, h.Seq)
		if err != nil {
			// After a conflict, or a failure that may have stored the entry
			// all the same, only the store knows the head.
			h.loaded = false
			if errors.Is(err, ErrConflict) {
				continue
			}
			return audit.Entry{}, err
		}
		h.AuditHead = AuditHead{Seq: seq, Hash: e.Hash, Count: h.Count + 1}
		cp := audit.Checkpoint{Tenant: args.Tenant, Count: h.Count, Head: h.Hash, At: e.At}.Sign(a.auditKey)
		if err := a.checkpoints.Advance(ctx, cp); err != nil {
			return audit.Entry{}, fmt.Errorf("checkpoint audit trail of %s: %w", args.Tenant, err)
		}
		return e, nil
	}
	return audit.Entry{}, fmt.Errorf("append audit entry of %s: other writers won %d times", args.Tenant, auditAttempts)
}

// loadHead reads the head of the tenant's chain and checks it against the
// latest checkpoint: a chain that lost entries, or was replaced, is not
// extended, since its next checkpoint would hide the loss.
func (a *App) loadHead(ctx context.Context, tenant string) (AuditHead, error) {
	// The checkpoint first: each is stored after its entry, so the head
	// read after it is as far at least, however many instances append.
	cp, _, found, err := a.checkpoints.Latest(ctx, tenant)
	if err != nil {
		return AuditHead{}, err
	}
	head, err := a.audit.Head(ctx, tenant)
	if err != nil || !found {
		return head, err
	}
	if err := cp.Verify(a.auditKey.Public().(ed25519.PublicKey)); err != nil || cp.Tenant != tenant {
		return AuditHead{}, fmt.Errorf("%w: the checkpoint of %s is not one this service signed (%v)", ErrAuditBroken, tenant, err)
	}
	switch {
	case head.Count < cp.Count:
		return AuditHead{}, fmt.Errorf("%w: %s has %d entries, its checkpoint of %s counts %d", ErrAuditBroken,
			tenant, head.Count, cp.At.Format(time.RFC3339), cp.Count)
	case head.Count == cp.Count && head.Hash != cp.Head:
		return AuditHead{}, fmt.Errorf("%w: the last of the %d entries of %s is not the one its checkpoint of %s names", ErrAuditBroken,
			head.Count, tenant, cp.At.Format(time.RFC3339))
	}
	return head, nil
}

// AuditCheckpoint returns the tenant's latest audit checkpoint and the
// public key that verifies it, for an auditor or admin of the tenant to
// keep apart from Parley. A tenant without entries has no checkpoint.
func (a *App) AuditCheckpoint(ctx context.Context, p auth.Principal, tenant string) (privacyapi.AuditCheckpointResult, error) {
	if err := validToken("tenant", tenant); err != nil {
		return privacyapi.AuditCheckpointResult{}, err
	}
	if err := allow(p, tenant, auth.RoleAuditor, auth.RoleAdmin); err != nil {
		return privacyapi.AuditCheckpointResult{}, err
	}
	res := privacyapi.AuditCheckpointResult{PublicKey: a.auditKey.Public().(ed25519.PublicKey)}
	cp, _, found, err := a.checkpoints.Latest(ctx, tenant)
	if err != nil {
		return privacyapi.AuditCheckpointResult{}, err
	}
	if !found {
		return res, nil
	}
	if err := cp.Verify(res.PublicKey); err != nil || cp.Tenant != tenant {
		return privacyapi.AuditCheckpointResult{}, fmt.Errorf("%w: the checkpoint of %s is not one this service signed (%v)", ErrAuditBroken, tenant, err)
	}
	res.Checkpoint = &cp
	return res, nil
}

// ListAudit returns the tenant's audit entries stored at or after since,
// up to privacyapi.MaxAuditEntries, for an auditor or admin of the tenant.
func (a *App) ListAudit(ctx context.Context, p auth.Principal, tenant string, since time.Time) (privacyapi.ListAuditResult, error) {
	if err := validToken("tenant", tenant); err != nil {
		return privacyapi.ListAuditResult{}, err
	}
	if err := allow(p, tenant, auth.RoleAuditor, auth.RoleAdmin); err != nil {
		return privacyapi.ListAuditResult{}, err
	}
	entries, more, err := a.audit.List(ctx, tenant, since, privacyapi.MaxAuditEntries)
	if err != nil {
		return privacyapi.ListAuditResult{}, err
	}
	if entries == nil {
		entries = []audit.Entry{}
	}
	return privacyapi.ListAuditResult{Entries: entries, More: more}, nil
}
