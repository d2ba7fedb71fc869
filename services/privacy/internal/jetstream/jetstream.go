// Package jetstream stores the privacy service's data in NATS JetStream: the
// wrapped key records in the KEYS stream, the privacy events in the PRIVACY
// stream, the audit trail in the AUDIT stream and tenant settings in the
// SETTINGS bucket.
package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/event"
	"github.com/parley-chat/parley/pkg/stream"

	"github.com/parley-chat/parley/services/privacy/internal/app"
	"github.com/parley-chat/parley/services/privacy/internal/keyring"
)

// headerErased marks a tombstone in KEYS; its value is the erasure id.
const headerErased = "Parley-Erased"

// destroyAttempts bounds the rounds of Destroy; see there.
const destroyAttempts = 5

// KeyStore keeps each subject's key record as the one message on its
// subject of the KEYS stream, wrapped under the KEK in force only. It is
// safe for concurrent use.
type KeyStore struct {
	js    jetstream.JetStream
	keys  jetstream.Stream
	kekID string
	// fence is the stream sequence of the KEK state that let this store
	// wrap keys under kekID; every record is published expecting it.
	fence atomic.Uint64
}

// NewKeyStore returns a store on the KEYS stream, which must exist, for
// records wrapped under the KEK named kekID (its keyring.Fingerprint). The
// first store of a KEYS stream records kekID as the KEK in force. It fails
// with an error wrapping keyring.ErrRotating while a rotation is under way,
// and keyring.ErrKEKRetired when another KEK is in force: an instance
// holding that KEK must not start, as every key it wrapped would be lost to
// the others.
func NewKeyStore(ctx context.Context, js jetstream.JetStream, kekID string) (*KeyStore, error) {
	s, err := js.Stream(ctx, stream.Keys)
	if err != nil {
		return nil, fmt.Errorf("open stream %s: %w", stream.Keys, err)
	}
	// Without them a second record of a subject would replace the first,
	// keys in use included: Create relies on the server refusing it.
	if cfg := s.CachedInfo().Config; cfg.Discard != jetstream.DiscardNew || !cfg.DiscardNewPerSubject {
		return nil, fmt.Errorf("stream %s predates this version's definition, which refuses a second record of a subject: apply it first (parley streams apply)", stream.Keys)
	}
	ks := &KeyStore{js: js, keys: s, kekID: kekID}
	st, seq, err := claimKEK(ctx, js, kekID)
	if err != nil {
		return nil, err
	}
	if err := st.check(kekID); err != nil {
		return nil, fmt.Errorf("key store: %w", err)
	}
	ks.fence.Store(seq)
	return ks, nil
}

// kekClaimWithin bounds NewKeyStore's wait for a claim of the KEYS stream
// another instance has in flight to be stored, or to fail.
const kekClaimWithin = 30 * time.Second

// claimKEK returns the KEK state and its sequence, storing kekID as the KEK
// in force when there is no state yet: a store without one is new, and the
// first instance to claim it wins. The server refuses a claim while
// another instance's is in flight, before that one is stored (it checks
// the expected sequence against the proposals it has not yet applied), so
// a refused claim may be followed by a read that still finds no state:
// claimKEK then reads again, a little later, until the other claim is
// stored or has failed and it may claim again.
func claimKEK(ctx context.Context, js jetstream.JetStream, kekID string) (KEKState, uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, kekClaimWithin)
	defer cancel()
	for wait := 5 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		st, seq, err := loadKEKState(ctx, js)
		if err != nil || seq != 0 {
			return st, seq, err
		}
		seq, err = publishKEKState(ctx, js, kekID, KEKState{KEKID: kekID}, 0)
		if !stream.WrongLastSequence(err) {
			return KEKState{KEKID: kekID}, seq, err
		}
		t := time.NewTimer(rand.N(wait) + wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return KEKState{}, 0, fmt.Errorf("claim the kek state: another claim neither stored nor failed: %w", context.Cause(ctx))
		case <-t.C:
		}
	}
}

// Load returns the subject's record, keyring.ErrNotFound when there is
// none, or keyring.ErrErased when the subject was erased.
func (s *KeyStore) Load(ctx context.Context, tenant, subject string) (keyring.Record, error) {
	subj := stream.KeysSubject(tenant, subject)
	m, err := s.keys.GetLastMsgForSubject(ctx, subj)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return keyring.Record{}, fmt.Errorf("load %s: %w", subj, keyring.ErrNotFound)
	}
	if err != nil {
		return keyring.Record{}, fmt.Errorf("load %s: %w", subj, err)
	}
	if m.Header.Get(headerErased) != "" {
		return keyring.Record{}, fmt.Errorf("load %s: %w", subj, keyring.ErrErased)
	}
	var rec keyring.Record
	if err := json.Unmarshal(m.Data, &rec); err != nil {
		return keyring.Record{}, fmt.Errorf("decode %s: %w", subj, err)
	}
	return rec, nil
}

// Create publishes the subject's first record. The server refuses a second
// record of a subject (KEYS discards new messages per subject), and Create
// then returns keyring.ErrExists; a retried Create whose first attempt was
// stored does too, so the caller reads back what was stored.
//
// The record is published expecting the KEK state this store last found in
// force, so that no record is ever stored under a KEK a rotation begun
// meanwhile would miss or has retired: the server refuses it, and Create
// reads the state again and returns an error wrapping keyring.ErrRotating
// or keyring.ErrKEKRetired, or tries once more when the state still lets
// it wrap under its KEK.
func (s *KeyStore) Create(ctx context.Context, tenant, subject string, rec keyring.Record) error {
	subj := stream.KeysSubject(tenant, subject)
	if rec.KEKID != s.kekID {
		return fmt.Errorf("create %s: record under kek %s, store under %s: %w", subj, rec.KEKID, s.kekID, keyring.ErrKEKRetired)
	}
	data, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode %s: %w", subj, err)
	}
	for attempt := 0; ; attempt++ {
		fence := s.fence.Load()
		_, err = s.js.Publish(ctx, subj, data,
			jetstream.WithExpectStream(stream.Keys),
			jetstream.WithExpectLastSequenceForSubject(fence, stream.KEKStateSubjects))
		switch {
		case err == nil:
			return nil
		case isPerSubjectLimit(err):
			return fmt.Errorf("create %s: %w", subj, keyring.ErrExists)
		case !stream.WrongLastSequence(err):
			return fmt.Errorf("create %s: %w", subj, err)
		}
		st, seq, err := loadKEKState(ctx, s.js)
		if err != nil {
			return fmt.Errorf("create %s: %w", subj, err)
		}
		if err := st.check(s.kekID); err != nil {
			return fmt.Errorf("create %s: %w", subj, err)
		}
		if attempt == 1 {
			return fmt.Errorf("create %s: the kek state keeps changing: %w", subj, keyring.ErrRotating)
		}
		s.fence.CompareAndSwap(fence, seq)
	}
}

// Destroy erases the subject's keys: it secure-deletes their record, which
// overwrites its bytes in the store files (a plain delete would leave them
// there until the block is compacted), then stores tomb in its place with
// an expected last subject sequence of 0. The tombstone makes every later
// Create fail, so keys are never made again for an erased subject.
//
// A record created by another instance between the delete and the
// tombstone makes the tombstone's publish fail; Destroy then deletes that
// record too and tries again, so whatever keys existed before the
// tombstone are destroyed. When the subject already has a tombstone,
// Destroy returns it and changes nothing. It returns the tombstone stored,
// with KeysDestroyed set when a record was deleted.
func (s *KeyStore) Destroy(ctx context.Context, tenant, subject string, tomb keyring.Tombstone) (keyring.Tombstone, error) {
	subj := stream.KeysSubject(tenant, subject)
	for range destroyAttempts {
		m, err := s.keys.GetLastMsgForSubject(ctx, subj)
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
		case err != nil:
			return keyring.Tombstone{}, fmt.Errorf("destroy %s: %w", subj, err)
		case m.Header.Get(headerErased) != "":
			var old keyring.Tombstone
			if err := json.Unmarshal(m.Data, &old); err != nil {
				return keyring.Tombstone{}, fmt.Errorf("decode tombstone %s: %w", subj, err)
			}
			return old, nil
		default:
			if err := s.secureDelete(ctx, m.Sequence); err != nil {
				return keyring.Tombstone{}, fmt.Errorf("destroy %s: %w", subj, err)
			}
			tomb.KeysDestroyed = true
		}
		msg := nats.NewMsg(subj)
		msg.Header.Set(headerErased, tomb.ErasureID)
		if msg.Data, err = json.Marshal(tomb); err != nil {
			return keyring.Tombstone{}, fmt.Errorf("encode tombstone %s: %w", subj, err)
		}
		_, err = s.js.PublishMsg(ctx, msg,
			jetstream.WithExpectStream(stream.Keys),
			jetstream.WithExpectLastSequencePerSubject(0))
		if err == nil {
			return tomb, nil
		}
		if !stream.WrongLastSequence(err) {
			return keyring.Tombstone{}, fmt.Errorf("store tombstone %s: %w", subj, err)
		}
	}
	return keyring.Tombstone{}, fmt.Errorf("destroy %s: keys kept being created, gave up after %d rounds", subj, destroyAttempts)
}

// secureDelete secure-deletes the message at seq, or finds it deleted: an
// instance erasing the same subject at once may delete it first. The server
// then answers "sequence not found", which nats.go passes on as text only,
// so a failed delete is checked against the stream rather than its message.
func (s *KeyStore) secureDelete(ctx context.Context, seq uint64) error {
	err := s.keys.SecureDeleteMsg(ctx, seq)
	if !errors.Is(err, jetstream.ErrMsgDeleteUnsuccessful) {
		return err
	}
	if _, gerr := s.keys.GetMsg(ctx, seq); errors.Is(gerr, jetstream.ErrMsgNotFound) {
		return nil
	}
	return err
}

// errCodeStoreFailed is the server's JSStreamStoreFailedF, which nats.go
// does not name: a message the stream's limits refuse.
const errCodeStoreFailed jetstream.ErrorCode = 10077

// isPerSubjectLimit reports whether err is the server refusing a message
// on a subject that holds as many as the stream allows.
func isPerSubjectLimit(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeStoreFailed &&
		strings.Contains(apiErr.Description, "maximum messages per subject exceeded")
}

// EventLog appends privacy events to the PRIVACY stream. It is safe for
// concurrent use.
type EventLog struct {
	js jetstream.JetStream
}

// NewEventLog returns an event log on the PRIVACY stream.
func NewEventLog(js jetstream.JetStream) *EventLog {
	return &EventLog{js: js}
}

// Append stores e on the privacy subject of its aggregate and returns its
// stream sequence. The event id is the message id, so JetStream drops a
// retried append as a duplicate.
func (l *EventLog) Append(ctx context.Context, e event.Envelope) (uint64, error) {
	return l.publish(ctx, e)
}

// AppendExpect is Append for a subject whose last stored event has stream
// sequence last (0: none). When another event was stored there since, it
// stores nothing and returns app.ErrConflict.
func (l *EventLog) AppendExpect(ctx context.Context, e event.Envelope, last uint64) (uint64, error) {
	seq, err := l.publish(ctx, e, jetstream.WithExpectLastSequencePerSubject(last))
	if stream.WrongLastSequence(err) {
		return 0, fmt.Errorf("append %s: %w", e.Type, app.ErrConflict)
	}
	return seq, err
}

func (l *EventLog) publish(ctx context.Context, e event.Envelope, opts ...jetstream.PublishOpt) (uint64, error) {
	m := e.Msg(stream.PrivacySubject(e.Tenant, e.Aggregate))
	ack, err := l.js.PublishMsg(ctx, m, append(opts, jetstream.WithExpectStream(stream.Privacy))...)
	if err != nil {
		return 0, fmt.Errorf("append %s to %s: %w", e.Type, m.Subject, err)
	}
	return ack.Sequence, nil
}

// LastSeq returns the stream sequence of the last event in PRIVACY.
func (l *EventLog) LastSeq(ctx context.Context) (uint64, error) {
	s, err := l.js.Stream(ctx, stream.Privacy)
	if err != nil {
		return 0, fmt.Errorf("read stream %s: %w", stream.Privacy, err)
	}
	return s.CachedInfo().State.LastSeq, nil
}

// Of returns every event of tenant's data subject person, oldest first.
func (l *EventLog) Of(ctx context.Context, tenant, person string) ([]app.StoredEvent, error) {
	var out []app.StoredEvent
	err := readEvents(ctx, l.js, stream.Privacy, stream.PrivacySubject(tenant, person), 0, func(seq uint64, e event.Envelope) (bool, error) {
		out = append(out, app.StoredEvent{Seq: seq, Event: e})
		return true, nil
	})
	return out, err
}

// Scan calls each with the events of tenant after sequence after, in
// stream order, until each returns false or an error or the events end.
func (l *EventLog) Scan(ctx context.Context, tenant string, after uint64, each func(app.StoredEvent) (bool, error)) error {
	return readEvents(ctx, l.js, stream.Privacy, stream.PrivacySubject(tenant, "*"), after, func(seq uint64, e event.Envelope) (bool, error) {
		return each(app.StoredEvent{Seq: seq, Event: e})
	})
}

// SeqAt returns the sequence of the first event stored at or after t, as
// the stream's leader holds it; the one after the last when there is none.
func (l *EventLog) SeqAt(ctx context.Context, t time.Time) (uint64, error) {
	// The last first: an event stored after it is stored after t, so the
	// leader finds it below.
	last, err := l.LastSeq(ctx)
	if err != nil {
		return 0, err
	}
	m, err := stream.MsgAt(ctx, l.js, stream.Privacy, t)
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return last + 1, nil
	case err != nil:
		return 0, err
	}
	return m.Sequence, nil
}

// Follow delivers every event of PRIVACY from sequence from on to apply,
// in stream order, and then each new one as it is stored, until the
// returned context is stopped. A message that is not a Parley event is
// delivered as the zero Envelope, so the sequence still advances.
func (l *EventLog) Follow(ctx context.Context, from uint64, apply func(seq uint64, e event.Envelope)) (jetstream.ConsumeContext, error) {
	cfg := jetstream.OrderedConsumerConfig{}
	if from > 1 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, from
	}
	cons, err := l.js.OrderedConsumer(ctx, stream.Privacy, cfg)
	if err != nil {
		return nil, fmt.Errorf("follow %s: %w", stream.Privacy, err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		meta, err := m.Metadata()
		if err != nil {
			return
		}
		e, err := event.Parse(m.Subject(), m.Headers(), m.Data())
		if err != nil {
			e = event.Envelope{}
		}
		apply(meta.Sequence.Stream, e)
	})
	if err != nil {
		return nil, fmt.Errorf("follow %s: %w", stream.Privacy, err)
	}
	return cc, nil
}
