package memstore

import (
	"context"
	"sync"

	"github.com/parley-chat/parley/services/chat/internal/app"
)

// View is an app.View in memory. The zero value is empty and ready; it is
// safe for concurrent use.
type View struct {
	mu      sync.Mutex
	entries map[viewKey]app.ViewEntry
	rev     uint64
	applied uint64
	// expiring is what SetExpiring recorded.
	expiring bool
}

type viewKey struct {
	tenant, visitor, id string
	open                bool
}

func keyOf(e app.ViewEntry) viewKey { return viewKey{e.Tenant, e.Visitor, e.ID, e.Open} }

// Load implements app.View.
func (v *View) Load(_ context.Context, fn func(app.ViewEntry) error) (uint64, error) {
	v.mu.Lock()
	var open []app.ViewEntry
	for k, e := range v.entries {
		if k.open {
			open = append(open, e)
		}
	}
	applied := v.applied
	v.mu.Unlock()
	for _, e := range open {
		if err := fn(e); err != nil {
			return 0, err
		}
	}
	return applied, nil
}

// Get implements app.View.
func (v *View) Get(_ context.Context, tenant, visitor, id string) (app.ViewEntry, bool, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, open := range []bool{false, true} {
		if e, ok := v.entries[viewKey{tenant, visitor, id, open}]; ok {
			return e, true, nil
		}
	}
	return app.ViewEntry{}, false, nil
}

// Closed implements app.View.
func (v *View) Closed(_ context.Context, tenant, visitor string, fn func(app.ClosedKey) error) error {
	v.mu.Lock()
	var keys []app.ClosedKey
	for k := range v.entries {
		if !k.open && (tenant == "" || k.tenant == tenant) && (visitor == "" || k.visitor == visitor) {
			keys = append(keys, app.ClosedKey{Tenant: k.tenant, Visitor: k.visitor, ID: k.id})
		}
	}
	v.mu.Unlock()
	for _, k := range keys {
		if err := fn(k); err != nil {
			return err
		}
	}
	return nil
}

// Put implements app.View.
func (v *View) Put(_ context.Context, e app.ViewEntry) (uint64, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.entries == nil {
		v.entries = make(map[viewKey]app.ViewEntry)
	}
	k := keyOf(e)
	// A write over another revision than the last stops where the
	// JetStream adapter's compare-and-set would: at an entry as new as e.
	if held, ok := v.entries[k]; ok && held.Rev != e.Rev && held.Version >= e.Version {
		return held.Rev, nil
	}
	v.rev++
	e.Rev = v.rev
	v.entries[k] = e
	if !e.Open {
		delete(v.entries, viewKey{e.Tenant, e.Visitor, e.ID, true})
	}
	return e.Rev, nil
}

// Remove implements app.View.
func (v *View) Remove(_ context.Context, tenant, id string) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	for k := range v.entries {
		if k.tenant == tenant && k.id == id {
			delete(v.entries, k)
		}
	}
	return nil
}

// Applied implements app.View.
func (v *View) Applied(_ context.Context, seq uint64) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.applied = seq
	return nil
}

// Untimed implements app.View: the closed entries whose write set no
// Expires.
func (v *View) Untimed(_ context.Context, fn func(app.ViewEntry) error) error {
	v.mu.Lock()
	var es []app.ViewEntry
	for k, e := range v.entries {
		if !k.open && e.Expires.IsZero() {
			es = append(es, e)
		}
	}
	v.mu.Unlock()
	for _, e := range es {
		if err := fn(e); err != nil {
			return err
		}
	}
	return nil
}

// Expiring implements app.View.
func (v *View) Expiring(context.Context) (bool, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.expiring, nil
}

// SetExpiring implements app.View.
func (v *View) SetExpiring(context.Context) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.expiring = true
	return nil
}
