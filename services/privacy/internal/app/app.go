// Package app holds the privacy service's use cases, one per file. It
// declares the stores it needs; internal/jetstream and internal/bus
// implement them.
package app

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"log/slog"
	"time"

	"github.com/parley-chat/parley/pkg/audit"
	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/chatapi"
	"github.com/parley-chat/parley/pkg/event"
	"github.com/parley-chat/parley/pkg/personkey"
	"github.com/parley-chat/parley/pkg/privacyapi"
	"github.com/parley-chat/parley/pkg/stream"

	"github.com/parley-chat/parley/services/privacy/internal/keyring"
)

// Errors of the use cases, besides *ValidationError.
var (
	// ErrForbidden means the principal may not make the call.
	ErrForbidden = errors.New("not allowed")
	// ErrNotFound means the subject or erasure asked about is unknown.
	ErrNotFound = errors.New("not found")
	// ErrErased means the subject was erased.
	ErrErased = errors.New("subject erased")
	// ErrAuditBroken means the tenant's audit trail lacks entries its
	// latest checkpoint counts, or the checkpoint does not verify: nothing
	// more is appended to it, so no act that must be audited happens.
	ErrAuditBroken = errors.New("audit trail does not hold what its checkpoint says")
	// ErrAuditMissing means the AUDIT stream itself is gone (deleted by
	// the bus's administrator): nothing is appended, as for ErrAuditBroken,
	// until it is restored or created again.
	ErrAuditMissing = errors.New("audit trail stream missing")
	// ErrConflict is returned by stores when an append lost a race with
	// another writer; the use cases retry, callers never see it.
	ErrConflict = errors.New("conflicting write")
)

// KeyStore keeps one wrapped key record per data subject.
type KeyStore interface {
	// Load returns the subject's record, keyring.ErrNotFound, or
	// keyring.ErrErased.
	Load(ctx context.Context, tenant, subject string) (keyring.Record, error)
	// Create stores the subject's first record, or returns keyring.ErrExists
	// when the subject already has one (or a tombstone): of two concurrent
	// Creates, one fails.
	Create(ctx context.Context, tenant, subject string, rec keyring.Record) error
	// Destroy destroys the subject's record for good and stores tomb in its
	// place, so that no record is ever created again; it returns the
	// tombstone stored, an earlier one when the subject already had one.
	Destroy(ctx context.Context, tenant, subject string, tomb keyring.Tombstone) (keyring.Tombstone, error)
}

// EventLog is the PRIVACY stream.
type EventLog interface {
	// Append stores e on its data subject's privacy subject and returns its
	// stream sequence. Appending the same event twice stores it once.
	Append(ctx context.Context, e event.Envelope) (uint64, error)
	// AppendExpect is Append when the subject's last event has sequence last
	// (0: none), and ErrConflict otherwise.
	AppendExpect(ctx context.Context, e event.Envelope, last uint64) (uint64, error)
	// LastSeq returns the sequence of the stream's last event.
	LastSeq(ctx context.Context) (uint64, error)
	// Of returns every event of tenant's data subject person, oldest
	// first: what the index reads of a person it does not hold.
	Of(ctx context.Context, tenant, person string) ([]StoredEvent, error)
	// Scan calls each with the events of tenant ("*": of every tenant)
	// stored after sequence after, in stream order, until each returns
	// false or an error (which Scan returns) or the events end.
	Scan(ctx context.Context, tenant string, after uint64, each func(StoredEvent) (bool, error)) error
	// SeqAt returns the sequence of the first event stored at or after t,
	// the one after the last when there is none.
	SeqAt(ctx context.Context, t time.Time) (uint64, error)
}

// StoredEvent is an event of the PRIVACY stream with its sequence.
type StoredEvent struct {
	Seq   uint64
	Event event.Envelope
}

// ErasureRecords keeps an entry for each erasure, by its id. PRIVACY holds
// an erasure on its data subject's subject, where neither one asked for by
// id nor those pending at a start can be found without reading it whole.
type ErasureRecords interface {
	// Record stores the erasure's entry unless it has one, and marks it
	// pending when pending is true.
	Record(ctx context.Context, r ErasureRef, pending bool) error
	// Done unmarks the erasure as pending; it need not be.
	Done(ctx context.Context, id string) error
	// Find returns the erasure's entry, false when it has none.
	Find(ctx context.Context, id string) (ErasureRef, bool, error)
	// Pending returns the erasures marked pending, by id.
	Pending(ctx context.Context) ([]ErasureRef, error)
	// Complete reports whether the entries hold every erasure PRIVACY
	// held when MarkComplete was called: set once they were recorded from
	// it (RecordErasures).
	Complete(ctx context.Context) (bool, error)
	MarkComplete(ctx context.Context) error
}

// ErasureRef is an erasure's entry in ErasureRecords.
type ErasureRef struct {
	ID          string      `json:"id"`
	Tenant      string      `json:"tenant"`
	Person      string      `json:"subject"`
	By          audit.Actor `json:"by"`
	RequestedAt time.Time   `json:"requested_at"`
}

// AuditLog is the AUDIT stream: one chain of entries per tenant.
type AuditLog interface {
	// Head returns the tenant's last entry and the number of entries up to
	// it; the zero AuditHead when there is none.
	Head(ctx context.Context, tenant string) (AuditHead, error)
	// Append stores e when the tenant's last entry has sequence last (0:
	// none), and returns ErrConflict otherwise.
	Append(ctx context.Context, e audit.Entry, last uint64) (uint64, error)
	// List returns up to limit entries stored at or after since, oldest
	// first, and whether more follow.
	List(ctx context.Context, tenant string, since time.Time, limit int) ([]audit.Entry, bool, error)
}

// AuditHead is the last entry of a tenant's chain: its stream sequence,
// its hash, and the number of entries up to it.
type AuditHead struct {
	Seq   uint64
	Hash  string
	Count int
}

// CheckpointStore keeps each tenant's latest signed audit checkpoint,
// apart from the AUDIT stream.
type CheckpointStore interface {
	// Latest returns the tenant's latest checkpoint as stored, its
	// signature unchecked; found is false when there is none.
	Latest(ctx context.Context, tenant string) (cp audit.Checkpoint, seq uint64, found bool, err error)
	// Advance stores c unless the stored checkpoint counts as many entries
	// or more.
	Advance(ctx context.Context, c audit.Checkpoint) error
}

// SettingsStore keeps one Settings per tenant.
type SettingsStore interface {
	// Get returns the tenant's settings; found is false when none were set.
	Get(ctx context.Context, tenant string) (s privacyapi.Settings, found bool, err error)
	Put(ctx context.Context, tenant string, s privacyapi.Settings) error
}

// ExpiryScheduler schedules the expiry of visitors' keys: when one fires,
// the visitor is erased unless something of theirs is still kept
// (internal/ephemeral).
type ExpiryScheduler interface {
	// ScheduleExpiry schedules the visitor's expiry for when data stored
	// now and kept for retention, and its grace, have passed, in place of
	// any earlier schedule of theirs.
	ScheduleExpiry(ctx context.Context, tenant, visitor string, retention time.Duration) error
}

// Chat reads conversations from the chat service, the only one that
// decrypts them.
type Chat interface {
	// ExportPage returns the page after after (nil: the first) of the
	// visitor's conversations, read on behalf of p: the JSON of a
	// chatapi.ExportResult as chat sent it, passed on undecoded, so that
	// a page in flight is held here once, not as text and struct and
	// text again.
	ExportPage(ctx context.Context, p auth.Principal, visitor string, after *chatapi.ExportCursor) (json.RawMessage, error)
}

// Broadcaster tells every service at once.
type Broadcaster interface {
	// Broadcast sends v on subject and returns once it is on its way.
	Broadcast(subject string, v any) error
}

// Stores are what App runs on.
type Stores struct {
	Keys   KeyStore
	Events EventLog
	Audit  AuditLog
	// Checkpoints keeps the signed checkpoints of the audit chains.
	Checkpoints CheckpointStore
	Settings    SettingsStore
	Bus         Broadcaster
	// Expiries schedules the expiry of a visitor's keys at registration,
	// which RegisterVisitor needs.
	Expiries ExpiryScheduler
	// Analytics deletes erased subjects' analytics rows; nil skips that
	// step of erasure.
	Analytics AnalyticsCleaner
	// Chat reads the conversations of an export; nil answers every page
	// ErrNotFound.
	Chat Chat
	// ChatLog reads CHAT for training exports; nil answers them
	// ErrNotFound.
	ChatLog ChatLog
	// Deliveries is the delivery log of bots and integrations; nil
	// answers ErrNotFound.
	Deliveries DeliveryLog
	// Erasures keeps the erasures by id; nil leaves an erasure found by
	// its id only while this instance holds it pending.
	Erasures ErasureRecords
	// Notices tells bots and integrations of erasures; nil skips that
	// step of erasure.
	Notices ErasureNotifier
	// Log hears what an operator must act on: a tenant's audit trail
	// refused, once until it is extended again. Nil discards it.
	Log *slog.Logger
	// KeyCacheSize bounds how many subjects' unwrapped keys, and how many
	// subjects' privacy events, are kept in memory (each the most recently
	// used); 0 means personkey.DefaultCacheSize.
	KeyCacheSize int
	// Sessions keeps sessions; the session calls need it, and erasure
	// revokes no session without it.
	Sessions SessionStore
	// Integrations keeps the tenants' bots and integrations; the
	// integration calls need it, and a bot's session refreshes only while
	// it holds the bot.
	Integrations IntegrationStore
	// StaffSessionTTL is how long a member of staff's session lasts from
	// sign-in; 0 means DefaultStaffSessionTTL.
	StaffSessionTTL time.Duration
	// PrivateWebhooks lets a webhook be registered at this host's or a
	// private network's address; otherwise only at a public one (see
	// checkWebhookURL).
	PrivateWebhooks bool
	// Now is the clock that stamps audit entries, tombstones and new keys,
	// and that sessions expire by; nil means time.Now. Tests advance their
	// own.
	Now func() time.Time
}

// ValidationError reports a request argument that breaks a rule. Its text
// names the field and never holds the value.
type ValidationError struct {
	Field  string
	Reason string
}

func (e *ValidationError) Error() string { return e.Field + " " + e.Reason }

// App is the privacy service. It is safe for concurrent use.
//
// Its view of the PRIVACY stream (consents, erasures) is an in-memory index
// fed by Apply, in stream order, from the first event on. A use case that
// appends waits until its own event is applied, so it answers from the same
// view it wrote to; one that would answer "not found" first catches up with
// the stream, as another instance may have just written what it looks for.
type App struct {
	ring   *keyring.Ring
	keys   KeyStore
	events EventLog
	audit  AuditLog
	// auditKey signs the checkpoints of the audit chains.
	auditKey    ed25519.PrivateKey
	checkpoints CheckpointStore
	settings    SettingsStore
	bus         Broadcaster
	expiries    ExpiryScheduler
	// analytics and chat may be nil; see Stores.
	analytics AnalyticsCleaner
	chat      Chat
	chatLog   ChatLog
	// deliveries and notices may be nil; see Stores.
	deliveries DeliveryLog
	notices    ErasureNotifier
	erasures   ErasureRecords
	log        *slog.Logger
	now        func() time.Time
	// sessions may be nil; see Stores.
	sessions        SessionStore
	staffSessionTTL time.Duration
	// integrations may be nil; see Stores.
	integrations    IntegrationStore
	privateWebhooks bool

	// keyCache holds unwrapped keys of the subjects used most recently, so
	// a subject's record is unwrapped about once per instance while memory
	// stays bounded. It caches keys only, never "erased", which the key
	// store and the erasure index answer.
	keyCache *personkey.LRU[subjectID, personkey.Keys]
	index    index
	chains   chains
}

type subjectID struct{ tenant, subject string }

// New returns the service wrapping keys with ring, signing audit
// checkpoints with auditKey and storing in s.
func New(ring *keyring.Ring, auditKey ed25519.PrivateKey, s Stores) *App {
	if s.Now == nil {
		s.Now = time.Now
	}
	return &App{
		ring:            ring,
		keys:            s.Keys,
		events:          s.Events,
		audit:           s.Audit,
		auditKey:        auditKey,
		checkpoints:     s.Checkpoints,
		settings:        s.Settings,
		bus:             s.Bus,
		expiries:        s.Expiries,
		analytics:       s.Analytics,
		chat:            s.Chat,
		chatLog:         s.ChatLog,
		deliveries:      s.Deliveries,
		notices:         s.Notices,
		erasures:        s.Erasures,
		log:             cmp.Or(s.Log, slog.New(slog.DiscardHandler)),
		now:             s.Now,
		sessions:        s.Sessions,
		staffSessionTTL: cmp.Or(s.StaffSessionTTL, DefaultStaffSessionTTL),
		integrations:    s.Integrations,
		privateWebhooks: s.PrivateWebhooks,
		keyCache:        personkey.NewLRU[subjectID, personkey.Keys](s.KeyCacheSize),
		index:           newIndex(s.KeyCacheSize),
		chains:          chains{heads: make(map[string]*chainHead)},
	}
}

// validToken checks an id that becomes a token of a NATS subject: anything
// else could address another subject's keys or events ("*", ">", ".").
func validToken(field, s string) error {
	if !stream.ValidToken(s) {
		return &ValidationError{Field: field, Reason: "must be 1 to 64 letters, digits, '-' or '_'"}
	}
	return nil
}

// allow returns ErrForbidden unless p belongs to tenant and has one of
// roles.
func allow(p auth.Principal, tenant string, roles ...auth.Role) error {
	if p.Tenant != tenant {
		return ErrForbidden
	}
	for _, r := range roles {
		if p.Role == r {
			return nil
		}
	}
	return ErrForbidden
}

// actor is who p is in the audit trail and in privacy events.
func actor(p auth.Principal) audit.Actor {
	return audit.Actor{Role: p.Role, ID: p.ID}
}
