// Package memory holds in-memory adapters of the privacy service's ports,
// for tests of the use cases that need no bus. Each passes the same
// conformance suite as its JetStream adapter (internal/storetest), so a
// use case tested on it behaves the same on the bus.
package memory

import (
	"context"
	"fmt"
	"sync"

	"github.com/parley-chat/parley/services/privacy/internal/keyring"
)

type subjectID struct{ tenant, subject string }

// slot is what the store holds for a subject: a record or a tombstone.
type slot struct {
	rec  keyring.Record
	tomb *keyring.Tombstone
}

// KeyStore keeps key records in memory with the guarantees of the KEYS
// stream: a subject's first record is its only one, a tombstone takes its
// place for good, and only records wrapped under the store's KEK are
// accepted. It is safe for concurrent use.
type KeyStore struct {
	kekID string

	mu    sync.Mutex
	slots map[subjectID]slot
}

// NewKeyStore returns an empty store for records wrapped under the KEK
// named kekID.
func NewKeyStore(kekID string) *KeyStore {
	return &KeyStore{kekID: kekID, slots: make(map[subjectID]slot)}
}

// Load returns the subject's record, keyring.ErrNotFound when there is
// none, or keyring.ErrErased when the subject was erased.
func (s *KeyStore) Load(_ context.Context, tenant, subject string) (keyring.Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sl, ok := s.slots[subjectID{tenant, subject}]
	switch {
	case !ok:
		return keyring.Record{}, fmt.Errorf("load %s/%s: %w", tenant, subject, keyring.ErrNotFound)
	case sl.tomb != nil:
		return keyring.Record{}, fmt.Errorf("load %s/%s: %w", tenant, subject, keyring.ErrErased)
	}
	return sl.rec, nil
}

// Create stores the subject's first record; keyring.ErrExists when the
// subject has a record or a tombstone, keyring.ErrKEKRetired when rec is
// wrapped under another KEK than the store's.
func (s *KeyStore) Create(_ context.Context, tenant, subject string, rec keyring.Record) error {
	if rec.KEKID != s.kekID {
		return fmt.Errorf("create %s/%s: record under kek %s, store under %s: %w", tenant, subject, rec.KEKID, s.kekID, keyring.ErrKEKRetired)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	id := subjectID{tenant, subject}
	if _, ok := s.slots[id]; ok {
		return fmt.Errorf("create %s/%s: %w", tenant, subject, keyring.ErrExists)
	}
	s.slots[id] = slot{rec: rec}
	return nil
}

// Destroy replaces the subject's record with tomb, KeysDestroyed set when
// there was a record, and returns it; for a subject erased before, it
// returns the earlier tombstone and changes nothing.
func (s *KeyStore) Destroy(_ context.Context, tenant, subject string, tomb keyring.Tombstone) (keyring.Tombstone, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := subjectID{tenant, subject}
	sl, ok := s.slots[id]
	if ok && sl.tomb != nil {
		return *sl.tomb, nil
	}
	tomb.KeysDestroyed = ok
	s.slots[id] = slot{tomb: &tomb}
	return tomb, nil
}
