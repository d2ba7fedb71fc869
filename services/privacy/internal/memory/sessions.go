package memory

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/parley-chat/parley/services/privacy/internal/app"
)

// SessionStore keeps sessions in memory. Its entries do not expire: the
// tests that use it end well within a session's life. It is safe for
// concurrent use.
type SessionStore struct {
	mu       sync.Mutex
	tokens   map[string]string // token hash → family
	families map[string]storedFamily
}

type storedFamily struct {
	f   app.Family
	rev uint64
}

// NewSessionStore returns an empty store.
func NewSessionStore() *SessionStore {
	return &SessionStore{tokens: make(map[string]string), families: make(map[string]storedFamily)}
}

// Token returns the family of the token whose hash is h, or app.ErrNotFound.
func (s *SessionStore) Token(_ context.Context, h string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fam, ok := s.tokens[h]
	if !ok {
		return "", fmt.Errorf("session entry: %w", app.ErrNotFound)
	}
	return fam, nil
}

// PutToken records that the token whose hash is h is of family; a token
// stored already is refused with app.ErrConflict.
func (s *SessionStore) PutToken(_ context.Context, h, family string, _ time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.tokens[h]; ok {
		return fmt.Errorf("store session entry: %w", app.ErrConflict)
	}
	s.tokens[h] = family
	return nil
}

// Family returns the family id and its revision, or app.ErrNotFound.
func (s *SessionStore) Family(_ context.Context, id string) (app.Family, uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sf, ok := s.families[id]
	if !ok {
		return app.Family{}, 0, fmt.Errorf("session entry: %w", app.ErrNotFound)
	}
	return sf.f, sf.rev, nil
}

// PutFamily stores f when the family's revision is still rev (0: a new
// family), and returns app.ErrConflict otherwise.
func (s *SessionStore) PutFamily(_ context.Context, f app.Family, rev uint64, _ time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.families[f.ID].rev != rev {
		return fmt.Errorf("store session entry: %w", app.ErrConflict)
	}
	s.families[f.ID] = storedFamily{f: f, rev: rev + 1}
	return nil
}

// Families returns the ids of the person's families.
func (s *SessionStore) Families(_ context.Context, tenant, person string) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []string
	for id, sf := range s.families {
		if sf.f.Principal.Tenant == tenant && sf.f.Principal.ID == person {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// DeleteFamily deletes the family id and every token of it.
func (s *SessionStore) DeleteFamily(_ context.Context, _, _, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.families, id)
	for h, fam := range s.tokens {
		if fam == id {
			delete(s.tokens, h)
		}
	}
	return nil
}
