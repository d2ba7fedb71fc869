package signin

import (
	"context"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/hashicorp/golang-lru/v2/simplelru"
	"golang.org/x/sync/singleflight"
)

// DiscoveryTTL is how long a provider's discovery document serves
// sign-ins before it is fetched again: endpoints seldom move, and the
// provider's key set, kept with it, fetches the keys again by itself when
// a token is signed with one it does not know.
const DiscoveryTTL = time.Hour

// MaxDiscovered bounds the providers a gateway keeps, one per issuer, the
// least recently used leaving first.
const MaxDiscovered = 1000

// discovery keeps each issuer's discovered provider for DiscoveryTTL, so
// that a provider's discovery document is fetched once per issuer and
// period whatever the number of sign-ins, and once for sign-ins that miss
// it at the same time. A failed discovery is not kept. It is safe for
// concurrent use.
type discovery struct {
	now    func() time.Time
	flight singleflight.Group

	mu   sync.Mutex
	kept *simplelru.LRU[string, discovered]
}

type discovered struct {
	op *oidc.Provider
	at time.Time
}

func newDiscovery(now func() time.Time) *discovery {
	kept, _ := simplelru.NewLRU[string, discovered](MaxDiscovered, nil) // fails only for a size <= 0
	return &discovery{now: now, kept: kept}
}

// provider returns issuer's provider, discovering it with ctx, which says
// which HTTP client calls out (oidc.ClientContext), when none is kept or
// the one kept is older than DiscoveryTTL.
func (d *discovery) provider(ctx context.Context, issuer string) (*oidc.Provider, error) {
	if op, ok := d.fresh(issuer); ok {
		return op, nil
	}
	// Not the caller's cancellation: others may wait for the same
	// discovery. The client's timeout bounds it.
	ctx = context.WithoutCancel(ctx)
	v, err, _ := d.flight.Do(issuer, func() (any, error) {
		if op, ok := d.fresh(issuer); ok {
			return op, nil
		}
		op, err := oidc.NewProvider(ctx, issuer)
		if err != nil {
			return nil, err
		}
		d.mu.Lock()
		d.kept.Add(issuer, discovered{op: op, at: d.now()})
		d.mu.Unlock()
		return op, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*oidc.Provider), nil
}

func (d *discovery) fresh(issuer string) (*oidc.Provider, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := d.kept.Get(issuer)
	if !ok || d.now().Sub(e.at) >= DiscoveryTTL {
		return nil, false
	}
	return e.op, true
}
