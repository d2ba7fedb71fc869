package memory

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/parley-chat/parley/pkg/stream"

	"github.com/parley-chat/parley/services/privacy/internal/ephemeral"
)

// ExpirySchedules keeps the latest expiry schedule of each visitor in
// memory, timed by the wall clock as on the server; none fires. It is safe
// for concurrent use.
type ExpirySchedules struct {
	mu sync.Mutex
	at map[[2]string]time.Time
}

// NewExpirySchedules returns schedules holding none.
func NewExpirySchedules() *ExpirySchedules {
	return &ExpirySchedules{at: make(map[[2]string]time.Time)}
}

// ScheduleExpiry stores the visitor's expiry, replacing theirs before it.
func (s *ExpirySchedules) ScheduleExpiry(_ context.Context, tenant, visitor string, retention time.Duration) error {
	if !stream.ValidToken(tenant) || !stream.ValidToken(visitor) {
		return errors.New("schedule expiry: malformed ids")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.at[[2]string{tenant, visitor}] = ephemeral.ExpiresAt(time.Now(), retention)
	return nil
}

// At returns when the visitor's expiry fires; false when they have none.
func (s *ExpirySchedules) At(tenant, visitor string) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	at, ok := s.at[[2]string{tenant, visitor}]
	return at, ok
}
