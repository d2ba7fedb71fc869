package stream

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Marked reports whether key holds a value in kv: the marker Mark writes
// once a one-time pass over a store is done.
func Marked(ctx context.Context, kv jetstream.KeyValue, key string) (bool, error) {
	_, err := kv.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("get %s from %s: %w", key, kv.Bucket(), err)
	}
	return true, nil
}

// Mark writes key in kv, its value the time, to record that a one-time
// pass over a store is done (Marked).
func Mark(ctx context.Context, kv jetstream.KeyValue, key string) error {
	if _, err := kv.Put(ctx, key, []byte(time.Now().UTC().Format(time.RFC3339))); err != nil {
		return fmt.Errorf("put %s in %s: %w", key, kv.Bucket(), err)
	}
	return nil
}
