package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/stream"

	"github.com/parley-chat/parley/services/privacy/internal/keyring"
)

// KEKState is which key-encryption key is in force, as the last message on
// stream.KEKStateSubjects in KEYS says. Both fields are fingerprints
// (keyring.Fingerprint), never keys.
type KEKState struct {
	// KEKID is the KEK every key record is wrapped under.
	KEKID string `json:"kek_id"`
	// RotatingTo is set while a rotation moves every record to this KEK:
	// until it completes, no key is wrapped.
	RotatingTo string `json:"rotating_to,omitempty"`
}

// rotationMarker names the state message of a rotation under way; the
// state of a KEK in force is on the subject named by its fingerprint.
const rotationMarker = "rotating"

// loadKEKState returns the KEK state and its stream sequence: the zero
// state and 0 when there is none yet. It reads the state from the stream's
// leader: a replica may not yet hold a state the leader stored a moment
// ago, and an instance that read none there after losing the race to
// claim the KEYS stream would take the claim it lost to for another KEK.
func loadKEKState(ctx context.Context, js jetstream.JetStream) (KEKState, uint64, error) {
	m, err := stream.LastMsg(ctx, js, stream.Keys, stream.KEKStateSubjects)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return KEKState{}, 0, nil
	}
	if err != nil {
		return KEKState{}, 0, fmt.Errorf("read the kek state: %w", err)
	}
	var st KEKState
	if err := json.Unmarshal(m.Data, &st); err != nil {
		return KEKState{}, 0, fmt.Errorf("decode the kek state on %s: %w", m.Subject, err)
	}
	return st, m.Sequence, nil
}

// publishKEKState stores st on the subject named name, expecting the KEK
// state to be the one at sequence last (0: none): it fails with an error
// for which isWrongLastSequence holds when another state was stored since.
func publishKEKState(ctx context.Context, js jetstream.JetStream, name string, st KEKState, last uint64) (uint64, error) {
	msg := nats.NewMsg(stream.KEKStateSubject(name))
	var err error
	if msg.Data, err = json.Marshal(st); err != nil {
		return 0, fmt.Errorf("encode the kek state: %w", err)
	}
	ack, err := js.PublishMsg(ctx, msg,
		jetstream.WithExpectStream(stream.Keys),
		jetstream.WithExpectLastSequenceForSubject(last, stream.KEKStateSubjects))
	if err != nil {
		return 0, fmt.Errorf("store the kek state: %w", err)
	}
	return ack.Sequence, nil
}

// check returns nil when st lets keys be wrapped under kekID, and why not
// otherwise.
func (st KEKState) check(kekID string) error {
	switch {
	case st.RotatingTo != "":
		return fmt.Errorf("from %s to %s: %w", st.KEKID, st.RotatingTo, keyring.ErrRotating)
	case st.KEKID != kekID:
		return fmt.Errorf("kek %s, in force %s: %w", kekID, st.KEKID, keyring.ErrKEKRetired)
	}
	return nil
}

// isKEKState reports whether a KEYS subject holds the KEK state rather than
// a subject's keys.
func isKEKState(subj string) bool {
	return strings.HasPrefix(subj, strings.TrimSuffix(stream.KEKStateSubjects, "*"))
}
