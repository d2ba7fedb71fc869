package app_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"testing"
	"time"

	"github.com/parley-chat/parley/pkg/audit"
	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/event"
	"github.com/parley-chat/parley/pkg/privacyapi"
	"github.com/parley-chat/parley/pkg/seal"

	"github.com/parley-chat/parley/services/privacy/internal/app"
	"github.com/parley-chat/parley/services/privacy/internal/keyring"
	"github.com/parley-chat/parley/services/privacy/internal/memory"
)

// clock is a test's own time, advanced by the test.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

// follower is the memory event log, or a test's wrapper of it.
type follower interface {
	Follow(from uint64, apply func(seq uint64, e event.Envelope))
}

// newMemoryApp returns the privacy use cases on in-memory stores, on the
// clock c, broadcasting on bus.
func newMemoryApp(t *testing.T, c *clock, bus *memory.Bus) *app.App {
	t.Helper()
	return newMemoryAppWith(t, c, bus, func(*app.Stores) {})
}

// newMemoryAppWith is newMemoryApp with the stores changed by with first.
func newMemoryAppWith(t testing.TB, c *clock, bus *memory.Bus, with func(*app.Stores)) *app.App {
	t.Helper()
	kek, err := seal.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	return newMemoryAppKEK(t, c, bus, kek, with)
}

// newMemoryAppKEK is newMemoryAppWith under kek: an instance started again
// on the same stores with it opens the keys the first one wrapped.
func newMemoryAppKEK(t testing.TB, c *clock, bus *memory.Bus, kek seal.Key, with func(*app.Stores)) *app.App {
	t.Helper()
	_, auditKey, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	events := memory.NewEventLog()
	stores := app.Stores{
		Keys:         memory.NewKeyStore(keyring.Fingerprint(kek)),
		Events:       events,
		Audit:        memory.NewAuditLog(),
		Checkpoints:  memory.NewCheckpoints(),
		Settings:     memory.NewSettingsStore(),
		Bus:          bus,
		Expiries:     memory.NewExpirySchedules(),
		Sessions:     memory.NewSessionStore(),
		Now:          c.now,
		Integrations: memory.NewIntegrationStore(),
		Erasures:     memory.NewErasureRecords(),
	}
	with(&stores)
	a := app.New(keyring.New(kek), auditKey, stores)
	from, err := a.Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	stores.Events.(follower).Follow(from, a.Apply)
	return a
}

// TestPutSettingsIsAudited checks the settings use cases with no bus: an
// admin's change is stored and audited first, stamped with the service's
// clock, and a change that breaks a rule or comes from another role
// changes nothing and audits nothing.
func TestPutSettingsIsAudited(t *testing.T) {
	c := &clock{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
	a := newMemoryApp(t, c, new(memory.Bus))
	ctx := t.Context()
	admin := auth.Principal{Tenant: "demo", ID: "a-1", Role: auth.RoleAdmin}
	auditor := auth.Principal{Tenant: "demo", ID: "au-1", Role: auth.RoleAuditor}

	got, err := a.GetSettings(ctx, admin, "demo")
	if err != nil || got != privacyapi.DefaultSettings() {
		t.Fatalf("GetSettings() before any change = %+v, %v; want the defaults", got, err)
	}

	tests := []struct {
		name    string
		p       auth.Principal
		give    privacyapi.Settings
		wantErr error
	}{
		{"admin", admin, privacyapi.Settings{RetentionDays: 30, CollectNetworkData: true}, nil},
		{"agent", auth.Principal{Tenant: "demo", ID: "ag-1", Role: auth.RoleAgent}, privacyapi.Settings{RetentionDays: 31}, app.ErrForbidden},
		{"out of range", admin, privacyapi.Settings{RetentionDays: -1}, new(app.ValidationError)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.advance(time.Hour)
			_, err := a.PutSettings(ctx, tt.p, "demo", tt.give)
			var ve *app.ValidationError
			switch {
			case tt.wantErr == nil && err != nil:
				t.Fatalf("PutSettings() = %v", err)
			case errors.As(tt.wantErr, &ve) && !errors.As(err, &ve):
				t.Fatalf("PutSettings() = %v, want a ValidationError", err)
			case tt.wantErr != nil && !errors.As(tt.wantErr, &ve) && !errors.Is(err, tt.wantErr):
				t.Fatalf("PutSettings() = %v, want %v", err, tt.wantErr)
			}
		})
	}

	got, err = a.GetSettings(ctx, admin, "demo")
	if want := (privacyapi.Settings{RetentionDays: 30, CollectNetworkData: true, NoticeVersion: "1"}); err != nil || got != want {
		t.Errorf("GetSettings() = %+v, %v; want %+v", got, err, want)
	}
	res, err := a.ListAudit(ctx, auditor, "demo", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Entries) != 1 {
		t.Fatalf("ListAudit() holds %d entries, want the admin's change only", len(res.Entries))
	}
	e := res.Entries[0]
	if e.Action != audit.ActionSettingsChange || e.Actor.ID != "a-1" || !e.At.Equal(time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)) {
		t.Errorf("audit entry = %s by %s at %v; want %s by a-1 at the clock's 10:00", e.Action, e.Actor.ID, e.At, audit.ActionSettingsChange)
	}
	// The clock moved on: nothing was audited since.
	if later, err := a.ListAudit(ctx, auditor, "demo", c.now()); err != nil || len(later.Entries) != 0 {
		t.Errorf("ListAudit(since now) = %d entries, %v; want none", len(later.Entries), err)
	}
	cp, err := a.AuditCheckpoint(ctx, auditor, "demo")
	if err != nil || cp.Checkpoint == nil || cp.Checkpoint.Count != 1 || cp.Checkpoint.Head != e.Hash {
		t.Errorf("AuditCheckpoint() = %+v, %v; want one counting the entry", cp.Checkpoint, err)
	}
}
