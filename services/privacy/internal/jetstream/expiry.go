package jetstream

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/services/privacy/internal/ephemeral"
)

// ExpirySchedules stores the expiries of visitors' keys in SCHEDULES
// (ephemeral.ExpirySchedule), where the server fires them and the Eraser
// acts on them.
type ExpirySchedules struct {
	js jetstream.JetStream
}

// NewExpirySchedules returns the schedules on js's SCHEDULES stream.
func NewExpirySchedules(js jetstream.JetStream) *ExpirySchedules {
	return &ExpirySchedules{js: js}
}

// ScheduleExpiry stores the visitor's expiry, replacing theirs before it.
// It is timed by the wall clock, as the server fires it by its own, the way
// the relay times one by when an event was stored.
func (s *ExpirySchedules) ScheduleExpiry(ctx context.Context, tenant, visitor string, retention time.Duration) error {
	m, err := ephemeral.ExpirySchedule(ephemeral.Expiry{Tenant: tenant, Visitor: visitor}, ephemeral.ExpiresAt(time.Now(), retention))
	if err != nil {
		return err
	}
	if _, err := s.js.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("store expiry schedule: %w", err)
	}
	return nil
}
