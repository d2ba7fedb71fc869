// Package bus sends the privacy service's broadcasts on core NATS: subject
// erasures and consent changes, for every service's caches.
package bus

import (
	"encoding/json"
	"fmt"

	"github.com/nats-io/nats.go"
)

// Broadcaster publishes JSON messages. It is safe for concurrent use.
type Broadcaster struct {
	nc *nats.Conn
}

// NewBroadcaster returns a broadcaster on nc.
func NewBroadcaster(nc *nats.Conn) *Broadcaster { return &Broadcaster{nc: nc} }

// Broadcast publishes v as JSON on subject and returns once the server has
// it, so that a caller answering "done" afterwards does not outrun it.
func (b *Broadcaster) Broadcast(subject string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", subject, err)
	}
	if err := b.nc.Publish(subject, data); err != nil {
		return fmt.Errorf("publish %s: %w", subject, err)
	}
	if err := b.nc.Flush(); err != nil {
		return fmt.Errorf("flush %s: %w", subject, err)
	}
	return nil
}
