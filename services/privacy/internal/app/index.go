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
// subject's key); an erased subject keeps only its requests and the id of
// its erasure.
//
// Of the data subjects it holds the most recently asked about only, at
// most the cache size: any other is read from the stream when asked (one
// batched read of their subject), so memory follows the people served,
// not the people retained. The erasures and the training exports are held
// whole: they are few, and each is asked for by its id.
type index struct {
	mu sync.Mutex
	// applied is the stream sequence of the last event applied; changed is
	// closed and replaced whenever it grows.
	applied  uint64
	changed  chan struct{}
	subjects *simplelru.LRU[subjectID, *subjectState]
	// loading holds, for each subject being read from the stream, the
	// events applied meanwhile: those the read may have missed.
	loading  map[subjectID]*subjectLoad
	erasures map[string]*erasureRecord
	// erasureIDs holds the id of each erasure by its subject: asked on
	// every read of keys, which must not wait for a subject's events.
	erasureIDs map[subjectID]string
	// trainings are the training exports of the last
	// privacyapi.ExportPagesWithin, by id.
	trainings map[string]trainingRecord
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
	// erasure is the id of the subject's erasure, once requested.
	erasure string
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

func newIndex(size int) index {
	if size <= 0 {
		size = personkey.DefaultCacheSize
	}
	subjects, _ := simplelru.NewLRU[subjectID, *subjectState](size, nil) // fails only for size <= 0
	return index{
		changed:    make(chan struct{}),
		subjects:   subjects,
		loading:    make(map[subjectID]*subjectLoad),
		erasures:   make(map[string]*erasureRecord),
		erasureIDs: make(map[subjectID]string),
		trainings:  make(map[string]trainingRecord),
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
	var erased *subjectID
	if e.Type == privacyapi.TrainingExportRequestedType {
		// About the tenant, not the admin who asked: no subject of it.
		var p privacyapi.TrainingExportRequested
		if e.Decode(&p) == nil {
			// Those past their pages go, so the index keeps an hour's.
			for id, r := range ix.trainings {
				if r.at.Add(privacyapi.ExportPagesWithin).Before(e.At) {
					delete(ix.trainings, id)
				}
			}
			ix.trainings[p.ExportID] = trainingRecord{tenant: e.Tenant, by: p.By, at: e.At, through: p.Through}
		}
	} else if e.Tenant != "" {
		id := subjectID{e.Tenant, e.Aggregate}
		if ix.applyErasure(id, e) {
			erased = &id
		}
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
	if erased != nil {
		a.Forget(erased.tenant, erased.subject)
	}
}

// applyErasure adds an erasure's request or completion to the erasures,
// and reports whether e requests one they did not hold. Events whose body
// does not decode are skipped: PRIVACY is written by this service only, so
// they cannot be anything it must act on.
func (ix *index) applyErasure(id subjectID, e event.Envelope) bool {
	switch e.Type {
	case privacyapi.ErasureRequestedType:
		var p privacyapi.ErasureRequested
		if e.Decode(&p) != nil || ix.erasures[p.ErasureID] != nil {
			return false
		}
		ix.erasures[p.ErasureID] = &erasureRecord{id: p.ErasureID, tenant: id.tenant, subject: id.subject, by: p.By, requestedAt: e.At}
		if ix.erasureIDs[id] != "" {
			return false
		}
		ix.erasureIDs[id] = p.ErasureID
		return true
	case privacyapi.ErasureCompletedType:
		var p privacyapi.ErasureCompleted
		if e.Decode(&p) != nil {
			return false
		}
		if r := ix.erasures[p.ErasureID]; r != nil && !r.completed {
			r.completed, r.report = true, p.Report
		}
	}
	return false
}

// apply adds the subject's event at seq to its state; only a subject's
// first erasure request counts.
func (st *subjectState) apply(seq uint64, e event.Envelope) {
	st.last = seq
	switch e.Type {
	case event.ConsentRecorded:
		var c event.Consent
		if e.Decode(&c) == nil && st.erasure == "" {
			st.consents = append(st.consents, privacyapi.ConsentResult{Consent: c, At: e.At, Seq: seq})
		}
	case privacyapi.NetworkDataRecordedType:
		if st.erasure == "" {
			st.network = append(st.network, e)
		}
	case privacyapi.ExportRequestedType:
		var p privacyapi.ExportRequested
		if e.Decode(&p) == nil {
			st.requests = append(st.requests, privacyapi.RequestEntry{Kind: privacyapi.RequestExport, ID: p.ExportID, At: e.At, By: p.By})
		}
	case privacyapi.ErasureRequestedType:
		var p privacyapi.ErasureRequested
		if e.Decode(&p) != nil || st.erasure != "" {
			return
		}
		st.erasure, st.consents, st.network = p.ErasureID, nil, nil
		st.requests = append(st.requests, privacyapi.RequestEntry{Kind: privacyapi.RequestErasure, ID: p.ErasureID, At: e.At, By: p.By})
	}
}

// subjectView is a copy of what the index holds on a subject.
type subjectView struct {
	known    bool
	last     uint64
	consents []privacyapi.ConsentResult
	network  []event.Envelope
	requests []privacyapi.RequestEntry
	erasure  string
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

// subject returns what the index holds on a subject, reading the subject's
// events from the stream when it holds none. The events Apply hands over
// while the read runs are kept aside and applied after it, so none is
// missed: they are kept from before the read starts, so the read holds
// every event applied earlier.
func (a *App) subject(ctx context.Context, id subjectID) (subjectView, error) {
	ix := &a.index
	for {
		ix.mu.Lock()
		if st, ok := ix.subjects.Get(id); ok {
			v := st.view()
			ix.mu.Unlock()
			return v, nil
		}
		if l := ix.loading[id]; l != nil {
			ix.mu.Unlock()
			select {
			case <-l.done:
				continue
			case <-ctx.Done():
				return subjectView{}, fmt.Errorf("read privacy events of %s/%s: %w", id.tenant, id.subject, ctx.Err())
			}
		}
		l := &subjectLoad{done: make(chan struct{})}
		ix.loading[id] = l
		ix.mu.Unlock()
		stored, err := a.events.Of(ctx, id.tenant, id.subject)
		ix.mu.Lock()
		delete(ix.loading, id)
		close(l.done)
		if err != nil {
			ix.mu.Unlock()
			return subjectView{}, fmt.Errorf("read privacy events of %s/%s: %w", id.tenant, id.subject, err)
		}
		st := &subjectState{}
		for _, se := range append(stored, l.applied...) {
			if se.Seq > st.last {
				st.apply(se.Seq, se.Event)
			}
		}
		ix.subjects.Add(id, st)
		v := st.view()
		ix.mu.Unlock()
		return v, nil
	}
}

// erasureOf returns the id of the subject's erasure, "" when none was
// requested.
func (ix *index) erasureOf(id subjectID) string {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return ix.erasureIDs[id]
}

func (ix *index) erasure(id string) (erasureRecord, bool) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	r := ix.erasures[id]
	if r == nil {
		return erasureRecord{}, false
	}
	return *r, true
}

// pendingErasures returns the erasures requested before before and not
// completed.
func (ix *index) pendingErasures(before time.Time) []erasureRecord {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	var out []erasureRecord
	for _, r := range ix.erasures {
		if !r.completed && r.requestedAt.Before(before) {
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
