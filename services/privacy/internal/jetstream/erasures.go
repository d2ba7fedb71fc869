package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/stream"

	"github.com/parley-chat/parley/services/privacy/internal/app"
)

// ErasureRecords keeps erasures in the ERASURES bucket: the entry of each
// under "id.<erasure id>", written once; a pending one's under
// "pending.<erasure id>" too, purged once it completed, the marker leaving
// after stream.ErasuresMarkerTTL; and "complete" once every erasure of
// PRIVACY was recorded. It is safe for concurrent use.
type ErasureRecords struct {
	js jetstream.JetStream
	kv jetstream.KeyValue
}

const (
	erasureIDPrefix      = "id."
	erasurePendingPrefix = "pending."
	erasuresCompleteKey  = "complete"
)

// NewErasureRecords creates the ERASURES bucket with the definition of o
// when missing and returns the records in it.
func NewErasureRecords(ctx context.Context, js jetstream.JetStream, o stream.Options, log *slog.Logger) (*ErasureRecords, error) {
	kv, err := stream.OpenBucket(ctx, js, o, log, stream.ErasuresBucket)
	if err != nil {
		return nil, err
	}
	return &ErasureRecords{js: js, kv: kv}, nil
}

// Record stores r unless its id has an entry, and marks it pending when
// pending is true.
func (s *ErasureRecords) Record(ctx context.Context, r app.ErasureRef, pending bool) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if _, err := s.kv.Create(ctx, erasureIDPrefix+r.ID, b); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("record erasure %s: %w", r.ID, err)
	}
	if pending {
		if _, err := s.kv.Put(ctx, erasurePendingPrefix+r.ID, b); err != nil {
			return fmt.Errorf("record erasure %s pending: %w", r.ID, err)
		}
	}
	return nil
}

// Done unmarks the erasure id as pending.
func (s *ErasureRecords) Done(ctx context.Context, id string) error {
	if err := s.kv.Purge(ctx, erasurePendingPrefix+id, jetstream.PurgeTTL(stream.ErasuresMarkerTTL)); err != nil {
		return fmt.Errorf("record erasure %s done: %w", id, err)
	}
	return nil
}

// Find returns the entry of the erasure id.
func (s *ErasureRecords) Find(ctx context.Context, id string) (app.ErasureRef, bool, error) {
	r, ok, err := s.get(ctx, erasureIDPrefix+id)
	if err != nil {
		return app.ErasureRef{}, false, fmt.Errorf("find erasure %s: %w", id, err)
	}
	return r, ok, nil
}

func (s *ErasureRecords) get(ctx context.Context, key string) (app.ErasureRef, bool, error) {
	e, err := s.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return app.ErasureRef{}, false, nil
	}
	if err != nil {
		return app.ErasureRef{}, false, err
	}
	var r app.ErasureRef
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return app.ErasureRef{}, false, fmt.Errorf("decode %s: %w", key, err)
	}
	return r, true, nil
}

// Pending returns the erasures marked pending, as the bucket's leader
// holds them: a start decides by them whom to refuse keys, and a replica
// (which answers a get, or holds a consumer) may lack a mark just written.
// It reads each pending key's messages, one round trip each, so as many as
// are pending and marks done within stream.ErasuresMarkerTTL.
func (s *ErasureRecords) Pending(ctx context.Context) ([]app.ErasureRef, error) {
	last := make(map[string]*jetstream.RawStreamMsg)
	name, subjects := stream.BucketStream(stream.ErasuresBucket), stream.KeySubject(stream.ErasuresBucket, erasurePendingPrefix+">")
	for seq := uint64(1); ; {
		m, err := stream.NextMsg(ctx, s.js, name, subjects, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("list pending erasures: %w", err)
		}
		last[m.Subject], seq = m, m.Sequence+1
	}
	var out []app.ErasureRef
	for _, m := range last {
		// A mark done leaves a purge marker behind.
		if m.Header.Get(stream.KVOperation) != "" || len(m.Data) == 0 {
			continue
		}
		var r app.ErasureRef
		if err := json.Unmarshal(m.Data, &r); err != nil {
			return nil, fmt.Errorf("decode %s: %w", m.Subject, err)
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b app.ErasureRef) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// Complete reports whether MarkComplete was called.
func (s *ErasureRecords) Complete(ctx context.Context) (bool, error) {
	return stream.Marked(ctx, s.kv, erasuresCompleteKey)
}

// MarkComplete records that the entries hold every erasure.
func (s *ErasureRecords) MarkComplete(ctx context.Context) error {
	return stream.Mark(ctx, s.kv, erasuresCompleteKey)
}
