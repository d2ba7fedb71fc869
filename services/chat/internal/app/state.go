package app

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"
	"time"

	"github.com/parley-chat/parley/pkg/event"
	"github.com/parley-chat/parley/pkg/stream"
	"github.com/parley-chat/parley/pkg/subjectkey"

	"github.com/parley-chat/parley/services/chat/internal/conversation"
)

// state is the in-memory model of every conversation: the aggregate state
// that commands decide on, which is also the inbox. Transcripts are not
// held: they are read from the event store when asked (see scan), so what
// an instance holds grows with its conversations, not their messages.
// Entries are added for conversations that have events, and removed once
// every event of theirs is past its retention: the store removes the events
// then, and the read models follow it (see entry.expired).
//
// Conversations erased by the privacy service (Forget) are dropped and
// remembered for erasedFor, so that an event of theirs still on its way
// does not bring them back; see erasedFor for why that is long enough.
type state struct {
	now     func() time.Time
	mu      sync.RWMutex
	tenants map[string]map[string]*entry
	// erased holds when each conversation was forgotten, for erasedFor.
	erased map[convID]time.Time
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
	delete(st.tenants[tenant], id)
	for c, at := range st.erased {
		if now.Sub(at) >= erasedFor {
			delete(st.erased, c)
		}
	}
	st.erased[convID{tenant, id}] = now
}

// isErased reports whether the conversation was forgotten.
func (st *state) isErased(tenant, id string) bool {
	st.mu.RLock()
	defer st.mu.RUnlock()
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
	// revision viewRev.
	viewVersion uint64
	viewRev     uint64
}

func (st *state) get(tenant, id string) *entry {
	st.mu.RLock()
	defer st.mu.RUnlock()
	return st.tenants[tenant][id]
}

// getOrCreate returns the conversation's entry, created empty when there
// is none; nil for an erased conversation.
func (st *state) getOrCreate(tenant, id string) *entry {
	if e := st.get(tenant, id); e != nil {
		return e
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.erasedLocked(convID{tenant, id}) {
		return nil
	}
	byID := st.tenants[tenant]
	if byID == nil {
		byID = make(map[string]*entry)
		st.tenants[tenant] = byID
	}
	e := byID[id]
	if e == nil {
		e = &entry{}
		byID[id] = e
	}
	return e
}

// put sets the conversation's entry, as restored from the view, unless it
// was erased meanwhile.
func (st *state) put(tenant, id string, e *entry) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.erasedLocked(convID{tenant, id}) {
		return
	}
	if st.tenants[tenant] == nil {
		st.tenants[tenant] = make(map[string]*entry)
	}
	st.tenants[tenant][id] = e
}

// all returns the entries of tenant that are not expired, and removes the
// expired ones.
func (st *state) all(tenant string) []*entry {
	now := st.now()
	st.mu.RLock()
	out := make([]*entry, 0, len(st.tenants[tenant]))
	var expired []string
	for id, e := range st.tenants[tenant] {
		if e.expired(now) {
			expired = append(expired, id)
			continue
		}
		out = append(out, e)
	}
	st.mu.RUnlock()
	for _, id := range expired {
		st.remove(tenant, id, now)
	}
	return out
}

// remove drops the conversation's entry if it is still expired at now: an
// event applied since may have brought it back.
func (st *state) remove(tenant, id string, now time.Time) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if e := st.tenants[tenant][id]; e != nil && e.expired(now) {
		delete(st.tenants[tenant], id)
	}
}

// expired reports whether every event of e is past its retention at now.
func (e *entry) expired(now time.Time) bool {
	e.mu.RLock()
	defer e.mu.RUnlock()
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
	k, err := s.keys.Get(ctx, r.Event.Tenant, r.Event.Subject)
	switch {
	case errors.Is(err, subjectkey.ErrNotFound):
		return nil, true, nil
	case errors.Is(err, subjectkey.ErrUnreadable):
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

// find returns the conversation's entry, reading it from the event store
// when this instance has not seen it yet (another instance may have opened
// it a moment ago). A conversation without events is ErrNotFound.
func (s *Service) find(ctx context.Context, tenant, id string) (*entry, error) {
	if !stream.ValidToken(tenant) || !stream.ValidToken(id) || s.state.isErased(tenant, id) {
		return nil, conversation.ErrNotFound
	}
	now := s.now()
	if e := s.state.get(tenant, id); e != nil && e.version() > 0 {
		if e.expired(now) {
			s.state.remove(tenant, id, now)
			return nil, conversation.ErrNotFound
		}
		return e, nil
	}
	rs, err := s.events.Load(ctx, tenant, id, 0)
	if err != nil {
		return nil, err
	}
	if len(rs) == 0 {
		return nil, conversation.ErrNotFound
	}
	e := s.state.getOrCreate(tenant, id)
	if e == nil {
		return nil, conversation.ErrNotFound
	}
	if err := s.applyAll(ctx, e, rs); err != nil {
		return nil, err
	}
	return e, nil
}

// catchUp applies the events e is missing from the event store.
func (s *Service) catchUp(ctx context.Context, e *entry) error {
	c := e.snapshot()
	rs, err := s.events.Load(ctx, c.Tenant, c.ID, c.Version)
	if err != nil {
		return err
	}
	return s.applyAll(ctx, e, rs)
}

// Project applies an event read from the stream to the read models and,
// once it reached the last event or every viewFlushInterval, to the View
// (see flush), in stream order: it is called by one goroutine, the follower
// of the event store. Events already applied (by this instance's own commands, or
// twice delivered) are skipped by their sequence, so Project is idempotent.
// An error is transient (the key service or the view could not be asked):
// the caller retries r.
func (s *Service) Project(ctx context.Context, r Record) error {
	e := s.state.getOrCreate(r.Event.Tenant, r.Event.Aggregate)
	if e != nil && r.Seq > e.version() {
		p, erased, err := s.read(ctx, r)
		if err != nil {
			return err
		}
		e.apply(r, p, erased)
	}
	if e != nil {
		s.dirty[e] = struct{}{}
	}
	return s.flush(ctx, r)
}

// EraseVisitor marks the visitor's conversations erased, as they are
// rebuilt after the erasure: the privacy service destroyed the visitor's
// keys (subjectkey.Erased).
func (s *Service) EraseVisitor(tenant, visitor string) {
	for _, e := range s.state.all(tenant) {
		if e.snapshot().Visitor == visitor {
			e.erase()
		}
	}
}

// openOf returns how many conversations of the visitor in tenant are open.
func (st *state) openOf(tenant, visitor string) int {
	n := 0
	for _, e := range st.all(tenant) {
		if c := e.snapshot(); c.Visitor == visitor && c.Status == conversation.Open {
			n++
		}
	}
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
// (privacyapi.ConversationErased). An error means the view still holds it;
// the next start removes it, as the store holds none of its events.
func (s *Service) Forget(ctx context.Context, tenant, conversation string) error {
	s.state.forget(tenant, conversation)
	return s.view.Remove(ctx, tenant, conversation)
}
