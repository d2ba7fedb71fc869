package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/chatapi"
	"github.com/parley-chat/parley/pkg/event"

	"github.com/parley-chat/parley/services/chat/internal/conversation"
)

// ErrKeyReused means an idempotency key came back with other arguments, or
// on another command, than the request that first used it.
var ErrKeyReused = errors.New("the Idempotency-Key was used for a different request")

// idempotency is what a request's idempotency key derives. The event the
// request is about carries hash (Envelope.Idempotency), so that the read
// models, rebuilt from the stream by every instance, find it again; and the
// ids it stores are derived from hash, so that a repeated request publishes
// the same Nats-Msg-Id and JetStream's duplicate window drops it. The zero
// value is a request without a key.
type idempotency struct {
	hash string
	// same tells whether prior, the event stored under the same key, is
	// this request's (nil) or another's (ErrKeyReused).
	same func(ctx context.Context, prior Record) error
}

// idempotencyOf returns the idempotency of p's request with key, which
// same checks a prior event against; the zero value when key is empty.
func idempotencyOf(p auth.Principal, key string, same func(context.Context, Record) error) (idempotency, error) {
	if key == "" {
		return idempotency{}, nil
	}
	if !chatapi.ValidIdempotencyKey(key) {
		return idempotency{}, &conversation.ValidationError{Field: "idempotency_key", Reason: "want 1-128 printable ASCII characters without spaces"}
	}
	// The principal is part of the hash: keys are chosen by clients, and
	// one client's key must never find another's request. The hash never
	// reveals the key.
	sum := sha256.Sum256([]byte(strings.Join([]string{"parley-idempotency-v1", p.Tenant, string(p.Role), p.ID, key}, "\x00")))
	return idempotency{hash: hex.EncodeToString(sum[:16]), same: same}, nil
}

// id returns the id of what the request stores as label: derived from the
// key, or new without one.
func (k idempotency) id(label string) string {
	if k.hash == "" {
		return event.NewID()
	}
	return event.DerivedID(k.hash + "/" + label)
}

// repeat answers a request whose key already stored prior: prior, when it
// was this request, or ErrKeyReused.
func (k idempotency) repeat(ctx context.Context, prior Record) ([]Record, error) {
	if err := k.same(ctx, prior); err != nil {
		return nil, err
	}
	return []Record{prior}, nil
}

// openPrior decodes prior, an event stored under a request's key, into v,
// or returns ErrKeyReused when it is not of type typ.
func (s *Service) openPrior(ctx context.Context, prior Record, typ event.Type, v any) error {
	if prior.Event.Type != typ {
		return ErrKeyReused
	}
	keys, err := s.visitorKeys(ctx, prior.Event.Tenant, prior.Event.Subject)
	if err != nil {
		return err
	}
	if err := prior.Event.Open(keys.Data, v); err != nil {
		return fmt.Errorf("prior event of the idempotency key: %w", err)
	}
	return nil
}
