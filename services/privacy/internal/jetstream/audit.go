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

// Head returns the tenant's last entry: its stream sequence and hash, and
// the number of entries up to it; the zero AuditHead when the tenant has
// none.
func (l *AuditLog) Head(ctx context.Context, tenant string) (app.AuditHead, error) {
	subj := audit.Subject(tenant)
	// The server answers the count and the last message apart: they belong
	// together when no entry was appended in between.
	for {
		before, err := l.last(ctx, subj)
		if err != nil {
			return app.AuditHead{}, err
		}
		info, err := l.stream.Info(ctx, jetstream.WithSubjectFilter(subj))
		if err != nil {
			return app.AuditHead{}, fmt.Errorf("count entries of %s: %w", subj, err)
		}
		h, err := l.last(ctx, subj)
		if err != nil {
			return app.AuditHead{}, err
		}
		if h.Seq == before.Seq {
			h.Count = int(info.State.Subjects[subj])
			return h, nil
		}
	}
}

// last returns the sequence and hash of the last entry on subj.
func (l *AuditLog) last(ctx context.Context, subj string) (app.AuditHead, error) {
	// The leader's: the chain is extended from it, and a replica's may lag
	// an entry another instance appended.
	m, err := stream.LastMsg(ctx, l.js, stream.Audit, subj)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return app.AuditHead{}, nil
	}
	if err != nil {
		// A deleted stream answers like one that is briefly away: ask.
		if _, serr := l.js.Stream(ctx, stream.Audit); errors.Is(serr, jetstream.ErrStreamNotFound) {
			err = app.ErrAuditMissing
		}
		return app.AuditHead{}, fmt.Errorf("read head of %s: %w", subj, err)
	}
	var e audit.Entry
	if err := json.Unmarshal(m.Data, &e); err != nil {
		return app.AuditHead{}, fmt.Errorf("decode head of %s: %w", subj, err)
	}
	return app.AuditHead{Seq: m.Sequence, Hash: e.Hash}, nil
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
	if stream.WrongLastSequence(err) {
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
	// Next wait: ctx bounds that, stopping the consumer too, whose
	// recreation Next's context does not reach.
	defer context.AfterFunc(ctx, it.Stop)()
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

// checkpointAttempts bounds the stores of a checkpoint lost to other
// instances storing theirs.
const checkpointAttempts = 10

// Checkpoints keeps each tenant's latest audit checkpoint on the
// AUDIT_CHECKPOINTS stream. It is safe for concurrent use.
type Checkpoints struct {
	js     jetstream.JetStream
	stream jetstream.Stream
}

// NewCheckpoints returns the checkpoints on the AUDIT_CHECKPOINTS stream,
// which must exist.
func NewCheckpoints(ctx context.Context, js jetstream.JetStream) (*Checkpoints, error) {
	s, err := js.Stream(ctx, stream.AuditCheckpoints)
	if err != nil {
		return nil, fmt.Errorf("open stream %s: %w", stream.AuditCheckpoints, err)
	}
	return &Checkpoints{js: js, stream: s}, nil
}

// Latest returns the tenant's latest checkpoint as stored, its signature
// unchecked, and its stream sequence; found is false when there is none.
func (c *Checkpoints) Latest(ctx context.Context, tenant string) (cp audit.Checkpoint, seq uint64, found bool, err error) {
	subj := audit.CheckpointSubject(tenant)
	m, err := stream.LastMsg(ctx, c.js, stream.AuditCheckpoints, subj)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return audit.Checkpoint{}, 0, false, nil
	}
	if err != nil {
		return audit.Checkpoint{}, 0, false, fmt.Errorf("read %s: %w", subj, err)
	}
	if err := json.Unmarshal(m.Data, &cp); err != nil {
		return audit.Checkpoint{}, 0, false, fmt.Errorf("decode %s: %w", subj, err)
	}
	return cp, m.Sequence, true, nil
}

// Advance stores cp as its tenant's latest checkpoint, unless the stored
// one counts as many entries or more: instances that append to one chain
// may store their checkpoints out of order, and the latest must never go
// back.
func (c *Checkpoints) Advance(ctx context.Context, cp audit.Checkpoint) error {
	subj := audit.CheckpointSubject(cp.Tenant)
	data, err := json.Marshal(cp)
	if err != nil {
		return fmt.Errorf("encode audit checkpoint: %w", err)
	}
	for range checkpointAttempts {
		stored, seq, found, err := c.Latest(ctx, cp.Tenant)
		if err != nil {
			return err
		}
		if found && stored.Count >= cp.Count {
			return nil
		}
		_, err = c.js.Publish(ctx, subj, data,
			jetstream.WithExpectStream(stream.AuditCheckpoints),
			jetstream.WithExpectLastSequencePerSubject(seq))
		if stream.WrongLastSequence(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("store %s: %w", subj, err)
		}
		return nil
	}
	return fmt.Errorf("store %s: other writers won %d times", subj, checkpointAttempts)
}
