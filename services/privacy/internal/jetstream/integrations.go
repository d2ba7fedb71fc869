package jetstream

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/privacyapi"
	"github.com/parley-chat/parley/pkg/stream"

	"github.com/parley-chat/parley/services/privacy/internal/app"
)

// IntegrationStore keeps bots and integrations in the INTEGRATIONS bucket,
// one key per tenant and id (privacyapi.IntegrationKey), the key's revision
// being the record's. It is safe for concurrent use.
type IntegrationStore struct {
	kv jetstream.KeyValue
}

// NewIntegrationStore creates the INTEGRATIONS bucket with the definition
// of o when missing and returns a store on it.
func NewIntegrationStore(ctx context.Context, js jetstream.JetStream, o stream.Options, log *slog.Logger) (*IntegrationStore, error) {
	kv, err := stream.OpenBucket(ctx, js, o, log, privacyapi.IntegrationsBucket)
	if err != nil {
		return nil, err
	}
	return &IntegrationStore{kv: kv}, nil
}

// Get returns tenant's integration id and its revision, or app.ErrNotFound.
func (s *IntegrationStore) Get(ctx context.Context, tenant, id string) (privacyapi.Integration, uint64, error) {
	return getIntegration(ctx, s.kv, privacyapi.IntegrationKey(tenant, id))
}

func getIntegration(ctx context.Context, kv jetstream.KeyValue, key string) (privacyapi.Integration, uint64, error) {
	e, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return privacyapi.Integration{}, 0, app.ErrNotFound
	}
	if err != nil {
		return privacyapi.Integration{}, 0, fmt.Errorf("read integration %s: %w", key, err)
	}
	var rec privacyapi.Integration
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		return privacyapi.Integration{}, 0, fmt.Errorf("decode integration %s: %w", key, err)
	}
	return rec, e.Revision(), nil
}

// Put stores rec when its key's revision is still rev (0: none stored, or
// deleted), and returns app.ErrConflict otherwise.
func (s *IntegrationStore) Put(ctx context.Context, rec privacyapi.Integration, rev uint64) error {
	key := privacyapi.IntegrationKey(rec.Tenant, rec.ID)
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode integration %s: %w", key, err)
	}
	if rev == 0 {
		_, err = s.kv.Create(ctx, key, b)
	} else {
		_, err = s.kv.Update(ctx, key, b, rev)
	}
	if errors.Is(err, jetstream.ErrKeyExists) || stream.WrongLastSequence(err) {
		return fmt.Errorf("store integration %s: %w", key, app.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("store integration %s: %w", key, err)
	}
	return nil
}

// Delete purges tenant's integration id: nothing of it is left but the
// marker that it is gone.
func (s *IntegrationStore) Delete(ctx context.Context, tenant, id string) error {
	key := privacyapi.IntegrationKey(tenant, id)
	if err := s.kv.Purge(ctx, key); err != nil {
		return fmt.Errorf("delete integration %s: %w", key, err)
	}
	return nil
}

// List returns the integrations of tenant, of every tenant when tenant is
// "", ordered by tenant and id.
func (s *IntegrationStore) List(ctx context.Context, tenant string) ([]privacyapi.Integration, error) {
	return listIntegrations(ctx, s.kv, tenant)
}

func listIntegrations(ctx context.Context, kv jetstream.KeyValue, tenant string) ([]privacyapi.Integration, error) {
	filter := ">"
	if tenant != "" {
		filter = privacyapi.IntegrationKey(tenant, "*")
	}
	keys, err := kv.ListKeysFiltered(ctx, filter)
	if err != nil {
		return nil, fmt.Errorf("list integrations: %w", err)
	}
	// Read whole first: the lister's goroutine ends only once it has
	// handed over every key. A key written meanwhile may come twice.
	var names []string
	for key := range keys.Keys() {
		names = append(names, key)
	}
	if err := ctx.Err(); err != nil {
		// The lister stops early, without a word, when ctx ends.
		return nil, fmt.Errorf("list integrations: %w", err)
	}
	slices.Sort(names)
	var recs []privacyapi.Integration
	for _, key := range slices.Compact(names) {
		rec, _, err := getIntegration(ctx, kv, key)
		if errors.Is(err, app.ErrNotFound) {
			// Deleted since it was listed.
			continue
		}
		if err != nil {
			return nil, err
		}
		recs = append(recs, rec)
	}
	// Keys sort as "<tenant>.<id>", which is not quite tenant, then id.
	slices.SortFunc(recs, func(a, b privacyapi.Integration) int {
		return cmp.Or(cmp.Compare(a.Tenant, b.Tenant), cmp.Compare(a.ID, b.ID))
	})
	return recs, nil
}
