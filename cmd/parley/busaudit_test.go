package main

import (
	"net/http"
	"testing"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/chatapi"
	"github.com/parley-chat/parley/pkg/rpc"
)

// TestStaffReadOnTheBusIsAudited reads a transcript as a supervisor
// straight from parley.chat.messages, past the gateway, as any service
// on the bus may: the read is in the audit trail all the same, for each
// page, as the chat service writes it where it serves the read.
func TestStaffReadOnTheBusIsAudited(t *testing.T) {
	dir := t.TempDir()
	a, _ := testAll(t, dir)
	base := a.URL()
	_, visitor := newVisitor(t, base, "demo")
	conv := mustCall(t, base, "POST", "/v1/conversations", visitor, map[string]any{"text": "hello"}, http.StatusCreated)["id"].(string)
	mustCall(t, base, "POST", "/v1/conversations/"+conv+"/messages", visitor, map[string]any{"text": "anyone?"}, http.StatusCreated)
	auditor := staffToken(t, dir, "demo", "auditor", "aud")
	if got := auditActs(t, base, auditor, ""); len(got) != 0 {
		t.Fatalf("audit trail before any staff read = %q, want empty", got)
	}

	nc, _ := adminConn(t, a)
	sue := auth.Principal{Tenant: "demo", ID: "sue", Role: auth.RoleSupervisor}
	pages := 0
	err := chatapi.ReadPages(func(after *uint64) (*uint64, error) {
		var res chatapi.MessagesResult
		args := chatapi.MessagesArgs{Conversation: conv, Page: chatapi.Page[uint64]{Limit: 1}}
		if after != nil {
			args.Page.After = *after
		}
		if err := rpc.Call(t.Context(), nc, chatapi.MessagesSubject, rpc.Request[chatapi.MessagesArgs]{Principal: sue, Args: args}, &res); err != nil {
			return nil, err
		}
		pages++
		return res.Next, nil
	})
	if err != nil || pages != 2 {
		t.Fatalf("reading the transcript on the bus = %d pages, %v; want 2 pages", pages, err)
	}
	read := "supervisor/sue transcript.read conversation:" + conv
	if got := auditActs(t, base, auditor, ""); len(got) != 2 || got[0] != read || got[1] != read {
		t.Errorf("audit trail after a staff read of 2 pages on the bus = %q, want %q twice", got, read)
	}
}
