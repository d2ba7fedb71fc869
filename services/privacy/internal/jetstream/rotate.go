package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/privacyapi"
	"github.com/parley-chat/parley/pkg/stream"

	"github.com/parley-chat/parley/services/privacy/internal/app"
	"github.com/parley-chat/parley/services/privacy/internal/keyring"
)

// Rotation counts what Rotate did.
type Rotation struct {
	// Rewrapped records were moved from the old KEK to the new one.
	Rewrapped int
	// Current records were wrapped under the new KEK already: a rotation
	// that stopped half way and was run again.
	Current int
	// Tombstones are erased subjects: they hold no key and are left as
	// they are.
	Tombstones int
	// Resealed integrations' secrets were moved from the old KEK to the new
	// one; CurrentSecrets were under the new one already.
	Resealed, CurrentSecrets int
}

// ErrForeignKEK means a KEYS record is wrapped under neither the old nor the
// new KEK of a rotation.
var ErrForeignKEK = errors.New("record wrapped under a key-encryption key that is neither the old nor the new one")

// Rotate re-wraps every key record of the KEYS stream that is wrapped under
// from so that it is wrapped under to, and calls progress after each
// record it looked at (records and tombstones) with how many it has and
// how many there were when it started.
//
// First it stores a rotation marker as the KEK state (see KEKState): from
// then on the server refuses every new key record, whichever instance
// wraps it, and no instance starts, so no key is ever wrapped under a KEK
// the rotation misses or retires. idle is called before the marker is
// stored and again after, before anything is re-wrapped; when it fails,
// Rotate withdraws the marker it stored and returns its error. It is how
// the caller makes sure no privacy service is serving: one started before
// the marker would otherwise still answer with the old KEK.
//
// Each record is replaced in two steps, so a crash never loses a key: the
// new record is published expecting the old one to be the subject's last
// message (an erasure or another rotation in between makes the publish
// fail, and the subject is looked at again), then the old record is
// secure-deleted, which overwrites its bytes in the store files. For the
// moment between the two steps a subject holds two messages, so Rotate
// raises the stream's per-subject limit to 2 and sets it back to 1 before
// it completes. A record's remaining Nats-TTL is carried over. Last, it
// stores to as the KEK in force, which lets instances holding it start and
// wrap keys again.
//
// Rotate stops at the first record it cannot move (ErrForeignKEK, a
// record that does not unwrap, a store error) and returns what it did so
// far, leaving the marker in place; running it again with the same keys
// resumes.
func Rotate(ctx context.Context, js jetstream.JetStream, from, to *keyring.Ring, idle func(context.Context) error, progress func(done, total int)) (r Rotation, err error) {
	s, err := js.Stream(ctx, stream.Keys)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return r, nil
	}
	if err != nil {
		return r, fmt.Errorf("rotate: open stream %s: %w", stream.Keys, err)
	}
	marker, committed, err := beginRotation(ctx, js, s, from.KEKID(), to.KEKID(), idle)
	if err != nil {
		return r, err
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(stream.KEKStateSubjects))
	if err != nil {
		return r, fmt.Errorf("rotate: %w", err)
	}
	states := 0
	for _, n := range info.State.Subjects {
		states += int(n)
	}
	total, last := int(info.State.Msgs)-states, info.State.LastSeq
	// Once the new KEK is in force, instances may be creating keys again:
	// a subject must not hold two records then.
	restore := func() error { return nil }
	if !committed {
		if restore, err = allowTwoPerSubject(ctx, js, info.Config); err != nil {
			return r, err
		}
	}
	restored := false
	defer func() {
		if !restored {
			err = errors.Join(err, restore())
		}
	}()
	done := 0
	for seq := uint64(1); seq <= last; {
		m, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject("keys.>"))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return r, fmt.Errorf("rotate: read %s from %d: %w", stream.Keys, seq, err)
		}
		if m.Sequence > last {
			break
		}
		seq = m.Sequence + 1
		if isKEKState(m.Subject) {
			continue
		}
		if err := rotateOne(ctx, js, s, m, from, to, &r); err != nil {
			return r, err
		}
		done++
		if progress != nil {
			progress(done, total)
		}
	}
	// The secrets before the new KEK is in force: an instance starting
	// with it must be able to open every one.
	if err := resealSecrets(ctx, js, from, to, &r); err != nil {
		return r, err
	}
	// Back to one record per subject before instances may wrap keys again.
	restored = true
	if err := restore(); err != nil {
		return r, err
	}
	if committed {
		return r, nil
	}
	return r, commitRotation(ctx, js, s, marker, from.KEKID(), to.KEKID())
}

// beginRotation stores the rotation marker as the KEK state, expecting the
// state from is in force, and returns its sequence; or finds it stored by
// an earlier run that stopped half way. committed is set when to is in
// force already: the rotation completed, and a run again only counts.
func beginRotation(ctx context.Context, js jetstream.JetStream, s jetstream.Stream, from, to string, idle func(context.Context) error) (marker uint64, committed bool, err error) {
	st, seq, err := loadKEKState(ctx, js)
	if err != nil {
		return 0, false, fmt.Errorf("rotate: %w", err)
	}
	switch {
	case st.RotatingTo == to && st.KEKID == from:
		// Resumed: no instance could start since the marker was stored.
		return seq, false, idle(ctx)
	case st.RotatingTo != "":
		return 0, false, fmt.Errorf("rotate: a rotation from %s to %s was begun and has not completed; run it again with that new KEK: %w", st.KEKID, st.RotatingTo, ErrForeignKEK)
	case seq != 0 && st.KEKID == to:
		return seq, true, nil
	case seq != 0 && st.KEKID != from:
		return 0, false, fmt.Errorf("rotate: the KEK in force is %s, neither the old %s nor the new %s: %w", st.KEKID, from, to, ErrForeignKEK)
	}
	if err := idle(ctx); err != nil {
		return 0, false, err
	}
	marker, err = publishKEKState(ctx, js, rotationMarker, KEKState{KEKID: from, RotatingTo: to}, seq)
	if stream.WrongLastSequence(err) {
		return 0, false, fmt.Errorf("rotate: the KEK state changed while the rotation began; run it again: %w", err)
	}
	if err != nil {
		return 0, false, fmt.Errorf("rotate: %w", err)
	}
	// An instance that started before the marker was stored and is still
	// serving holds the old KEK only.
	if err := idle(ctx); err != nil {
		if derr := s.DeleteMsg(context.WithoutCancel(ctx), marker); derr != nil {
			err = errors.Join(err, fmt.Errorf("rotate: withdraw the rotation marker: %w", derr))
		}
		return 0, false, err
	}
	return marker, false, nil
}

// commitRotation stores to as the KEK in force, expecting the marker to be
// the state still, then deletes the marker and from's state, whose
// subjects a later rotation uses again.
func commitRotation(ctx context.Context, js jetstream.JetStream, s jetstream.Stream, marker uint64, from, to string) error {
	if _, err := publishKEKState(ctx, js, to, KEKState{KEKID: to}, marker); err != nil {
		return fmt.Errorf("rotate: make the new KEK the one in force: %w", err)
	}
	for _, name := range []string{rotationMarker, from} {
		m, err := s.GetLastMsgForSubject(ctx, stream.KEKStateSubject(name))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err == nil {
			err = s.DeleteMsg(ctx, m.Sequence)
		}
		if err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			return fmt.Errorf("rotate: remove the old kek state %s: %w", name, err)
		}
	}
	return nil
}

// allowTwoPerSubject raises the KEYS stream's per-subject limit to 2 and
// returns the function that sets cfg's limit back.
func allowTwoPerSubject(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) (func() error, error) {
	raised := cfg
	raised.MaxMsgsPerSubject = 2
	if _, err := js.UpdateStream(ctx, raised); err != nil {
		return nil, fmt.Errorf("rotate: raise the per-subject limit of %s: %w", stream.Keys, err)
	}
	return func() error {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if _, err := js.UpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("rotate: restore the per-subject limit of %s: %w", stream.Keys, err)
		}
		return nil
	}, nil
}

// rotateOne moves the record in m, stored at its sequence, to the new KEK.
func rotateOne(ctx context.Context, js jetstream.JetStream, s jetstream.Stream, m *jetstream.RawStreamMsg, from, to *keyring.Ring, r *Rotation) error {
	if m.Header.Get(headerErased) != "" {
		r.Tombstones++
		return nil
	}
	tenant, subject, ok := keysTokens(m.Subject)
	if !ok {
		return fmt.Errorf("rotate: unexpected subject %q in %s", m.Subject, stream.Keys)
	}
	var rec keyring.Record
	if err := json.Unmarshal(m.Data, &rec); err != nil {
		return fmt.Errorf("rotate: decode %s: %w", m.Subject, err)
	}
	switch rec.KEKID {
	case to.KEKID():
		r.Current++
		return nil
	case from.KEKID():
	default:
		return fmt.Errorf("rotate: %s: kek %s: %w", m.Subject, rec.KEKID, ErrForeignKEK)
	}
	keys, err := from.Unwrap(tenant, subject, rec)
	if err != nil {
		return fmt.Errorf("rotate: %w", err)
	}
	next, err := to.Wrap(tenant, subject, keys, rec.CreatedAt)
	if err != nil {
		return fmt.Errorf("rotate: %w", err)
	}
	msg := nats.NewMsg(m.Subject)
	if msg.Data, err = json.Marshal(next); err != nil {
		return fmt.Errorf("rotate: encode %s: %w", m.Subject, err)
	}
	opts := []jetstream.PublishOpt{
		jetstream.WithExpectStream(stream.Keys),
		jetstream.WithExpectLastSequencePerSubject(m.Sequence),
	}
	if ttl, ok := remainingTTL(m); ok {
		opts = append(opts, jetstream.WithMsgTTL(ttl))
	}
	_, err = js.PublishMsg(ctx, msg, opts...)
	if stream.WrongLastSequence(err) {
		return changedMeanwhile(ctx, s, m.Subject, r)
	}
	if err != nil {
		return fmt.Errorf("rotate: store %s: %w", m.Subject, err)
	}
	if err := s.SecureDeleteMsg(ctx, m.Sequence); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("rotate: destroy the old record of %s: %w", m.Subject, err)
	}
	r.Rewrapped++
	return nil
}

// changedMeanwhile accounts for a subject whose record was replaced while
// it was being rotated: erased (Destroy secure-deleted the old record) or
// re-wrapped by another rotation.
func changedMeanwhile(ctx context.Context, s jetstream.Stream, subj string, r *Rotation) error {
	m, err := s.GetLastMsgForSubject(ctx, subj)
	if err != nil {
		return fmt.Errorf("rotate: reread %s: %w", subj, err)
	}
	if m.Header.Get(headerErased) != "" {
		r.Tombstones++
		return nil
	}
	return fmt.Errorf("rotate: %s changed while it was being re-wrapped; run the rotation again", subj)
}

// remainingTTL returns what is left of m's Nats-TTL, at least a second, and
// false when m has none.
func remainingTTL(m *jetstream.RawStreamMsg) (time.Duration, bool) {
	v := m.Header.Get(jetstream.MsgTTLHeader)
	if v == "" {
		return 0, false
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		secs, err := strconv.ParseInt(v, 10, 64)
		if err != nil || secs <= 0 {
			// "never", or what the server would not have stored.
			return 0, false
		}
		d = time.Duration(secs) * time.Second
	}
	return max(time.Until(m.Time.Add(d)).Truncate(time.Second), time.Second), true
}

// keysTokens splits a KEYS subject into its tenant and data subject.
func keysTokens(subj string) (tenant, subject string, ok bool) {
	parts := strings.Split(subj, ".")
	if len(parts) != 3 || parts[0] != "keys" {
		return "", "", false
	}
	return parts[1], parts[2], true
}

// resealSecrets seals again under to every integration secret of the
// INTEGRATIONS bucket sealed under from. Each record is replaced at the
// revision it was read at, so a change made meanwhile (an admin's, once
// instances hold to) is never overwritten: the record is read again. The
// bucket's history of 1 keeps no older version; a record under neither KEK
// stops the rotation with ErrForeignKEK.
func resealSecrets(ctx context.Context, js jetstream.JetStream, from, to *keyring.Ring, r *Rotation) error {
	kv, err := js.KeyValue(ctx, privacyapi.IntegrationsBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("rotate: open %s: %w", privacyapi.IntegrationsBucket, err)
	}
	recs, err := listIntegrations(ctx, kv, "")
	if err != nil {
		return fmt.Errorf("rotate: %w", err)
	}
	for _, rec := range recs {
		if err := resealOne(ctx, kv, privacyapi.IntegrationKey(rec.Tenant, rec.ID), from, to, r); err != nil {
			return err
		}
	}
	return nil
}

// resealAttempts bounds the writes a secret's resealing may lose to
// changes of its record.
const resealAttempts = 5

func resealOne(ctx context.Context, kv jetstream.KeyValue, key string, from, to *keyring.Ring, r *Rotation) error {
	for range resealAttempts {
		rec, rev, err := getIntegration(ctx, kv, key)
		switch {
		case errors.Is(err, app.ErrNotFound):
			// Deleted meanwhile.
			return nil
		case err != nil:
			return fmt.Errorf("rotate: %w", err)
		case rec.KEKID == to.KEKID():
			r.CurrentSecrets++
			return nil
		case rec.KEKID != from.KEKID():
			return fmt.Errorf("rotate: integration %s: kek %s: %w", key, rec.KEKID, ErrForeignKEK)
		}
		secret, err := from.OpenSecret(rec.Tenant, rec.ID, rec.KEKID, rec.SealedSecret)
		if err != nil {
			return fmt.Errorf("rotate: %w", err)
		}
		if rec.SealedSecret, err = to.SealSecret(rec.Tenant, rec.ID, secret); err != nil {
			return fmt.Errorf("rotate: %w", err)
		}
		rec.KEKID = to.KEKID()
		b, err := json.Marshal(rec)
		if err != nil {
			return fmt.Errorf("rotate: encode integration %s: %w", key, err)
		}
		_, err = kv.Update(ctx, key, b, rev)
		if stream.WrongLastSequence(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("rotate: store integration %s: %w", key, err)
		}
		r.Resealed++
		return nil
	}
	return fmt.Errorf("rotate: integration %s changed %d times while it was being resealed; run the rotation again", key, resealAttempts)
}
