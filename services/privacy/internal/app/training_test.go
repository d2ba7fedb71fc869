package app_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/chatapi"
	"github.com/parley-chat/parley/pkg/event"
	"github.com/parley-chat/parley/pkg/personkey"
	"github.com/parley-chat/parley/pkg/privacyapi"
	"github.com/parley-chat/parley/pkg/seal"

	"github.com/parley-chat/parley/services/privacy/internal/app"
	"github.com/parley-chat/parley/services/privacy/internal/memory"
)

// trainingScene is the privacy use cases on memory with a CHAT of its own.
type trainingScene struct {
	t     testing.TB
	c     *clock
	a     *app.App
	chat  *memory.ChatLog
	admin auth.Principal
	// kek, bus and stores start the scene's service again (restart).
	kek    seal.Key
	bus    *memory.Bus
	stores app.Stores
}

func newTrainingScene(t testing.TB) *trainingScene {
	kek, err := seal.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	s := &trainingScene{t: t, c: &clock{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}, chat: new(memory.ChatLog),
		admin: auth.Principal{Tenant: "demo", ID: "ada", Role: auth.RoleAdmin}, kek: kek, bus: new(memory.Bus)}
	s.a = newMemoryAppKEK(t, s.c, s.bus, kek, func(st *app.Stores) {
		st.ChatLog = s.chat
		s.stores = *st
	})
	return s
}

// restart starts the scene's service again on its stores; events reads
// count the reads of a person's events by the new instance.
func (s *trainingScene) restart() (events *countingLog) {
	events = &countingLog{EventLog: s.stores.Events}
	s.a = newMemoryAppKEK(s.t, s.c, s.bus, s.kek, func(st *app.Stores) {
		*st = s.stores
		st.Events = events
	})
	return events
}

// visitor registers a visitor of demo with ai consent or not.
func (s *trainingScene) visitor(ai bool) (string, personkey.Keys) {
	s.t.Helper()
	reg, err := s.a.RegisterVisitor(s.t.Context(), "demo", event.Consent{AI: ai, NoticeVersion: "n1"}, nil)
	if err != nil {
		s.t.Fatalf("RegisterVisitor() = %v", err)
	}
	k, err := s.a.GetKeys(s.t.Context(), "demo", reg.VisitorID, false)
	if err != nil {
		s.t.Fatalf("GetKeys() = %v", err)
	}
	return reg.VisitorID, k
}

// write appends to CHAT an event of visitor's conversation conv, sealed
// under their keys k, stamped now.
func (s *trainingScene) write(k personkey.Keys, typ event.Type, visitor, conv string, payload any) {
	s.t.Helper()
	e, err := event.New(k.Data, typ, "demo", visitor, conv, s.c.now(), payload)
	if err != nil {
		s.t.Fatal(err)
	}
	s.chat.Append(e)
}

// consent records the visitor's consent again, with ai or not.
func (s *trainingScene) consent(visitor string, ai bool) {
	s.t.Helper()
	p := auth.Principal{Tenant: "demo", ID: visitor, Role: auth.RoleVisitor}
	if _, err := s.a.SetConsent(s.t.Context(), p, privacyapi.SetConsentArgs{Tenant: "demo", Consent: event.Consent{AI: ai, NoticeVersion: "n2"}}); err != nil {
		s.t.Fatalf("SetConsent() = %v", err)
	}
}

// export reads a training export whole as p, and counts its pages: of
// messages, of those empty, and of the manifest.
func (s *trainingScene) export(p auth.Principal) (msgs []privacyapi.TrainingMessage, visitors []string, pages, empty, manifestPages int) {
	s.t.Helper()
	started, err := s.a.StartTrainingExport(s.t.Context(), p, "demo")
	if err != nil {
		s.t.Fatalf("StartTrainingExport() = %v", err)
	}
	err = chatapi.ReadPages(func(after *privacyapi.TrainingCursor) (*privacyapi.TrainingCursor, error) {
		page, err := s.a.TrainingPage(s.t.Context(), p, privacyapi.TrainingPageArgs{Tenant: "demo", ExportID: started.ExportID, After: after})
		if err != nil {
			return nil, err
		}
		if after != nil && after.Manifest {
			manifestPages++
		} else {
			pages++
			if len(page.Messages) == 0 {
				empty++
			}
		}
		msgs, visitors = append(msgs, page.Messages...), append(visitors, page.Visitors...)
		return page.Next, nil
	})
	if err != nil {
		s.t.Fatalf("reading the training export: %v", err)
	}
	return msgs, visitors, pages, empty, manifestPages
}

// TestTrainingPages pages a training export through stretches of CHAT
// with nothing to export and a manifest of more visitors than a page
// holds: every message and every consenting visitor comes once, in
// bounded pages, and nothing of those who refused.
func TestTrainingPages(t *testing.T) {
	s := newTrainingScene(t)
	writer, wk := s.visitor(true)
	refuser, rk := s.visitor(false)
	s.write(wk, event.ConversationOpened, writer, "c1", event.Opened{Visitor: writer, Text: "hello, I am jane@example.com"})
	for i := range 5000 {
		s.write(rk, event.MessagePosted, refuser, "c2", event.Posted{Author: event.Author{Role: "visitor", ID: refuser}, Text: "no " + strings.Repeat("x", i%50)})
	}
	s.write(wk, event.MessagePosted, writer, "c1", event.Posted{Author: event.Author{Role: "supervisor", ID: "sue"}, Text: "answered"})
	const consenting = 4000
	for range consenting - 1 {
		s.visitor(true)
	}
	s.visitor(false)
	// One who consents again comes once; one who withdrew before the
	// export not at all.
	s.consent(writer, true)
	withdrawn, _ := s.visitor(true)
	s.consent(withdrawn, false)

	msgs, visitors, pages, empty, manifestPages := s.export(s.admin)
	want := []privacyapi.TrainingMessage{
		{Conversation: privacyapi.TrainingPseudonym(wk.Pseudonym, "c1"), Visitor: privacyapi.TrainingPseudonym(wk.Pseudonym, writer), Role: "visitor", Text: "hello, I am [email]"},
		{Conversation: privacyapi.TrainingPseudonym(wk.Pseudonym, "c1"), Visitor: privacyapi.TrainingPseudonym(wk.Pseudonym, writer), Role: "agent", Text: "answered"},
	}
	if len(msgs) != len(want) || msgs[0] != want[0] || msgs[1] != want[1] {
		t.Errorf("training messages = %+v, want %+v", msgs, want)
	}
	// 5,002 events, at most 2,000 read a page: three pages, the middle
	// one empty.
	if pages != 3 || empty != 1 {
		t.Errorf("pages of messages = %d (%d empty), want 3 (1 empty)", pages, empty)
	}
	seen := make(map[string]bool)
	for _, v := range visitors {
		seen[v] = true
	}
	if len(visitors) != consenting || len(seen) != consenting || !seen[want[0].Visitor] {
		t.Errorf("manifest of %d pseudonyms (%d distinct, the writer's there: %v), want %d", len(visitors), len(seen), seen[want[0].Visitor], consenting)
	}
	if manifestPages < 2 {
		t.Errorf("manifest in %d pages, want more than one", manifestPages)
	}
}

// TestTrainingExportRefusals: only an admin starts one, and only who
// started it reads its pages, within the hour.
func TestTrainingExportRefusals(t *testing.T) {
	s := newTrainingScene(t)
	ctx := t.Context()
	for _, p := range []auth.Principal{
		{Tenant: "demo", ID: "al", Role: auth.RoleAgent},
		{Tenant: "demo", ID: "sue", Role: auth.RoleSupervisor},
		{Tenant: "demo", ID: "v1", Role: auth.RoleVisitor},
		{Tenant: "other", ID: "ada", Role: auth.RoleAdmin},
	} {
		if _, err := s.a.StartTrainingExport(ctx, p, "demo"); !errors.Is(err, app.ErrForbidden) {
			t.Errorf("StartTrainingExport() as %+v = %v, want ErrForbidden", p, err)
		}
	}
	started, err := s.a.StartTrainingExport(ctx, s.admin, "demo")
	if err != nil {
		t.Fatal(err)
	}
	page := func(p auth.Principal) error {
		_, err := s.a.TrainingPage(ctx, p, privacyapi.TrainingPageArgs{Tenant: "demo", ExportID: started.ExportID})
		return err
	}
	if err := page(auth.Principal{Tenant: "demo", ID: "bob", Role: auth.RoleAdmin}); !errors.Is(err, app.ErrNotFound) {
		t.Errorf("TrainingPage() by another admin = %v, want ErrNotFound", err)
	}
	if err := page(s.admin); err != nil {
		t.Errorf("TrainingPage() = %v", err)
	}
	s.c.advance(privacyapi.ExportPagesWithin)
	if err := page(s.admin); !errors.Is(err, app.ErrNotFound) {
		t.Errorf("TrainingPage() an hour after the start = %v, want ErrNotFound", err)
	}
}

// TestTrainingExportAcrossARestart: an export started before a restart
// pages on after it, from where it was, though a start reads no history:
// the new instance finds the export on its admin's own subject, which it
// reads when the admin asks for a page. Another admin's ask reads theirs,
// and finds nothing.
func TestTrainingExportAcrossARestart(t *testing.T) {
	s := newTrainingScene(t)
	ctx := t.Context()
	v, k := s.visitor(true)
	s.write(k, event.ConversationOpened, v, "c1", event.Opened{Visitor: v, Text: "hello"})
	s.write(k, event.MessagePosted, v, "c1", event.Posted{Author: event.Author{Role: "visitor", ID: v}, Text: "again"})
	started, err := s.a.StartTrainingExport(ctx, s.admin, "demo")
	if err != nil {
		t.Fatal(err)
	}
	page := func(p auth.Principal, after *privacyapi.TrainingCursor) (privacyapi.TrainingPage, error) {
		return s.a.TrainingPage(ctx, p, privacyapi.TrainingPageArgs{Tenant: "demo", ExportID: started.ExportID, After: after})
	}
	first, err := page(s.admin, nil)
	if err != nil || len(first.Messages) != 2 || first.Next == nil {
		t.Fatalf("TrainingPage() = %d messages, next %v, %v; want 2 and more to come", len(first.Messages), first.Next, err)
	}
	s.c.advance(privacyapi.ExportPagesWithin / 2)
	events := s.restart()
	if n := events.reads.Load(); n != 0 {
		t.Errorf("a start read %d people's events, want none", n)
	}
	if _, err := page(auth.Principal{Tenant: "demo", ID: "bob", Role: auth.RoleAdmin}, first.Next); !errors.Is(err, app.ErrNotFound) {
		t.Errorf("TrainingPage() by another admin after a restart = %v, want ErrNotFound", err)
	}
	manifest, err := page(s.admin, first.Next)
	if err != nil || len(manifest.Messages) != 0 || len(manifest.Visitors) != 1 {
		t.Errorf("TrainingPage() after a restart = %+v, %v; want the manifest of the one consenting visitor", manifest, err)
	}
	s.c.advance(privacyapi.ExportPagesWithin / 2)
	if _, err := page(s.admin, first.Next); !errors.Is(err, app.ErrNotFound) {
		t.Errorf("TrainingPage() an hour after the start, across a restart = %v, want ErrNotFound", err)
	}
}

// BenchmarkTrainingPage measures what a page of a training export costs
// the privacy service for each message it exports: opening it under the
// visitor's key, the consent checks, redaction and the pseudonyms.
func BenchmarkTrainingPage(b *testing.B) {
	s := newTrainingScene(b)
	v, k := s.visitor(true)
	// Within one page (chatapi.PageBytes).
	const n = 800
	text := "Hi, my card 4111 1111 1111 1111 was charged twice; mail me at jane.doe@example.com or call +44 20 7946 0958, thanks a lot for looking into it"
	s.write(k, event.ConversationOpened, v, "c1", event.Opened{Visitor: v, Text: text})
	for range n - 1 {
		s.write(k, event.MessagePosted, v, "c1", event.Posted{Author: event.Author{Role: "visitor", ID: v}, Text: text})
	}
	started, err := s.a.StartTrainingExport(b.Context(), s.admin, "demo")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		page, err := s.a.TrainingPage(b.Context(), s.admin, privacyapi.TrainingPageArgs{Tenant: "demo", ExportID: started.ExportID})
		if err != nil || len(page.Messages) != n {
			b.Fatalf("TrainingPage() = %d messages, %v; want %d", len(page.Messages), err, n)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/message")
}
