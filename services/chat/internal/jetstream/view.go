package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/stream"

	"github.com/parley-chat/parley/services/chat/internal/app"
)

// View is app.View on the key-value bucket CHAT_VIEW: one key per
// conversation, <tenant>.<conversation>, and appliedKey. It is safe for
// concurrent use; instances sharing the bucket never move an entry back,
// as every write names the revision it replaces.
type View struct {
	kv natsjs.KeyValue
}

// appliedKey holds the sequence up to which every event is in the view. It
// has no dot, so no conversation's key is the same.
const appliedKey = "applied"

// OpenView creates the bucket with the definition of o when missing and
// returns a View on it; a bucket with another definition is used as it is,
// with a warning (see stream.CreateBuckets).
func OpenView(ctx context.Context, js natsjs.JetStream, o stream.Options, log *slog.Logger) (*View, error) {
	switch err := stream.CreateBuckets(ctx, js, o, stream.ChatViewBucket); {
	case errors.Is(err, stream.ErrDrift):
		log.Warn("bucket differs from this version's definition", "err", err)
	case err != nil:
		return nil, err
	}
	kv, err := js.KeyValue(ctx, stream.ChatViewBucket)
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", stream.ChatViewBucket, err)
	}
	return &View{kv: kv}, nil
}

func viewKey(tenant, id string) string { return tenant + "." + id }

// Load implements app.View, reading the bucket with one watch.
func (v *View) Load(ctx context.Context, fn func(app.ViewEntry) error) (uint64, error) {
	w, err := v.kv.WatchAll(ctx, natsjs.IgnoreDeletes())
	if err != nil {
		return 0, fmt.Errorf("load %s: %w", stream.ChatViewBucket, err)
	}
	defer func() { _ = w.Stop() }()
	var applied uint64
	for {
		var kve natsjs.KeyValueEntry
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case kve = <-w.Updates():
		}
		if kve == nil { // all values read
			return applied, nil
		}
		if kve.Key() == appliedKey {
			if applied, err = strconv.ParseUint(string(kve.Value()), 10, 64); err != nil {
				return 0, fmt.Errorf("load %s: %s: %w", stream.ChatViewBucket, appliedKey, err)
			}
			continue
		}
		e, err := decodeEntry(kve)
		if err != nil {
			return 0, err
		}
		if err := fn(e); err != nil {
			return 0, err
		}
	}
}

func decodeEntry(kve natsjs.KeyValueEntry) (app.ViewEntry, error) {
	var e app.ViewEntry
	if err := json.Unmarshal(kve.Value(), &e); err != nil {
		return app.ViewEntry{}, fmt.Errorf("load %s: entry %d: %w", stream.ChatViewBucket, kve.Revision(), err)
	}
	if viewKey(e.Tenant, e.ID) != kve.Key() {
		return app.ViewEntry{}, fmt.Errorf("load %s: entry %d is not its key's", stream.ChatViewBucket, kve.Revision())
	}
	e.Rev = kve.Revision()
	return e, nil
}

// Put implements app.View with compare-and-set writes: a write over a
// revision that is no longer the last reads the entry there and stops when
// it is as new as e, or writes over it.
func (v *View) Put(ctx context.Context, e app.ViewEntry) (uint64, error) {
	key := viewKey(e.Tenant, e.ID)
	b, err := json.Marshal(e)
	if err != nil {
		return 0, fmt.Errorf("put %s: %w", key, err)
	}
	rev := e.Rev
	for {
		var err error
		if rev == 0 {
			rev, err = v.kv.Create(ctx, key, b)
		} else {
			rev, err = v.kv.Update(ctx, key, b, rev)
		}
		if err == nil {
			return rev, nil
		}
		if !errors.Is(err, natsjs.ErrKeyExists) && !errors.Is(err, natsjs.ErrKeyRevisionMismatch) {
			return 0, fmt.Errorf("put %s in %s: %w", key, stream.ChatViewBucket, err)
		}
		cur, err := v.kv.Get(ctx, key)
		if errors.Is(err, natsjs.ErrKeyNotFound) {
			rev = 0 // removed meanwhile
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("put %s in %s: %w", key, stream.ChatViewBucket, err)
		}
		held, err := decodeEntry(cur)
		if err != nil {
			return 0, err
		}
		if held.Version >= e.Version {
			return held.Rev, nil
		}
		rev = held.Rev
	}
}

// Remove implements app.View. The marker it leaves goes after
// stream.ViewMarkerTTL.
func (v *View) Remove(ctx context.Context, tenant, id string) error {
	if err := v.kv.Purge(ctx, viewKey(tenant, id), natsjs.PurgeTTL(stream.ViewMarkerTTL)); err != nil {
		return fmt.Errorf("remove %s from %s: %w", viewKey(tenant, id), stream.ChatViewBucket, err)
	}
	return nil
}

// Applied implements app.View.
func (v *View) Applied(ctx context.Context, seq uint64) error {
	if _, err := v.kv.Put(ctx, appliedKey, []byte(strconv.FormatUint(seq, 10))); err != nil {
		return fmt.Errorf("put %s in %s: %w", appliedKey, stream.ChatViewBucket, err)
	}
	return nil
}

// Conversations returns the conversations CHAT holds events of, read from
// the stream's per-subject counts: what the view may keep.
func (s *Store) Conversations(ctx context.Context) (func(tenant, id string) bool, error) {
	info, err := s.stream.Info(ctx, natsjs.WithSubjectFilter(stream.ChatSubject("*", "*")))
	if err != nil {
		return nil, fmt.Errorf("conversations of %s: %w", stream.Chat, err)
	}
	subjects := info.State.Subjects
	return func(tenant, id string) bool {
		_, ok := subjects[stream.ChatSubject(tenant, id)]
		return ok
	}, nil
}
