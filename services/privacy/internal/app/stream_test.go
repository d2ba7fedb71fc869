package app_test

import (
	"errors"
	"testing"
	"time"

	"github.com/parley-chat/parley/pkg/audit"
	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/privacyapi"

	"github.com/parley-chat/parley/services/privacy/internal/app"
	"github.com/parley-chat/parley/services/privacy/internal/memory"
)

func TestAuditStream(t *testing.T) {
	a := newMemoryApp(t, &clock{t: time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC)}, new(memory.Bus))
	zero, seven := uint64(0), uint64(7)
	tests := []struct {
		name    string
		give    auth.Principal
		since   *uint64
		want    string
		wantErr error
	}{
		{"supervisor replaying", auth.Principal{Tenant: "demo", ID: "sue", Role: auth.RoleSupervisor}, &zero, "stream:tenant since:0", nil},
		{"admin", auth.Principal{Tenant: "demo", ID: "ada", Role: auth.RoleAdmin}, nil, "stream:tenant", nil},
		{"agent resuming", auth.Principal{Tenant: "demo", ID: "alice", Role: auth.RoleAgent}, &seven, "stream:assigned since:7", nil},
		{"visitor", auth.Principal{Tenant: "demo", ID: "v1", Role: auth.RoleVisitor}, nil, "", app.ErrForbidden},
		{"analyst", auth.Principal{Tenant: "demo", ID: "ann", Role: auth.RoleAnalyst}, nil, "", app.ErrForbidden},
		{"bot", auth.Principal{Tenant: "demo", ID: "b1", Role: auth.RoleBot}, nil, "", app.ErrForbidden},
		{"another tenant's supervisor", auth.Principal{Tenant: "acme", ID: "sue", Role: auth.RoleSupervisor}, nil, "", app.ErrForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := a.AuditStream(t.Context(), tt.give, privacyapi.AuditStreamArgs{Tenant: "demo", Since: tt.since})
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("AuditStream(%v) error = %v, want %v", tt.give, err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if e.Actor != (audit.Actor{Role: tt.give.Role, ID: tt.give.ID}) || e.Action != audit.ActionStreamOpen || e.Target != tt.want {
				t.Errorf("AuditStream(%v) = %v %s %q, want the caller, %s, %q", tt.give, e.Actor, e.Action, e.Target, audit.ActionStreamOpen, tt.want)
			}
		})
	}
	res, err := a.ListAudit(t.Context(), auth.Principal{Tenant: "demo", ID: "aud", Role: auth.RoleAuditor}, "demo", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Entries) != 3 {
		t.Errorf("entries in the trail = %d, want the 3 streams audited", len(res.Entries))
	}
}
