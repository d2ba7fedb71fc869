package audit

import (
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// A chain alone cannot show that its newest entries were removed, or that
// all of them were (the AUDIT stream deleted). A Checkpoint can: it is the
// chain's length and head at some moment, signed with a key the bus
// administrator does not hold (the privacy service's audit key). A trail
// shorter than a checkpoint, or whose entry at the checkpoint's count has
// another hash, lost entries; whoever deleted them cannot sign a checkpoint
// that hides it.

// CheckpointSubject is the subject of the tenant's latest checkpoint, on
// the AUDIT_CHECKPOINTS stream, apart from the chain's own stream.
func CheckpointSubject(tenant string) string { return "audit_checkpoint." + tenant }

// Checkpoint is a signed statement that the tenant's chain had Count
// entries, the last of them with hash Head, at time At.
type Checkpoint struct {
	Tenant string    `json:"tenant"`
	Count  int       `json:"count"`
	Head   string    `json:"head"`
	At     time.Time `json:"at"`
	// Signature is the Ed25519 signature of the other fields' canonical
	// encoding (base64 in JSON).
	Signature []byte `json:"signature"`
}

// checkpointVersion starts every signed encoding, so a checkpoint's
// signature can never pass for an entry's or a token's.
const checkpointVersion = "parley-audit-checkpoint-v1"

// signed is the canonical encoding of c's fields but Signature, length
// prefixed as ComputeHash does.
func (c Checkpoint) signed() []byte {
	var b []byte
	for _, f := range []string{
		checkpointVersion,
		c.Tenant,
		strconv.Itoa(c.Count),
		c.Head,
		c.At.UTC().Format(time.RFC3339Nano),
	} {
		b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
		b = append(b, f...)
	}
	return b
}

// Sign returns c with its Signature made with key.
func (c Checkpoint) Sign(key ed25519.PrivateKey) Checkpoint {
	c.Signature = ed25519.Sign(key, c.signed())
	return c
}

// ErrBadSignature is returned by Checkpoint.Verify for a checkpoint that
// was not signed by the key given, or was changed after it was signed.
var ErrBadSignature = errors.New("audit checkpoint signature does not verify")

// Verify returns nil when c was signed with the private half of pub, and
// an error wrapping ErrBadSignature otherwise.
func (c Checkpoint) Verify(pub ed25519.PublicKey) error {
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("%w: a public key of %d bytes, want %d", ErrBadSignature, len(pub), ed25519.PublicKeySize)
	}
	if !ed25519.Verify(pub, c.signed(), c.Signature) {
		return fmt.Errorf("%w: not signed by this key, or changed since", ErrBadSignature)
	}
	return nil
}

// CheckpointError reports a trail that lacks what its checkpoint says it
// held: Len is the number of entries the trail has.
type CheckpointError struct {
	Checkpoint Checkpoint
	Len        int
	Reason     string
}

func (e *CheckpointError) Error() string {
	return fmt.Sprintf("%v: the checkpoint of %s says %d entries, the last with hash %s: %s", ErrBroken,
		e.Checkpoint.At.UTC().Format(time.RFC3339), e.Checkpoint.Count, e.Checkpoint.Head, e.Reason)
}

func (e *CheckpointError) Unwrap() error { return ErrBroken }

// CheckCheckpoint checks that entries, a whole chain oldest first that
// Verify found sound, hold what c says: at least c.Count entries, the one
// at c.Count with hash c.Head. It returns a *CheckpointError otherwise. It
// does not check c's signature: see Checkpoint.Verify.
func CheckCheckpoint(entries []Entry, c Checkpoint) error {
	switch {
	case len(entries) == 0 && c.Count > 0:
		return &CheckpointError{Checkpoint: c, Reason: "the trail has no entries: it was deleted"}
	case len(entries) < c.Count:
		return &CheckpointError{Checkpoint: c, Len: len(entries),
			Reason: fmt.Sprintf("the trail has %d: its newest entries were removed", len(entries))}
	case c.Count > 0 && entries[c.Count-1].Hash != c.Head:
		return &CheckpointError{Checkpoint: c, Len: len(entries),
			Reason: fmt.Sprintf("entry %d has hash %s: the trail was rewritten", c.Count, entries[c.Count-1].Hash)}
	}
	return nil
}
