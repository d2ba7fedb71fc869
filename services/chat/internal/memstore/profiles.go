package memstore

import (
	"context"
	"maps"
	"slices"
	"strings"
	"sync"
)

// Profiles is app.ProfileStore in memory, holding one version of each
// profile. The zero value is empty and ready; it is safe for concurrent
// use.
type Profiles struct {
	mu       sync.Mutex
	profiles map[string][]byte
}

// Save implements app.ProfileStore.
func (p *Profiles) Save(_ context.Context, tenant, visitor string, sealed []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.profiles == nil {
		p.profiles = make(map[string][]byte)
	}
	p.profiles[conv(tenant, visitor)] = slices.Clone(sealed)
	return nil
}

// Load implements app.ProfileStore.
func (p *Profiles) Load(_ context.Context, tenant string, visitors []string) (map[string][]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string][]byte)
	for _, v := range visitors {
		if b, ok := p.profiles[conv(tenant, v)]; ok {
			out[v] = slices.Clone(b)
		}
	}
	return out, nil
}

// Remove implements app.ProfileStore.
func (p *Profiles) Remove(_ context.Context, tenant, visitor string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.profiles, conv(tenant, visitor))
	return nil
}

// Visitors implements app.ProfileStore.
func (p *Profiles) Visitors(_ context.Context, fn func(tenant, visitor string) error) error {
	p.mu.Lock()
	keys := slices.Collect(maps.Keys(p.profiles))
	p.mu.Unlock()
	for _, k := range keys {
		tenant, visitor, _ := strings.Cut(k, ".")
		if err := fn(tenant, visitor); err != nil {
			return err
		}
	}
	return nil
}
