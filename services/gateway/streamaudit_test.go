package gateway_test

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/parley-chat/parley/pkg/audit"
	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/privacyapi"
	"github.com/parley-chat/parley/pkg/rpc"
)

// auditService stands in for the privacy service's audit of live streams:
// it records each opening it is asked to write, or refuses them all while
// down.
type auditService struct {
	mu     sync.Mutex
	opened []string // "role/id since", since "-" for none
	down   bool
}

func (a *auditService) open(_ context.Context, req rpc.Request[privacyapi.AuditStreamArgs]) (audit.Entry, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.down {
		return audit.Entry{}, rpc.Errorf(rpc.CodeUnavailable, "audit trail unavailable")
	}
	since := "-"
	if req.Args.Since != nil {
		since = strconv.FormatUint(*req.Args.Since, 10)
	}
	a.opened = append(a.opened, string(req.Principal.Role)+"/"+req.Principal.ID+" "+req.Args.Tenant+" "+since)
	return audit.Entry{}, nil
}

func (a *auditService) setDown(down bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.down = down
}

func (a *auditService) list() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.opened...)
}

// TestStaffStreamsAreAudited: the gateway asks for the audit of each
// stream of a member of staff shown message text, before the handshake
// completes, with the sequence it replays from; not of a visitor's or an
// analyst's.
func TestStaffStreamsAreAudited(t *testing.T) {
	e := startGateway(t)
	e.ensureChatStream()
	for _, d := range []struct {
		p     auth.Principal
		since string
	}{
		{auth.Principal{Tenant: "demo", ID: "sue", Role: auth.RoleSupervisor}, "0"},
		{auth.Principal{Tenant: "demo", ID: "ada", Role: auth.RoleAdmin}, ""},
		{auth.Principal{Tenant: "demo", ID: "alice", Role: auth.RoleAgent}, "7"},
		{auth.Principal{Tenant: "demo", ID: "v1", Role: auth.RoleVisitor}, "0"},
		{auth.Principal{Tenant: "demo", ID: "ann", Role: auth.RoleAnalyst}, ""},
		{auth.Principal{Tenant: "demo", ID: "aud", Role: auth.RoleAuditor}, ""},
	} {
		e.dialSince(d.p, d.since)
	}
	// The audit is asked before the handshake completes: nothing to wait for.
	want := []string{"supervisor/sue demo 0", "admin/ada demo -", "agent/alice demo 7"}
	if diff := cmp.Diff(want, e.audits.list()); diff != "" {
		t.Errorf("streams audited (-want +got):\n%s", diff)
	}
}

// TestStreamRefusedWhenNotAudited: with the audit trail down, a member of
// staff's stream is refused with 503 before the upgrade, so nothing is
// sent; a visitor's, which is not audited, opens.
func TestStreamRefusedWhenNotAudited(t *testing.T) {
	e := startGateway(t)
	e.ensureChatStream()
	e.audits.setDown(true)
	c, r := e.tryDial(auth.Principal{Tenant: "demo", ID: "sue", Role: auth.RoleSupervisor})
	if c != nil {
		t.Fatal("a supervisor's stream opened with the audit trail down, want 503")
	}
	checkProblem(t, r, http.StatusServiceUnavailable)
	var p problem
	r.decode(t, &p)
	if p.Type != "https://parley.dev/problems/unavailable" || r.header.Get("Retry-After") != "2" {
		t.Errorf("stream with the audit trail down = %+v Retry-After %q, want unavailable, Retry-After 2", p, r.header.Get("Retry-After"))
	}
	if n := e.liveSessions(); n != "0" {
		t.Errorf("live sessions after the refusal = %s, want 0", n)
	}
	e.dialSince(auth.Principal{Tenant: "demo", ID: "v1", Role: auth.RoleVisitor}, "0")
}
