package memory

import (
	"cmp"
	"context"
	"slices"
	"sync"

	"github.com/parley-chat/parley/pkg/privacyapi"

	"github.com/parley-chat/parley/services/privacy/internal/app"
)

// IntegrationStore keeps bots and integrations in memory, each with a
// revision that grows with every write. It is safe for concurrent use.
type IntegrationStore struct {
	mu   sync.Mutex
	rev  uint64
	recs map[string]storedIntegration
}

type storedIntegration struct {
	rec privacyapi.Integration
	rev uint64
}

// NewIntegrationStore returns an empty store.
func NewIntegrationStore() *IntegrationStore {
	return &IntegrationStore{recs: make(map[string]storedIntegration)}
}

// Get returns tenant's integration id and its revision, or app.ErrNotFound.
func (s *IntegrationStore) Get(_ context.Context, tenant, id string) (privacyapi.Integration, uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.recs[privacyapi.IntegrationKey(tenant, id)]
	if !ok {
		return privacyapi.Integration{}, 0, app.ErrNotFound
	}
	return st.rec, st.rev, nil
}

// Put stores rec when its revision is still rev (0: none stored), and
// returns app.ErrConflict otherwise.
func (s *IntegrationStore) Put(_ context.Context, rec privacyapi.Integration, rev uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := privacyapi.IntegrationKey(rec.Tenant, rec.ID)
	if s.recs[key].rev != rev {
		return app.ErrConflict
	}
	s.rev++
	s.recs[key] = storedIntegration{rec: rec, rev: s.rev}
	return nil
}

// Delete removes tenant's integration id.
func (s *IntegrationStore) Delete(_ context.Context, tenant, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.recs, privacyapi.IntegrationKey(tenant, id))
	return nil
}

// List returns the integrations of tenant, of every tenant when tenant is
// "", ordered by tenant and id.
func (s *IntegrationStore) List(_ context.Context, tenant string) ([]privacyapi.Integration, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var recs []privacyapi.Integration
	for _, st := range s.recs {
		if tenant == "" || st.rec.Tenant == tenant {
			recs = append(recs, st.rec)
		}
	}
	slices.SortFunc(recs, func(a, b privacyapi.Integration) int {
		return cmp.Or(cmp.Compare(a.Tenant, b.Tenant), cmp.Compare(a.ID, b.ID))
	})
	return recs, nil
}
