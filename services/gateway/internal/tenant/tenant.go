// Package tenant is the gateway's tenant registry: a JetStream KV bucket
// owned by the gateway, mirrored in memory (pkg/kvmirror) so that checking a
// tenant on every request never touches the bus.
package tenant

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/kvmirror"
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
	d := DefaultLimits
	return Limits{
		SessionsPerPrincipal:             cmp.Or(l.SessionsPerPrincipal, d.SessionsPerPrincipal),
		Sessions:                         cmp.Or(l.Sessions, d.Sessions),
		RegistrationsPerMinute:           cmp.Or(l.RegistrationsPerMinute, d.RegistrationsPerMinute),
		RegistrationsPerAddressPerMinute: cmp.Or(l.RegistrationsPerAddressPerMinute, d.RegistrationsPerAddressPerMinute),
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

// Registry is the set of tenants. It is safe for concurrent use; reads are
// served from a mirror of the bucket (pkg/kvmirror) and reflect this
// instance's own writes at once and other instances' writes as soon as the
// mirror's watch delivers them.
type Registry struct {
	kv      jetstream.KeyValue
	tenants *kvmirror.Mirror[record]
}

// Open creates the bucket with the definition of o when missing, loads
// every tenant and keeps watching for changes until Close. A bucket that
// exists with another definition is used as it is, with a warning: the
// gateway may not reconfigure it (stream.CreateBuckets).
func Open(ctx context.Context, js jetstream.JetStream, o stream.Options, log *slog.Logger) (*Registry, error) {
	kv, err := stream.OpenBucket(ctx, js, o, log, Bucket)
	if err != nil {
		return nil, err
	}
	// The mirror outlives ctx, which only bounds Open; Close stops it.
	m := kvmirror.Start(context.WithoutCancel(ctx), js, kvmirror.Config[record]{Bucket: Bucket, Log: log})
	if err := m.Wait(ctx); err != nil {
		_ = m.Close()
		return nil, err
	}
	return &Registry{kv: kv, tenants: m}, nil
}

func (r *Registry) set(t Tenant, revision uint64) {
	r.tenants.Set(t.ID, record{Name: t.Name, Limits: t.Limits}, revision)
}

// Exists reports whether the tenant id is registered.
func (r *Registry) Exists(id string) bool {
	_, ok := r.tenants.Get(id)
	return ok
}

// Limits returns the effective limits of the tenant id: its own where set,
// DefaultLimits elsewhere, and DefaultLimits for an unknown tenant.
func (r *Registry) Limits(id string) Limits {
	rec, _ := r.tenants.Get(id)
	return rec.Limits.Effective()
}

// List returns every tenant, sorted by id.
func (r *Registry) List() []Tenant {
	var ts []Tenant
	r.tenants.Range(func(id string, rec record) bool {
		ts = append(ts, Tenant{ID: id, Name: rec.Name, Limits: rec.Limits})
		return true
	})
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

// Stopped is closed when the registry stopped following the bucket: by
// Close, or having failed for longer than pkg/retry's GiveUp, which Err
// then returns.
func (r *Registry) Stopped() <-chan struct{} { return r.tenants.Done() }

// Err returns why the registry stopped following the bucket by itself, or
// nil.
func (r *Registry) Err() error { return r.tenants.Err() }

// Health returns nil while the registry follows the bucket, and the
// failure of its watch otherwise (kvmirror.Mirror.Health).
func (r *Registry) Health() error { return r.tenants.Health() }

// Close stops watching for changes, and returns Err.
func (r *Registry) Close() error { return r.tenants.Close() }
