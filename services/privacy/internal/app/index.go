package app

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"

	"github.com/parley-chat/parley/pkg/audit"
	"github.com/parley-chat/parley/pkg/event"
	"github.com/parley-chat/parley/pkg/personkey"
	"github.com/parley-chat/parley/pkg/privacyapi"
)

// index is the service's view of the PRIVACY stream. Entries are small and
// hold no personal data in the clear (network data stays sealed under the
// subject's key); an erased subject keeps only its requests and its
// erasure.
//
// Of the data subjects it holds the most recently asked about only, at
// most the cache size: any other is read from the stream when asked (one
// batched read of their subject), so memory follows the people served,
// not the people retained, and a start reads none. It holds whole only
// what is live: the erasures pending. An erasure asked for by its id is
// found through ErasureRecords; a training export, on the subject of the
// admin who started it.
type index struct {
	mu sync.Mutex
	// applied is the stream sequence of the last event applied; changed is
	// closed and replaced whenever it grows.
	applied  uint64
	changed  chan struct{}
	subjects *simplelru.LRU[subjectID, *subjectState]
	// loading holds, for each subject being read from the stream, the
	// events applied meanwhile: those the read may have missed.
	loading map[subjectID]*subjectLoad
	// pending are the erasures requested and not completed, by id, and
	// how many a subject has in pendingOf: keys are refused by it before
	// their tombstone is stored.
	pending   map[string]*erasureRecord
	pendingOf map[subjectID]int
}

type subjectLoad struct {
	done    chan struct{}
	applied []StoredEvent
}

type subjectState struct {
	// last is the stream sequence of the subject's last event.
	last     uint64
	consents []privacyapi.ConsentResult
	// network holds the subject's network data events, still sealed: only
	// an export opens them.
	network []event.Envelope
	// requests are the exports and erasure of the subject, oldest first.
	requests []privacyapi.RequestEntry
	// erasure is the subject's erasure, once requested (its id not "").
	erasure erasureRecord
	// trainings are the training exports an admin started within
	// privacyapi.ExportPagesWithin of their last: stored on the admin's own
	// subject, they are read with it when the admin asks for a page.
	trainings []trainingRecord
}

type erasureRecord struct {
	id, tenant, subject string
	by                  audit.Actor
	requestedAt         time.Time
	completed           bool
	report              privacyapi.ErasureReport
}

func (r *erasureRecord) view() privacyapi.Erasure {
	v := privacyapi.Erasure{
		ErasureID:   r.id,
		Tenant:      r.tenant,
		Person:      r.subject,
		Status:      privacyapi.StatusPending,
		RequestedAt: r.requestedAt,
	}
	if r.completed {
		v.Status = privacyapi.StatusCompleted
		at, report := r.report.At, r.report
		v.CompletedAt, v.Report = &at, &report
	}
	return v
}

func (r *erasureRecord) ref() ErasureRef {
	return ErasureRef{ID: r.id, Tenant: r.tenant, Person: r.subject, By: r.by, RequestedAt: r.requestedAt}
}

func newIndex(size int) index {
	if size <= 0 {
		size = personkey.DefaultCacheSize
	}
	subjects, _ := simplelru.NewLRU[subjectID, *subjectState](size, nil) // fails only for size <= 0
	return index{
		changed:   make(chan struct{}),
		subjects:  subjects,
		loading:   make(map[subjectID]*subjectLoad),
		pending:   make(map[string]*erasureRecord),
		pendingOf: make(map[subjectID]int),
	}
}

// Apply adds the event at stream sequence seq of PRIVACY to the service's
// view. Events must come in stream order; one already applied is ignored,
// and so is an event of a type the service does not know (the zero
// Envelope included), but its sequence still counts as applied.
func (a *App) Apply(seq uint64, e event.Envelope) {
	ix := &a.index
	ix.mu.Lock()
	if seq <= ix.applied {
		ix.mu.Unlock()
		return
	}
	var (
		requested *erasureRecord
		completed string
	)
	if e.Tenant != "" {
		id := subjectID{e.Tenant, e.Aggregate}
		requested, completed = ix.applyErasure(e)
		if st, ok := ix.subjects.Peek(id); ok && seq > st.last {
			st.apply(seq, e)
		}
		if l := ix.loading[id]; l != nil {
			l.applied = append(l.applied, StoredEvent{Seq: seq, Event: e})
		}
	}
	ix.applied = seq
	close(ix.changed)
	ix.changed = make(chan struct{})
	ix.mu.Unlock()
	if requested != nil {
		a.Forget(requested.tenant, requested.subject)
	}
	if requested != nil || completed != "" {
		a.recordErasure(requested, completed)
	}
}

// recordErasure keeps ErasureRecords in step with the stream as the
// follower applies it: an erasure requested recorded pending, one
// completed no longer. The request and its end write them already, but an
// instance of an older version does not, and either may stop before. A
// failure is logged: the next start drops a mark left behind, its
// erasure completed, and an erasure without one is found while pending on
// the instances that applied it, and by those started within
// unmarkedWithin of its request.
func (a *App) recordErasure(requested *erasureRecord, completed string) {
	if a.erasures == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), recordErasureWithin)
	defer cancel()
	var err error
	if requested != nil {
		err = a.erasures.Record(ctx, requested.ref(), true)
	} else {
		err = a.erasures.Done(ctx, completed)
	}
	if err != nil {
		a.log.Warn("record an erasure by id", "err", err)
	}
}

// recordErasureWithin bounds the write of an erasure's entry by the
// stream's follower, which waits for it.
const recordErasureWithin = 5 * time.Second

// applyErasure follows the erasures pending: it returns the one e requests
// (pending, unless it was), or the id of the one e completes (no longer).
// Events whose body does not decode are skipped: PRIVACY is written by
// this service only, so they cannot be anything it must act on.
func (ix *index) applyErasure(e event.Envelope) (*erasureRecord, string) {
	if r, ok := requestOf(e); ok {
		ix.addPending(&r)
		return &r, ""
	}
	if p, ok := completionOf(e); ok {
		ix.dropPending(p.ErasureID)
		return nil, p.ErasureID
	}
	return nil, ""
}

// requestOf returns the erasure e requests, false when e is no erasure
// request (or its body does not decode).
func requestOf(e event.Envelope) (erasureRecord, bool) {
	var p privacyapi.ErasureRequested
	if e.Type != privacyapi.ErasureRequestedType || e.Decode(&p) != nil {
		return erasureRecord{}, false
	}
	return erasureRecord{id: p.ErasureID, tenant: e.Tenant, subject: e.Aggregate, by: p.By, requestedAt: e.At}, true
}

// completionOf returns the completion e records, false when e is no
// erasure completion (or its body does not decode).
func completionOf(e event.Envelope) (privacyapi.ErasureCompleted, bool) {
	var p privacyapi.ErasureCompleted
	if e.Type != privacyapi.ErasureCompletedType || e.Decode(&p) != nil {
		return privacyapi.ErasureCompleted{}, false
	}
	return p, true
}

func (ix *index) addPending(r *erasureRecord) {
	if ix.pending[r.id] == nil {
		ix.pendingOf[subjectID{r.tenant, r.subject}]++
	}
	ix.pending[r.id] = r
}

// forgetPending drops the erasure id from those pending.
func (ix *index) forgetPending(id string) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.dropPending(id)
}

func (ix *index) dropPending(id string) {
	r := ix.pending[id]
	if r == nil {
		return
	}
	delete(ix.pending, id)
	sid := subjectID{r.tenant, r.subject}
	if ix.pendingOf[sid]--; ix.pendingOf[sid] <= 0 {
		delete(ix.pendingOf, sid)
	}
}

// apply adds the subject's event at seq to its state; only a subject's
// first erasure request counts.
func (st *subjectState) apply(seq uint64, e event.Envelope) {
	st.last = seq
	switch e.Type {
	case event.ConsentRecorded:
		var c event.Consent
		if e.Decode(&c) == nil && st.erasure.id == "" {
			st.consents = append(st.consents, privacyapi.ConsentResult{Consent: c, At: e.At, Seq: seq})
		}
	case privacyapi.NetworkDataRecordedType:
		if st.erasure.id == "" {
			st.network = append(st.network, e)
		}
	case privacyapi.ExportRequestedType:
		var p privacyapi.ExportRequested
		if e.Decode(&p) == nil {
			st.requests = append(st.requests, privacyapi.RequestEntry{Kind: privacyapi.RequestExport, ID: p.ExportID, At: e.At, By: p.By})
		}
	case privacyapi.ErasureRequestedType:
		r, ok := requestOf(e)
		if !ok || st.erasure.id != "" {
			return
		}
		st.erasure, st.consents, st.network = r, nil, nil
		st.requests = append(st.requests, privacyapi.RequestEntry{Kind: privacyapi.RequestErasure, ID: r.id, At: r.requestedAt, By: r.by})
	case privacyapi.ErasureCompletedType:
		if p, ok := completionOf(e); ok && p.ErasureID == st.erasure.id && !st.erasure.completed {
			st.erasure.completed, st.erasure.report = true, p.Report
		}
	case privacyapi.TrainingExportRequestedType:
		var p privacyapi.TrainingExportRequested
		if e.Decode(&p) != nil {
			return
		}
		// Those past their pages go: an admin's subject holds every
		// export they ever started.
		st.trainings = slices.DeleteFunc(st.trainings, func(r trainingRecord) bool {
			return r.at.Add(privacyapi.ExportPagesWithin).Before(e.At)
		})
		st.trainings = append(st.trainings, trainingRecord{id: p.ExportID, tenant: e.Tenant, by: p.By, at: e.At, through: p.Through, seq: seq})
	}
}

// subjectView is a copy of what the index holds on a subject.
type subjectView struct {
	known    bool
	last     uint64
	consents []privacyapi.ConsentResult
	network  []event.Envelope
	requests []privacyapi.RequestEntry
	erasure  erasureRecord
}

func (st *subjectState) view() subjectView {
	return subjectView{
		known:    st.last != 0,
		last:     st.last,
		consents: slices.Clone(st.consents),
		network:  slices.Clone(st.network),
		requests: slices.Clone(st.requests),
		erasure:  st.erasure,
	}
}

// subject returns a copy of what the index holds on a subject (see read).
func (a *App) subject(ctx context.Context, id subjectID) (subjectView, error) {
	var v subjectView
	err := a.read(ctx, id, func(st *subjectState) { v = st.view() })
	return v, err
}

// erasureOf returns the subject's erasure (its id "" when none was
// requested) and the sequence of its last event (0: none), without copying
// the rest of what the index holds on them.
func (a *App) erasureOf(ctx context.Context, id subjectID) (erasureRecord, uint64, error) {
	var (
		r    erasureRecord
		last uint64
	)
	err := a.read(ctx, id, func(st *subjectState) { r, last = st.erasure, st.last })
	return r, last, err
}

// read calls f, under the index's lock, with what the index holds on a
// subject, reading the subject's events from the stream first when it
// holds none. The events Apply hands over while the read runs are kept
// aside and applied after it, so none is missed: they are kept from before
// the read starts, so the read holds every event applied earlier. A read
// that found events the index has not applied yet goes on once it has, so
// that what the index holds besides (the erasures pending) is never behind
// a subject's state; f gets the state built in the same hold of the lock
// that caches it, so a cache too small for the subjects read at once reads
// them again but never fails to answer.
func (a *App) read(ctx context.Context, id subjectID, f func(*subjectState)) error {
	ix := &a.index
	for {
		ix.mu.Lock()
		if st, ok := ix.subjects.Get(id); ok {
			f(st)
			ix.mu.Unlock()
			return nil
		}
		if l := ix.loading[id]; l != nil {
			ix.mu.Unlock()
			select {
			case <-l.done:
				continue
			case <-ctx.Done():
				return fmt.Errorf("read privacy events of %s/%s: %w", id.tenant, id.subject, ctx.Err())
			}
		}
		l := &subjectLoad{done: make(chan struct{})}
		ix.loading[id] = l
		ix.mu.Unlock()
		stored, err := a.events.Of(ctx, id.tenant, id.subject)
		if err == nil && len(stored) > 0 {
			// Still kept aside meanwhile: what the follower applies while
			// it catches up with this read.
			err = ix.waitApplied(ctx, stored[len(stored)-1].Seq)
		}
		ix.mu.Lock()
		delete(ix.loading, id)
		close(l.done)
		if err != nil {
			ix.mu.Unlock()
			return fmt.Errorf("read privacy events of %s/%s: %w", id.tenant, id.subject, err)
		}
		st := stateOf(append(stored, l.applied...))
		ix.subjects.Add(id, st)
		f(st)
		ix.mu.Unlock()
		return nil
	}
}

// stateOf folds a subject's events, in stream order, an event there twice
// applied once.
func stateOf(events []StoredEvent) *subjectState {
	st := &subjectState{}
	for _, se := range events {
		if se.Seq > st.last {
			st.apply(se.Seq, se.Event)
		}
	}
	return st
}

// erasurePending reports whether the subject has an erasure pending: one
// completed left the subject's tombstone, which refuses their keys by
// itself.
func (ix *index) erasurePending(id subjectID) bool {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return ix.pendingOf[id] > 0
}

// erasure returns the erasure id as its subject's events hold it, false
// when they hold no such erasure: its subject is found among those pending
// here, or through ErasureRecords.
func (a *App) erasure(ctx context.Context, id string) (erasureRecord, bool, error) {
	a.index.mu.Lock()
	r := a.index.pending[id]
	a.index.mu.Unlock()
	var of subjectID
	switch {
	case r != nil:
		of = subjectID{r.tenant, r.subject}
	case a.erasures != nil:
		ref, ok, err := a.erasures.Find(ctx, id)
		if err != nil || !ok {
			return erasureRecord{}, false, err
		}
		of = subjectID{ref.Tenant, ref.Person}
	default:
		return erasureRecord{}, false, nil
	}
	held, _, err := a.erasureOf(ctx, of)
	if err != nil || held.id != id {
		return erasureRecord{}, false, err
	}
	return held, true, nil
}

// pendingErasures returns the erasures requested before before and not
// completed, as far as this instance followed PRIVACY.
func (ix *index) pendingErasures(before time.Time) []erasureRecord {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	var out []erasureRecord
	for _, r := range ix.pending {
		if r.requestedAt.Before(before) {
			out = append(out, *r)
		}
	}
	return out
}

// waitApplied returns once the event at seq is applied.
func (ix *index) waitApplied(ctx context.Context, seq uint64) error {
	for {
		ix.mu.Lock()
		applied, changed := ix.applied, ix.changed
		ix.mu.Unlock()
		if applied >= seq {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("wait for privacy event %d (applied %d): %w", seq, applied, ctx.Err())
		}
	}
}

// CatchUp returns once every event stored in PRIVACY when it was called is
// applied.
func (a *App) CatchUp(ctx context.Context) error {
	last, err := a.events.LastSeq(ctx)
	if err != nil {
		return err
	}
	return a.index.waitApplied(ctx, last)
}

// unmarkedWithin is how far back a start follows PRIVACY: for the erasures
// an instance of a version before ErasureRecords stores while the service
// rolls, which it marks nowhere. The followers of newer instances mark them
// as they apply them; a start within this of such a request applies it
// again, so that a mark whose write failed, or an instance that stopped
// before writing it, leaves no instance unaware of an erasure pending
// before FinishStalled finishes it (StalledAfter after its request, at its
// next round, a minute apart), with room for a few rounds that fail.
const unmarkedWithin = 5 * time.Minute

// Start readies the index to follow PRIVACY and returns the sequence to
// follow it from: the first event of the last unmarkedWithin, since the
// index reads what it needs of older events when asked. It loads the
// erasures pending, having recorded the erasures of a store an older
// version wrote, once. The sequence is read first: an erasure stored
// before it was marked pending before it was stored (or, by an older
// version, is applied again from there), and the follower applies any
// stored later.
func (a *App) Start(ctx context.Context) (uint64, error) {
	from, err := a.events.SeqAt(ctx, a.now().Add(-unmarkedWithin))
	if err != nil {
		return 0, fmt.Errorf("start of the privacy events to follow: %w", err)
	}
	if a.erasures != nil {
		if err := a.recordErasures(ctx); err != nil {
			return 0, err
		}
		pending, err := a.erasures.Pending(ctx)
		if err != nil {
			return 0, err
		}
		for _, ref := range pending {
			if err := a.loadPending(ctx, ref); err != nil {
				return 0, err
			}
		}
	}
	a.index.mu.Lock()
	a.index.applied = max(a.index.applied, from-1)
	a.index.mu.Unlock()
	return from, nil
}

// loadPending holds the erasure marked pending as its subject's events
// have it, and unmarks one they hold no such request of, or completed: a
// request whose append failed, or an erasure whose end stopped before it
// unmarked it. Only the subject's events decide, before the index follows
// the stream, so that no one is refused their keys for a mark alone. A
// mark younger than StalledAfter whose subject holds no request yet is
// left alone: its request may be being stored (the mark comes first), and
// another instance starting then must still find it.
func (a *App) loadPending(ctx context.Context, ref ErasureRef) error {
	stored, err := a.events.Of(ctx, ref.Tenant, ref.Person)
	if err != nil {
		return fmt.Errorf("read the erasure %s marked pending: %w", ref.ID, err)
	}
	r := stateOf(stored).erasure
	switch {
	case r.id == "" && a.now().Before(ref.RequestedAt.Add(StalledAfter)):
		return nil
	case r.id != ref.ID || r.completed:
		return a.erasures.Done(ctx, ref.ID)
	}
	a.index.mu.Lock()
	a.index.addPending(&r)
	a.index.mu.Unlock()
	return nil
}

// recordErasuresProgress is how many events of PRIVACY recordErasures
// reads between two lines of progress in the log.
const recordErasuresProgress = 1_000_000

// recordErasures gives every erasure in PRIVACY its entry in
// ErasureRecords, unless that was done: a store written before they were
// kept is read whole, once.
func (a *App) recordErasures(ctx context.Context) error {
	complete, err := a.erasures.Complete(ctx)
	if err != nil || complete {
		return err
	}
	a.log.Info("recording the erasures of PRIVACY by id, once: a read of the whole stream")
	var (
		refs []ErasureRef
		done = make(map[string]bool)
		read int
	)
	err = a.events.Scan(ctx, "*", 0, func(se StoredEvent) (bool, error) {
		if read++; read%recordErasuresProgress == 0 {
			a.log.Info("recording the erasures of PRIVACY by id", "events_read", read, "erasures", len(refs), "at_sequence", se.Seq)
		}
		if r, ok := requestOf(se.Event); ok {
			refs = append(refs, r.ref())
		} else if p, ok := completionOf(se.Event); ok {
			done[p.ErasureID] = true
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("record erasures: %w", err)
	}
	for _, r := range refs {
		if err := a.erasures.Record(ctx, r, !done[r.ID]); err != nil {
			return err
		}
	}
	if err := a.erasures.MarkComplete(ctx); err != nil {
		return err
	}
	a.log.Info("recorded the erasures of PRIVACY by id", "erasures", len(refs), "pending", len(refs)-len(done))
	return nil
}
