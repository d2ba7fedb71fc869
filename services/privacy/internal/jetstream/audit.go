package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/audit"
	"github.com/parley-chat/parley/pkg/stream"

	"github.com/parley-chat/parley/services/privacy/internal/app"
)

// AuditLog keeps each tenant's audit chain on its subject of the AUDIT
// stream. It is safe for concurrent use.
type AuditLog struct {
	js     jetstream.JetStream
	stream jetstream.Stream
}

// NewAuditLog returns a log on the AUDIT stream, which must exist.
func NewAuditLog(ctx context.Context, js jetstream.JetStream) (*AuditLog, error) {
	s, err := js.Stream(ctx, stream.Audit)
	if err != nil {
		return nil, fmt.Errorf("open stream %s: %w", stream.Audit, err)
	}
	return &AuditLog{js: js, stream: s}, nil
}

// Head returns the stream sequence and hash of the tenant's last entry, or
// 0 and "" when the tenant has none.
func (l *AuditLog) Head(ctx context.Context, tenant string) (uint64, string, error) {
	subj := audit.Subject(tenant)
	m, err := l.stream.GetLastMsgForSubject(ctx, subj)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, "", nil
	}
	if err != nil {
		return 0, "", fmt.Errorf("read head of %s: %w", subj, err)
	}
	var e audit.Entry
	if err := json.Unmarshal(m.Data, &e); err != nil {
		return 0, "", fmt.Errorf("decode head of %s: %w", subj, err)
	}
	return m.Sequence, e.Hash, nil
}

// Append stores e after the entry at stream sequence last (0: e is the
// first) and returns its sequence. When another entry was stored since, it
// stores nothing and returns app.ErrConflict. The entry's hash is the
// message id, so a retried publish is stored once.
func (l *AuditLog) Append(ctx context.Context, e audit.Entry, last uint64) (uint64, error) {
	subj := audit.Subject(e.Tenant)
	data, err := json.Marshal(e)
	if err != nil {
		return 0, fmt.Errorf("encode audit entry: %w", err)
	}
	ack, err := l.js.Publish(ctx, subj, data,
		jetstream.WithMsgID(e.Hash),
		jetstream.WithExpectStream(stream.Audit),
		jetstream.WithExpectLastSequencePerSubject(last))
	if isWrongLastSequence(err) {
		return 0, fmt.Errorf("append to %s: %w", subj, app.ErrConflict)
	}
	if err != nil {
		return 0, fmt.Errorf("append to %s: %w", subj, err)
	}
	return ack.Sequence, nil
}

// List returns up to limit of the tenant's entries stored at or after since
// (all when zero), oldest first, and whether more follow.
func (l *AuditLog) List(ctx context.Context, tenant string, since time.Time, limit int) ([]audit.Entry, bool, error) {
	subj := audit.Subject(tenant)
	last, err := l.stream.GetLastMsgForSubject(ctx, subj)
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return nil, false, nil
	case err != nil:
		return nil, false, fmt.Errorf("list %s: %w", subj, err)
	case last.Time.Before(since):
		// A consumer would wait for an entry that is not there.
		return nil, false, nil
	}
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{subj}}
	if !since.IsZero() {
		cfg.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		cfg.OptStartTime = &since
	}
	cons, err := l.js.OrderedConsumer(ctx, stream.Audit, cfg)
	if err != nil {
		return nil, false, fmt.Errorf("list %s: %w", subj, err)
	}
	it, err := cons.Messages()
	if err != nil {
		return nil, false, fmt.Errorf("list %s: %w", subj, err)
	}
	defer it.Stop()
	// The entries up to last are stored, so only a store in trouble makes
	// Next wait: ctx bounds that.
	var entries []audit.Entry
	for len(entries) < limit {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return nil, false, fmt.Errorf("list %s: %w", subj, err)
		}
		var e audit.Entry
		if err := json.Unmarshal(m.Data(), &e); err != nil {
			return nil, false, fmt.Errorf("decode entry of %s: %w", subj, err)
		}
		entries = append(entries, e)
		meta, err := m.Metadata()
		if err != nil {
			return nil, false, fmt.Errorf("list %s: %w", subj, err)
		}
		if meta.Sequence.Stream >= last.Sequence {
			return entries, false, nil
		}
	}
	return entries, true, nil
}
