package app

import (
	"context"
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
	seq    uint64
	hash   string
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

func (a *App) appendAudit(ctx context.Context, args privacyapi.AppendAuditArgs) (audit.Entry, error) {
	h := a.chains.head(args.Tenant)
	h.mu.Lock()
	defer h.mu.Unlock()
	for range auditAttempts {
		if !h.loaded {
			seq, hash, err := a.audit.Head(ctx, args.Tenant)
			if err != nil {
				return audit.Entry{}, err
			}
			h.seq, h.hash, h.loaded = seq, hash, true
		}
		e := audit.Entry{
			At:     a.now().UTC(),
			Tenant: args.Tenant,
			Actor:  args.Actor,
			Action: args.Action,
			Target: args.Target,
		}.Link(h.hash)
		seq, err := a.audit.Append(ctx, e, h.seq)
		if err != nil {
			// After a conflict, or a failure that may have stored the entry
			// all the same, only the store knows the head.
			h.loaded = false
			if errors.Is(err, ErrConflict) {
				continue
			}
			return audit.Entry{}, err
		}
		h.seq, h.hash = seq, e.Hash
		return e, nil
	}
	return audit.Entry{}, fmt.Errorf("append audit entry of %s: other writers won %d times", args.Tenant, auditAttempts)
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
