package memory

import (
	"context"
	"maps"
	"slices"
	"sync"

	"github.com/parley-chat/parley/services/privacy/internal/app"
)

// ErasureRecords keeps erasures by id in memory. It is safe for concurrent
// use.
type ErasureRecords struct {
	mu       sync.Mutex
	entries  map[string]app.ErasureRef
	pending  map[string]bool
	complete bool
}

// NewErasureRecords returns empty records.
func NewErasureRecords() *ErasureRecords {
	return &ErasureRecords{entries: make(map[string]app.ErasureRef), pending: make(map[string]bool)}
}

// Record stores r unless its id has an entry, and marks it pending when
// pending is true.
func (s *ErasureRecords) Record(_ context.Context, r app.ErasureRef, pending bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.entries[r.ID]; !ok {
		s.entries[r.ID] = r
	}
	if pending {
		s.pending[r.ID] = true
	}
	return nil
}

// Done unmarks the erasure id as pending.
func (s *ErasureRecords) Done(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.pending, id)
	return nil
}

// Find returns the entry of the erasure id.
func (s *ErasureRecords) Find(_ context.Context, id string) (app.ErasureRef, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.entries[id]
	return r, ok, nil
}

// Pending returns the erasures marked pending.
func (s *ErasureRecords) Pending(context.Context) ([]app.ErasureRef, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []app.ErasureRef
	for _, id := range slices.Sorted(maps.Keys(s.pending)) {
		out = append(out, s.entries[id])
	}
	return out, nil
}

// Complete reports whether MarkComplete was called.
func (s *ErasureRecords) Complete(context.Context) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.complete, nil
}

// MarkComplete records that the entries hold every erasure.
func (s *ErasureRecords) MarkComplete(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.complete = true
	return nil
}
