package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/parley-chat/parley/pkg/personkey"
	"github.com/parley-chat/parley/pkg/retry"

	"github.com/parley-chat/parley/services/privacy/internal/keyring"
)

// rereadFor bounds the reads after losing a creation race; see GetKeys.
const rereadFor = time.Second

// GetKeys returns the subject's keys. When the subject has none it returns
// keyring.ErrNotFound, or with create generates, wraps and stores them. For
// an erased subject it returns keyring.ErrErased and never creates keys.
//
// Creation is safe across instances: the store accepts only the first
// record of a subject, and every loser of the race reads the winner's keys,
// so all callers get the same keys. A record that does not unwrap under this
// instance's KEK is an error, never a reason to create new keys.
func (a *App) GetKeys(ctx context.Context, tenant, subject string, create bool) (personkey.Keys, error) {
	id, k, ok, stamp, err := a.cachedKeys(tenant, subject)
	if ok || err != nil {
		return k, err
	}

	k, err = a.load(ctx, tenant, subject)
	if errors.Is(err, keyring.ErrNotFound) && create {
		k, err = a.create(ctx, tenant, subject)
	}
	if err != nil {
		return personkey.Keys{}, err
	}
	a.keyCache.Add(id, k, stamp)
	return k, nil
}

// ProbeKeys answers what GetKeys without create would, with no keys: nil
// when the subject has keys (also keys this instance cannot unwrap),
// keyring.ErrNotFound, or keyring.ErrErased. It unwraps nothing and adds
// nothing to the key cache: asked about every visitor with a profile at a
// chat start, it must not push out the keys of those about now.
func (a *App) ProbeKeys(ctx context.Context, tenant, subject string) error {
	if _, _, ok, _, err := a.cachedKeys(tenant, subject); ok || err != nil {
		return err
	}
	_, err := a.keys.Load(ctx, tenant, subject)
	return err
}

// cachedKeys is what GetKeys and ProbeKeys answer without the store: an
// invalid id or an erasure refused, or the subject's keys when cached
// (ok), with the cache's stamp for adding them once loaded.
func (a *App) cachedKeys(tenant, subject string) (id subjectID, k personkey.Keys, ok bool, stamp uint64, err error) {
	if err := errors.Join(validToken("tenant", tenant), validToken("subject", subject)); err != nil {
		return id, k, false, 0, err
	}
	id = subjectID{tenant, subject}
	// An erasure in progress refuses keys before its tombstone is stored.
	if a.index.erasurePending(id) {
		return id, k, false, 0, fmt.Errorf("keys of %s/%s: %w", tenant, subject, keyring.ErrErased)
	}
	k, ok, stamp = a.keyCache.Get(id)
	return id, k, ok, stamp, nil
}

// HeldKeys returns the keys of tenant's subject, and false when there are
// none to hold: erased (or its erasure requested), never made, expired, or
// an id that can have none. Other errors are the store's, worth retrying.
func (a *App) HeldKeys(ctx context.Context, tenant, subject string) (personkey.Keys, bool, error) {
	k, err := a.GetKeys(ctx, tenant, subject, false)
	var verr *ValidationError
	switch {
	case errors.Is(err, keyring.ErrErased), errors.Is(err, keyring.ErrNotFound), errors.As(err, &verr):
		return personkey.Keys{}, false, nil
	case err != nil:
		return personkey.Keys{}, false, err
	}
	return k, true, nil
}

// ErasureOf returns the id of the erasure of tenant's subject, "" when none
// was requested, when it was requested, and whether it is completed, as
// far as the index has followed PRIVACY (CatchUp first to know of one
// another instance requested or completed).
func (a *App) ErasureOf(ctx context.Context, tenant, subject string) (id string, requested time.Time, completed bool, err error) {
	r, _, err := a.erasureOf(ctx, subjectID{tenant, subject})
	return r.id, r.requestedAt, r.completed, err
}

// Forget drops the subject's keys from this instance's memory. The privacy
// service calls it for every erasure broadcast, its own included.
func (a *App) Forget(tenant, subject string) {
	if k, ok, _ := a.keyCache.Get(subjectID{tenant, subject}); ok {
		k.Forget()
	}
	a.keyCache.Forget(subjectID{tenant, subject})
}

func (a *App) load(ctx context.Context, tenant, subject string) (personkey.Keys, error) {
	rec, err := a.keys.Load(ctx, tenant, subject)
	if err != nil {
		return personkey.Keys{}, err
	}
	return a.ring.Unwrap(tenant, subject, rec)
}

func (a *App) create(ctx context.Context, tenant, subject string) (personkey.Keys, error) {
	k, rec, err := a.ring.NewKeys(tenant, subject, a.now())
	if err != nil {
		return personkey.Keys{}, err
	}
	err = a.keys.Create(ctx, tenant, subject, rec)
	switch {
	case err == nil:
		return k, nil
	case !errors.Is(err, keyring.ErrExists):
		return personkey.Keys{}, err
	}
	// Another instance won, or the subject was erased. A replica answering
	// a direct get may not have applied the winner's record yet, so "not
	// found" is retried briefly.
	return retry.Until(ctx, rereadFor, nil, func() (personkey.Keys, error) {
		k, err := a.load(ctx, tenant, subject)
		if err != nil && !errors.Is(err, keyring.ErrNotFound) {
			return k, retry.Permanent(err)
		}
		return k, err
	})
}
