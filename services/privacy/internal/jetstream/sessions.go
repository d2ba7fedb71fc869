package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/stream"

	"github.com/parley-chat/parley/services/privacy/internal/app"
)

// SessionStore keeps sessions in the SESSIONS bucket: "t.<hash>" names the
// family of a refresh token's hash, "h.<family>.<hash>" lists a family's
// token hashes, "f.<family>" holds the family, and
// "p.<tenant>.<person>.<family>" lists a person's families. Every entry is
// written with a per-message TTL, so it leaves the bucket when its session
// ends, and read from the stream's leader, so that every instance decides
// on the newest state. It is safe for concurrent use.
type SessionStore struct {
	js     jetstream.JetStream
	stream jetstream.Stream
}

// NewSessionStore creates the SESSIONS bucket with the definition of o
// when missing and returns a store on it.
func NewSessionStore(ctx context.Context, js jetstream.JetStream, o stream.Options, log *slog.Logger) (*SessionStore, error) {
	if _, err := stream.OpenBucket(ctx, js, o, log, stream.SessionsBucket); err != nil {
		return nil, err
	}
	str, err := js.Stream(ctx, stream.BucketStream(stream.SessionsBucket))
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", stream.SessionsBucket, err)
	}
	return &SessionStore{js: js, stream: str}, nil
}

type tokenEntry struct {
	Family string `json:"family"`
}

// Token returns the family of the refresh token whose hash is h, or
// app.ErrNotFound.
func (s *SessionStore) Token(ctx context.Context, h string) (string, error) {
	var t tokenEntry
	if _, err := s.get(ctx, "t."+h, &t); err != nil {
		return "", err
	}
	return t.Family, nil
}

// PutToken records that the token whose hash is h belongs to family, for
// ttl. The token is listed under its family first, so that DeleteFamily
// finds every token of the family.
func (s *SessionStore) PutToken(ctx context.Context, h, family string, ttl time.Duration) error {
	if err := s.put(ctx, "h."+family+"."+h, struct{}{}, ttl); err != nil {
		return err
	}
	return s.put(ctx, "t."+h, tokenEntry{Family: family}, ttl, jetstream.WithExpectLastSequencePerSubject(0))
}

// Family returns the family id and the revision it was read at, or
// app.ErrNotFound.
func (s *SessionStore) Family(ctx context.Context, id string) (app.Family, uint64, error) {
	var f app.Family
	rev, err := s.get(ctx, "f."+id, &f)
	return f, rev, err
}

// PutFamily stores f, for ttl, when the family's revision is still rev (0:
// a new family), and returns app.ErrConflict otherwise. The family's entry
// under its person is written first, for as long, so that every family
// stays listed (Families) until it expires, however often its expiry moves.
func (s *SessionStore) PutFamily(ctx context.Context, f app.Family, rev uint64, ttl time.Duration) error {
	if err := s.put(ctx, personKey(f.Principal.Tenant, f.Principal.ID)+"."+f.ID, struct{}{}, ttl); err != nil {
		return err
	}
	return s.put(ctx, "f."+f.ID, f, ttl, jetstream.WithExpectLastSequencePerSubject(rev))
}

// Families returns the ids of the person's families, those that expired
// a moment ago included (their markers are left a while).
func (s *SessionStore) Families(ctx context.Context, tenant, person string) ([]string, error) {
	prefix := stream.KeySubject(stream.SessionsBucket, personKey(tenant, person)+".")
	return s.subjects(ctx, prefix, fmt.Sprintf("list sessions of %s/%s", tenant, person))
}

// DeleteFamily deletes the family id of person of tenant and its tokens,
// spent or expired: it purges every message of their entries, so that no
// marker is left either. The family's entry under the person goes last, so that a failure
// leaves it listed (Families).
func (s *SessionStore) DeleteFamily(ctx context.Context, tenant, person, id string) error {
	// Its tokens as the stream's subjects name them: an expired token's
	// marker names its hash too.
	hashes, err := s.subjects(ctx, stream.KeySubject(stream.SessionsBucket, "h."+id+"."), "list tokens of session "+id)
	if err != nil {
		return err
	}
	for _, h := range hashes {
		if err := s.purge(ctx, "t."+h); err != nil {
			return err
		}
	}
	for _, key := range []string{"h." + id + ".*", "f." + id, personKey(tenant, person) + "." + id} {
		if err := s.purge(ctx, key); err != nil {
			return err
		}
	}
	return nil
}

// subjects returns the last tokens of the subjects of the bucket's stream
// after prefix that hold a message, markers included.
func (s *SessionStore) subjects(ctx context.Context, prefix, what string) ([]string, error) {
	info, err := s.stream.Info(ctx, jetstream.WithSubjectFilter(prefix+"*"))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	var last []string
	for subj := range info.State.Subjects {
		last = append(last, subj[len(prefix):])
	}
	return last, nil
}

// purge removes every message of the entries key matches.
func (s *SessionStore) purge(ctx context.Context, key string) error {
	if err := s.stream.Purge(ctx, jetstream.WithPurgeSubject(stream.KeySubject(stream.SessionsBucket, key))); err != nil {
		return fmt.Errorf("purge session entries: %w", err)
	}
	return nil
}

func personKey(tenant, person string) string { return "p." + tenant + "." + person }

// get decodes the value of key as the stream's leader holds it into v and
// returns its revision.
func (s *SessionStore) get(ctx context.Context, key string, v any) (uint64, error) {
	m, err := stream.LastMsg(ctx, s.js, stream.BucketStream(stream.SessionsBucket), stream.KeySubject(stream.SessionsBucket, key))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, fmt.Errorf("session entry: %w", app.ErrNotFound)
	}
	if err != nil {
		return 0, err
	}
	// An expired or deleted entry leaves a marker behind.
	if op := m.Header.Get(stream.KVOperation); op != "" || len(m.Data) == 0 {
		return 0, fmt.Errorf("session entry: %w", app.ErrNotFound)
	}
	if err := json.Unmarshal(m.Data, v); err != nil {
		return 0, fmt.Errorf("decode session entry: %w", err)
	}
	return m.Sequence, nil
}

// put stores v under key, to expire after ttl (at least a second, the
// server's unit), with the expectations of opts.
func (s *SessionStore) put(ctx context.Context, key string, v any, ttl time.Duration, opts ...jetstream.PublishOpt) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode session entry: %w", err)
	}
	opts = append(opts, jetstream.WithMsgTTL(max(ttl.Truncate(time.Second), time.Second)))
	_, err = s.js.Publish(ctx, stream.KeySubject(stream.SessionsBucket, key), b, opts...)
	if stream.WrongLastSequence(err) {
		return fmt.Errorf("store session entry: %w", app.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("store session entry: %w", err)
	}
	return nil
}
