package memory

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/parley-chat/parley/pkg/audit"
	"github.com/parley-chat/parley/pkg/privacyapi"

	"github.com/parley-chat/parley/services/privacy/internal/app"
)

// SettingsStore keeps tenant settings in memory. It is safe for concurrent
// use.
type SettingsStore struct {
	mu       sync.Mutex
	byTenant map[string]privacyapi.Settings
}

// NewSettingsStore returns an empty store.
func NewSettingsStore() *SettingsStore {
	return &SettingsStore{byTenant: make(map[string]privacyapi.Settings)}
}

// Get returns the tenant's settings; found is false when none were stored.
func (s *SettingsStore) Get(_ context.Context, tenant string) (privacyapi.Settings, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.byTenant[tenant]
	return st, ok, nil
}

// Put stores the tenant's settings.
func (s *SettingsStore) Put(_ context.Context, tenant string, st privacyapi.Settings) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.byTenant[tenant] = st
	return nil
}

type storedEntry struct {
	seq   uint64
	entry audit.Entry
}

// AuditLog keeps the tenants' audit chains in memory, numbered as one
// stream: an append expecting another last entry than the chain's is
// refused with app.ErrConflict, and an entry appended again (same hash) is
// stored once. It is safe for concurrent use.
type AuditLog struct {
	mu       sync.Mutex
	seq      uint64
	byTenant map[string][]storedEntry
}

// NewAuditLog returns an empty log.
func NewAuditLog() *AuditLog {
	return &AuditLog{byTenant: make(map[string][]storedEntry)}
}

// Head returns the tenant's last entry and the number of entries up to it.
func (l *AuditLog) Head(_ context.Context, tenant string) (app.AuditHead, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	chain := l.byTenant[tenant]
	if len(chain) == 0 {
		return app.AuditHead{}, nil
	}
	last := chain[len(chain)-1]
	return app.AuditHead{Seq: last.seq, Hash: last.entry.Hash, Count: len(chain)}, nil
}

// Append stores e when the tenant's last entry has sequence last (0: none).
func (l *AuditLog) Append(_ context.Context, e audit.Entry, last uint64) (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	chain := l.byTenant[e.Tenant]
	var head uint64
	if n := len(chain); n > 0 {
		if chain[n-1].entry.Hash == e.Hash {
			return chain[n-1].seq, nil
		}
		head = chain[n-1].seq
	}
	if head != last {
		return 0, fmt.Errorf("append to the chain of %s: %w", e.Tenant, app.ErrConflict)
	}
	l.seq++
	l.byTenant[e.Tenant] = append(chain, storedEntry{seq: l.seq, entry: e})
	return l.seq, nil
}

// List returns up to limit of the tenant's entries made at or after since
// (all when zero), oldest first, and whether more follow.
func (l *AuditLog) List(_ context.Context, tenant string, since time.Time, limit int) ([]audit.Entry, bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var entries []audit.Entry
	for _, se := range l.byTenant[tenant] {
		if se.entry.At.Before(since) {
			continue
		}
		if len(entries) == limit {
			return entries, true, nil
		}
		entries = append(entries, se.entry)
	}
	return entries, false, nil
}

// Checkpoints keeps each tenant's latest audit checkpoint in memory. It is
// safe for concurrent use.
type Checkpoints struct {
	mu       sync.Mutex
	seq      uint64
	byTenant map[string]storedCheckpoint
}

type storedCheckpoint struct {
	seq uint64
	cp  audit.Checkpoint
}

// NewCheckpoints returns an empty store.
func NewCheckpoints() *Checkpoints {
	return &Checkpoints{byTenant: make(map[string]storedCheckpoint)}
}

// Latest returns the tenant's latest checkpoint; found is false when there
// is none.
func (c *Checkpoints) Latest(_ context.Context, tenant string) (audit.Checkpoint, uint64, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	sc, ok := c.byTenant[tenant]
	return sc.cp, sc.seq, ok, nil
}

// Advance stores cp unless the stored checkpoint counts as many entries or
// more.
func (c *Checkpoints) Advance(_ context.Context, cp audit.Checkpoint) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cur, ok := c.byTenant[cp.Tenant]; ok && cur.cp.Count >= cp.Count {
		return nil
	}
	c.seq++
	c.byTenant[cp.Tenant] = storedCheckpoint{seq: c.seq, cp: cp}
	return nil
}
