// Package memstore holds the chat service's storage ports in memory: an
// app.EventStore and an app.View that behave as the JetStream adapters do
// (the storetest suite checks both), for use-case tests that need no bus.
package memstore

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/parley-chat/parley/pkg/event"

	"github.com/parley-chat/parley/services/chat/internal/app"
)

// Store is an app.EventStore in memory. The zero value is empty and ready;
// it is safe for concurrent use.
type Store struct {
	// Now, when set, is the clock by which the store removes an event
	// appended with a ttl once it expires, as JetStream does; nil keeps
	// every event, which the read models still let go by their own clock.
	Now func() time.Time

	mu     sync.Mutex
	events []app.Record
	// last is each conversation's last sequence, by "<tenant>.<id>".
	last map[string]uint64
	// ids finds an event by its id, as JetStream's duplicate window does.
	ids map[string]int
	// deleted are the sequences Delete removed: reads skip them.
	deleted map[uint64]bool
}

func conv(tenant, id string) string { return tenant + "." + id }

// Append implements app.EventStore.
func (s *Store) Append(_ context.Context, e event.Envelope, version uint64, ttl time.Duration) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.last == nil {
		s.last, s.ids = make(map[string]uint64), make(map[string]int)
	}
	c := conv(e.Tenant, e.Aggregate)
	if i, ok := s.ids[e.ID]; ok {
		held := s.events[i]
		switch {
		case conv(held.Event.Tenant, held.Event.Aggregate) != c:
			return 0, fmt.Errorf("append to %s: %w", c, app.ErrDuplicateID)
		case s.removedLocked(held, s.now()):
			// As JetStream's duplicate window, which still knows the id, and
			// checks it first on a replicated stream: nothing to answer from.
			return 0, fmt.Errorf("append to %s: duplicate of removed sequence %d: %w", c, held.Seq, app.ErrDuplicateID)
		case string(held.Event.Body) != string(e.Body):
			return 0, fmt.Errorf("append to %s: %w", c, app.ErrStale)
		}
		return held.Seq, nil
	}
	if s.lastLocked(c) != version {
		return 0, fmt.Errorf("append to %s after %d: %w", c, version, app.ErrStale)
	}
	r := app.Record{Seq: uint64(len(s.events)) + 1, Event: e}
	if ttl > 0 {
		r.Expires = e.At.Add(max(ttl.Truncate(time.Second), time.Second))
	}
	s.events = append(s.events, r)
	s.ids[e.ID] = len(s.events) - 1
	s.last[c] = r.Seq
	return r.Seq, nil
}

// Last implements app.EventStore.
func (s *Store) Last(_ context.Context, tenant, conversation string) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastLocked(conv(tenant, conversation)), nil
}

// Head implements app.EventStore.
func (s *Store) Head(context.Context) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return uint64(len(s.events)), nil
}

// Next implements app.EventStore.
func (s *Store) Next(_ context.Context, after uint64) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	for _, r := range s.events[min(after, uint64(len(s.events))):] {
		if !s.removedLocked(r, now) {
			return r.Seq, nil
		}
	}
	return 0, nil
}

// lastLocked returns the sequence of conversation c's last event the store
// holds; s.mu is held.
func (s *Store) lastLocked(c string) uint64 {
	last := s.last[c]
	if s.Now == nil {
		return last
	}
	now := s.Now()
	for i := int(last) - 1; i >= 0; i-- {
		r := s.events[i]
		if conv(r.Event.Tenant, r.Event.Aggregate) == c && !s.removedLocked(r, now) {
			return r.Seq
		}
	}
	return 0
}

// removedLocked reports whether r is gone from the store at now: deleted,
// or expired by its ttl when the store keeps a clock; s.mu is held.
func (s *Store) removedLocked(r app.Record, now time.Time) bool {
	return s.deleted[r.Seq] || s.Now != nil && !r.Expires.IsZero() && !now.Before(r.Expires)
}

// Delete implements app.EventStore.
func (s *Store) Delete(_ context.Context, seq uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if seq == 0 || seq > uint64(len(s.events)) {
		return nil
	}
	if s.deleted == nil {
		s.deleted = make(map[uint64]bool)
	}
	s.deleted[seq] = true
	return nil
}

// Load implements app.EventStore.
func (s *Store) Load(ctx context.Context, tenant, conversation string, after uint64) ([]app.Record, error) {
	rs, _, err := s.Read(ctx, tenant, conversation, after, math.MaxInt)
	return rs, err
}

// Read implements app.EventStore, a scan of every event: tests hold few.
func (s *Store) Read(_ context.Context, tenant, conversation string, after uint64, limit int) ([]app.Record, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	var out []app.Record
	for _, r := range s.events[min(after, uint64(len(s.events))):] {
		if r.Event.Tenant != tenant || r.Event.Aggregate != conversation || s.removedLocked(r, now) {
			continue
		}
		if len(out) == limit {
			return out, true, nil
		}
		out = append(out, r)
	}
	return out, false, nil
}

// Since returns the events after sequence after, in order: what a follower
// of the store is handed.
func (s *Store) Since(after uint64) []app.Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	return slices.DeleteFunc(slices.Clone(s.events[min(after, uint64(len(s.events))):]), func(r app.Record) bool { return s.removedLocked(r, now) })
}

// now is the store's clock, the zero time when it keeps none.
func (s *Store) now() time.Time {
	if s.Now == nil {
		return time.Time{}
	}
	return s.Now()
}
