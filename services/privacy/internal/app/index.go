package app

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/parley-chat/parley/pkg/audit"
	"github.com/parley-chat/parley/pkg/event"
	"github.com/parley-chat/parley/pkg/privacyapi"
)

// index is the service's view of the PRIVACY stream. Entries are small and
// hold no personal data in the clear (network data stays sealed under the
// subject's key); an erased subject keeps only its requests and the id of
// its erasure.
type index struct {
	mu sync.Mutex
	// applied is the stream sequence of the last event applied; changed is
	// closed and replaced whenever it grows.
	applied  uint64
	changed  chan struct{}
	subjects map[subjectID]*subjectState
	erasures map[string]*erasureRecord
	// trainings are the training exports of the last
	// privacyapi.ExportPagesWithin, by id.
	trainings map[string]trainingRecord
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

func newIndex() index {
	return index{
		changed:   make(chan struct{}),
		subjects:  make(map[subjectID]*subjectState),
		erasures:  make(map[string]*erasureRecord),
		trainings: make(map[string]trainingRecord),
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
		st := ix.subjects[id]
		if st == nil {
			st = &subjectState{}
			ix.subjects[id] = st
		}
		st.last = seq
		if ix.apply(id, st, seq, e) {
			erased = &id
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

// apply reports whether e is the first erasure request of the subject.
// Events whose body does not decode are skipped: PRIVACY is written by this
// service only, so they cannot be anything it must act on.
func (ix *index) apply(id subjectID, st *subjectState, seq uint64, e event.Envelope) bool {
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
			return false
		}
		st.erasure, st.consents, st.network = p.ErasureID, nil, nil
		st.requests = append(st.requests, privacyapi.RequestEntry{Kind: privacyapi.RequestErasure, ID: p.ErasureID, At: e.At, By: p.By})
		ix.erasures[p.ErasureID] = &erasureRecord{id: p.ErasureID, tenant: id.tenant, subject: id.subject, by: p.By, requestedAt: e.At}
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

// subjectView is a copy of what the index holds on a subject.
type subjectView struct {
	known    bool
	last     uint64
	consents []privacyapi.ConsentResult
	network  []event.Envelope
	requests []privacyapi.RequestEntry
	erasure  string
}

func (ix *index) subject(id subjectID) subjectView {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	st := ix.subjects[id]
	if st == nil {
		return subjectView{}
	}
	return subjectView{
		known:    true,
		last:     st.last,
		consents: slices.Clone(st.consents),
		network:  slices.Clone(st.network),
		requests: slices.Clone(st.requests),
		erasure:  st.erasure,
	}
}

func (ix *index) erasureOf(id subjectID) string {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if st := ix.subjects[id]; st != nil {
		return st.erasure
	}
	return ""
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
