// Package consent is the cache other services keep of data subjects'
// consent, served by the privacy service (privacyapi.GetConsentSubject).
//
// A Cache asks the privacy service once per subject and then follows the
// broadcasts: every newly recorded consent (privacyapi.ConsentChanged)
// replaces the cached one at once, and an erasure (subjectkey.Erased) turns
// the subject into ErrErased for good. A caller gating a purpose treats
// every error of Get as "not consented".
package consent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go"

	"github.com/parley-chat/parley/pkg/event"
	"github.com/parley-chat/parley/pkg/privacyapi"
	"github.com/parley-chat/parley/pkg/rpc"
	"github.com/parley-chat/parley/pkg/subjectkey"
)

// Errors of Get.
var (
	// ErrNotFound means the subject has no consent record.
	ErrNotFound = errors.New("no consent recorded")
	// ErrErased means the subject was erased.
	ErrErased = errors.New("subject erased")
)

type cacheKey struct{ tenant, subject string }

type entry struct {
	res privacyapi.ConsentResult
	// erased is final: no later answer or broadcast replaces it.
	erased bool
}

// Cache holds the consent in force of the subjects asked about. It is safe
// for concurrent use.
type Cache struct {
	nc   *nats.Conn
	subs []*nats.Subscription

	mu      sync.Mutex
	entries map[cacheKey]entry
}

// NewCache returns a cache following consent changes and erasures on nc. It
// returns once the server has its subscriptions, so no broadcast sent after
// it returns is missed.
func NewCache(nc *nats.Conn) (*Cache, error) {
	c := &Cache{nc: nc, entries: make(map[cacheKey]entry)}
	changed, err := nc.Subscribe(privacyapi.ConsentChangedSubject, func(m *nats.Msg) {
		var ch privacyapi.ConsentChanged
		if json.Unmarshal(m.Data, &ch) == nil {
			c.store(cacheKey{ch.Tenant, ch.Subject}, entry{res: ch.Result})
		}
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe %s: %w", privacyapi.ConsentChangedSubject, err)
	}
	c.subs = append(c.subs, changed)
	erased, err := nc.Subscribe(subjectkey.ErasedSubject, func(m *nats.Msg) {
		var e subjectkey.Erased
		if json.Unmarshal(m.Data, &e) == nil {
			c.store(cacheKey{e.Tenant, e.Subject}, entry{erased: true})
		}
	})
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("subscribe %s: %w", subjectkey.ErasedSubject, err)
	}
	c.subs = append(c.subs, erased)
	if err := nc.Flush(); err != nil {
		c.Close()
		return nil, fmt.Errorf("flush consent subscriptions: %w", err)
	}
	return c, nil
}

// Get returns the consent in force for tenant's subject; ErrNotFound when
// they have none recorded, ErrErased when they were erased.
func (c *Cache) Get(ctx context.Context, tenant, subject string) (event.Consent, error) {
	k := cacheKey{tenant, subject}
	c.mu.Lock()
	e, ok := c.entries[k]
	c.mu.Unlock()
	switch {
	case ok && e.erased:
		return event.Consent{}, ErrErased
	case ok:
		return e.res.Consent, nil
	}
	var res privacyapi.ConsentResult
	err := rpc.Call(ctx, c.nc, privacyapi.GetConsentSubject, privacyapi.SubjectArgs{Tenant: tenant, Subject: subject}, &res)
	switch {
	case rpc.CodeOf(err) == rpc.CodeGone:
		c.store(k, entry{erased: true})
		return event.Consent{}, ErrErased
	case rpc.CodeOf(err) == rpc.CodeNotFound:
		// Not cached: the subject's first consent may be recorded any moment.
		return event.Consent{}, ErrNotFound
	case err != nil:
		return event.Consent{}, fmt.Errorf("get consent: %w", err)
	}
	// A newer consent or an erasure may have gone by while the answer
	// travelled: what store keeps is the answer.
	got := c.store(k, entry{res: res})
	if got.erased {
		return event.Consent{}, ErrErased
	}
	return got.res.Consent, nil
}

// store keeps e unless what is cached is final or newer, and returns what
// is cached then. Answers and broadcasts can arrive in any order (and an
// answer may come from an instance that has not yet seen the latest
// consent), so the stream sequence decides.
func (c *Cache) store(k cacheKey, e entry) entry {
	c.mu.Lock()
	defer c.mu.Unlock()
	old, ok := c.entries[k]
	if ok && (old.erased || (!e.erased && old.res.Seq > e.res.Seq)) {
		return old
	}
	c.entries[k] = e
	return e
}

// Close stops following changes and erasures.
func (c *Cache) Close() error {
	var errs []error
	for _, s := range c.subs {
		errs = append(errs, s.Unsubscribe())
	}
	return errors.Join(errs...)
}
