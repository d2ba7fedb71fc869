package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/privacyapi"
)

// Bots is app.Bots on the privacy service's INTEGRATIONS bucket
// (privacyapi.IntegrationsBucket), read one key at a time by direct get:
// an admin who has just registered a bot can assign it at once, from any
// chat instance. The bucket is privacy's, which creates it; while it is
// missing no bot is registered. It is safe for concurrent use.
type Bots struct {
	js natsjs.JetStream

	mu sync.Mutex
	kv natsjs.KeyValue // nil until the bucket is found
}

// NewBots returns Bots reading the bucket through js.
func NewBots(js natsjs.JetStream) *Bots {
	return &Bots{js: js}
}

// Registered reports whether tenant registered an integration of id of
// kind bot.
func (b *Bots) Registered(ctx context.Context, tenant, id string) (bool, error) {
	kv, err := b.bucket(ctx)
	if errors.Is(err, natsjs.ErrBucketNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	key := privacyapi.IntegrationKey(tenant, id)
	e, err := kv.Get(ctx, key)
	if errors.Is(err, natsjs.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		// The bucket may have gone: look it up again next time.
		b.forget(kv)
		return false, fmt.Errorf("get %s from %s: %w", key, privacyapi.IntegrationsBucket, err)
	}
	var rec privacyapi.Integration
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		return false, fmt.Errorf("get %s from %s: %w", key, privacyapi.IntegrationsBucket, err)
	}
	return rec.Kind == privacyapi.KindBot && rec.Tenant == tenant && rec.ID == id, nil
}

// bucket returns the bucket, looked up until it is found.
func (b *Bots) bucket(ctx context.Context) (natsjs.KeyValue, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.kv != nil {
		return b.kv, nil
	}
	kv, err := b.js.KeyValue(ctx, privacyapi.IntegrationsBucket)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", privacyapi.IntegrationsBucket, err)
	}
	b.kv = kv
	return kv, nil
}

func (b *Bots) forget(kv natsjs.KeyValue) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.kv == kv {
		b.kv = nil
	}
}
