// Package personkey is the bus contract of the privacy service's key
// service, and the cache other services keep of the keys it serves.
//
// Only the privacy service unwraps keys. Others ask it over request/reply
// and keep the answer in memory, for at most a bounded number of people,
// until the person is erased: an erasure broadcast on ErasedSubject evicts
// the key everywhere at once.
package personkey

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/nats-io/nats.go"

	"github.com/parley-chat/parley/pkg/rpc"
	"github.com/parley-chat/parley/pkg/seal"
)

// Subjects of the key service.
const (
	// GetSubject answers a Request with Keys; Create makes them first when
	// the person has none. It fails with rpc.CodeNotFound when the person
	// has no keys and Create is false, and with rpc.CodeGone when the
	// person was erased, whatever Create says. A Probe is answered the same
	// way, with no keys.
	GetSubject = "parley.keys.get"
	// ErasedSubject carries an Erased broadcast after a person's keys are
	// destroyed.
	ErasedSubject = "parley.subject.erased"
)

// Errors of Get.
var (
	// ErrNotFound means the person has no keys: never created, erased or expired.
	ErrNotFound = errors.New("person has no keys")
	// ErrErased means the person was erased: their keys are destroyed and
	// will never be created again. An error that is ErrErased is also
	// ErrNotFound, so callers that only ask "are there keys?" need not care.
	ErrErased = errors.New("person erased")
	// ErrUnreadable means the person has keys the key service cannot
	// read (wrapped under a key-encryption key it does not hold, as in a
	// backup restored after a rotation): asking again changes nothing.
	ErrUnreadable = errors.New("person's keys are unreadable")
)

// errErased is what Get and GetOrCreate return for an erased person.
var errErased = fmt.Errorf("%w: %w", ErrNotFound, ErrErased)

// Request asks for a person's keys.
type Request struct {
	Tenant string `json:"tenant"`
	Person string `json:"subject"` // the data subject; "subject" on the wire
	Create bool   `json:"create,omitempty"`
	// Probe asks only whether the person has keys: the key service answers
	// without them, unwrapping and caching none. A key service that
	// predates it sends the keys, which the asker drops.
	Probe bool `json:"probe,omitempty"`
}

// Keys are a person's unwrapped keys: Data seals their events, Pseudonym
// keys the HMAC that pseudonymizes them for analytics.
type Keys struct {
	Data      seal.Key `json:"data"`
	Pseudonym seal.Key `json:"pseudonym"`
}

// Forget drops the ciphers seal keeps prepared for k (see seal.Forget):
// what a cache of keys does when their person is erased.
func (k Keys) Forget() {
	seal.Forget(k.Data)
	seal.Forget(k.Pseudonym)
}

// Erased is the broadcast sent when a person's keys are destroyed.
type Erased struct {
	Tenant string `json:"tenant"`
	Person string `json:"subject"` // the data subject; "subject" on the wire
}

type cacheKey struct{ tenant, person string }

type entry struct {
	keys  Keys
	found bool
	// erased is final: an erased person never has keys again, so neither
	// Get nor GetOrCreate asks the key service once it is known.
	erased bool
}

// Cache fetches keys from the key service and keeps them until the person
// is erased. It remembers "no keys" and "erased" too, so reads of an erased
// person's history do not ask again and again. It holds a bounded number of
// people (an LRU): a person that left is asked of the key service again
// on its next use, which answers "erased" for an erased one as surely as
// the cache did, so the bound never serves an erased person's keys. It is
// safe for concurrent use.
type Cache struct {
	nc      *nats.Conn
	sub     *nats.Subscription
	entries *LRU[cacheKey, entry]

	mu      sync.Mutex
	onErase []*func(Erased)
}

// NewCache returns a cache of DefaultCacheSize people listening for
// erasures on nc.
func NewCache(nc *nats.Conn) (*Cache, error) {
	return NewCacheSize(nc, DefaultCacheSize)
}

// NewCacheSize returns a cache of size people (DefaultCacheSize when size
// is 0 or less) listening for erasures on nc.
func NewCacheSize(nc *nats.Conn, size int) (*Cache, error) {
	c := &Cache{nc: nc, entries: NewLRU[cacheKey, entry](size)}
	sub, err := nc.Subscribe(ErasedSubject, func(m *nats.Msg) {
		var e Erased
		if json.Unmarshal(m.Data, &e) != nil {
			return
		}
		c.Evict(e)
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe %s: %w", ErasedSubject, err)
	}
	c.sub = sub
	return c, nil
}

// OnErase registers fn to run after every eviction, so a service can drop
// what it derived from the person's keys (read models, sessions). The
// returned remove unregisters fn, for a service that stops while the cache
// lives on; fn may still be running when it returns.
func (c *Cache) OnErase(fn func(Erased)) (remove func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	h := &fn
	c.onErase = append(c.onErase, h)
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		// A fresh slice: Evict may be ranging over the one it copied.
		c.onErase = slices.DeleteFunc(slices.Clone(c.onErase), func(g *func(Erased)) bool { return g == h })
	}
}

// Evict forgets the person's keys, remembers that they are erased, and runs
// the OnErase callbacks.
func (c *Cache) Evict(e Erased) {
	if v, ok, _ := c.entries.Get(cacheKey{e.Tenant, e.Person}); ok && v.found {
		v.keys.Forget()
	}
	c.entries.Replace(cacheKey{e.Tenant, e.Person}, entry{erased: true})
	c.mu.Lock()
	fns := c.onErase
	c.mu.Unlock()
	for _, fn := range fns {
		(*fn)(e)
	}
}

// Get returns the person's keys, ErrNotFound when they have none, or
// ErrErased (which is also ErrNotFound) when the person was erased.
func (c *Cache) Get(ctx context.Context, tenant, person string) (Keys, error) {
	return c.get(ctx, Request{Tenant: tenant, Person: person})
}

// GetOrCreate returns the person's keys, creating them when they have
// none. For an erased person it returns ErrErased and creates nothing.
func (c *Cache) GetOrCreate(ctx context.Context, tenant, person string) (Keys, error) {
	return c.get(ctx, Request{Tenant: tenant, Person: person, Create: true})
}

func (c *Cache) get(ctx context.Context, req Request) (Keys, error) {
	k := cacheKey{req.Tenant, req.Person}
	e, ok, stamp := c.entries.Get(k)
	switch {
	case ok && e.erased:
		return Keys{}, errErased
	case ok && e.found:
		return e.keys, nil
	case ok && !req.Create:
		return Keys{}, ErrNotFound
	}
	var keys Keys
	err := rpc.Call(ctx, c.nc, GetSubject, req, &keys)
	switch {
	case rpc.CodeOf(err) == rpc.CodeGone:
		c.entries.Add(k, entry{erased: true}, stamp)
		return Keys{}, errErased
	case rpc.CodeOf(err) == rpc.CodeNotFound:
		c.entries.Add(k, entry{}, stamp)
		return Keys{}, ErrNotFound
	case rpc.CodeOf(err) == rpc.CodeUnreadable:
		return Keys{}, fmt.Errorf("get keys: %w: %w", ErrUnreadable, err)
	case err != nil:
		return Keys{}, fmt.Errorf("get keys: %w", err)
	}
	c.entries.Add(k, entry{keys: keys, found: true}, stamp)
	return keys, nil
}

// Erased reports whether the person was erased: their keys destroyed,
// never to be made again. A person without keys for any other reason
// (never made, expired, a key store restored empty or a replica behind)
// is not erased, nor is one whose keys the key service cannot read. It
// asks the key service with a Probe unless the cache knows, and caches
// nothing: asked of many people not about, it pushes no one's keys out
// and holds none it does not use. Errors are the key service's.
func (c *Cache) Erased(ctx context.Context, tenant, person string) (bool, error) {
	if e, ok, _ := c.entries.Get(cacheKey{tenant, person}); ok && (e.erased || e.found) {
		return e.erased, nil
	}
	err := rpc.Call(ctx, c.nc, GetSubject, Request{Tenant: tenant, Person: person, Probe: true}, nil)
	switch code := rpc.CodeOf(err); {
	case err == nil, code == rpc.CodeNotFound, code == rpc.CodeUnreadable:
		return false, nil
	case code == rpc.CodeGone:
		return true, nil
	}
	return false, fmt.Errorf("probe keys: %w", err)
}

// Len returns how many people the cache holds.
func (c *Cache) Len() int { return c.entries.Len() }

// Close stops listening for erasures.
func (c *Cache) Close() error {
	return c.sub.Unsubscribe()
}
