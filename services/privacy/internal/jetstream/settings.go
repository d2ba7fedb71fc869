package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/privacyapi"
	"github.com/parley-chat/parley/pkg/stream"
)

// SettingsStore keeps tenant settings in the SETTINGS bucket, one key per
// tenant. It is safe for concurrent use.
type SettingsStore struct {
	kv jetstream.KeyValue
}

// NewSettingsStore creates the SETTINGS bucket with the definition of o
// when missing and returns a store on it. A bucket that exists with another
// definition is used as it is, with a warning: privacy may not reconfigure
// it (stream.CreateBuckets).
func NewSettingsStore(ctx context.Context, js jetstream.JetStream, o stream.Options, log *slog.Logger) (*SettingsStore, error) {
	kv, err := stream.OpenBucket(ctx, js, o, log, privacyapi.SettingsBucket)
	if err != nil {
		return nil, err
	}
	return &SettingsStore{kv: kv}, nil
}

// Get returns the tenant's settings; found is false when none were stored.
func (s *SettingsStore) Get(ctx context.Context, tenant string) (privacyapi.Settings, bool, error) {
	e, err := s.kv.Get(ctx, tenant)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return privacyapi.Settings{}, false, nil
	}
	if err != nil {
		return privacyapi.Settings{}, false, fmt.Errorf("read settings of %s: %w", tenant, err)
	}
	var st privacyapi.Settings
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		return privacyapi.Settings{}, false, fmt.Errorf("decode settings of %s: %w", tenant, err)
	}
	return st, true, nil
}

// Put stores the tenant's settings.
func (s *SettingsStore) Put(ctx context.Context, tenant string, st privacyapi.Settings) error {
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encode settings of %s: %w", tenant, err)
	}
	if _, err := s.kv.Put(ctx, tenant, b); err != nil {
		return fmt.Errorf("store settings of %s: %w", tenant, err)
	}
	return nil
}
