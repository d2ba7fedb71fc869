package delivery

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/privacyapi"
	"github.com/parley-chat/parley/pkg/stream"
)

// Log reads the delivery log (app.DeliveryLog).
type Log struct {
	js jetstream.JetStream
}

// NewLog returns the reader of the delivery log.
func NewLog(js jetstream.JetStream) *Log { return &Log{js: js} }

// List implements app.DeliveryLog.
func (l *Log) List(ctx context.Context, tenant, id string, since time.Time, limit int) ([]privacyapi.Delivery, bool, error) {
	// One more than asked tells whether more follow.
	req := stream.BatchRequest{NextFor: stream.DeliverySubject(tenant, id), Seq: 1, Batch: limit + 1}
	if !since.IsZero() {
		req.Seq, req.StartTime = 0, &since
	}
	var out []privacyapi.Delivery
	more := false
	err := stream.GetBatch(ctx, l.js, stream.Deliveries, req, func(m *jetstream.RawStreamMsg) error {
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
