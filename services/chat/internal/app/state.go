package app

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"
	"time"

	"github.com/parley-chat/parley/pkg/event"
	"github.com/parley-chat/parley/pkg/personkey"
	"github.com/parley-chat/parley/pkg/stream"

	"github.com/parley-chat/parley/services/chat/internal/conversation"
)

// state is the in-memory model of the conversations an instance needs at
// hand: every open conversation, which commands decide on and the inbox
// lists first, and up to closedCached closed ones used lately. A closed
// conversation that is not held is read from the View when asked (see
// Service.load), so what an instance holds grows with the conversations
// open, not with those retained. Transcripts are not held either: they are
// read from the event store when asked (see scan). Entries are removed once
// every event of theirs is past its retention: the store removes the events
// then, and the read models follow it (see entry.expired).
//
// Conversations erased by the privacy service (Forget) are dropped and
// remembered for erasedFor, so that an event of theirs still on its way
// does not bring them back; see erasedFor for why that is long enough.
type state struct {
	now func() time.Time
	mu  sync.Mutex
	// open holds the open conversations by tenant and id.
	open map[string]map[string]*entry
	// sorted holds the ids of open by tenant in ascending order, so that a
	// page of the inbox is found without walking every open conversation
	// (see openBelow).
	sorted map[string][]string
	// closed holds closed conversations used lately, the least recently
	// used first out.
	closed *list.List
	byID   map[convID]*list.Element
	// erased holds when each conversation was forgotten, for erasedFor.
	erased map[convID]time.Time
}

// closedCached bounds the closed conversations an instance holds: at about
// 2 KiB each, a few MiB, enough for those rated or read again soon after
// closing.
const closedCached = 1024

func newState(now func() time.Time) state {
	return state{now: now, open: make(map[string]map[string]*entry), sorted: make(map[string][]string), closed: list.New(),
		byID: make(map[convID]*list.Element), erased: make(map[convID]time.Time)}
}

// erasedFor is how long an erased conversation's id is remembered. The
// privacy service secure-deletes a conversation's events before it
// announces the erasure, so the only events of it that can still arrive are
// those the live consumer fetched before the deletion and has not applied
// yet, and requests that passed find just before the erasure: seconds
// behind, or as long as the consumer stalls retrying the key service, which
// makes the service not ready. A day is far beyond both, and keeps the set
// to the erasures of a day rather than of the process's life. Past it the
// store is the only memory needed: it holds no event of the conversation,
// as after a restart.
const erasedFor = 24 * time.Hour

type convID struct{ tenant, id string }

// forget drops the conversation and keeps it out for erasedFor, and forgets
// the erasures older than that.
func (st *state) forget(tenant, id string) {
	now := st.now()
	st.mu.Lock()
	defer st.mu.Unlock()
	st.dropLocked(convID{tenant, id})
	for c, at := range st.erased {
		if now.Sub(at) >= erasedFor {
			delete(st.erased, c)
		}
	}
	st.erased[convID{tenant, id}] = now
}

// dropLocked removes the conversation's entry; st.mu is held.
func (st *state) dropLocked(c convID) {
	st.unholdLocked(c.tenant, c.id)
	if el, ok := st.byID[c]; ok {
		st.closed.Remove(el)
		delete(st.byID, c)
	}
}

// isErased reports whether the conversation was forgotten.
func (st *state) isErased(tenant, id string) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.erasedLocked(convID{tenant, id})
}

// erasedLocked reports whether c was forgotten within erasedFor; st.mu is
// held.
func (st *state) erasedLocked(c convID) bool {
	at, ok := st.erased[c]
	return ok && st.now().Sub(at) < erasedFor
}

// entry is one conversation. cmd serialises this instance's commands on it
// across their appends; mu guards the data and is only held briefly, so
// reads and the live consumer never wait for a publish.
type entry struct {
	cmd sync.Mutex

	mu   sync.RWMutex
	conv conversation.Conversation
	// keyed finds the messages stored by requests with an idempotency key.
	keyed keyIndex
	// until is the latest expiry of the entry's events; forever is set when
	// one of them has none.
	until   time.Time
	forever bool
	// viewVersion is the version of the entry the View holds, at its
	// revision viewRev, as open when viewOpen, erased when viewErased.
	viewVersion uint64
	viewRev     uint64
	viewOpen    bool
	viewErased  bool
}

// get returns the conversation's entry, nil when this instance holds none,
// and marks a closed one used.
func (st *state) get(tenant, id string) *entry {
	return st.lookup(tenant, id, true)
}

// peek is get without marking a closed conversation used: for listing.
func (st *state) peek(tenant, id string) *entry {
	return st.lookup(tenant, id, false)
}

func (st *state) lookup(tenant, id string, use bool) *entry {
	st.mu.Lock()
	defer st.mu.Unlock()
	if e := st.open[tenant][id]; e != nil {
		return e
	}
	el, ok := st.byID[convID{tenant, id}]
	if !ok {
		return nil
	}
	if use {
		st.closed.MoveToFront(el)
	}
	return el.Value.(*entry)
}

// getOrCreate returns the conversation's entry, created empty among the
// open ones when there is none: a conversation is open from its first
// event. It returns nil for an erased conversation.
func (st *state) getOrCreate(tenant, id string) *entry {
	if e := st.get(tenant, id); e != nil {
		return e
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.erasedLocked(convID{tenant, id}) {
		return nil
	}
	e := st.open[tenant][id]
	if e == nil {
		e = &entry{}
		st.holdLocked(tenant, id, e)
	}
	return e
}

// track holds e by its conversation's status, after it changed or was
// loaded: among the open ones, or first among the closed ones, which evicts
// the least recently used past closedCached. An erased conversation is not
// held.
func (st *state) track(e *entry) {
	c := e.snapshot()
	if !c.Exists() {
		return
	}
	id := convID{c.Tenant, c.ID}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.erasedLocked(id) {
		return
	}
	if c.Status == conversation.Open {
		if el, ok := st.byID[id]; ok {
			st.closed.Remove(el)
			delete(st.byID, id)
		}
		st.holdLocked(c.Tenant, c.ID, e)
		return
	}
	st.unholdLocked(c.Tenant, c.ID)
	if el, ok := st.byID[id]; ok {
		el.Value = e
		st.closed.MoveToFront(el)
		return
	}
	st.byID[id] = st.closed.PushFront(e)
	for st.closed.Len() > closedCached {
		old := st.closed.Back()
		c := old.Value.(*entry).snapshot()
		st.closed.Remove(old)
		delete(st.byID, convID{c.Tenant, c.ID})
	}
}

// each hands fn the entries of tenant this instance holds and their state,
// the open ones and, with closedToo, the closed ones; those expired left out
// and removed.
func (st *state) each(tenant string, closedToo bool, fn func(*entry, conversation.Conversation)) {
	st.held(tenant, true, closedToo, fn)
}

// held is each of the open ones, the closed ones, or both.
func (st *state) held(tenant string, open, closed bool, fn func(*entry, conversation.Conversation)) {
	now := st.now()
	st.mu.Lock()
	var es []*entry
	if open {
		es = make([]*entry, 0, len(st.open[tenant]))
		for _, e := range st.open[tenant] {
			es = append(es, e)
		}
	}
	for el := st.closed.Front(); closed && el != nil; el = el.Next() {
		es = append(es, el.Value.(*entry))
	}
	st.mu.Unlock()
	for _, e := range es {
		e.mu.RLock()
		c, expired := e.conv, e.expiredLocked(now)
		e.mu.RUnlock()
		switch {
		case c.Tenant != tenant && c.Exists():
		case expired:
			st.remove(c.Tenant, c.ID, now)
		default:
			fn(e, c)
		}
	}
}

// remove drops the conversation's entry if it is still expired at now: an
// event applied since may have brought it back.
func (st *state) remove(tenant, id string, now time.Time) {
	c := convID{tenant, id}
	st.mu.Lock()
	defer st.mu.Unlock()
	e := st.open[tenant][id]
	if el, ok := st.byID[c]; ok && e == nil {
		e = el.Value.(*entry)
	}
	if e != nil && e.expired(now) {
		st.dropLocked(c)
	}
}

// expiredOpen returns the open conversations held whose events are all
// past their retention at now.
func (st *state) expiredOpen(now time.Time) []convID {
	st.mu.Lock()
	defer st.mu.Unlock()
	var out []convID
	for tenant, es := range st.open {
		for id, e := range es {
			if e.expired(now) {
				out = append(out, convID{tenant, id})
			}
		}
	}
	return out
}

// expired reports whether every event of e is past its retention at now.
func (e *entry) expired(now time.Time) bool {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.expiredLocked(now)
}

// expiredLocked is expired with e.mu held.
func (e *entry) expiredLocked(now time.Time) bool {
	return e.conv.Exists() && !e.forever && !now.Before(e.until)
}

func (e *entry) snapshot() conversation.Conversation {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.conv
}

func (e *entry) version() uint64 {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.conv.Version
}

// apply folds r into the entry unless it was applied already; erased
// means the visitor's keys were gone when r was read.
func (e *entry) apply(r Record, payload any, erased bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.conv.Apply(r.Seq, r.Event, payload) {
		return
	}
	if erased {
		e.conv.Erase()
	}
	if r.Expires.IsZero() {
		e.forever = true
	} else if r.Expires.After(e.until) {
		e.until = r.Expires
	}
	if isMessage(r.Event) && r.Event.Idempotency != "" {
		e.keyed.add(r.Event.Idempotency, r.Seq)
	}
}

// erase marks the entry's conversation erased (see conversation.Erase).
func (e *entry) erase() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.conv.Erase()
}

// read decodes what applying r needs from its body, its payload (nil when
// the body cannot be read), and reports whether the visitor is erased
// (their keys are gone). An error
// means the key service could not be asked and r should be applied later.
func (s *Service) read(ctx context.Context, r Record) (payload any, erased bool, err error) {
	k, err := s.keys.Get(ctx, r.Event.Tenant, r.Event.Person)
	switch {
	case errors.Is(err, personkey.ErrNotFound):
		return nil, true, nil
	case errors.Is(err, personkey.ErrUnreadable):
		// The key service has keys for the subject but cannot read them
		// (wrapped under a key-encryption key it does not hold, as in a
		// backup restored after a rotation): asking again changes nothing,
		// and one subject must not hold up every conversation's rebuild.
		return nil, false, nil
	case err != nil:
		return nil, false, fmt.Errorf("keys for event %d: %w", r.Seq, err)
	}
	payload = event.NewPayload(r.Event.Type)
	if payload == nil || r.Event.Open(k.Data, payload) != nil {
		// Authenticated encryption failed: the body is not this subject's, so
		// it is treated as unreadable rather than trusted.
		return nil, false, nil
	}
	return payload, false, nil
}

// applyAll applies rs, in order, to e.
func (s *Service) applyAll(ctx context.Context, e *entry, rs []Record) error {
	for _, r := range rs {
		p, erased, err := s.read(ctx, r)
		if err != nil {
			return err
		}
		e.apply(r, p, erased)
	}
	return nil
}

// find returns the conversation's entry: the entry this instance holds,
// or the View's caught up with the events stored after it. With current,
// a held entry is caught up too (one batched read of the conversation's
// subject when nothing is missing), so a read shows every write answered
// before it, whichever instance wrote it. A command needs no such read: it
// appends expecting the version it decided on, which the store refuses
// when another instance wrote since (see updateKeyed). A conversation
// without events is ErrNotFound.
func (s *Service) find(ctx context.Context, tenant, id string, current bool) (*entry, error) {
	if !stream.ValidToken(tenant) || !stream.ValidToken(id) || s.state.isErased(tenant, id) {
		return nil, conversation.ErrNotFound
	}
	e := s.state.get(tenant, id)
	if e != nil && e.version() > 0 {
		if current {
			if _, err := s.caughtUp(ctx, e, tenant, id); err != nil {
				return nil, err
			}
		}
		s.state.track(e)
	} else {
		// Not held: the visitor, which the View's key names, is in every
		// event of the conversation; its first tells whether there is any.
		rs, _, err := s.events.Read(ctx, tenant, id, 0, 1)
		if err != nil {
			return nil, err
		}
		if len(rs) == 0 {
			return nil, conversation.ErrNotFound
		}
		if e, err = s.load(ctx, tenant, rs[0].Event.Person, id); err != nil {
			return nil, err
		}
	}
	now := s.now()
	if e == nil || e.version() == 0 {
		return nil, conversation.ErrNotFound
	}
	if e.expired(now) {
		s.state.remove(tenant, id, now)
		return nil, conversation.ErrNotFound
	}
	return e, nil
}

// load reads a conversation this instance does not hold from the View,
// catches it up from the event store and holds it; nil when the store holds
// no event of it.
func (s *Service) load(ctx context.Context, tenant, visitor, id string) (*entry, error) {
	e := &entry{}
	v, ok, err := s.view.Get(ctx, tenant, visitor, id)
	if err != nil {
		return nil, err
	}
	if ok {
		if e, err = s.restored(ctx, v); err != nil {
			return nil, err
		}
	}
	if _, err := s.caughtUp(ctx, e, tenant, id); err != nil {
		return nil, err
	}
	if e.version() == 0 || s.state.isErased(tenant, id) {
		return nil, nil
	}
	s.state.track(e)
	return e, nil
}

// caughtUp applies the events of conversation id of tenant that e is
// missing from the event store, and returns them.
func (s *Service) caughtUp(ctx context.Context, e *entry, tenant, id string) ([]Record, error) {
	rs, err := s.events.Load(ctx, tenant, id, e.version())
	if err != nil {
		return nil, err
	}
	return rs, s.applyAll(ctx, e, rs)
}

// Project applies an event read from the stream to the read models, and
// marks its conversation for WriteView to write to the View, in stream
// order: it is called by one goroutine, the follower
// of the event store. Events already applied (by this instance's own commands, or
// twice delivered) are skipped by their sequence, so Project is idempotent.
// An event of a closed conversation this instance does not hold loads it
// (see load), which applies the event with those before it.
// An error is transient (the key service or the view could not be asked):
// the caller retries r.
func (s *Service) Project(ctx context.Context, r Record) error {
	tenant, id := r.Event.Tenant, r.Event.Aggregate
	e := s.state.get(tenant, id)
	if e == nil && r.Event.Type == event.ConversationOpened {
		// The first event: nothing to load.
		e = s.state.getOrCreate(tenant, id)
	} else if e == nil && !s.state.isErased(tenant, id) {
		var err error
		if e, err = s.load(ctx, tenant, r.Event.Person, id); err != nil {
			return err
		}
	}
	if e != nil && r.Seq > e.version() {
		// A command of this instance applies the event it appended once the
		// store acknowledged it, about when the follower is handed it:
		// waiting for the command in flight spares opening it again.
		e.cmd.Lock()
		e.cmd.Unlock()
	}
	if e != nil && r.Seq > e.version() {
		p, erased, err := s.read(ctx, r)
		if err != nil {
			return err
		}
		e.apply(r, p, erased)
		s.state.track(e)
	}
	s.viewMu.Lock()
	defer s.viewMu.Unlock()
	if e != nil {
		s.dirty[e] = struct{}{}
	}
	s.advanceLocked(r.Seq)
	return nil
}

// Skip records that the follower of the event store passed stream sequence
// seq without an event to apply (a stored message that is no Parley event),
// so that a read waiting for the follower to get that far (see followed)
// does not wait for it. It is called by the goroutine that calls Project.
func (s *Service) Skip(seq uint64) {
	s.viewMu.Lock()
	defer s.viewMu.Unlock()
	s.advanceLocked(seq)
}

// advanceLocked moves projected on to seq and wakes the reads waiting for
// it; s.viewMu is held.
func (s *Service) advanceLocked(seq uint64) {
	s.projected = max(s.projected, seq)
	if s.advanced != nil {
		close(s.advanced)
		s.advanced = nil
	}
}

// EraseVisitor marks the visitor's conversations erased, as they are
// rebuilt after the erasure, and writes them to the View, where they are
// listed as closed, with nothing sealed under the visitor's key: the
// privacy service destroyed the visitor's keys (personkey.Erased). Those it
// holds are written from memory; the closed ones it does not hold are read
// from the View, which opens them erased (see openView), and written back
// so, so that no entry keeps what the key sealed. Every open one is held
// (see Restore).
func (s *Service) EraseVisitor(ctx context.Context, tenant, visitor string) error {
	s.writing.Lock()
	defer s.writing.Unlock()
	var errs []error
	s.state.each(tenant, true, func(e *entry, c conversation.Conversation) {
		if c.Visitor != visitor {
			return
		}
		e.erase()
		s.state.track(e)
		errs = append(errs, s.storeView(ctx, e))
	})
	err := s.view.Closed(ctx, tenant, visitor, func(k ClosedKey) error {
		if s.state.peek(k.Tenant, k.ID) != nil {
			return nil // written above
		}
		v, ok, err := s.view.Get(ctx, k.Tenant, k.Visitor, k.ID)
		if err != nil || !ok {
			return err
		}
		e, err := s.restored(ctx, v)
		if err != nil {
			return err
		}
		// Not held: the keys may have been fetched before the erasure.
		e.erase()
		return s.storeView(ctx, e)
	})
	return errors.Join(append(errs, err)...)
}

// openOf returns how many conversations of the visitor in tenant are open.
func (st *state) openOf(tenant, visitor string) int {
	n := 0
	st.each(tenant, false, func(_ *entry, c conversation.Conversation) {
		if c.Visitor == visitor && c.Status == conversation.Open {
			n++
		}
	})
	return n
}

// stripes are mutexes shared out by key: enough to serialise what one key
// does without a map that grows with the keys.
type stripes [64]sync.Mutex

func (s *stripes) of(tenant, id string) *sync.Mutex {
	h := fnv.New32a()
	h.Write([]byte(tenant))
	h.Write([]byte{0})
	h.Write([]byte(id))
	return &s[h.Sum32()%uint32(len(s))]
}

// Forget drops an erased conversation from the read models and the View
// for good: the privacy service secure-deleted its events
// (privacyapi.ConversationErased). An error means the view still holds it,
// until its TTL, 30 s after the erasure was due (viewExpiry), runs out.
func (s *Service) Forget(ctx context.Context, tenant, conversation string) error {
	s.state.forget(tenant, conversation)
	// After a write of WriteView under way, which could put it back; the
	// next skips it (see storeView).
	s.writing.Lock()
	defer s.writing.Unlock()
	return s.view.Remove(ctx, tenant, conversation)
}
