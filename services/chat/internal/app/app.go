// Package app holds the chat service's use cases, one per file: the commands
// that append conversation events with optimistic concurrency, and the
// queries: the inbox, served from the in-memory summaries, and transcripts
// and exports, read from the event store when asked.
//
// A Service is safe for concurrent use. Commands on one conversation are
// serialised within an instance and made safe across instances by the event
// store's expected-version check; commands on different conversations never
// wait for each other.
package app

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley-chat/parley/pkg/event"
	"github.com/parley-chat/parley/pkg/personkey"
	"github.com/parley-chat/parley/pkg/privacyapi"

	"github.com/parley-chat/parley/services/chat/internal/conversation"
)

// Errors of the use cases, besides the domain's.
var (
	// ErrContended means a command lost the race for the conversation to
	// other writers more than MaxTries times in a row.
	ErrContended = errors.New("conversation changed concurrently, try again")
	// ErrStale is returned by an EventStore's Append when the conversation
	// has events past the expected version.
	ErrStale = errors.New("conversation has newer events")
	// ErrDuplicateID is returned by an EventStore's Append when an event
	// of the same id is stored already in another conversation, or was
	// stored and removed since: only a derived id (an idempotency key used
	// again elsewhere, or repeated after its message was withdrawn) does
	// that.
	ErrDuplicateID = errors.New("event id in use in another conversation")
	// ErrNotAudited means a staff member's read could not be written to
	// the audit trail, so nothing of it is answered.
	ErrNotAudited = errors.New("the read could not be written to the audit trail, so the transcript is not shown")
	// ErrNoConsent means a bot asked for a transcript whose visitor has
	// not allowed the assistant (their ai consent does not hold now).
	ErrNoConsent = errors.New("the visitor has not allowed the assistant")
	// ErrNoAgents means the Service keeps no agents' presence or capacity
	// (Options.Agents is nil), so none can be set.
	ErrNoAgents = errors.New("agents' presence and capacity are not kept")
)

// MaxTries bounds how often a command is decided again after losing a race.
const MaxTries = 5

// Record is one stored event and its stream sequence.
type Record struct {
	Seq   uint64
	Event event.Envelope
	// Expires is when the store removes the event by its tenant's
	// retention; zero when only the stream's MaxAge applies.
	Expires time.Time
}

// expired reports whether r is past its expiry at now.
func (r Record) expired(now time.Time) bool {
	return !r.Expires.IsZero() && !now.Before(r.Expires)
}

// EventStore appends and reads conversation events.
type EventStore interface {
	// Append stores e if the conversation's last event is at stream
	// sequence version (0: it has none) and returns e's sequence. It returns
	// an error wrapping ErrStale when the conversation moved on, also when
	// it holds another event of e's id (stored by a repeated request), and
	// ErrDuplicateID when another conversation does, or when the event of
	// e's id was removed while the store still knows the id. A resend of e itself
	// that the store has already returns the sequence it has. With a ttl
	// above 0 the store removes e that long after storing it.
	Append(ctx context.Context, e event.Envelope, version uint64, ttl time.Duration) (uint64, error)
	// Load returns the conversation's events after stream sequence after,
	// oldest first.
	Load(ctx context.Context, tenant, conversation string, after uint64) ([]Record, error)
	// Read returns up to limit of the conversation's events after stream
	// sequence after, oldest first, and whether the store holds more past
	// them. It may return fewer than limit with more set, to bound what one
	// read holds.
	Read(ctx context.Context, tenant, conversation string, after uint64, limit int) (rs []Record, more bool, err error)
	// Last returns the stream sequence of the conversation's last event
	// the store holds, 0 when it holds none. Events expire each by its own
	// ttl, so a later event can be gone before an earlier one: Last is
	// then below the sequence of the last event appended, and an append
	// must expect Last.
	Last(ctx context.Context, tenant, conversation string) (uint64, error)
	// Head returns the stream sequence of the last event stored, of any
	// conversation, 0 when none ever was: how far a follower of the store
	// must get to have applied every write answered so far, unless the
	// event was removed since, which a follower never gets (see Next).
	Head(ctx context.Context) (uint64, error)
	// Next returns the stream sequence of the first event the store holds
	// after stream sequence after, of any conversation; 0 when it holds
	// none.
	Next(ctx context.Context, after uint64) (uint64, error)
	// Delete removes the event at stream sequence seq, overwriting its
	// bytes where the store keeps them on disk, so that what it sealed
	// cannot be recovered even with its key. An event no longer there is
	// not an error.
	Delete(ctx context.Context, seq uint64) error
}

// Keys fetches a data subject's keys; *personkey.Cache is one.
type Keys interface {
	// Get returns the subject's keys, personkey.ErrNotFound when they have
	// none, wrapping personkey.ErrErased too when they were erased.
	Get(ctx context.Context, tenant, subject string) (personkey.Keys, error)
	// Erased reports whether the subject was erased, leaving no keys in
	// memory: not when they have no keys for another reason.
	Erased(ctx context.Context, tenant, subject string) (bool, error)
}

// Policies tells each tenant's settings; *jetstream.Settings is one.
type Policies interface {
	// Get returns the tenant's settings, privacyapi.DefaultSettings when
	// it set none.
	Get(tenant string) privacyapi.Settings
}

// Auditor writes an act to its tenant's audit trail, which the privacy
// service keeps (privacyapi.AppendAuditSubject), and returns once it is
// stored.
type Auditor interface {
	Audit(ctx context.Context, act privacyapi.AppendAuditArgs) error
}

// Consents tells whether a visitor's consent to a purpose holds now, which
// the privacy service keeps (privacyapi.GetConsentSubject). It answers false
// whenever it cannot tell: a purpose is gated on a yes.
type Consents interface {
	AI(ctx context.Context, tenant, visitor string) bool
}

// defaultPolicies gives every tenant the default settings.
type defaultPolicies struct{}

func (defaultPolicies) Get(string) privacyapi.Settings { return privacyapi.DefaultSettings() }

// Options tune a Service. The zero value works.
type Options struct {
	// Policies are the tenants' settings, which set how long events are
	// kept; nil means the defaults for every tenant.
	Policies Policies
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// OnConflict, when set, runs each time an append loses the race for a
	// conversation to another writer.
	OnConflict func()
	// Auditor records staff members' reads of transcripts; nil refuses
	// every staff read with ErrNotAudited.
	Auditor Auditor
	// Agents keeps agents' presence and capacity, which assignments go
	// by; nil assigns to anyone and refuses to set them with ErrNoAgents.
	Agents Agents
	// Profiles keeps the visitors' profiles; nil keeps none: setting one
	// fails and none is shown.
	Profiles ProfileStore
	// Bots tells which bots are registered; nil knows none, so every
	// assignment to a bot is refused.
	Bots Bots
	// Consents tells whether visitors allowed the assistant, which a bot's
	// read of a transcript needs; nil refuses every such read with
	// ErrNoConsent.
	Consents Consents
}

// Service runs the chat use cases.
type Service struct {
	events     EventStore
	view       View
	keys       Keys
	policies   Policies
	now        func() time.Time
	onConflict func()
	auditor    Auditor
	agents     Agents
	profiles   ProfileStore
	bots       Bots
	consents   Consents
	state      state
	// opening serialises the openings of each visitor (see Open).
	opening stripes
	// viewMu guards dirty, the entries Project changed since the view was
	// last written, projected, the last event Project applied (or Skip
	// passed), advanced, closed when projected moves on while a read
	// waits for it (see followed), and unfollowed, set once the follower
	// stopped for good.
	viewMu     sync.Mutex
	dirty      map[*entry]struct{}
	projected  uint64
	advanced   chan struct{}
	unfollowed bool
	// viewing serialises the calls of WriteView; applied is the sequence
	// last recorded in the View, under it. hurry counts the calls waiting
	// that may not be paced.
	viewing sync.Mutex
	applied uint64
	hurry   atomic.Int32
	// writing serialises the writes to the View of WriteView's steps,
	// EraseVisitor and Forget.
	writing sync.Mutex
}

// New returns a Service storing events in events, keeping their view in
// view and sealing them with keys.
func New(events EventStore, view View, keys Keys, o Options) *Service {
	s := &Service{events: events, view: view, keys: keys, policies: o.Policies, now: o.Now, onConflict: o.OnConflict, auditor: o.Auditor, agents: o.Agents, profiles: o.Profiles, bots: o.Bots, consents: o.Consents}
	if s.policies == nil {
		s.policies = defaultPolicies{}
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.onConflict == nil {
		s.onConflict = func() {}
	}
	s.dirty = make(map[*entry]struct{})
	s.state = newState(s.now)
	return s
}

// visitorKeys returns the keys that seal the visitor's conversations, or
// conversation.ErrErased when they are gone.
func (s *Service) visitorKeys(ctx context.Context, tenant, visitor string) (personkey.Keys, error) {
	k, err := s.keys.Get(ctx, tenant, visitor)
	if errors.Is(err, personkey.ErrNotFound) {
		return personkey.Keys{}, conversation.ErrErased
	}
	if err != nil {
		return personkey.Keys{}, fmt.Errorf("visitor keys: %w", err)
	}
	return k, nil
}

// appendEvent stores env after version under its tenant's retention and
// returns its record.
func (s *Service) appendEvent(ctx context.Context, env event.Envelope, version uint64) (Record, error) {
	ttl := s.policies.Get(env.Tenant).Retention()
	seq, err := s.events.Append(ctx, env, version, ttl)
	if err != nil {
		return Record{}, err
	}
	// The store counts from when it stored the event, a moment after At: the
	// read models let it go no later than the store does.
	return Record{Seq: seq, Event: env, Expires: env.At.Add(ttl.Truncate(time.Second))}, nil
}
