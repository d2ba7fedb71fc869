package app

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"math/rand/v2"
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/parley-chat/parley/pkg/audit"
	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/privacyapi"
)

// auditWithin bounds the wait of an act for its entry to be stored: the
// caller waits as long (rpc.DefaultTimeout) and takes an act not answered
// by then as not audited, so an entry is not begun after it.
const auditWithin = 5 * time.Second

// After losing an append to another instance, an appender waits a random
// time below a bound that starts at auditBackoff and doubles up to
// auditMaxBackoff, so that instances contending for one chain fall out of
// step instead of colliding again.
const (
	auditBackoff    = 5 * time.Millisecond
	auditMaxBackoff = 200 * time.Millisecond
)

// MaxAuditTarget is the longest audit target accepted, in bytes.
const MaxAuditTarget = 256

var (
	actionRe = regexp.MustCompile(`^[a-z0-9._]{1,64}$`)
	targetRe = regexp.MustCompile(`^[\x20-\x7e]+$`)
)

// chains holds the head of each tenant's audit chain as this instance last
// wrote or read it. Appends to one chain take turns on its head's lock, in
// batches: whoever holds it appends every act waiting at that moment, one
// entry after another, and stores one checkpoint for them all. Another
// instance's appends show up as a conflict, after which the head is read
// again.
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

	// waitingMu guards waiting, the acts not yet taken into a batch.
	waitingMu sync.Mutex
	waiting   []*pendingAct
}

// pendingAct is an act waiting for its entry, and, once its batch was
// appended, the outcome; done, entry and err are written and read under
// its chain's mu.
type pendingAct struct {
	args     privacyapi.AppendAuditArgs
	deadline time.Time
	done     bool
	entry    audit.Entry
	err      error
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

// appendAudit stores the entry, then a checkpoint of the chain with it,
// before it answers: an act is audited once both are stored. An instance
// that stops in between leaves the checkpoint behind, until the next
// append. It waits for the entry at most auditWithin, or until ctx's
// deadline when that is sooner.
func (a *App) appendAudit(ctx context.Context, args privacyapi.AppendAuditArgs) (audit.Entry, error) {
	act := &pendingAct{args: args, deadline: time.Now().Add(auditWithin)}
	if d, ok := ctx.Deadline(); ok && d.Before(act.deadline) {
		act.deadline = d
	}
	h := a.chains.head(args.Tenant)
	h.waitingMu.Lock()
	h.waiting = append(h.waiting, act)
	h.waitingMu.Unlock()
	h.mu.Lock()
	defer h.mu.Unlock()
	if !act.done {
		// Whoever held the lock took the acts waiting when it began; this
		// one came later, so it appends the batch this act is in.
		h.waitingMu.Lock()
		batch := h.waiting
		h.waiting = nil
		h.waitingMu.Unlock()
		a.appendBatch(ctx, h, batch)
	}
	return act.entry, act.err
}

// appendBatch appends the entries of batch's acts to their chain in order,
// then stores the chain's checkpoint once, and sets each act's outcome.
// The caller holds h.mu. An act whose deadline passes before its entry is
// stored fails alone; any other failure fails the acts after it too.
func (a *App) appendBatch(ctx context.Context, h *chainHead, batch []*pendingAct) {
	tenant := batch[0].args.Tenant
	last := batch[0].deadline
	for _, act := range batch {
		if act.deadline.After(last) {
			last = act.deadline
		}
	}
	// The batch is appended for every act in it, not for the caller
	// alone: a caller gone does not end it.
	ctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), last)
	defer cancel()
	var err error
	var head audit.Entry
	for _, act := range batch {
		act.done = true
		switch {
		case err != nil:
			act.err = err
		case !time.Now().Before(act.deadline):
			act.err = fmt.Errorf("append audit entry of %s: %w", tenant, context.DeadlineExceeded)
		default:
			act.entry, act.err = a.appendEntry(ctx, h, act)
			if act.err == nil {
				head = act.entry
			} else if time.Now().Before(act.deadline) {
				err = act.err
			}
		}
	}
	if head.Hash == "" {
		return
	}
	cp := audit.Checkpoint{Tenant: tenant, Count: h.Count, Head: h.Hash, At: head.At}.Sign(a.auditKey)
	if cerr := a.checkpoints.Advance(ctx, cp); cerr != nil {
		cerr = fmt.Errorf("checkpoint audit trail of %s: %w", tenant, cerr)
		for _, act := range batch {
			act.entry, act.err = audit.Entry{}, cmp.Or(act.err, cerr)
		}
	}
}

// appendEntry links act into h's chain and stores it, reading the head
// again and trying once more after each append lost to another instance,
// until act's deadline. The caller holds h.mu.
func (a *App) appendEntry(ctx context.Context, h *chainHead, act *pendingAct) (audit.Entry, error) {
	tenant := act.args.Tenant
	ctx, cancel := context.WithDeadline(ctx, act.deadline)
	defer cancel()
	lost := 0
	for {
		if !h.loaded {
			head, err := a.loadHead(ctx, tenant)
			if err != nil {
				if (errors.Is(err, ErrAuditBroken) || errors.Is(err, ErrAuditMissing)) && !h.refused {
					// Once: every audited act of the tenant is refused
					// until an operator repairs the trail.
					h.refused = true
					a.log.Error("audit trail refused: no audited act of the tenant goes ahead until it is repaired",
						"tenant", tenant, "err", err)
				}
				return audit.Entry{}, err
			}
			h.AuditHead, h.loaded, h.refused = head, true, false
		}
		e := audit.Entry{
			At:     a.now().UTC(),
			Tenant: tenant,
			Actor:  act.args.Actor,
			Action: act.args.Action,
			Target: act.args.Target,
		}.Link(h.Hash)
		seq, err := a.audit.Append(ctx, e, h.Seq)
		if err == nil {
			h.AuditHead = AuditHead{Seq: seq, Hash: e.Hash, Count: h.Count + 1}
			return e, nil
		}
		// After a conflict, or a failure that may have stored the entry
		// all the same, only the store knows the head.
		h.loaded = false
		if !errors.Is(err, ErrConflict) {
			return audit.Entry{}, err
		}
		lost++
		bound := min(auditBackoff<<min(lost-1, 6), auditMaxBackoff)
		t := time.NewTimer(rand.N(bound))
		select {
		case <-ctx.Done():
			t.Stop()
			return audit.Entry{}, fmt.Errorf("append audit entry of %s: other writers won %d times before the deadline: %w", tenant, lost, ctx.Err())
		case <-t.C:
		}
	}
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

// AuditStream writes p's opening of the live stream to the audit trail,
// for an agent, supervisor or admin of the tenant (audit.ActionStreamOpen):
// the target is what their role is shown live, and since, when the
// stream replays what was stored after it.
func (a *App) AuditStream(ctx context.Context, p auth.Principal, args privacyapi.AuditStreamArgs) (audit.Entry, error) {
	if err := validToken("tenant", args.Tenant); err != nil {
		return audit.Entry{}, err
	}
	if err := allow(p, args.Tenant, auth.RoleAgent, auth.RoleSupervisor, auth.RoleAdmin); err != nil {
		return audit.Entry{}, err
	}
	target := "stream:tenant"
	if p.Role == auth.RoleAgent {
		target = "stream:assigned"
	}
	if args.Since != nil {
		target += " since:" + strconv.FormatUint(*args.Since, 10)
	}
	return a.appendAudit(ctx, privacyapi.AppendAuditArgs{Tenant: args.Tenant, Actor: actor(p), Action: audit.ActionStreamOpen, Target: target})
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
