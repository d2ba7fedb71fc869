package jetstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/stream"
)

// Profiles is the visitors' profiles on the PROFILES stream, one subject
// per visitor. It is safe for concurrent use.
type Profiles struct {
	js     natsjs.JetStream
	stream natsjs.Stream
}

// OpenProfiles creates the PROFILES stream with the definition of o when
// missing and returns Profiles on it; like Open, it runs on a stream of
// another definition with a warning.
func OpenProfiles(ctx context.Context, js natsjs.JetStream, o stream.Options, log *slog.Logger) (*Profiles, error) {
	st, err := stream.Open(ctx, js, o, log, stream.Profiles)
	if err != nil {
		return nil, err
	}
	return &Profiles{js: js, stream: st}, nil
}

// Save implements app.ProfileStore. Two saves racing both leave the later
// stored: each removes only what came before its own.
func (p *Profiles) Save(ctx context.Context, tenant, visitor string, sealed []byte) error {
	subject := stream.ProfileSubject(tenant, visitor)
	ack, err := p.js.Publish(ctx, subject, sealed)
	if err != nil {
		return fmt.Errorf("store profile: %w", err)
	}
	return p.removeBefore(ctx, subject, ack.Sequence)
}

// Remove implements app.ProfileStore.
func (p *Profiles) Remove(ctx context.Context, tenant, visitor string) error {
	return p.removeBefore(ctx, stream.ProfileSubject(tenant, visitor), math.MaxUint64)
}

// visitorsPage is how many profiles Visitors reads at once.
const visitorsPage = 256

// Visitors implements app.ProfileStore. It reads the stream in order, a
// page of profiles at a time by batched direct gets (stream.GetPages), and
// calls fn between reads: neither the stream's subjects nor the visitors
// are held whole in memory, and fn, however slow, does not hold a read
// open. Older versions of a profile are removed as a new one is stored, so
// each visitor is named once; one whose profile is stored again during the
// call may be named twice.
func (p *Profiles) Visitors(ctx context.Context, fn func(tenant, visitor string) error) error {
	req := stream.BatchRequest{Seq: 1, NextFor: stream.ProfileSubject("*", "*"), Batch: visitorsPage}
	// fn's error is returned as fn gave it, as the interface says: a
	// caller's stop is no failure of the store.
	var fnErr error
	_, err := stream.GetPages(ctx, p.js, stream.Profiles, req, func(page []*natsjs.RawStreamMsg) error {
		for _, m := range page {
			// profile.<tenant>.<visitor>, as the filter asked.
			_, rest, _ := strings.Cut(m.Subject, ".")
			tenant, visitor, _ := strings.Cut(rest, ".")
			if fnErr = fn(tenant, visitor); fnErr != nil {
				return fnErr
			}
		}
		return nil
	})
	if fnErr != nil {
		return fnErr
	}
	if err != nil {
		return fmt.Errorf("visitors of %s: %w", stream.Profiles, err)
	}
	return nil
}

// removeBefore secure-deletes every message on subject below sequence
// before, read from the stream's leader so that none a replica has yet to
// apply is missed.
func (p *Profiles) removeBefore(ctx context.Context, subject string, before uint64) error {
	for seq := uint64(1); seq < before; {
		m, err := stream.NextMsg(ctx, p.js, stream.Profiles, subject, seq)
		if errors.Is(err, natsjs.ErrMsgNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("find old profiles: %w", err)
		}
		if m.Sequence >= before {
			return nil
		}
		if err := secureDelete(ctx, p.stream, m.Sequence); err != nil {
			return fmt.Errorf("remove an old profile: %w", err)
		}
		seq = m.Sequence + 1
	}
	return nil
}

// Load implements app.ProfileStore with one batched direct get of the
// last message of each visitor's subject.
func (p *Profiles) Load(ctx context.Context, tenant string, visitors []string) (map[string][]byte, error) {
	out := make(map[string][]byte, len(visitors))
	if len(visitors) == 0 {
		return out, nil
	}
	subjects := make([]string, len(visitors))
	for i, v := range visitors {
		subjects[i] = stream.ProfileSubject(tenant, v)
	}
	prefix := stream.ProfileSubject(tenant, "")
	err := stream.GetBatch(ctx, p.js, stream.Profiles, stream.BatchRequest{MultiLast: subjects}, func(m *natsjs.RawStreamMsg) error {
		out[strings.TrimPrefix(m.Subject, prefix)] = m.Data
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read profiles: %w", err)
	}
	return out, nil
}
