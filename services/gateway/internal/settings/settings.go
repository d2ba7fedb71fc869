// Package settings reads tenants' policies (privacyapi.Settings) for the
// gateway: whether network data may be collected, and the minimum group
// size of metrics. The privacy service owns and writes them in the SETTINGS
// bucket; the gateway only reads.
package settings

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/privacyapi"
)

// Reader reads a tenant's settings from the privacy service's SETTINGS
// bucket (privacyapi.SettingsBucket) on each call: settings are read
// rarely enough, and a change applies at once. It is safe for concurrent
// use.
type Reader struct {
	js jetstream.JetStream

	mu sync.Mutex
	kv jetstream.KeyValue
}

// NewReader returns a reader of the settings through js.
func NewReader(js jetstream.JetStream) *Reader {
	return &Reader{js: js}
}

// Of returns tenant's settings: privacyapi.DefaultSettings for a tenant
// without any, or while the privacy service has not created the bucket
// yet. An error means the settings could not be read, and the caller must
// then take the most private choice.
func (p *Reader) Of(ctx context.Context, tenant string) (privacyapi.Settings, error) {
	kv, err := p.bucket(ctx)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return privacyapi.DefaultSettings(), nil
	}
	if err != nil {
		return privacyapi.Settings{}, err
	}
	e, err := kv.Get(ctx, tenant)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return privacyapi.DefaultSettings(), nil
	}
	if err != nil {
		return privacyapi.Settings{}, fmt.Errorf("read settings of %s: %w", tenant, err)
	}
	var s privacyapi.Settings
	if err := json.Unmarshal(e.Value(), &s); err != nil {
		return privacyapi.Settings{}, fmt.Errorf("decode settings of %s: %w", tenant, err)
	}
	return s, nil
}

func (p *Reader) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.kv != nil {
		return p.kv, nil
	}
	kv, err := p.js.KeyValue(ctx, privacyapi.SettingsBucket)
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", privacyapi.SettingsBucket, err)
	}
	p.kv = kv
	return kv, nil
}
