package app_test

import (
	"errors"
	"testing"
	"time"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/event"
	"github.com/parley-chat/parley/pkg/privacyapi"

	"github.com/parley-chat/parley/services/privacy/internal/app"
	"github.com/parley-chat/parley/services/privacy/internal/memory"
)

// TestRegisterVisitorStartsTheirSession registers a visitor with no bus:
// the one use case gives their id and their session, whoever calls it,
// which lasts the tenant's retention and refreshes as the visitor; a
// registration refused starts none.
func TestRegisterVisitorStartsTheirSession(t *testing.T) {
	start := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	c := &clock{t: start}
	a := newMemoryApp(t, c, new(memory.Bus))
	ctx := t.Context()

	res, err := a.RegisterVisitor(ctx, "demo", event.Consent{NoticeVersion: "n1"}, nil)
	if err != nil {
		t.Fatalf("RegisterVisitor() = %v", err)
	}
	want := auth.Principal{Tenant: "demo", ID: res.VisitorID, Role: auth.RoleVisitor}
	retention := privacyapi.DefaultSettings().Retention()
	if res.VisitorID == "" || res.Session.Principal != want || res.Session.RefreshToken == "" || !res.Session.ExpiresAt.Equal(start.Add(retention)) {
		t.Fatalf("RegisterVisitor() = %+v, want the visitor's session of %v until %v", res, want, start.Add(retention))
	}
	c.advance(time.Minute)
	next, err := a.RefreshSession(ctx, res.Session.RefreshToken)
	if err != nil || next.Principal != want || next.ID != res.Session.ID {
		t.Errorf("RefreshSession(the registration's token) = %+v, %v; want the same session of %v", next, err, want)
	}

	var invalid *app.ValidationError
	if res, err := a.RegisterVisitor(ctx, "demo", event.Consent{}, nil); !errors.As(err, &invalid) || res.Session.RefreshToken != "" {
		t.Errorf("RegisterVisitor(no notice version) = %+v, %v; want a ValidationError and no session", res, err)
	}
}
