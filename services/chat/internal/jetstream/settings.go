package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/privacyapi"
)

// bucketPause is how long WatchSettings waits between looks for a SETTINGS
// bucket that the privacy service has not created yet.
const bucketPause = 200 * time.Millisecond

// Settings is the chat service's copy of every tenant's settings, kept
// current by a watch on the SETTINGS bucket, which the privacy service owns
// and writes. It is safe for concurrent use.
type Settings struct {
	log *slog.Logger

	mu       sync.RWMutex
	byTenant map[string]privacyapi.Settings
}

// WatchSettings waits for the SETTINGS bucket, reads every tenant's
// settings from it and keeps them current until ctx is done. It returns once
// the settings stored when it started are in hand, so that nothing is
// appended under a default that a tenant has changed.
func WatchSettings(ctx context.Context, js natsjs.JetStream, log *slog.Logger) (*Settings, error) {
	kv, err := settingsBucket(ctx, js, log)
	if err != nil {
		return nil, err
	}
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return nil, fmt.Errorf("watch bucket %s: %w", privacyapi.SettingsBucket, err)
	}
	s := &Settings{log: log, byTenant: make(map[string]privacyapi.Settings)}
	// The watch sends every stored value, then nil, then each change.
	for e := range w.Updates() {
		if e == nil {
			go s.follow(ctx, w)
			return s, nil
		}
		s.apply(e)
	}
	return nil, fmt.Errorf("watch bucket %s: %w", privacyapi.SettingsBucket, context.Cause(ctx))
}

// settingsBucket returns the SETTINGS bucket once the privacy service has
// created it.
func settingsBucket(ctx context.Context, js natsjs.JetStream, log *slog.Logger) (natsjs.KeyValue, error) {
	for logged := false; ; logged = true {
		kv, err := js.KeyValue(ctx, privacyapi.SettingsBucket)
		if err == nil {
			return kv, nil
		}
		if !errors.Is(err, natsjs.ErrBucketNotFound) {
			return nil, fmt.Errorf("open bucket %s: %w", privacyapi.SettingsBucket, err)
		}
		if !logged {
			log.Info("waiting for the privacy service to create the settings bucket", "bucket", privacyapi.SettingsBucket)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("open bucket %s: %w", privacyapi.SettingsBucket, ctx.Err())
		case <-time.After(bucketPause):
		}
	}
}

func (s *Settings) follow(ctx context.Context, w natsjs.KeyWatcher) {
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-w.Updates():
			if !ok {
				return
			}
			if e != nil {
				s.apply(e)
			}
		}
	}
}

func (s *Settings) apply(e natsjs.KeyValueEntry) {
	tenant := e.Key()
	if e.Operation() != natsjs.KeyValuePut {
		s.mu.Lock()
		delete(s.byTenant, tenant)
		s.mu.Unlock()
		return
	}
	var st privacyapi.Settings
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		// The privacy service validates what it stores, so this is a
		// foreign writer: keep what was known.
		s.log.Warn("skip unreadable settings", "tenant", tenant, "revision", e.Revision(), "err", err)
		return
	}
	s.mu.Lock()
	s.byTenant[tenant] = st
	s.mu.Unlock()
}

// Get returns the tenant's settings, privacyapi.DefaultSettings when it has
// none.
func (s *Settings) Get(tenant string) privacyapi.Settings {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if st, ok := s.byTenant[tenant]; ok {
		return st
	}
	return privacyapi.DefaultSettings()
}
