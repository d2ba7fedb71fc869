package app_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/parley-chat/parley/pkg/audit"
	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/event"
	"github.com/parley-chat/parley/pkg/privacyapi"

	"github.com/parley-chat/parley/services/privacy/internal/app"
	"github.com/parley-chat/parley/services/privacy/internal/keyring"
	"github.com/parley-chat/parley/services/privacy/internal/memory"
)

// TestErasuresAcrossARestart: an instance started on another's stores
// past what a start follows again reads nothing of PRIVACY at its start but the events of
// those marked pending, yet finds an erasure completed before by its id,
// finishes the one left pending, and drops the marks their events belie.
func TestErasuresAcrossARestart(t *testing.T) {
	c := &clock{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
	bus := new(memory.Bus)
	var (
		shared app.Stores
		keys   *failingDestroy
	)
	first := newMemoryAppWith(t, c, bus, func(s *app.Stores) {
		keys = &failingDestroy{KeyStore: s.Keys.(*memory.KeyStore)}
		s.Keys = keys
		shared = *s
	})
	ctx := t.Context()
	visitor := func(id string) auth.Principal { return auth.Principal{Tenant: "demo", ID: id, Role: auth.RoleVisitor} }
	for _, v := range []string{"v1", "v2"} {
		if _, err := first.GetKeys(ctx, "demo", v, true); err != nil {
			t.Fatal(err)
		}
	}
	done, err := first.Erase(ctx, visitor("v1"), "demo", "v1")
	if err != nil || done.Status != privacyapi.StatusCompleted {
		t.Fatalf("Erase(v1) = %+v, %v", done, err)
	}
	keys.fail = true
	if _, err := first.Erase(ctx, visitor("v2"), "demo", "v2"); err == nil {
		t.Fatal("Erase(v2) with the keys' destruction failing = nil, want its error")
	}
	keys.fail = false
	stalled, _, _, err := first.ErasureOf(ctx, "demo", "v2")
	if err != nil || stalled == "" {
		t.Fatalf("ErasureOf(v2) = %q, %v", stalled, err)
	}

	// Marks a start finds wrong: v1's completed erasure still marked
	// pending (its end stopped before unmarking it), and one of v3 whose
	// request was never stored (its append failed).
	for _, ref := range []app.ErasureRef{{ID: done.ErasureID, Tenant: "demo", Person: "v1"}, {ID: "never-stored", Tenant: "demo", Person: "v3"}} {
		if err := shared.Erasures.Record(ctx, ref, true); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := first.GetKeys(ctx, "demo", "v3", true); err != nil {
		t.Fatal(err)
	}
	// Past what a start follows again: the stalled request is known from
	// its mark alone.
	c.advance(app.UnmarkedWithin + app.StalledAfter)
	log := &countingLog{EventLog: shared.Events}
	second := newMemoryAppWith(t, c, bus, func(s *app.Stores) {
		*s = shared
		s.Events = log
	})
	// A start reads the events of those marked pending alone, to check
	// the marks, and holds none of them but as pending.
	if n, reads := app.IndexLen(second), log.reads.Load(); n != 0 || reads != 3 {
		t.Errorf("a start read %d subjects' events and holds %d; want the 3 marked pending read, none held", reads, n)
	}
	if pending, err := shared.Erasures.Pending(ctx); err != nil || len(pending) != 1 || pending[0].Person != "v2" {
		t.Errorf("marked pending after a start: %+v, %v; want v2's alone, the wrong marks gone", pending, err)
	}
	// A mark alone refuses no one their keys (this instance's KEK is its
	// own, so they are refused for that, not as erased).
	if _, err := second.GetKeys(ctx, "demo", "v3", false); errors.Is(err, keyring.ErrErased) {
		t.Errorf("GetKeys(v3), marked pending by a request never stored, = %v; want them not refused as erased", err)
	}
	admin := auth.Principal{Tenant: "demo", ID: "ada", Role: auth.RoleAdmin}
	// v1's erasure, asked again, is answered as it completed, not run
	// again; v3's, asked for, is a new one that stalls like v2's.
	if again, err := second.Erase(ctx, visitor("v1"), "demo", "v1"); err != nil || again.Status != privacyapi.StatusCompleted || again.ErasureID != done.ErasureID {
		t.Errorf("Erase(v1) again after a restart = %+v, %v; want the first, completed", again, err)
	}
	keys.fail = true
	if _, err := second.Erase(ctx, visitor("v3"), "demo", "v3"); err == nil {
		t.Fatal("Erase(v3) with the keys' destruction failing = nil, want its error")
	}
	keys.fail = false
	c.advance(app.StalledAfter + time.Second)
	got, err := second.ErasureStatus(ctx, admin, "demo", done.ErasureID)
	if err != nil || got.Status != privacyapi.StatusCompleted || got.Report == nil || got.Person != "v1" {
		t.Errorf("ErasureStatus() of v1's after a restart = %+v, %v; want it completed, with its report", got, err)
	}
	if n, err := second.FinishStalled(ctx); n != 2 || err != nil {
		t.Fatalf("FinishStalled() after a restart = %d, %v; want 2, nil: v2's erasure known from its mark, v3's from its request", n, err)
	}
	for _, v := range []string{"v1", "v3"} {
		events, err := shared.Events.Of(ctx, "demo", v)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, se := range events {
			if se.Event.Type == privacyapi.ErasureCompletedType {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%s's events hold %d erasure completions, want 1", v, n)
		}
	}
	got, err = second.ErasureStatus(ctx, admin, "demo", stalled)
	if err != nil || got.Status != privacyapi.StatusCompleted {
		t.Errorf("ErasureStatus() of v2's once finished = %+v, %v; want completed", got, err)
	}
	if pending, err := shared.Erasures.Pending(ctx); len(pending) != 0 || err != nil {
		t.Errorf("erasures recorded pending once all completed: %+v, %v; want none", pending, err)
	}
	if _, err := second.ErasureStatus(ctx, visitor("v1"), "demo", stalled); !errors.Is(err, app.ErrNotFound) {
		t.Errorf("ErasureStatus() of v2's for v1 = %v, want ErrNotFound", err)
	}
}

// TestErasureUnmarkedAcrossARestart: an erasure an instance of an older
// version stores while the service rolls has no mark, and its mark by the
// newer followers can fail; an instance started within app.UnmarkedWithin
// still holds it pending (refusing the person's keys), marks it, and
// finishes it once stalled. A mark whose request is not stored yet, younger
// than app.StalledAfter, outlives a start, and its request, stored after,
// is held pending.
func TestErasureUnmarkedAcrossARestart(t *testing.T) {
	c := &clock{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
	bus := new(memory.Bus)
	var shared app.Stores
	first := newMemoryAppWith(t, c, bus, func(s *app.Stores) { shared = *s })
	ctx := t.Context()
	for _, v := range []string{"v1", "v2"} {
		if _, err := first.GetKeys(ctx, "demo", v, true); err != nil {
			t.Fatal(err)
		}
	}
	request := func(id, person string) event.Envelope {
		t.Helper()
		e, err := event.NewClear(privacyapi.ErasureRequestedType, "demo", person, person, c.now(),
			privacyapi.ErasureRequested{ErasureID: id, By: audit.Actor{Role: "visitor", ID: person}})
		if err != nil {
			t.Fatal(err)
		}
		e.ID = id
		return e
	}
	// As an older version stores it: no mark first. The follower marks it;
	// that write lost, as when it failed.
	if _, err := shared.Events.Append(ctx, request("old", "v1")); err != nil {
		t.Fatal(err)
	}
	if err := shared.Erasures.Done(ctx, "old"); err != nil {
		t.Fatal(err)
	}
	// A newer instance's mark, its request not stored yet.
	young := app.ErasureRef{ID: "young", Tenant: "demo", Person: "v2", By: audit.Actor{Role: "visitor", ID: "v2"}, RequestedAt: c.now()}
	if err := shared.Erasures.Record(ctx, young, true); err != nil {
		t.Fatal(err)
	}

	c.advance(time.Minute)
	second := newMemoryAppWith(t, c, bus, func(s *app.Stores) { *s = shared })
	if _, err := second.GetKeys(ctx, "demo", "v1", false); !errors.Is(err, keyring.ErrErased) {
		t.Errorf("GetKeys(v1) after a start, v1's erasure unmarked and pending, = %v; want refused as erased", err)
	}
	if _, err := second.GetKeys(ctx, "demo", "v2", false); errors.Is(err, keyring.ErrErased) {
		t.Errorf("GetKeys(v2), marked pending by a request not stored yet, = %v; want them not refused as erased", err)
	}
	// Still marked, for an instance that starts once its request is stored.
	if pending, err := shared.Erasures.Pending(ctx); err != nil || !slices.ContainsFunc(pending, func(r app.ErasureRef) bool { return r.ID == "young" }) {
		t.Errorf("marked pending after a start: %+v, %v; want the young mark kept", pending, err)
	}
	if _, err := shared.Events.Append(ctx, request("young", "v2")); err != nil {
		t.Fatal(err)
	}
	if err := second.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := second.GetKeys(ctx, "demo", "v2", false); !errors.Is(err, keyring.ErrErased) {
		t.Errorf("GetKeys(v2) once its request is stored = %v; want refused as erased", err)
	}
	pending, err := shared.Erasures.Pending(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(pending) != 2 {
		t.Errorf("marked pending after the start: %+v; want the old erasure marked again, and the young one", pending)
	}
	c.advance(app.StalledAfter + time.Second)
	if n, err := second.FinishStalled(ctx); n != 2 || err != nil {
		t.Errorf("FinishStalled() = %d, %v; want both finished", n, err)
	}
}

// TestErasuresOfAnOlderStoreRecordedOnce: a start on a PRIVACY written
// before erasures were recorded by id reads it once and records each, the
// one not completed pending; the next start reads nothing.
func TestErasuresOfAnOlderStoreRecordedOnce(t *testing.T) {
	events, records := memory.NewEventLog(), memory.NewErasureRecords()
	at := time.Date(2026, 2, 1, 9, 0, 0, 0, time.UTC)
	by := audit.Actor{Role: "admin", ID: "ada"}
	store := func(typ event.Type, person string, payload any) {
		t.Helper()
		e, err := event.NewClear(typ, "demo", person, person, at, payload)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := events.Append(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
	store(event.ConsentRecorded, "v1", event.Consent{NoticeVersion: "n1"})
	store(privacyapi.ErasureRequestedType, "v1", privacyapi.ErasureRequested{ErasureID: "e1", By: by})
	store(privacyapi.ErasureCompletedType, "v1", privacyapi.ErasureCompleted{ErasureID: "e1"})
	store(privacyapi.ErasureRequestedType, "v2", privacyapi.ErasureRequested{ErasureID: "e2", By: by})

	c := &clock{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
	var log *countingLog
	start := func() {
		newMemoryAppWith(t, c, new(memory.Bus), func(s *app.Stores) {
			log = &countingLog{EventLog: events}
			s.Events, s.Erasures = log, records
		})
	}
	start()
	if n := log.scans.Load(); n != 1 {
		t.Errorf("the first start scanned PRIVACY %d times, want 1", n)
	}
	for _, id := range []string{"e1", "e2"} {
		if r, ok, err := records.Find(t.Context(), id); !ok || err != nil || r.Person != "v"+id[1:] || r.By != by {
			t.Errorf("Find(%s) = %+v, %v, %v", id, r, ok, err)
		}
	}
	if pending, err := records.Pending(t.Context()); err != nil || len(pending) != 1 || pending[0].ID != "e2" {
		t.Errorf("Pending() = %+v, %v; want e2 alone", pending, err)
	}
	start()
	if n := log.scans.Load(); n != 0 {
		t.Errorf("the next start scanned PRIVACY %d times, want none", n)
	}
}
