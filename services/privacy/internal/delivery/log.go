package delivery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/privacyapi"
	"github.com/parley-chat/parley/pkg/stream"

	"github.com/parley-chat/parley/services/privacy/internal/app"
)

// Log reads the delivery log (app.DeliveryLog).
type Log struct {
	js jetstream.JetStream
}

// NewLog returns the reader of the delivery log.
func NewLog(js jetstream.JetStream) *Log { return &Log{js: js} }

// List implements app.DeliveryLog. The integration is read from the
// INTEGRATIONS bucket itself, not a mirror, so that one registered a
// moment ago on another instance is found.
func (l *Log) List(ctx context.Context, tenant, kind, id string, since time.Time, limit int) ([]privacyapi.Delivery, bool, error) {
	kv, err := l.js.KeyValue(ctx, privacyapi.IntegrationsBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, false, fmt.Errorf("integration %s: %w", id, app.ErrNotFound)
	}
	if err != nil {
		return nil, false, fmt.Errorf("open bucket %s: %w", privacyapi.IntegrationsBucket, err)
	}
	e, err := kv.Get(ctx, privacyapi.IntegrationKey(tenant, id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, false, fmt.Errorf("integration %s: %w", id, app.ErrNotFound)
	}
	if err != nil {
		return nil, false, fmt.Errorf("read integration: %w", err)
	}
	var rec privacyapi.Integration
	if err := json.Unmarshal(e.Value(), &rec); err != nil || rec.Kind != kind {
		return nil, false, fmt.Errorf("%s %s: %w", kind, id, app.ErrNotFound)
	}
	// One more than asked tells whether more follow.
	req := stream.BatchRequest{NextFor: stream.DeliverySubject(tenant, id), Seq: 1, Batch: limit + 1}
	if !since.IsZero() {
		req.Seq, req.StartTime = 0, &since
	}
	var out []privacyapi.Delivery
	more := false
	err = stream.GetBatch(ctx, l.js, stream.Deliveries, req, func(m *jetstream.RawStreamMsg) error {
		if len(out) == limit {
			more = true
			return nil
		}
		var d privacyapi.Delivery
		if json.Unmarshal(m.Data, &d) == nil {
			out = append(out, d)
		}
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("read delivery log: %w", err)
	}
	return out, more, nil
}
