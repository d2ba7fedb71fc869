package chat_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/parley-chat/parley/pkg/audit"
	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/chatapi"
	"github.com/parley-chat/parley/pkg/privacyapi"
	"github.com/parley-chat/parley/pkg/rpc"
)

// TestStaffReadsAreAudited reads a transcript on the bus, as any caller
// may: each page a member of staff reads is in the audit trail before it is
// answered, a visitor's own reads are not, and a staff read the trail
// cannot take answers nothing.
func TestStaffReadsAreAudited(t *testing.T) {
	s, ks := startKeyed(t, visitor.ID)
	unlimited(t, s, tenant)
	startChat(t, s)
	c := newClient(t, s)
	conv := c.open(visitor, "hello")
	c.post(agent, conv, "how can I help?")

	page := func(p auth.Principal, after uint64) (chatapi.MessagesResult, error) {
		var res chatapi.MessagesResult
		args := chatapi.MessagesArgs{Conversation: conv, Page: chatapi.Page[uint64]{After: after, Limit: 1}}
		err := c.call(p, chatapi.MessagesSubject, args, &res)
		return res, err
	}
	first, err := page(supervisor, 0)
	if err != nil || first.Next == nil {
		t.Fatalf("Messages(supervisor, first page) = %+v, %v; want a page and a next", first, err)
	}
	if _, err := page(supervisor, *first.Next); err != nil {
		t.Fatalf("Messages(supervisor, second page) error = %v", err)
	}
	if _, err := page(visitor, 0); err != nil {
		t.Fatalf("Messages(visitor) error = %v", err)
	}
	read := privacyapi.AppendAuditArgs{
		Tenant: tenant, Actor: audit.Actor{Role: supervisor.Role, ID: supervisor.ID},
		Action: audit.ActionTranscriptRead, Target: "conversation:" + conv,
	}
	if diff := cmp.Diff([]privacyapi.AppendAuditArgs{read, read}, ks.audits()); diff != "" {
		t.Errorf("audit trail after two staff pages and a visitor's mismatch (-want +got):\n%s", diff)
	}

	ks.setAuditDown(true)
	res, err := page(supervisor, 0)
	if rpc.CodeOf(err) != rpc.CodeUnavailable || len(res.Messages) != 0 {
		t.Errorf("Messages(supervisor) with the audit trail down = %+v, %v; want nothing and %s", res, err, rpc.CodeUnavailable)
	}
	if _, err := page(visitor, 0); err != nil {
		t.Errorf("Messages(visitor) with the audit trail down error = %v, want nil: nothing to audit", err)
	}
}
