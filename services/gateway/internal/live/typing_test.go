package live

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/chatapi"
	"github.com/parley-chat/parley/pkg/event"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/rpc"
)

// TestTypingCrossesInstances runs two hubs, as two gateway instances, on
// one NATS server: a visitor typing on one reaches the conversation's agent
// on the other, and the agent's typing comes back; a refused signal goes
// nowhere.
func TestTypingCrossesInstances(t *testing.T) {
	s := natstest.Start(t, t.TempDir())
	agent := "a1"
	// Stands in for the chat service: c1 is v1's, assigned to a1; c2 is
	// refused to everyone.
	typist := func(_ context.Context, p auth.Principal, conv string) (chatapi.Summary, error) {
		if conv != "c1" {
			return chatapi.Summary{}, rpc.Errorf(rpc.CodeForbidden, "not allowed")
		}
		return chatapi.Summary{ID: "c1", Tenant: p.Tenant, Visitor: "v1", Assignee: &agent}, nil
	}
	hub := func() *Hub {
		h, nc := newHub(t, s, noKeys{})
		sub, err := h.Typing(nc, typist)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sub.Unsubscribe() })
		// The subscription is live on the server before anyone types.
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		return h
	}
	one, two := hub(), hub()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	visitor := dial(t, ctx, one, auth.Principal{Tenant: "demo", ID: "v1", Role: auth.RoleVisitor})
	agentConn := dial(t, ctx, two, auth.Principal{Tenant: "demo", ID: agent, Role: auth.RoleAgent})
	natstest.Until(t, 10*time.Second, "both sessions registered", func() bool { return one.Sessions() == 1 && two.Sessions() == 1 })

	typing := func(c *websocket.Conn, conv string) {
		t.Helper()
		b, _ := json.Marshal(Event{Type: TypeTyping, ConversationID: conv})
		if err := c.Write(ctx, websocket.MessageText, b); err != nil {
			t.Fatal(err)
		}
	}
	// The refused one first: the agent's next frame shows it was not sent.
	typing(visitor, "c2")
	typing(visitor, "c1")
	if e := readEvent(t, ctx, agentConn); e.Type != TypeTyping || e.ConversationID != "c1" || e.Seq != 0 || e.Author == nil || *e.Author != (event.Author{Role: "visitor", ID: "v1"}) {
		t.Errorf("agent's frame = %+v, want v1 typing in c1 with no seq", e)
	}
	typing(agentConn, "c1")
	if e := readEvent(t, ctx, visitor); e.Type != TypeTyping || e.ConversationID != "c1" || e.Author == nil || e.Author.ID != agent || e.Author.Role != "agent" {
		t.Errorf("visitor's frame = %+v, want a1 typing in c1", e)
	}
}
