package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/parley-chat/parley/pkg/personkey"
	"github.com/parley-chat/parley/pkg/retry"
	"github.com/parley-chat/parley/pkg/seal"

	"github.com/parley-chat/parley/services/chat/internal/conversation"
)

// View keeps the conversations' state across restarts: a materialised view
// of the event store, each entry the state of one conversation after the
// event at its Version, kept apart by status, open or closed. An instance
// loads the open entries at start and catches up from the sequence up to
// which it applied every event, instead of folding the store from its
// first event; a closed conversation is read from it when asked. The store
// stays the source of truth: an entry is written only after its events are
// stored, and applying an event again is a no-op, so a view behind the
// store only costs catching up.
type View interface {
	// Load hands fn every open conversation's entry and returns the
	// sequence up to which every event was applied to the view (0: none).
	Load(ctx context.Context, fn func(ViewEntry) error) (applied uint64, err error)
	// Get returns the entry of the visitor's conversation id, and false
	// when the view holds none.
	Get(ctx context.Context, tenant, visitor, id string) (ViewEntry, bool, error)
	// Closed hands fn the tenant's closed conversations, the visitor's only
	// unless visitor is empty, every tenant's when tenant is empty, in no
	// particular order, reading no entry.
	Closed(ctx context.Context, tenant, visitor string, fn func(ClosedKey) error) error
	// Put stores e over revision e.Rev (0: none) when the view still holds
	// that one, and otherwise unless the view holds e's conversation at
	// e.Version or later, and returns the revision the view holds for it
	// then. Entries never go back; one is rewritten at its version over the
	// revision read (an erasure does). A closed e stored afresh (Rev 0)
	// replaces the conversation's open entry. The view drops the entry by
	// itself at e.Expires, unless rewritten by then; it may keep it longer.
	Put(ctx context.Context, e ViewEntry) (rev uint64, err error)
	// Untimed hands fn every closed entry whose last write set no expiry
	// (ViewEntry.Expires: an older version's, or one that never expires),
	// in no particular order, one at a time.
	Untimed(ctx context.Context, fn func(ViewEntry) error) error
	// Expiring reports whether SetExpiring was recorded.
	Expiring(ctx context.Context) (bool, error)
	// SetExpiring records that every closed entry written with no expiry
	// was given one, or removed (Service.MigrateExpiry).
	SetExpiring(ctx context.Context) error
	// Remove deletes the conversation's entries.
	Remove(ctx context.Context, tenant, id string) error
	// Applied records that every event up to seq is applied to the view.
	Applied(ctx context.Context, seq uint64) error
}

// ClosedKey names a closed conversation in the View.
type ClosedKey struct {
	Tenant, Visitor, ID string
}

// ViewEntry is one conversation in the View. Its state is in the clear but
// for what the conversation's events seal under the visitor's key — the
// assignee, the rating's score, whether the opening message was withdrawn,
// when the visitor chose it be erased after closing — which is sealed under
// that key too (see sealedState): once the visitor is erased it cannot be
// read, as those events cannot. What is left in the clear the events carry
// in their headers: ids, times, which events there were.
type ViewEntry struct {
	Tenant  string `json:"tenant"`
	ID      string `json:"id"`
	Visitor string `json:"visitor"`
	// Version is the stream sequence of the last event the entry reflects.
	Version uint64 `json:"version"`
	// State is the viewState, the sealedState's fields left out.
	State json.RawMessage `json:"state"`
	// Sealed is the sealedState sealed under the visitor's data key, or nil
	// when the key could not seal it (erased, unreadable).
	Sealed []byte `json:"sealed,omitempty"`
	// Assignee is the assignee sealed alone, as versions before the view's
	// sealed state wrote it, which the state holds in the clear otherwise:
	// read, never written, for entries such a version writes during a
	// rolling upgrade.
	Assignee []byte `json:"assignee,omitempty"`
	// Open tells which entries of the view it is among; not stored, the
	// View keeps them apart.
	Open bool `json:"-"`
	// Rev is the view's revision of the entry; not stored.
	Rev uint64 `json:"-"`
	// Expires is when the View may drop the entry by itself (viewExpiry):
	// viewGrace after its conversation's events all expired
	// (viewState.Until) or it is erased after closing, whichever comes
	// first; the zero time when neither comes. Not stored: a write sets
	// it, each write anew.
	Expires time.Time `json:"-"`
}

// viewGrace is how long an entry is kept past its conversation's expiry
// (viewState.Until) before the View drops it by itself. Until counts from
// the events' times, taken by the instance that appended them before the
// append, while the store counts their TTL from when it stored them, a
// moment later (within the request, 5 s at most), and the View counts the
// entry's from its own clock: the grace covers that delay and instances'
// clocks differing by seconds, so that an entry does not go before the
// events it reflects, which would drop the conversation from the lists of
// an instance whose clock is behind. Past Until no instance shows the
// entry (expired, as its events are), so the grace only keeps a sealed
// entry's visitor id and times that long: under the minute the periodic
// prune allowed before entries expired by themselves.
const viewGrace = 30 * time.Second

// viewExpiry is when the view may drop the entry of st by itself
// (ViewEntry.Expires): viewGrace after the earlier of its events' expiry
// (Until, unless Forever) and, once closed, its erasure after closing;
// the zero time when neither comes. The erasure removes the entry at once
// when its broadcast reaches an instance; should none hear it (none runs,
// or the broadcast is lost on a reconnect), the entry, whose sealed part
// the visitor's key still opens, goes by itself too.
func viewExpiry(st viewState) time.Time {
	var at time.Time
	if !st.Forever {
		at = st.Until
	}
	// Closed by a close, not by its visitor's erasure, which leaves no
	// ClosedAt and no erasure after closing to come.
	if c := st.Conv; c.Status == conversation.Closed && !c.ClosedAt.IsZero() && c.EraseAfterClose > 0 {
		if erase := c.ClosedAt.Add(c.EraseAfterClose); at.IsZero() || erase.Before(at) {
			at = erase
		}
	}
	if at.IsZero() {
		return time.Time{}
	}
	return at.Add(viewGrace)
}

// viewState is what an entry records of a conversation: what its commands
// decide on, when it expires, and its idempotency index.
type viewState struct {
	Conv    conversation.Conversation `json:"conv"`
	Until   time.Time                 `json:"until"`
	Forever bool                      `json:"forever,omitempty"`
	Keyed   keyIndex                  `json:"keyed"`
}

// sealedState is what an entry seals of its conversation: the fields the
// fold takes from the events' sealed payloads and conversation.Erase
// drops, the visitor's data. Responded and FirstResponseAt come from a
// sealed payload too, the author's role, but say when the staff answered,
// not anything of the visitor's; they stay in the clear.
type sealedState struct {
	Assignee         string        `json:"assignee,omitempty"`
	Score            int           `json:"score,omitempty"`
	OpeningWithdrawn bool          `json:"opening_withdrawn,omitempty"`
	EraseAfterClose  time.Duration `json:"erase_after_close,omitempty"`
}

// sealedOf takes the sealedState's fields out of c.
func sealedOf(c *conversation.Conversation) sealedState {
	p := sealedState{Assignee: c.Assignee, Score: c.Score, OpeningWithdrawn: c.OpeningWithdrawn, EraseAfterClose: c.EraseAfterClose}
	c.Assignee, c.Score, c.OpeningWithdrawn, c.EraseAfterClose = "", 0, false, 0
	return p
}

// into puts p's fields back into c.
func (p sealedState) into(c *conversation.Conversation) {
	c.Assignee, c.Score, c.OpeningWithdrawn, c.EraseAfterClose = p.Assignee, p.Score, p.OpeningWithdrawn, p.EraseAfterClose
}

// viewAD binds an entry's sealed part to its conversation and version, so it
// cannot be moved to another entry or an older one.
func viewAD(e ViewEntry) []byte {
	return seal.AD("chat-view", e.Tenant, e.ID, e.Visitor, strconv.FormatUint(e.Version, 10))
}

// ViewEvery is how often WriteView is meant to be called: a conversation
// is written to the view at most once an interval, however many events it
// takes, and a start catches up from what is at most that old. A second:
// a busy conversation takes a few events a second, and a shorter interval
// would write it once an event all the same.
const ViewEvery = time.Second

// ViewPace is what a write of the view is meant to be spread over, called
// every ViewEvery: most of the interval, so that it ends before the next.
// A thousand entries written at once, a JetStream write and its ack each,
// held up the posts queued behind them in the service and the NATS server
// for tens of milliseconds every second.
const ViewPace = ViewEvery * 3 / 4

const (
	// viewWriters is how many entries WriteView writes at once.
	viewWriters = 16
	// viewStep is how far ahead of its schedule a paced WriteView writes:
	// the entries due within it are written together, so that it sleeps
	// at most once a step.
	viewStep = 2 * time.Millisecond
	// viewNap is the longest a paced WriteView sleeps before it looks
	// again whether a call that may not wait is waiting.
	viewNap = 10 * time.Millisecond
)

// storeView writes e's state to the view unless the view has it at its
// version already, as open or closed and erased or not as it is now.
func (s *Service) storeView(ctx context.Context, e *entry) error {
	// Encoded under the entry's lock: the keyed index shares its arrays
	// with the entry, which Project changes in place.
	e.mu.RLock()
	st := viewState{Conv: e.conv, Until: e.until, Forever: e.forever, Keyed: e.keyed}
	written, rev, wasOpen, wasErased := e.viewVersion, e.viewRev, e.viewOpen, e.viewErased
	expires := viewExpiry(st) // before sealedOf takes the erasure delay out
	hidden := sealedOf(&st.Conv)
	b, err := json.Marshal(st)
	e.mu.RUnlock()
	if err != nil {
		return fmt.Errorf("encode view of %s: %w", st.Conv.ID, err)
	}
	open, erased := st.Conv.Status == conversation.Open, st.Conv.Erased
	// Rewritten also when only its status or erasure moved: a visitor's
	// erasure closes the conversation with no event.
	// A forgotten conversation is not written back after its removal.
	if !st.Conv.Exists() || st.Conv.Version <= written && open == wasOpen && erased == wasErased || s.state.isErased(st.Conv.Tenant, st.Conv.ID) {
		return nil
	}
	if open != wasOpen {
		rev = 0 // another key
	}
	v := ViewEntry{Tenant: st.Conv.Tenant, ID: st.Conv.ID, Visitor: st.Conv.Visitor, Version: st.Conv.Version, State: b, Open: open, Rev: rev}
	v.Expires = expires
	k, err := s.keys.Get(ctx, v.Tenant, v.Visitor)
	switch {
	case errors.Is(err, personkey.ErrNotFound), errors.Is(err, personkey.ErrUnreadable):
		// Stored without it, as the events read now would fold: erased
		// (see openView), or with payloads that cannot be read.
	case err != nil:
		return fmt.Errorf("view of %s: %w", v.ID, err)
	case !erased:
		p, err := json.Marshal(hidden)
		if err != nil {
			return fmt.Errorf("encode view of %s: %w", v.ID, err)
		}
		if v.Sealed, err = seal.Seal(k.Data, p, viewAD(v)); err != nil {
			return fmt.Errorf("view of %s: %w", v.ID, err)
		}
	}
	rev, err = s.view.Put(ctx, v)
	if err != nil {
		return err
	}
	e.mu.Lock()
	if v.Version > e.viewVersion || v.Open != e.viewOpen || erased != e.viewErased {
		e.viewVersion, e.viewRev, e.viewOpen, e.viewErased = v.Version, rev, v.Open, erased
	}
	e.mu.Unlock()
	return nil
}

// openView decodes a view entry as the conversation's events would fold
// now: with its sealed part when the visitor's key opens it, erased when
// the key is gone. stored tells whether the entry was written erased.
func (s *Service) openView(ctx context.Context, v ViewEntry) (st viewState, stored bool, err error) {
	if err := json.Unmarshal(v.State, &st); err != nil {
		return viewState{}, false, fmt.Errorf("decode view of %s: %w", v.ID, err)
	}
	stored = st.Conv.Erased
	k, err := s.keys.Get(ctx, v.Tenant, v.Visitor)
	switch {
	case errors.Is(err, personkey.ErrNotFound):
		st.Conv.Erase()
		return st, stored, nil
	case errors.Is(err, personkey.ErrUnreadable) || st.Conv.Erased:
		return st, stored, nil
	case err != nil:
		return viewState{}, false, fmt.Errorf("view of %s: %w", v.ID, err)
	}
	switch {
	case v.Sealed != nil:
		b, err := seal.Open(k.Data, v.Sealed, viewAD(v))
		if err != nil {
			// Not this visitor's: left unread, as a rebuild would leave
			// payloads that do not open.
			return st, stored, nil
		}
		var p sealedState
		if err := json.Unmarshal(b, &p); err != nil {
			return viewState{}, false, fmt.Errorf("decode view of %s: %w", v.ID, err)
		}
		p.into(&st.Conv)
	case v.Assignee != nil:
		if a, err := seal.Open(k.Data, v.Assignee, viewAD(v)); err == nil {
			st.Conv.Assignee = string(a)
		}
	}
	return st, stored, nil
}

// restored returns the entry of a conversation read from the view.
func (s *Service) restored(ctx context.Context, v ViewEntry) (*entry, error) {
	st, erased, err := s.openView(ctx, v)
	if err != nil {
		return nil, err
	}
	return &entry{conv: st.Conv, keyed: st.Keyed, until: st.Until, forever: st.Forever,
		viewVersion: v.Version, viewRev: v.Rev, viewOpen: v.Open, viewErased: erased}, nil
}

// Restore loads the open conversations of the view into the read models and
// returns the sequence to follow the event store from: every event up to it
// is applied. It reads the open entries only, and the store for those past
// their conversation's expiry alone (entry.expired), a few at once: an open
// conversation's events go by their expiry only, since one is erased only
// with its visitor, whose key is then gone; those whose events the store no
// longer holds are removed from the view, the others kept, for ExpireOpen.
// An open entry whose visitor was erased meanwhile is written back as
// closed.
func (s *Service) Restore(ctx context.Context) (uint64, error) {
	now := s.now()
	var (
		due    []ViewEntry // past their expiry: the store is read for them
		dueAt  []*entry
		closed []*entry // open in the view, closed by an erasure since
	)
	keep := func(e *entry) {
		s.state.track(e)
		if e.snapshot().Status != conversation.Open {
			closed = append(closed, e)
		}
	}
	applied, err := s.view.Load(ctx, func(v ViewEntry) error {
		e, err := s.restored(ctx, v)
		if err != nil {
			return err
		}
		if e.expired(now) {
			due, dueAt = append(due, v), append(dueAt, e)
			return nil
		}
		keep(e)
		return nil
	})
	if err != nil {
		return 0, err
	}
	gone := make([]bool, len(due))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(viewWriters)
	for i, v := range due {
		g.Go(func() (err error) {
			gone[i], err = s.gone(gctx, v.Tenant, v.ID)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return 0, err
	}
	for i, e := range dueAt {
		if !gone[i] {
			// Not removed by the store yet, or appended to by another
			// instance since the view was written: ExpireOpen looks again.
			keep(e)
		}
	}
	for _, e := range closed {
		if err := s.storeView(ctx, e); err != nil {
			return 0, err
		}
	}
	for i, v := range due {
		if !gone[i] {
			continue
		}
		if err := s.view.Remove(ctx, v.Tenant, v.ID); err != nil {
			return 0, err
		}
	}
	// The follower starts after applied: a read waiting for it (see
	// followed) need not wait for what the view holds already.
	s.viewMu.Lock()
	s.advanceLocked(applied)
	s.viewMu.Unlock()
	return applied, nil
}

// MigrateExpiry gives the closed entries written with no expiry — by
// versions before entries expired by themselves — the expiry this version
// writes, once: a pass over them removes those past it (viewExpiry, decided
// from the entry) or whose events the store no longer holds (erased while
// no instance ran to hear of it), read for each, and rewrites the others
// with it, then records in the view that it is done (View.SetExpiring), so
// that later starts skip it, and reports whether it ran. It holds one entry
// at a time, however many the view holds; run beside the service, as it
// reads every closed key. An entry another instance rewrote meanwhile is
// left as that one wrote it. Cut short, it runs again at the next start.
func (s *Service) MigrateExpiry(ctx context.Context) (bool, error) {
	done, err := s.view.Expiring(ctx)
	if err != nil || done {
		return false, err
	}
	err = s.view.Untimed(ctx, func(v ViewEntry) error {
		st, _, err := s.openView(ctx, v)
		if err != nil {
			return err
		}
		// What a write of this version would give it. A sealed part that
		// does not open leaves out the erasure after closing: the expiry
		// of its events, later, or none.
		expires := viewExpiry(st)
		if !expires.IsZero() && !s.now().Before(expires) {
			return s.view.Remove(ctx, v.Tenant, v.ID)
		}
		if g, err := s.gone(ctx, v.Tenant, v.ID); err != nil || g {
			if g {
				return s.view.Remove(ctx, v.Tenant, v.ID)
			}
			return err
		}
		if expires.IsZero() {
			return nil // expires by no TTL: written the same today
		}
		// Over the revision read, at its version: one rewritten since is
		// left as it is; one forgotten since (erased after closing) is
		// not written back, as storeView does not.
		s.writing.Lock()
		defer s.writing.Unlock()
		if s.state.isErased(v.Tenant, v.ID) {
			return nil
		}
		v.Expires = expires
		_, err = s.view.Put(ctx, v)
		return err
	})
	if err != nil {
		return false, err
	}
	return true, s.view.SetExpiring(ctx)
}

// ExpireOpen drops the open conversations this instance holds whose events
// have all expired, and removes their entries from the view, which drops
// them by itself too unless written without a TTL. It reads the store once
// for each of them only, to see that it no longer holds its events: a
// conversation another instance appended to a moment ago is kept.
func (s *Service) ExpireOpen(ctx context.Context) error {
	now := s.now()
	for _, c := range s.state.expiredOpen(now) {
		g, err := s.gone(ctx, c.tenant, c.id)
		if err != nil {
			return err
		}
		if !g {
			continue
		}
		s.state.remove(c.tenant, c.id, now)
		if err := s.view.Remove(ctx, c.tenant, c.id); err != nil {
			return err
		}
	}
	return nil
}

// gone reports whether the store holds no event of tenant's conversation
// id, reading its first.
func (s *Service) gone(ctx context.Context, tenant, id string) (bool, error) {
	rs, _, err := s.events.Read(ctx, tenant, id, 0, 1)
	return err == nil && len(rs) == 0, err
}

// WriteView writes the entries Project changed since the last call to the
// view, then records that every event Project had applied by then is in it.
// A conversation that took many events meanwhile is written once; nothing is
// recorded as applied that a written entry does not reflect, so the view and
// its applied sequence stay behind the store, never ahead, and a crash
// between two calls costs a start the events since the last one again. On
// an error the entries are written by the next call.
//
// With over > 0 the writes are spread evenly over that long, a few at a
// time, unless a call with over 0 is waiting, when the rest are written at
// once. It is safe to call beside Project and the other methods; calls are
// serialised, and EraseVisitor and Forget wait for a step's writes only.
func (s *Service) WriteView(ctx context.Context, over time.Duration) error {
	if over == 0 {
		s.hurry.Add(1)
		defer s.hurry.Add(-1)
	}
	s.viewing.Lock()
	defer s.viewing.Unlock()
	s.viewMu.Lock()
	dirty := make([]*entry, 0, len(s.dirty))
	for e := range s.dirty {
		dirty = append(dirty, e)
	}
	clear(s.dirty)
	upTo := s.projected
	s.viewMu.Unlock()
	if err := s.storeViews(ctx, dirty, over); err != nil {
		s.viewMu.Lock()
		for _, e := range dirty {
			s.dirty[e] = struct{}{}
		}
		s.viewMu.Unlock()
		return err
	}
	if upTo <= s.applied {
		return nil
	}
	if err := s.view.Applied(ctx, upTo); err != nil {
		return err
	}
	s.applied = upTo
	return nil
}

// storeViews writes es to the view in steps, entry i due at i/len(es) of
// over from the start, each step's at most viewWriters at once.
func (s *Service) storeViews(ctx context.Context, es []*entry, over time.Duration) error {
	start := time.Now()
	for i := 0; i < len(es); {
		n := len(es) - i
		if over > 0 && s.hurry.Load() == 0 {
			due := len(es) // how many are due by a step from now
			if ahead := time.Since(start) + viewStep; ahead < over {
				due = int(int64(len(es))*int64(ahead)/int64(over)) + 1
			}
			if due <= i {
				wait := time.Until(start.Add(time.Duration(int64(over) * int64(i) / int64(len(es)))))
				if !retry.Sleep(ctx, min(wait, viewNap)) {
					return ctx.Err()
				}
				continue
			}
			n = due - i
		}
		if err := s.storeStep(ctx, es[i:i+n]); err != nil {
			return err
		}
		i += n
	}
	return nil
}

// storeStep writes es to the view, at most viewWriters at once.
func (s *Service) storeStep(ctx context.Context, es []*entry) error {
	s.writing.Lock()
	defer s.writing.Unlock()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(viewWriters)
	for _, e := range es {
		g.Go(func() error { return s.storeView(gctx, e) })
	}
	return g.Wait()
}
