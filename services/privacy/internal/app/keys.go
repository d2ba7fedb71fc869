package app

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"

	"github.com/parley-chat/parley/pkg/subjectkey"

	"github.com/parley-chat/parley/services/privacy/internal/keyring"
)

// rereadAttempts bounds the reads after losing a creation race; see GetKeys.
const rereadAttempts = 5

// DefaultKeyCacheSize is how many subjects' keys an App keeps unwrapped
// when Stores.KeyCacheSize is 0.
const DefaultKeyCacheSize = 100_000

// keyCache holds unwrapped keys of the subjects used most recently, so a
// subject's record is unwrapped about once per instance while memory stays
// bounded: a subject that left is loaded and unwrapped again on its next
// use. It caches keys only, never "erased", which the key store and the
// erasure index answer.
type keyCache struct {
	// mu is a full lock: a lookup moves the subject up the LRU order.
	mu      sync.Mutex
	entries *simplelru.LRU[subjectID, subjectkey.Keys]
	// forgets counts Forget calls, so that keys loaded while an erasure went
	// by are not cached after it.
	forgets uint64
}

// GetKeys returns the subject's keys. When the subject has none it returns
// keyring.ErrNotFound, or with create generates, wraps and stores them. For
// an erased subject it returns keyring.ErrErased and never creates keys.
//
// Creation is safe across instances: the store accepts only the first
// record of a subject, and every loser of the race reads the winner's keys,
// so all callers get the same keys. A record that does not unwrap under this
// instance's KEK is an error, never a reason to create new keys.
func (a *App) GetKeys(ctx context.Context, tenant, subject string, create bool) (subjectkey.Keys, error) {
	if err := errors.Join(validToken("tenant", tenant), validToken("subject", subject)); err != nil {
		return subjectkey.Keys{}, err
	}
	id := subjectID{tenant, subject}
	// An erasure in progress refuses keys before its tombstone is stored.
	if a.index.erasureOf(id) != "" {
		return subjectkey.Keys{}, fmt.Errorf("keys of %s/%s: %w", tenant, subject, keyring.ErrErased)
	}
	a.keyCache.mu.Lock()
	k, ok := a.keyCache.entries.Get(id)
	forgets := a.keyCache.forgets
	a.keyCache.mu.Unlock()
	if ok {
		return k, nil
	}

	k, err := a.load(ctx, tenant, subject)
	if errors.Is(err, keyring.ErrNotFound) && create {
		k, err = a.create(ctx, tenant, subject)
	}
	if err != nil {
		return subjectkey.Keys{}, err
	}
	a.keyCache.mu.Lock()
	if a.keyCache.forgets == forgets {
		a.keyCache.entries.Add(id, k)
	}
	a.keyCache.mu.Unlock()
	return k, nil
}

// Forget drops the subject's keys from this instance's memory. The privacy
// service calls it for every erasure broadcast, its own included.
func (a *App) Forget(tenant, subject string) {
	a.keyCache.mu.Lock()
	defer a.keyCache.mu.Unlock()
	a.keyCache.entries.Remove(subjectID{tenant, subject})
	a.keyCache.forgets++
}

func newKeyCache(size int) keyCache {
	if size <= 0 {
		size = DefaultKeyCacheSize
	}
	entries, _ := simplelru.NewLRU[subjectID, subjectkey.Keys](size, nil) // fails only for size <= 0
	return keyCache{entries: entries}
}

func (a *App) load(ctx context.Context, tenant, subject string) (subjectkey.Keys, error) {
	rec, err := a.keys.Load(ctx, tenant, subject)
	if err != nil {
		return subjectkey.Keys{}, err
	}
	return a.ring.Unwrap(tenant, subject, rec)
}

func (a *App) create(ctx context.Context, tenant, subject string) (subjectkey.Keys, error) {
	k, rec, err := a.ring.NewKeys(tenant, subject, a.now())
	if err != nil {
		return subjectkey.Keys{}, err
	}
	err = a.keys.Create(ctx, tenant, subject, rec)
	switch {
	case err == nil:
		return k, nil
	case !errors.Is(err, keyring.ErrExists):
		return subjectkey.Keys{}, err
	}
	// Another instance won, or the subject was erased. A replica answering
	// a direct get may not have applied the winner's record yet, so "not
	// found" is retried briefly.
	for attempt := 1; ; attempt++ {
		k, err = a.load(ctx, tenant, subject)
		if !errors.Is(err, keyring.ErrNotFound) || attempt == rereadAttempts {
			return k, err
		}
		select {
		case <-ctx.Done():
			return subjectkey.Keys{}, fmt.Errorf("read created keys of %s/%s: %w", tenant, subject, ctx.Err())
		case <-time.After(time.Duration(attempt) * 10 * time.Millisecond):
		}
	}
}
