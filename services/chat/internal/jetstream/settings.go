package jetstream

import (
	"context"
	"fmt"
	"log/slog"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/kvmirror"
	"github.com/parley-chat/parley/pkg/privacyapi"
)

// Settings is the chat service's copy of every tenant's settings, kept
// current by a mirror of the SETTINGS bucket (pkg/kvmirror), which the
// privacy service owns and writes. It is safe for concurrent use.
type Settings struct {
	m *kvmirror.Mirror[privacyapi.Settings]
}

// WatchSettings waits for the SETTINGS bucket, reads every tenant's
// settings from it and keeps them current until ctx is done. It returns once
// the settings stored when it started are in hand, so that nothing is
// appended under a default that a tenant has changed.
func WatchSettings(ctx context.Context, js natsjs.JetStream, log *slog.Logger) (*Settings, error) {
	m := kvmirror.Start(ctx, js, kvmirror.Config[privacyapi.Settings]{
		Bucket: privacyapi.SettingsBucket,
		Log:    log,
		Health: func(err error) {
			if err != nil {
				log.Warn("watch tenant settings, will retry", "err", err)
			}
		},
	})
	if err := m.Wait(ctx); err != nil {
		_ = m.Close()
		return nil, err
	}
	return &Settings{m: m}, nil
}

// Watching returns nil when ctx is done, and an error when the watch of the
// settings failed for longer than pkg/retry's GiveUp: the service must then
// stop rather than append under settings that may be stale.
func (s *Settings) Watching(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case <-s.m.Done():
		if err := s.m.Err(); err != nil {
			return fmt.Errorf("tenant settings: %w", err)
		}
		return nil
	}
}

// Get returns the tenant's settings, privacyapi.DefaultSettings when it has
// none.
func (s *Settings) Get(tenant string) privacyapi.Settings {
	if st, ok := s.m.Get(tenant); ok {
		return st
	}
	return privacyapi.DefaultSettings()
}

// Close stops watching the settings and waits until the watch has ended.
func (s *Settings) Close() { _ = s.m.Close() }
