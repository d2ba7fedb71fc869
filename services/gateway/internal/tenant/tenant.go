// Package tenant is the gateway's tenant registry: a JetStream KV bucket
// owned by the gateway, mirrored in memory by a watcher so that checking a
// tenant on every request never touches the bus.
package tenant

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/stream"
)

// Bucket is the name of the KV bucket holding the tenants.
const Bucket = stream.TenantsBucket

// MaxNameLen is the longest tenant name, in characters.
const MaxNameLen = 200

// ErrInvalid is wrapped by the errors of Put for a bad id or name.
var ErrInvalid = errors.New("invalid tenant")

// Tenant is one support organisation.
type Tenant struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// Limits are what the operator set; a zero field takes its default
	// (see Limits.Effective).
	Limits Limits `json:"limits"`
}

// Limits bound what one tenant's clients can make the gateway hold, so that
// no client and no tenant can starve the others. The operator sets them; a
// field left 0 takes its default (DefaultLimits).
type Limits struct {
	// SessionsPerPrincipal bounds the live WebSocket sessions of one
	// principal (one visitor, one agent).
	SessionsPerPrincipal int `json:"sessions_per_principal,omitempty"`
	// Sessions bounds the live WebSocket sessions of the whole tenant.
	Sessions int `json:"sessions,omitempty"`
	// RegistrationsPerMinute bounds the visitors the tenant's site may
	// register, from all addresses together.
	RegistrationsPerMinute int `json:"registrations_per_minute,omitempty"`
	// RegistrationsPerAddressPerMinute bounds the visitors one client
	// address may register, so that one client's flood cannot use up the
	// tenant's RegistrationsPerMinute.
	RegistrationsPerAddressPerMinute int `json:"registrations_per_address_per_minute,omitempty"`
}

// DefaultLimits are the limits of a tenant that set none.
var DefaultLimits = Limits{
	SessionsPerPrincipal:             10,
	Sessions:                         10_000,
	RegistrationsPerMinute:           6_000,
	RegistrationsPerAddressPerMinute: 30,
}

// maxLimit bounds every field of Limits: past it a limit protects nothing.
const maxLimit = 1_000_000

// Effective returns l with each unset field at its default.
func (l Limits) Effective() Limits {
	or := func(v, def int) int {
		if v == 0 {
			return def
		}
		return v
	}
	d := DefaultLimits
	return Limits{
		SessionsPerPrincipal:             or(l.SessionsPerPrincipal, d.SessionsPerPrincipal),
		Sessions:                         or(l.Sessions, d.Sessions),
		RegistrationsPerMinute:           or(l.RegistrationsPerMinute, d.RegistrationsPerMinute),
		RegistrationsPerAddressPerMinute: or(l.RegistrationsPerAddressPerMinute, d.RegistrationsPerAddressPerMinute),
	}
}

func (l Limits) validate() error {
	for _, f := range []struct {
		name string
		v    int
	}{
		{"sessions_per_principal", l.SessionsPerPrincipal},
		{"sessions", l.Sessions},
		{"registrations_per_minute", l.RegistrationsPerMinute},
		{"registrations_per_address_per_minute", l.RegistrationsPerAddressPerMinute},
	} {
		if f.v < 0 || f.v > maxLimit {
			return fmt.Errorf("%w: limits.%s must be 0 (the default) to %d", ErrInvalid, f.name, maxLimit)
		}
	}
	return nil
}

// Validate reports what is wrong with t, wrapping ErrInvalid.
func (t Tenant) Validate() error {
	switch {
	case !auth.ValidTenantID(t.ID):
		return fmt.Errorf("%w: id must be 1-63 of [a-z0-9-]", ErrInvalid)
	case strings.TrimSpace(t.Name) == "":
		return fmt.Errorf("%w: name is required", ErrInvalid)
	case utf8.RuneCountInString(t.Name) > MaxNameLen:
		return fmt.Errorf("%w: name is longer than %d characters", ErrInvalid, MaxNameLen)
	}
	return t.Limits.validate()
}

type record struct {
	Name   string `json:"name"`
	Limits Limits `json:"limits,omitzero"`
}

type entry struct {
	name     string
	limits   Limits
	revision uint64
}

// Registry is the set of tenants. It is safe for concurrent use; reads are
// served from memory and reflect this instance's own writes at once and
// other instances' writes as soon as the watcher delivers them.
type Registry struct {
	kv      jetstream.KeyValue
	watcher jetstream.KeyWatcher
	done    chan struct{}

	mu      sync.RWMutex
	tenants map[string]entry
}

// Open creates the bucket with the definition of o when missing, loads
// every tenant and keeps watching for changes until Close. A bucket that
// exists with another definition is used as it is, with a warning: the
// gateway may not reconfigure it (stream.CreateBuckets).
func Open(ctx context.Context, js jetstream.JetStream, o stream.Options, log *slog.Logger) (*Registry, error) {
	switch err := stream.CreateBuckets(ctx, js, o, Bucket); {
	case errors.Is(err, stream.ErrDrift):
		log.Warn("tenant bucket differs from this version's definition", "err", err)
	case err != nil:
		return nil, err
	}
	kv, err := js.KeyValue(ctx, Bucket)
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", Bucket, err)
	}
	// The watcher outlives ctx, which only bounds Open; Close stops it.
	w, err := kv.WatchAll(context.WithoutCancel(ctx))
	if err != nil {
		return nil, fmt.Errorf("watch bucket %s: %w", Bucket, err)
	}
	r := &Registry{kv: kv, watcher: w, done: make(chan struct{}), tenants: make(map[string]entry)}
	// The watcher sends every current value, then nil, then live updates.
	for loaded := false; !loaded; {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return nil, fmt.Errorf("watch bucket %s: watcher stopped", Bucket)
			}
			if e == nil {
				loaded = true
				continue
			}
			r.apply(e)
		case <-ctx.Done():
			w.Stop()
			return nil, fmt.Errorf("load bucket %s: %w", Bucket, ctx.Err())
		}
	}
	go r.watch()
	return r, nil
}

func (r *Registry) watch() {
	defer close(r.done)
	for e := range r.watcher.Updates() {
		if e != nil {
			r.apply(e)
		}
	}
}

func (r *Registry) apply(e jetstream.KeyValueEntry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cur, ok := r.tenants[e.Key()]
	if ok && cur.revision >= e.Revision() {
		// This instance's own write got here before the watcher did.
		return
	}
	if e.Operation() != jetstream.KeyValuePut {
		delete(r.tenants, e.Key())
		return
	}
	var rec record
	if json.Unmarshal(e.Value(), &rec) != nil {
		return
	}
	r.tenants[e.Key()] = entry{name: rec.Name, limits: rec.Limits, revision: e.Revision()}
}

func (r *Registry) set(t Tenant, revision uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if cur, ok := r.tenants[t.ID]; !ok || cur.revision < revision {
		r.tenants[t.ID] = entry{name: t.Name, limits: t.Limits, revision: revision}
	}
}

// Exists reports whether the tenant id is registered.
func (r *Registry) Exists(id string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	_, ok := r.tenants[id]
	return ok
}

// Limits returns the effective limits of the tenant id: its own where set,
// DefaultLimits elsewhere, and DefaultLimits for an unknown tenant.
func (r *Registry) Limits(id string) Limits {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.tenants[id].limits.Effective()
}

// List returns every tenant, sorted by id.
func (r *Registry) List() []Tenant {
	r.mu.RLock()
	ts := make([]Tenant, 0, len(r.tenants))
	for id, e := range r.tenants {
		ts = append(ts, Tenant{ID: id, Name: e.name, Limits: e.limits})
	}
	r.mu.RUnlock()
	slices.SortFunc(ts, func(a, b Tenant) int { return strings.Compare(a.ID, b.ID) })
	return ts
}

// Put creates t, or replaces its name and limits, and reports whether it was created. A t that
// fails Validate returns an error wrapping ErrInvalid and writes nothing.
func (r *Registry) Put(ctx context.Context, t Tenant) (created bool, err error) {
	if err := t.Validate(); err != nil {
		return false, err
	}
	val, err := json.Marshal(record{Name: t.Name, Limits: t.Limits})
	if err != nil {
		return false, fmt.Errorf("encode tenant %s: %w", t.ID, err)
	}
	rev, err := r.kv.Create(ctx, t.ID, val)
	if err == nil {
		r.set(t, rev)
		return true, nil
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return false, fmt.Errorf("create tenant %s: %w", t.ID, err)
	}
	if rev, err = r.kv.Put(ctx, t.ID, val); err != nil {
		return false, fmt.Errorf("update tenant %s: %w", t.ID, err)
	}
	r.set(t, rev)
	return false, nil
}

// Ensure creates t when no tenant has its id; an existing one keeps its name.
func (r *Registry) Ensure(ctx context.Context, t Tenant) error {
	if err := t.Validate(); err != nil {
		return err
	}
	val, err := json.Marshal(record{Name: t.Name, Limits: t.Limits})
	if err != nil {
		return fmt.Errorf("encode tenant %s: %w", t.ID, err)
	}
	rev, err := r.kv.Create(ctx, t.ID, val)
	switch {
	case errors.Is(err, jetstream.ErrKeyExists):
		return nil
	case err != nil:
		return fmt.Errorf("create tenant %s: %w", t.ID, err)
	}
	r.set(t, rev)
	return nil
}

// Close stops watching for changes.
func (r *Registry) Close() error {
	err := r.watcher.Stop()
	<-r.done
	if err != nil {
		return fmt.Errorf("stop watching %s: %w", Bucket, err)
	}
	return nil
}
