package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/stream"

	"github.com/parley-chat/parley/services/chat/internal/conversation"
)

// Agents is app.Agents on the AGENTS bucket, which every chat instance
// shares: each agent's presence under <tenant>.<agent>.presence and their
// capacity under <tenant>.<agent>.capacity, apart so that an agent setting
// one and a supervisor the other never overwrite each other. It is safe for
// concurrent use.
type Agents struct {
	kv natsjs.KeyValue
}

// presenceValue and capacityValue are the stored values.
type (
	presenceValue struct {
		Status conversation.Presence `json:"status"`
		At     time.Time             `json:"at"`
	}
	capacityValue struct {
		MaxOpen *int `json:"max_open"`
	}
)

// OpenAgents creates the bucket with the definition of o when missing and
// returns Agents on it; a bucket with another definition is used as it is,
// with a warning (see stream.CreateBuckets).
func OpenAgents(ctx context.Context, js natsjs.JetStream, o stream.Options, log *slog.Logger) (*Agents, error) {
	kv, err := stream.OpenBucket(ctx, js, o, log, stream.AgentsBucket)
	if err != nil {
		return nil, err
	}
	return &Agents{kv: kv}, nil
}

// Get returns the agent's availability, the zero one when nothing is set.
func (a *Agents) Get(ctx context.Context, tenant, agent string) (conversation.Availability, error) {
	var (
		out conversation.Availability
		p   presenceValue
		c   capacityValue
	)
	if ok, err := a.get(ctx, tenant+"."+agent+".presence", &p); err != nil {
		return out, err
	} else if ok {
		out.Presence, out.PresenceAt = p.Status, p.At
	}
	if ok, err := a.get(ctx, tenant+"."+agent+".capacity", &c); err != nil {
		return out, err
	} else if ok {
		out.MaxOpen = c.MaxOpen
	}
	return out, nil
}

func (a *Agents) get(ctx context.Context, key string, v any) (bool, error) {
	e, err := a.kv.Get(ctx, key)
	if errors.Is(err, natsjs.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("get %s from %s: %w", key, stream.AgentsBucket, err)
	}
	if err := json.Unmarshal(e.Value(), v); err != nil {
		return false, fmt.Errorf("get %s from %s: %w", key, stream.AgentsBucket, err)
	}
	return true, nil
}

// SetPresence stores av.Presence, set at av.PresenceAt.
func (a *Agents) SetPresence(ctx context.Context, tenant, agent string, av conversation.Availability) error {
	return a.put(ctx, tenant+"."+agent+".presence", presenceValue{Status: av.Presence, At: av.PresenceAt})
}

// SetCapacity stores av.MaxOpen.
func (a *Agents) SetCapacity(ctx context.Context, tenant, agent string, av conversation.Availability) error {
	return a.put(ctx, tenant+"."+agent+".capacity", capacityValue{MaxOpen: av.MaxOpen})
}

func (a *Agents) put(ctx context.Context, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("put %s in %s: %w", key, stream.AgentsBucket, err)
	}
	if _, err := a.kv.Put(ctx, key, b); err != nil {
		return fmt.Errorf("put %s in %s: %w", key, stream.AgentsBucket, err)
	}
	return nil
}
