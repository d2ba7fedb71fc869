// Package settings reads tenants' policies (privacyapi.Settings) for the
// gateway: whether network data may be collected, and the minimum group
// size of metrics. The privacy service owns and writes them in the SETTINGS
// bucket; the gateway only reads, from a mirror of it (pkg/kvmirror).
package settings

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/kvmirror"
	"github.com/parley-chat/parley/pkg/privacyapi"
)

// Reader reads tenants' settings from a mirror of the privacy service's
// SETTINGS bucket (privacyapi.SettingsBucket), so that a request never
// waits on the bus for them; a change applies as soon as the mirror's
// watch delivers it. It is safe for concurrent use.
type Reader struct {
	m *kvmirror.Mirror[privacyapi.Settings]
}

// Open starts mirroring the settings through js until Close, and returns
// once it has loaded them or found that the privacy service has not created
// the bucket yet: the gateway does not wait for the privacy service. It
// returns ctx's error when ctx ends first.
func Open(ctx context.Context, js jetstream.JetStream, log *slog.Logger) (*Reader, error) {
	// The mirror outlives ctx, which only bounds Open; Close stops it.
	m := kvmirror.Start(context.WithoutCancel(ctx), js, kvmirror.Config[privacyapi.Settings]{
		Bucket: privacyapi.SettingsBucket,
		Log:    log,
		Health: func(err error) {
			if err != nil && !errors.Is(err, jetstream.ErrBucketNotFound) {
				log.Warn("watch tenant settings, will retry", "err", err)
			}
		},
		// Of answers safely without the mirror: it need not stop the
		// gateway.
		GiveUp: -1,
	})
	select {
	case <-m.Tried():
		return &Reader{m: m}, nil
	case <-ctx.Done():
		_ = m.Close()
		return nil, fmt.Errorf("load bucket %s: %w", privacyapi.SettingsBucket, ctx.Err())
	}
}

// Of returns tenant's settings: privacyapi.DefaultSettings for a tenant
// without any. An error, wrapping kvmirror.ErrNotReady, means the settings
// have not been read yet, and the caller must then take the most private
// choice. So it is also while the privacy service has not created the
// bucket: once it has, a tenant may have set a notice there that the next
// try of the mirror would find, and a default served meanwhile would be
// recorded as the notice a visitor consented under.
func (p *Reader) Of(_ context.Context, tenant string) (privacyapi.Settings, error) {
	if !p.m.Ready() {
		return privacyapi.Settings{}, fmt.Errorf("settings of %s: %w", tenant, errors.Join(kvmirror.ErrNotReady, p.m.Health()))
	}
	if s, ok := p.m.Get(tenant); ok {
		return s, nil
	}
	return privacyapi.DefaultSettings(), nil
}

// Close stops mirroring the settings.
func (p *Reader) Close() { _ = p.m.Close() }
