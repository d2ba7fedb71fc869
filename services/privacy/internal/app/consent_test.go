package app_test

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/event"
	"github.com/parley-chat/parley/pkg/privacyapi"

	"github.com/parley-chat/parley/services/privacy/internal/app"
	"github.com/parley-chat/parley/services/privacy/internal/memory"
)

// TestConsentOnMemory runs the consent use cases with no bus: a visitor
// registers with their first choices, changes them, and the change is in
// force, in their history with the clock's times, and broadcast; another
// visitor may not set it, and an unknown one has none.
func TestConsentOnMemory(t *testing.T) {
	start := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	c := &clock{t: start}
	bus := new(memory.Bus)
	a := newMemoryApp(t, c, bus)
	ctx := t.Context()

	first := event.Consent{Analytics: true, NoticeVersion: "n1"}
	reg, err := a.RegisterVisitor(ctx, "demo", first, nil)
	if err != nil {
		t.Fatalf("RegisterVisitor() = %v", err)
	}
	visitor := reg.VisitorID
	me := auth.Principal{Tenant: "demo", ID: visitor, Role: auth.RoleVisitor}

	c.advance(time.Hour)
	second := event.Consent{Analytics: false, AI: true, NoticeVersion: "n2"}
	set, err := a.SetConsent(ctx, me, privacyapi.SetConsentArgs{Tenant: "demo", Consent: second})
	if err != nil {
		t.Fatalf("SetConsent() = %v", err)
	}
	got, err := a.GetConsent(ctx, "demo", visitor)
	if err != nil {
		t.Fatalf("GetConsent() = %v", err)
	}
	if d := cmp.Diff(set, got); d != "" {
		t.Errorf("GetConsent() differs from what SetConsent returned (-set +got):\n%s", d)
	}

	hist, err := a.ConsentHistory(ctx, me, "demo", visitor)
	if err != nil {
		t.Fatalf("ConsentHistory() = %v", err)
	}
	want := []privacyapi.ConsentEntry{{Consent: first, At: start}, {Consent: second, At: start.Add(time.Hour)}}
	if d := cmp.Diff(want, hist.Entries); d != "" {
		t.Errorf("ConsentHistory() (-want +got):\n%s", d)
	}
	sent := bus.Sent()
	if len(sent) != 1 || sent[0].Subject != privacyapi.ConsentChangedSubject {
		t.Fatalf("broadcasts = %+v, want one ConsentChanged", sent)
	}
	if ch := sent[0].Value.(privacyapi.ConsentChanged); ch.Person != visitor || ch.Result.Seq != set.Seq {
		t.Errorf("ConsentChanged = %+v, want the visitor's change at sequence %d", ch, set.Seq)
	}

	other := auth.Principal{Tenant: "demo", ID: "someone-else", Role: auth.RoleVisitor}
	if _, err := a.ConsentHistory(ctx, other, "demo", visitor); !errors.Is(err, app.ErrForbidden) {
		t.Errorf("ConsentHistory() by another visitor = %v, want ErrForbidden", err)
	}
	if _, err := a.SetConsent(ctx, other, privacyapi.SetConsentArgs{Tenant: "demo", Consent: second}); !errors.Is(err, app.ErrNotFound) {
		t.Errorf("SetConsent() by an unregistered visitor = %v, want ErrNotFound", err)
	}
}
