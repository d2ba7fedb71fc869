package chat_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/chatapi"
	"github.com/parley-chat/parley/pkg/event"
	"github.com/parley-chat/parley/pkg/rpc"
)

const tenant = "acme"

var (
	visitor    = principal(tenant, auth.RoleVisitor, "v1")
	visitor2   = principal(tenant, auth.RoleVisitor, "v2")
	agent      = principal(tenant, auth.RoleAgent, "a1")
	agent2     = principal(tenant, auth.RoleAgent, "a2")
	supervisor = principal(tenant, auth.RoleSupervisor, "s1")
	admin      = principal(tenant, auth.RoleAdmin, "ad1")
	analyst    = principal(tenant, auth.RoleAnalyst, "an1")
	auditor    = principal(tenant, auth.RoleAuditor, "au1")
	operator   = principal(auth.OperatorTenant, auth.RoleOperator, "op1")
	foreigner  = principal("other", auth.RoleSupervisor, "s1")
	// system is a service calling chat, as the privacy service does.
	system = auth.System(tenant, "parley-privacy")
)

// ids lists the ids of summaries, in order.
func ids(ss []chatapi.Summary) []string {
	out := []string{}
	for _, s := range ss {
		out = append(out, s.ID)
	}
	return out
}

// texts lists the author and text of messages, in order.
func texts(ms []chatapi.Message) []string {
	var out []string
	for _, m := range ms {
		text := "<nil>"
		if m.Text != nil {
			text = *m.Text
		}
		author := "<nil>"
		if m.Author != nil {
			author = m.Author.Role + "/" + m.Author.ID
		}
		out = append(out, author+": "+text)
	}
	return out
}

func TestConversationFlow(t *testing.T) {
	s, _ := startKeyed(t, visitor.ID, visitor2.ID)
	startChat(t, s)
	c := newClient(t, s)

	older := c.open(visitor2, "an older question")
	conv := c.open(visitor, "hello, anyone there?")

	lists := []struct {
		name string
		give auth.Principal
		want []string
	}{
		{"visitor sees own", visitor, []string{conv}},
		{"other visitor sees own", visitor2, []string{older}},
		{"agent sees unassigned", agent, []string{conv, older}},
		{"supervisor sees all, newest first", supervisor, []string{conv, older}},
		{"other tenant sees none", foreigner, []string{}},
	}
	for _, tt := range lists {
		t.Run("list/"+tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, ids(c.list(tt.give))); diff != "" {
				t.Errorf("List(%s) mismatch (-want +got):\n%s", tt.give.ID, diff)
			}
		})
	}

	// The agent takes the conversation by answering it.
	posted := c.post(agent, conv, "hi, a1 here")
	if posted.ID == "" || posted.Seq == 0 || posted.At.IsZero() {
		t.Errorf("Post() = %+v, want id, seq and time", posted)
	}
	if got, want := ids(c.list(agent2)), []string{older}; !cmp.Equal(got, want) {
		t.Errorf("List(a2) after a1 took %s = %v, want %v", conv, got, want)
	}
	// Posting to the older conversation moves its activity, not its place:
	// the list is newest conversation first, an order that paging keeps.
	c.post(visitor2, older, "still there?")
	if got, want := ids(c.list(admin)), []string{conv, older}; !cmp.Equal(got, want) {
		t.Errorf("List(admin) = %v, want %v", got, want)
	}
	agentList := c.list(agent)
	if diff := cmp.Diff([]string{conv, older}, ids(agentList)); diff != "" {
		t.Fatalf("List(a1) mismatch (-want +got):\n%s", diff)
	}
	wantSummary := chatapi.Summary{ID: conv, Tenant: tenant, Visitor: visitor.ID, Status: chatapi.StatusOpen, Assignee: ptr(agent.ID), FirstResponseAt: &posted.At}
	if diff := cmp.Diff(wantSummary, agentList[0], cmpopts.IgnoreFields(chatapi.Summary{}, "CreatedAt", "LastMessageAt")); diff != "" {
		t.Errorf("List(a1)[0] mismatch (-want +got):\n%s", diff)
	}
	if s := agentList[0]; !s.LastMessageAt.Equal(posted.At) || !s.CreatedAt.Before(s.LastMessageAt) {
		t.Errorf("List(a1)[0] created_at %v, last_message_at %v; want created before last message at %v", s.CreatedAt, s.LastMessageAt, posted.At)
	}

	wantTexts := []string{"visitor/v1: hello, anyone there?", "agent/a1: hi, a1 here"}
	for _, p := range []auth.Principal{visitor, agent, supervisor, admin} {
		ms := c.messages(p, conv)
		if diff := cmp.Diff(wantTexts, texts(ms)); diff != "" {
			t.Errorf("Messages(%s) mismatch (-want +got):\n%s", p.ID, diff)
		}
		if len(ms) == 2 && (ms[1].ID != posted.ID || ms[1].Seq != posted.Seq || ms[0].Seq >= ms[1].Seq || ms[1].Erased) {
			t.Errorf("Messages(%s)[1] = %+v, want id %s seq %d after the first, not erased", p.ID, ms[1], posted.ID, posted.Seq)
		}
	}

	var got chatapi.Summary
	c.must(supervisor, chatapi.AssignSubject, chatapi.AssignArgs{Conversation: conv, Agent: agent2.ID}, &got)
	if got.Assignee == nil || *got.Assignee != agent2.ID {
		t.Errorf("Assign(a2).Assignee = %v, want a2", got.Assignee)
	}
	if err := c.call(agent, chatapi.PostSubject, chatapi.PostArgs{Conversation: conv, Text: "me again"}, nil); rpc.CodeOf(err) != rpc.CodeForbidden {
		t.Errorf("Post(a1) after reassignment: %v, want %s", err, rpc.CodeForbidden)
	}
	c.post(agent2, conv, "a2 taking over")
	c.must(agent2, chatapi.GetSubject, chatapi.ConversationArgs{Conversation: conv}, &got)
	if got.ID != conv || got.Status != chatapi.StatusOpen {
		t.Errorf("Get() = %+v, want open %s", got, conv)
	}

	c.must(visitor, chatapi.CloseSubject, chatapi.ConversationArgs{Conversation: conv}, &got)
	if got.Status != chatapi.StatusClosed {
		t.Errorf("Close().Status = %q, want %q", got.Status, chatapi.StatusClosed)
	}
	c.must(visitor, chatapi.RateSubject, chatapi.RateArgs{Conversation: conv, Score: 5}, &got)
	if got.Status != chatapi.StatusClosed {
		t.Errorf("Rate().Status = %q, want %q", got.Status, chatapi.StatusClosed)
	}
	if err := c.call(visitor, chatapi.RateSubject, chatapi.RateArgs{Conversation: conv, Score: 4}, nil); rpc.CodeOf(err) != rpc.CodeConflict {
		t.Errorf("Rate() twice: %v, want %s", err, rpc.CodeConflict)
	}
	wantTexts = append(wantTexts, "agent/a2: a2 taking over")
	if diff := cmp.Diff(wantTexts, texts(c.messages(visitor, conv))); diff != "" {
		t.Errorf("Messages() after close mismatch (-want +got):\n%s", diff)
	}
}

func TestRules(t *testing.T) {
	s, _ := startKeyed(t, visitor.ID, visitor2.ID)
	startChat(t, s)
	c := newClient(t, s)

	unassigned := c.open(visitor, "unassigned")
	assigned := c.open(visitor, "assigned")
	c.post(agent, assigned, "mine")
	closed := c.open(visitor, "closed")
	c.must(visitor, chatapi.CloseSubject, chatapi.ConversationArgs{Conversation: closed}, nil)

	post := func(conv, text string) chatapi.PostArgs { return chatapi.PostArgs{Conversation: conv, Text: text} }
	one := func(conv string) chatapi.ConversationArgs { return chatapi.ConversationArgs{Conversation: conv} }
	tests := []struct {
		name    string
		as      auth.Principal
		subject string
		args    any
		want    rpc.Code
	}{
		{"open by agent", agent, chatapi.OpenSubject, chatapi.OpenArgs{Text: "x"}, rpc.CodeForbidden},
		{"open by analyst", analyst, chatapi.OpenSubject, chatapi.OpenArgs{Text: "x"}, rpc.CodeForbidden},
		{"open empty", visitor, chatapi.OpenSubject, chatapi.OpenArgs{Text: ""}, rpc.CodeInvalid},
		{"open blank", visitor, chatapi.OpenSubject, chatapi.OpenArgs{Text: " \n\t"}, rpc.CodeInvalid},
		{"open too long", visitor, chatapi.OpenSubject, chatapi.OpenArgs{Text: strings.Repeat("x", chatapi.MaxTextBytes+1)}, rpc.CodeInvalid},
		{"open negative erasure delay", visitor, chatapi.OpenSubject, chatapi.OpenArgs{Text: "x", EraseAfterCloseHours: ptr(-1)}, rpc.CodeInvalid},
		{"open without keys", principal(tenant, auth.RoleVisitor, "nokeys"), chatapi.OpenSubject, chatapi.OpenArgs{Text: "x"}, rpc.CodeGone},

		{"post by analyst", analyst, chatapi.PostSubject, post(unassigned, "x"), rpc.CodeForbidden},
		{"post by auditor", auditor, chatapi.PostSubject, post(unassigned, "x"), rpc.CodeForbidden},
		{"post by operator", operator, chatapi.PostSubject, post(unassigned, "x"), rpc.CodeForbidden},
		{"post by supervisor", supervisor, chatapi.PostSubject, post(unassigned, "x"), rpc.CodeForbidden},
		{"post by other visitor", visitor2, chatapi.PostSubject, post(unassigned, "x"), rpc.CodeForbidden},
		{"post by other agent", agent2, chatapi.PostSubject, post(assigned, "x"), rpc.CodeForbidden},
		{"post unknown", visitor, chatapi.PostSubject, post(event.NewID(), "x"), rpc.CodeNotFound},
		{"post bad id", visitor, chatapi.PostSubject, post("chat.>", "x"), rpc.CodeNotFound},
		{"post other tenant", principal("other", auth.RoleVisitor, visitor.ID), chatapi.PostSubject, post(unassigned, "x"), rpc.CodeNotFound},
		{"post empty", visitor, chatapi.PostSubject, post(unassigned, ""), rpc.CodeInvalid},
		{"post too long", agent, chatapi.PostSubject, post(assigned, strings.Repeat("é", chatapi.MaxTextBytes/2+1)), rpc.CodeInvalid},
		{"post closed", visitor, chatapi.PostSubject, post(closed, "x"), rpc.CodeConflict},
		{"agent takes closed", agent2, chatapi.PostSubject, post(closed, "x"), rpc.CodeConflict},

		{"assign other agent by agent", agent, chatapi.AssignSubject, chatapi.AssignArgs{Conversation: unassigned, Agent: agent2.ID}, rpc.CodeForbidden},
		{"assign taken by agent", agent2, chatapi.AssignSubject, chatapi.AssignArgs{Conversation: assigned, Agent: agent2.ID}, rpc.CodeForbidden},
		{"assign by visitor", visitor, chatapi.AssignSubject, chatapi.AssignArgs{Conversation: unassigned, Agent: agent.ID}, rpc.CodeForbidden},
		{"assign bad agent id", supervisor, chatapi.AssignSubject, chatapi.AssignArgs{Conversation: unassigned, Agent: "a b"}, rpc.CodeInvalid},
		{"assign closed", supervisor, chatapi.AssignSubject, chatapi.AssignArgs{Conversation: closed, Agent: agent.ID}, rpc.CodeConflict},
		{"assign unknown", admin, chatapi.AssignSubject, chatapi.AssignArgs{Conversation: event.NewID(), Agent: agent.ID}, rpc.CodeNotFound},

		{"close by other agent", agent2, chatapi.CloseSubject, one(assigned), rpc.CodeForbidden},
		{"close unassigned by agent", agent, chatapi.CloseSubject, one(unassigned), rpc.CodeForbidden},
		{"close by analyst", analyst, chatapi.CloseSubject, one(unassigned), rpc.CodeForbidden},
		{"close twice", supervisor, chatapi.CloseSubject, one(closed), rpc.CodeConflict},
		{"close other tenant", foreigner, chatapi.CloseSubject, one(unassigned), rpc.CodeNotFound},

		{"rate by agent", agent, chatapi.RateSubject, chatapi.RateArgs{Conversation: closed, Score: 5}, rpc.CodeForbidden},
		{"rate by admin", admin, chatapi.RateSubject, chatapi.RateArgs{Conversation: closed, Score: 5}, rpc.CodeForbidden},
		{"rate open", visitor, chatapi.RateSubject, chatapi.RateArgs{Conversation: unassigned, Score: 5}, rpc.CodeConflict},
		{"rate zero", visitor, chatapi.RateSubject, chatapi.RateArgs{Conversation: closed, Score: 0}, rpc.CodeInvalid},
		{"rate six", visitor, chatapi.RateSubject, chatapi.RateArgs{Conversation: closed, Score: 6}, rpc.CodeInvalid},

		{"messages by other agent", agent2, chatapi.MessagesSubject, one(assigned), rpc.CodeForbidden},
		{"messages unassigned by agent", agent, chatapi.MessagesSubject, one(unassigned), rpc.CodeForbidden},
		{"messages by other visitor", visitor2, chatapi.MessagesSubject, one(assigned), rpc.CodeForbidden},
		{"messages by auditor", auditor, chatapi.MessagesSubject, one(assigned), rpc.CodeForbidden},
		{"messages other tenant", foreigner, chatapi.MessagesSubject, one(assigned), rpc.CodeNotFound},
		{"messages unknown", admin, chatapi.MessagesSubject, one(event.NewID()), rpc.CodeNotFound},

		{"get by analyst", analyst, chatapi.GetSubject, one(assigned), rpc.CodeForbidden},
		{"get by other visitor", visitor2, chatapi.GetSubject, one(assigned), rpc.CodeForbidden},
		{"get other tenant", foreigner, chatapi.GetSubject, one(assigned), rpc.CodeNotFound},

		{"list by analyst", analyst, chatapi.ListSubject, chatapi.ListArgs{}, rpc.CodeForbidden},
		{"list by auditor", auditor, chatapi.ListSubject, chatapi.ListArgs{}, rpc.CodeForbidden},
		{"list by operator", operator, chatapi.ListSubject, chatapi.ListArgs{}, rpc.CodeForbidden},

		{"malformed arguments", visitor, chatapi.PostSubject, "not an object", rpc.CodeInvalid},

		{"list as the system principal", system, chatapi.ListSubject, chatapi.ListArgs{}, rpc.CodeForbidden},
		{"post as the system principal", system, chatapi.PostSubject, post(unassigned, "x"), rpc.CodeForbidden},
		{"visitor's conversations by admin", admin, chatapi.VisitorConversationsSubject, chatapi.VisitorConversationsArgs{Visitor: visitor.ID}, rpc.CodeForbidden},
		{"visitor's conversations by the visitor", visitor, chatapi.VisitorConversationsSubject, chatapi.VisitorConversationsArgs{Visitor: visitor.ID}, rpc.CodeForbidden},
		{"visitor's conversations of a bad id", system, chatapi.VisitorConversationsSubject, chatapi.VisitorConversationsArgs{Visitor: "a b"}, rpc.CodeInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := c.call(tt.as, tt.subject, tt.args, nil)
			if got := rpc.CodeOf(err); got != tt.want {
				t.Errorf("%s as %s %s = %v, want code %s", tt.subject, tt.as.Role, tt.as.ID, err, tt.want)
			}
		})
	}

	// None of the refused commands changed anything.
	wantTexts := map[string][]string{
		unassigned: {"visitor/v1: unassigned"},
		assigned:   {"visitor/v1: assigned", "agent/a1: mine"},
		closed:     {"visitor/v1: closed"},
	}
	for conv, want := range wantTexts {
		if diff := cmp.Diff(want, texts(c.messages(admin, conv))); diff != "" {
			t.Errorf("Messages(%s) after refused commands mismatch (-want +got):\n%s", conv, diff)
		}
	}
	var sum chatapi.Summary
	c.must(supervisor, chatapi.GetSubject, one(unassigned), &sum)
	if sum.Assignee != nil || sum.Status != chatapi.StatusOpen {
		t.Errorf("Get(unassigned) = %+v, want open and unassigned", sum)
	}
}

// TestVisitorConversationsForServices checks chat's internal endpoint: a
// service, as the system principal, lists a visitor's conversations as the
// visitor sees them.
func TestVisitorConversationsForServices(t *testing.T) {
	s, _ := startKeyed(t, visitor.ID, visitor2.ID)
	startChat(t, s)
	c := newClient(t, s)
	c.open(visitor, "one")
	c.open(visitor2, "someone else's")
	c.open(visitor, "two")

	var got []chatapi.Summary
	err := chatapi.ReadPages(func(after *string) (*string, error) {
		var res chatapi.ListResult
		c.must(system, chatapi.VisitorConversationsSubject, chatapi.VisitorConversationsArgs{Visitor: visitor.ID, Page: chatapi.PageAfter(after)}, &res)
		got = append(got, res.Conversations...)
		return res.Next, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(c.list(visitor), got); diff != "" {
		t.Errorf("VisitorConversations() differs from the visitor's own list (-want +got):\n%s", diff)
	}
}

func TestRestartRebuildsReadModels(t *testing.T) {
	s, _ := startKeyed(t, visitor.ID, visitor2.ID)
	first := startChat(t, s)
	c := newClient(t, s)

	a := c.open(visitor, "first conversation")
	c.post(agent, a, "answer")
	b := c.open(visitor2, "second conversation")
	c.must(visitor2, chatapi.CloseSubject, chatapi.ConversationArgs{Conversation: b}, nil)
	wantList := c.list(supervisor)
	wantA, wantB := c.messages(admin, a), c.messages(admin, b)

	if err := first.stop(); err != nil {
		t.Fatalf("Run() = %v, want nil", err)
	}
	startChat(t, s)

	if diff := cmp.Diff(wantList, c.list(supervisor)); diff != "" {
		t.Errorf("List() after restart mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantA, c.messages(admin, a)); diff != "" {
		t.Errorf("Messages(a) after restart mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantB, c.messages(admin, b)); diff != "" {
		t.Errorf("Messages(b) after restart mismatch (-want +got):\n%s", diff)
	}
	// The rebuilt state takes commands where the old one left off.
	c.post(agent, a, "after restart")
	if err := c.call(visitor2, chatapi.PostSubject, chatapi.PostArgs{Conversation: b, Text: "x"}, nil); rpc.CodeOf(err) != rpc.CodeConflict {
		t.Errorf("Post(closed) after restart = %v, want %s", err, rpc.CodeConflict)
	}
	if got := len(c.messages(visitor, a)); got != 3 {
		t.Errorf("len(Messages(a)) = %d, want 3", got)
	}
}
