// Package audit is Parley's tamper-evident audit trail: who read, exported,
// erased or changed what, and when.
//
// Entries of a tenant form a hash chain on the AUDIT stream subject
// Subject(tenant): each entry carries the hash of the one before it
// (PrevHash, empty for the first) and its own Hash, a SHA-256 over a
// canonical encoding of its fields and PrevHash. Changing any field of an
// entry, or removing or reordering entries, breaks the chain where it
// happened, and Verify names that entry. What a chain alone cannot show is
// the removal of its newest entries, or of all of them: a signed
// Checkpoint of its length and head does (CheckCheckpoint).
//
// The privacy service is the chain's only writer (see privacyapi
// AppendAuditSubject), so entries are appended one after another.
package audit

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/parley-chat/parley/pkg/auth"
)

// Actions recorded in the trail. The list is open: a new kind of act gets a
// new dotted lowercase name.
const (
	// ActionTranscriptRead is a staff read of a conversation's messages;
	// the target is "conversation:<id>".
	ActionTranscriptRead = "transcript.read"
	// ActionExport is a staff export of a subject's data; the target is
	// "subject:<id>".
	ActionExport = "export"
	// ActionErase is a staff erasure of a subject; the target is
	// "subject:<id>".
	ActionErase = "erase"
	// ActionSettingsChange is a change of the tenant's settings; the target
	// is "settings" followed by the new values.
	ActionSettingsChange = "settings.change"
	// ActionSignIn is a member of staff signing in through the tenant's
	// identity provider; the actor is who signed in, the target
	// "session:<family id>".
	ActionSignIn = "session.sign_in"
	// ActionSignOut is a person ending one of their sessions; the target is
	// "session:<family id>".
	ActionSignOut = "session.sign_out"
	// ActionRefreshReuse is a spent refresh token presented again, the sign
	// of a stolen token: its whole session was revoked. The actor is the
	// session's owner, the target "session:<family id>".
	ActionRefreshReuse = "session.refresh_reuse"
	// ActionSignOutEverywhere is every session of a person revoked, by
	// themself or by an admin; the target is "subject:<id>".
	ActionSignOutEverywhere = "session.sign_out_everywhere"
	// ActionTrainingExport is an admin's export of the tenant's training
	// corpus; the target is "training_export:<export id>".
	ActionTrainingExport = "training.export"
	// ActionIntegrationPut is a bot or integration registered or changed
	// by an admin; the target is "bot:<id>" or "integration:<id>"
	// followed by where it is delivered to, never its secret.
	ActionIntegrationPut = "integration.put"
	// ActionIntegrationDelete is a bot or integration removed by an admin,
	// a bot's sessions with it; the target is "bot:<id>" or
	// "integration:<id>".
	ActionIntegrationDelete = "integration.delete"
	// ActionIntegrationSession is a bot's sessions revoked and a new one
	// started by an admin; the target is "bot:<id>".
	ActionIntegrationSession = "integration.session"
	// ActionStreamOpen is a member of staff opening the live stream, which
	// shows them message text as it is posted; the target is "stream:" and
	// what it shows, "tenant" (a supervisor or admin: every conversation)
	// or "assigned" (an agent: theirs and the unassigned ones), followed by
	// " since:<seq>" when the stream replays what was stored after seq.
	ActionStreamOpen = "stream.open"
)

// Subject is the AUDIT stream subject of a tenant's chain.
func Subject(tenant string) string { return "audit." + tenant }

// Actor is the principal who acted: a role and an opaque id, never a name.
type Actor struct {
	Role auth.Role `json:"role"`
	ID   string    `json:"id"`
}

// Entry is one act in a tenant's trail. Target names what was acted on by
// kind and opaque id ("conversation:<id>", "subject:<id>"); like every field
// it holds no personal data.
type Entry struct {
	At       time.Time `json:"at"`
	Tenant   string    `json:"tenant"`
	Actor    Actor     `json:"actor"`
	Action   string    `json:"action"`
	Target   string    `json:"target"`
	PrevHash string    `json:"prev_hash"`
	Hash     string    `json:"hash"`
}

// hashVersion starts every hashed encoding, so a future encoding can never
// collide with this one.
const hashVersion = "parley-audit-v1"

// ComputeHash returns the hex SHA-256 of the canonical encoding of e's
// fields and PrevHash; e.Hash itself is not part of it. The encoding
// length-prefixes every field, so no two different entries encode alike, and
// writes the time as UTC RFC 3339 with nanoseconds, so an entry hashes the
// same after a JSON round trip.
func (e Entry) ComputeHash() string {
	var b []byte
	for _, f := range []string{
		hashVersion,
		e.At.UTC().Format(time.RFC3339Nano),
		e.Tenant,
		string(e.Actor.Role),
		e.Actor.ID,
		e.Action,
		e.Target,
		e.PrevHash,
	} {
		b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
		b = append(b, f...)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Link returns e appended after an entry whose hash is prev ("" for the
// first entry of a chain): PrevHash and Hash set.
func (e Entry) Link(prev string) Entry {
	e.PrevHash = prev
	e.Hash = e.ComputeHash()
	return e
}

// ErrBroken is wrapped by every error of Verify.
var ErrBroken = errors.New("audit chain broken")

// ChainError reports the first entry at which a chain breaks: Index is its
// position in the slice given to Verify.
type ChainError struct {
	Index  int
	Entry  Entry
	Reason string
}

func (e *ChainError) Error() string {
	return fmt.Sprintf("%v at entry %d (%s %s by %s/%s on %s): %s", ErrBroken, e.Index,
		e.Entry.At.UTC().Format(time.RFC3339Nano), e.Entry.Action, e.Entry.Actor.Role, e.Entry.Actor.ID, e.Entry.Target, e.Reason)
}

func (e *ChainError) Unwrap() error { return ErrBroken }

// Verify checks a whole chain, oldest entry first: the first entry must
// start the chain and each must carry its own hash and link to the one
// before. It returns nil for a sound chain (an empty one included) and
// otherwise a *ChainError naming the first entry where it breaks: an entry
// that was changed, or the one after an entry that was removed.
func Verify(entries []Entry) error {
	prev := ""
	for i, e := range entries {
		switch {
		case e.PrevHash != prev && i == 0:
			return &ChainError{Index: i, Entry: e, Reason: "the chain does not start here: entries before it were removed"}
		case e.PrevHash != prev:
			return &ChainError{Index: i, Entry: e, Reason: "it does not link to the entry before: an entry between them was removed or reordered"}
		case e.ComputeHash() != e.Hash:
			return &ChainError{Index: i, Entry: e, Reason: "its hash does not match its content: the entry was changed"}
		}
		prev = e.Hash
	}
	return nil
}
